"""`byokctl limits …`: per-minute request and token limits of an org, a project or a user, held across every proxy
(docs/usage.md). `list` shows each limit with what keyservice counted in the current UTC minute."""

from __future__ import annotations

import argparse
from typing import Any

from byok.keys.v1 import key_service_pb2 as kpb
from byok.keys.v1 import key_service_pb2_grpc as kpb_grpc
from byokctl.inputs import UsageError, scope_of
from byokctl.output import emit_json, emit_table


def cmd_limits(args: argparse.Namespace, stub: kpb_grpc.KeyServiceStub) -> None:
    if args.action == "set":
        if not args.rpm and not args.tpm:
            raise UsageError("give --rpm, --tpm or both")
        limit = kpb.RateLimit(scope=scope_of(args), requests_per_minute=args.rpm or 0,
                              tokens_per_minute=args.tpm or 0)
        reply: Any = stub.SetRateLimit(kpb.SetRateLimitRequest(limit=limit), timeout=args.timeout)
        _print_limits(args, [kpb.RateLimitUsage(limit=reply.limit)])
    elif args.action == "delete":
        stub.DeleteRateLimit(kpb.DeleteRateLimitRequest(rate_limit_id=args.id), timeout=args.timeout)
        emit_json({"deleted": args.id}) if args.json else print(f"deleted {args.id}")
    else:
        reply = stub.ListRateLimits(kpb.ListRateLimitsRequest(org_id=args.org or ""), timeout=args.timeout)
        _print_limits(args, list(reply.limits))


def _print_limits(args: argparse.Namespace, limits: list[kpb.RateLimitUsage]) -> None:
    if args.json:
        emit_json(limits)
        return
    emit_table(["id", "scope", "rpm", "tpm", "requests this minute", "tokens this minute"],
               [[u.limit.rate_limit_id,
                 "/".join(x for x in (u.limit.scope.org_id, u.limit.scope.project_id, u.limit.scope.user_id) if x),
                 u.limit.requests_per_minute or "", u.limit.tokens_per_minute or "", u.requests, u.tokens]
                for u in limits])
