"""`byokctl chat`: stream a completion through the proxy, with images or PDFs attached and the model's reasoning
shown apart from its answer (reasoning on stderr, so stdout stays the answer alone for pipes)."""

from __future__ import annotations

import argparse
import mimetypes
import sys
from pathlib import Path

from byok.proxy.v1 import chat_service_pb2 as ppb
from byok.proxy.v1 import chat_service_pb2_grpc as ppb_grpc
from byokctl.connect import open_channel
from byokctl.inputs import UsageError
from byokctl.output import emit_json, enum_word

EFFORTS = {"none": ppb.REASONING_EFFORT_NONE, "minimal": ppb.REASONING_EFFORT_MINIMAL,
           "low": ppb.REASONING_EFFORT_LOW, "medium": ppb.REASONING_EFFORT_MEDIUM, "high": ppb.REASONING_EFFORT_HIGH}
# Attachments travel inside one gRPC message; the proxy takes messages up to its max receive size.
MAX_ATTACHMENT_BYTES = 20 * 1024 * 1024


def _source(given: str, kind: str) -> tuple[str, bytes, str]:
    """(url, data, media type) of an attachment: an https URL as is, else a local file read whole."""
    if given.startswith("https://"):
        return given, b"", ""
    path = Path(given)
    if not path.is_file():
        raise UsageError(f"--{kind} {given!r}: not an https:// URL nor a readable file")
    if path.stat().st_size > MAX_ATTACHMENT_BYTES:
        raise UsageError(f"--{kind} {given!r}: larger than {MAX_ATTACHMENT_BYTES // (1024 * 1024)} MiB")
    media_type = mimetypes.guess_type(path.name)[0] or ""
    want = "image/" if kind == "image" else "application/pdf"
    if not media_type.startswith(want):
        raise UsageError(f"--{kind} {given!r}: its type {media_type or 'unknown'} is not {want.rstrip('/')}")
    return "", path.read_bytes(), media_type


def _user_message(args: argparse.Namespace) -> ppb.Message:
    prompt = " ".join(args.prompt)
    if not args.image and not args.document:
        return ppb.Message(role=ppb.ROLE_USER, content=prompt)
    message = ppb.Message(role=ppb.ROLE_USER)
    for given in args.image:
        url, data, media_type = _source(given, "image")
        message.parts.add(image=ppb.ImagePart(url=url, data=data, media_type=media_type))
    for given in args.document:
        url, data, media_type = _source(given, "document")
        message.parts.add(document=ppb.DocumentPart(url=url, data=data, media_type=media_type,
                                                    filename=Path(given).name if data else ""))
    message.parts.add(text=prompt)
    return message


def _parameters(args: argparse.Namespace) -> ppb.ChatParameters:
    params = ppb.ChatParameters(
        tenant=ppb.Tenant(org_id=args.org, project_id=args.project or "", user_id=args.user or ""),
        model=args.model, provider=args.provider or "", messages=[_user_message(args)])
    if args.max_tokens:
        params.max_tokens = args.max_tokens
    if args.reasoning_effort:
        params.reasoning.effort = EFFORTS[args.reasoning_effort]
    if args.reasoning_budget is not None:
        params.reasoning.budget_tokens = args.reasoning_budget
    return params


class _Printer:
    """The stream as a person reads it: the answer on stdout; reasoning on stderr under a header, once."""

    def __init__(self, show_reasoning: bool) -> None:
        self.show_reasoning = show_reasoning
        self.in_reasoning = False

    def choice(self, choice: ppb.ChoiceDelta) -> None:
        if choice.reasoning and self.show_reasoning:
            if not self.in_reasoning:
                sys.stderr.write("[reasoning]\n")
                self.in_reasoning = True
            sys.stderr.write(choice.reasoning)
            sys.stderr.flush()
        answer = choice.text or choice.refusal or any(call.name or call.arguments for call in choice.tool_calls)
        if answer and self.in_reasoning:
            sys.stderr.write("\n[answer]\n")
            sys.stderr.flush()
            self.in_reasoning = False
        sys.stdout.write(choice.text or choice.refusal)
        for call in choice.tool_calls:
            sys.stdout.write(f"[tool {call.name}{call.arguments}]" if call.name else call.arguments)


def cmd_chat(args: argparse.Namespace) -> None:
    params = _parameters(args)
    with open_channel(args.proxy_addr, args) as channel:
        stub = ppb_grpc.ChatServiceStub(channel)
        if args.json:
            emit_json(stub.Chat(ppb.ChatRequest(parameters=params), timeout=args.timeout))
            return
        printer = _Printer(show_reasoning=not args.hide_reasoning)
        for event in stub.StreamChat(ppb.StreamChatRequest(parameters=params), timeout=args.timeout):
            for choice in event.choices:
                printer.choice(choice)
            sys.stdout.flush()
            if event.HasField("start"):
                source = enum_word(ppb.KeySource.DESCRIPTOR, event.start.key_source)
                print(f"[{event.start.provider}, {source} key {event.start.credential_id}]", file=sys.stderr)
            if event.HasField("fallback"):
                print(f"\n[{event.fallback.to_model} took over from {event.fallback.from_model}]", file=sys.stderr)
        sys.stdout.write("\n")
