"""`byokctl chat`: stream a completion through the proxy."""

from __future__ import annotations

import argparse
import sys

from byok.proxy.v1 import chat_service_pb2 as ppb
from byok.proxy.v1 import chat_service_pb2_grpc as ppb_grpc
from byokctl.connect import open_channel
from byokctl.output import emit_json, enum_word


def cmd_chat(args: argparse.Namespace) -> None:
    params = ppb.ChatParameters(
        tenant=ppb.Tenant(org_id=args.org, project_id=args.project or "", user_id=args.user or ""),
        model=args.model, provider=args.provider or "",
        messages=[ppb.Message(role=ppb.ROLE_USER, content=" ".join(args.prompt))])
    if args.max_tokens:
        params.max_tokens = args.max_tokens
    with open_channel(args.proxy_addr, args) as channel:
        stub = ppb_grpc.ChatServiceStub(channel)
        if args.json:
            emit_json(stub.Chat(ppb.ChatRequest(parameters=params), timeout=args.timeout))
            return
        for event in stub.StreamChat(ppb.StreamChatRequest(parameters=params), timeout=args.timeout):
            for choice in event.choices:
                sys.stdout.write(choice.text or choice.refusal)
                for call in choice.tool_calls:
                    sys.stdout.write(f"[tool {call.name}{call.arguments}]" if call.name else call.arguments)
            sys.stdout.flush()
            if event.HasField("start"):
                source = enum_word(ppb.KeySource.DESCRIPTOR, event.start.key_source)
                print(f"[{event.start.provider}, {source} key {event.start.credential_id}]", file=sys.stderr)
        sys.stdout.write("\n")
