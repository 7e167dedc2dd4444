"""`byokctl bindings …` and `byokctl orgs …`: who may act for which org, org policies, emergency revoke."""

from __future__ import annotations

import argparse
from typing import Any

from byok.keys.v1 import key_service_pb2 as kpb
from byok.keys.v1 import key_service_pb2_grpc as kpb_grpc
from byokctl.output import emit_json, emit_table


def cmd_bindings(args: argparse.Namespace, stub: kpb_grpc.KeyServiceStub) -> None:
    if args.action == "add":
        reply = stub.CreateCallerBinding(kpb.CreateCallerBindingRequest(binding=kpb.CallerBinding(
            caller_identity=args.identity, org_id=args.org, project_id=args.project or "")), timeout=args.timeout)
        emit_json(reply.binding) if args.json else print(f"bound {args.identity} to {args.org}")
    elif args.action == "remove":
        stub.DeleteCallerBinding(kpb.DeleteCallerBindingRequest(
            caller_identity=args.identity, org_id=args.org, project_id=args.project or ""), timeout=args.timeout)
        emit_json({"removed": args.identity}) if args.json else print(f"unbound {args.identity} from {args.org}")
    else:
        reply = stub.ListCallerBindings(kpb.ListCallerBindingsRequest(
            caller_identity=args.identity or "", org_id=args.org or ""), timeout=args.timeout)
        if args.json:
            emit_json(list(reply.bindings))
        else:
            emit_table(["caller", "org", "project"], [[b.caller_identity, b.org_id, b.project_id or "(all)"]
                                                       for b in reply.bindings])


def cmd_orgs(args: argparse.Namespace, stub: kpb_grpc.KeyServiceStub) -> None:
    if args.action == "policy":
        if args.platform_fallback is None:
            reply: Any = stub.GetOrgPolicy(kpb.GetOrgPolicyRequest(org_id=args.org), timeout=args.timeout)
        else:
            reply = stub.SetOrgPolicy(kpb.SetOrgPolicyRequest(policy=kpb.OrgPolicy(
                org_id=args.org, allow_platform_fallback=args.platform_fallback == "on")), timeout=args.timeout)
        if args.json:
            emit_json(reply.policy)
        else:
            print(f"{args.org}: platform fallback {'on' if reply.policy.allow_platform_fallback else 'off'}")
    else:
        reply = stub.RevokeOrg(kpb.RevokeOrgRequest(org_id=args.org), timeout=args.timeout)
        emit_json(reply) if args.json else print(f"{args.org}: deactivated {reply.deactivated_count} credentials")
