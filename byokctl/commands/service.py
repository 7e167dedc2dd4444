"""`byokctl providers` and `byokctl rewrap`."""

from __future__ import annotations

import argparse

from byok.keys.v1 import key_service_pb2 as kpb
from byok.keys.v1 import key_service_pb2_grpc as kpb_grpc
from byokctl.output import emit_json, emit_table


def cmd_providers(args: argparse.Namespace, stub: kpb_grpc.KeyServiceStub) -> None:
    providers = list(stub.ListProviders(kpb.ListProvidersRequest(), timeout=args.timeout).providers)
    if args.json:
        emit_json(providers)
    else:
        emit_table(["name", "provider", "family", "default model", "base url", "key format"],
                   [[p.name, p.display_name, p.api_family, p.default_model, p.default_api_base, p.key_format]
                    for p in providers])


def cmd_rewrap(args: argparse.Namespace, stub: kpb_grpc.KeyServiceStub) -> None:
    reply = stub.RewrapSecrets(kpb.RewrapSecretsRequest(org_id=args.org or ""), timeout=max(args.timeout, 300))
    if args.json:
        emit_json(reply)
    else:
        print(f"rewrapped {reply.rewrapped_count} secrets; lowest transit key version in use: "
              f"{reply.min_transit_key_version}")
