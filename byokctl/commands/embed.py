"""`byokctl embed`: embed texts through the proxy's Embed RPC, one vector per input, in order: JSON lines on stdout
(`{"index": i, "values": […]}`), or the whole EmbedResponse with --json; who served it on stderr."""

from __future__ import annotations

import argparse
import json
import sys

from byok.proxy.v1 import chat_service_pb2 as ppb
from byok.proxy.v1 import chat_service_pb2_grpc as ppb_grpc
from byokctl.connect import open_channel
from byokctl.inputs import UsageError
from byokctl.output import emit_json, enum_word

TASK_TYPES = {"retrieval_query": ppb.EMBED_TASK_TYPE_RETRIEVAL_QUERY,
              "retrieval_document": ppb.EMBED_TASK_TYPE_RETRIEVAL_DOCUMENT,
              "semantic_similarity": ppb.EMBED_TASK_TYPE_SEMANTIC_SIMILARITY,
              "classification": ppb.EMBED_TASK_TYPE_CLASSIFICATION, "clustering": ppb.EMBED_TASK_TYPE_CLUSTERING,
              "question_answering": ppb.EMBED_TASK_TYPE_QUESTION_ANSWERING,
              "fact_verification": ppb.EMBED_TASK_TYPE_FACT_VERIFICATION,
              "code_retrieval_query": ppb.EMBED_TASK_TYPE_CODE_RETRIEVAL_QUERY}


def _request(args: argparse.Namespace) -> ppb.EmbedRequest:
    texts = list(args.text) or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not texts:
        raise UsageError("nothing to embed: give texts as arguments or one per line on stdin")
    request = ppb.EmbedRequest(
        tenant=ppb.Tenant(org_id=args.org, project_id=args.project or "", user_id=args.user or ""),
        model=args.model, provider=args.provider or "", inputs=[ppb.EmbedInput(text=t) for t in texts])
    if args.dimensions is not None:
        request.dimensions = args.dimensions
    if args.task_type:
        request.task_type = TASK_TYPES[args.task_type]
    return request


def cmd_embed(args: argparse.Namespace) -> None:
    request = _request(args)
    with open_channel(args.proxy_addr, args) as channel:
        reply = ppb_grpc.ChatServiceStub(channel).Embed(request, timeout=args.timeout)
    if args.json:
        emit_json(reply)
        return
    for e in reply.embeddings:
        sys.stdout.write(json.dumps({"index": e.index, "values": list(e.values)}) + "\n")
    source = enum_word(ppb.KeySource.DESCRIPTOR, reply.key_source)
    print(f"[{reply.provider} {reply.model}, {source} key {reply.credential_id}, "
          f"{len(reply.embeddings)} vectors]", file=sys.stderr)
