"""`byokctl audit`: audit events by org, project, user, credential, action, actor and time."""

from __future__ import annotations

import argparse
import json

from byok.keys.v1 import key_service_pb2 as kpb
from byok.keys.v1 import key_service_pb2_grpc as kpb_grpc
from byokctl.inputs import parse_since
from byokctl.output import emit_json, emit_table


def cmd_audit(args: argparse.Namespace, stub: kpb_grpc.KeyServiceStub) -> None:
    request = kpb.ListAuditEventsRequest(org_id=args.org or "", project_id=args.project or "",
                                         user_id=args.user or "", credential_id=args.credential or "",
                                         action=args.action or "", actor=args.actor or "", page_size=args.limit)
    since = parse_since(args.since or "")
    if since is not None:
        request.since.CopyFrom(since)
    events = list(stub.ListAuditEvents(request, timeout=args.timeout).events)
    for e in events:
        e.details_json = readable_json(e.details_json)
    if args.json:
        emit_json(events)
    else:
        emit_table(["time", "actor", "action", "credential", "scope", "outcome", "details"],
                   [[e.time.ToDatetime().isoformat(timespec="seconds"), e.actor, e.action, e.credential_id,
                     "/".join(x for x in (e.org_id, e.project_id, e.user_id) if x), e.outcome,
                     e.details_json if e.details_json != "{}" else ""] for e in events])


def readable_json(text: str) -> str:
    """The same JSON with text as itself ("sk-…a211", not "sk-\\u2026a211"); anything else unchanged."""
    try:
        return json.dumps(json.loads(text), ensure_ascii=False, separators=(",", ":"))
    except ValueError:
        return text
