"""Traces through the real proxy, exported by its real OTLP/gRPC exporter to a real receiver on loopback
(tests/support/otlp_receiver.py): the caller's `traceparent` in (gRPC metadata, HTTP header) gives the same trace id
in the exported span and back to the caller; the attributes match the request's provider, model, credential, key
source and usage; errors are error spans; the caller's trace context never reaches the provider; and a leak canary:
neither the key nor the prompt appears anywhere in what was exported."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.trace.v1 import trace_pb2

from byok.keys.v1 import key_service_pb2 as kpb
from byok.proxy.v1 import chat_service_pb2 as pb
from tests.e2e.conftest import System, params, running_system
from tests.support.bao import BaoDevServer
from tests.support.http_front import front_url, mtls_client
from tests.support.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.support.stack import CALLER, Identities

KEY = "sk-proj-" + secrets.token_hex(20)
PLATFORM_KEY = "sk-proj-platform" + secrets.token_hex(16)
PROMPT = "canary " + secrets.token_hex(12)  # a prompt no span may carry
TOKEN = "collector-" + secrets.token_hex(8)  # the collector's auth header, from BYOK_OTLP_HEADERS
CALLER_TRACE = secrets.token_hex(16)
CALLER_SPAN = secrets.token_hex(8)
CALLER_TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
CLIENT = trace_pb2.Span.SPAN_KIND_CLIENT


@dataclass
class Traced:
    system: System
    receiver: OtlpReceiver
    credential_id: str  # acme's OpenAI key


@pytest.fixture
async def traced(bao: BaoDevServer, ids: Identities, tmp_path: Path) -> AsyncIterator[Traced]:
    """A system whose proxy exports to a receiver; an org "acme" with a tenant key, "plat" on the platform's key,
    "nokey" with none."""
    receiver = OtlpReceiver().start()
    async with running_system(bao, ids, tmp_path, platform_keys={"OPENAI_API_KEY": PLATFORM_KEY}) as system:
        await system.restart_proxy(otlp_endpoint=receiver.endpoint, otlp_headers=(("authorization", TOKEN),))
        credential = await system.add_key("acme", "openai", KEY)
        await system.admin.SetOrgPolicy(kpb.SetOrgPolicyRequest(
            policy=kpb.OrgPolicy(org_id="plat", allow_platform_fallback=True)))
        for org in ("acme", "plat", "nokey"):
            await system.bind(org)
        try:
            yield Traced(system, receiver, credential.credential_id)
            # The leak canary, over everything every test exported: no key, no prompt, no collector token.
            await exported(system, receiver)
            raw = receiver.raw()
            assert b"byok.org_id" in raw, "the canary needs spans to look in"
            for secret in (KEY, PLATFORM_KEY, PROMPT, TOKEN):
                assert secret.encode() not in raw, "a secret or the prompt reached the trace backend"
        finally:
            await asyncio.to_thread(system.proxy.tracing.force_flush)  # nothing left for the stop to send
            receiver.stop()


async def exported(system: System, receiver: OtlpReceiver) -> list[ReceivedSpan]:
    """What reached the receiver once the proxy exported every ended span (force_flush returns after the
    receiver answered: no waiting)."""
    assert await asyncio.to_thread(system.proxy.tracing.force_flush)
    return receiver.spans()


def in_caller_trace(spans: list[ReceivedSpan]) -> ReceivedSpan:
    (span,) = [s for s in spans if s.trace_id == CALLER_TRACE]
    return span


def returned(traceparent: str, span: ReceivedSpan) -> None:
    """The caller was told the span it can find: same trace, the proxy's span id."""
    assert traceparent == f"00-{span.trace_id}-{span.span_id}-01"


async def test_grpc_stream_chat_joins_the_callers_trace_and_says_whose_key_served(
        traced: Traced) -> None:
    system, receiver, credential_id = traced.system, traced.receiver, traced.credential_id
    call = system.chat.StreamChat(pb.StreamChatRequest(parameters=params("acme", "gpt-4o-mini", PROMPT,
                                                                         max_tokens=32)),
                                  metadata=(("traceparent", CALLER_TRACEPARENT), ("tracestate", "acme=1")))
    messages = [m async for m in call]
    usage = next(m.usage for m in reversed(messages) if m.HasField("usage"))
    span = in_caller_trace(await exported(system, receiver))
    returned(dict(await call.initial_metadata())["traceparent"], span)
    assert span.parent_span_id == CALLER_SPAN and span.kind == CLIENT and not span.is_error
    assert span.name == "chat gpt-4o-mini"
    a = span.attributes
    assert (a["gen_ai.operation.name"], a["gen_ai.provider.name"], a["gen_ai.request.model"]) == (
        "chat", "openai", "gpt-4o-mini")
    assert (a["byok.credential_id"], a["byok.key_source"], a["byok.org_id"], a["byok.caller"]) == (
        credential_id, "tenant", "acme", CALLER)
    assert a["byok.request_id"] == messages[0].start.request_id
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (usage.input_tokens,
                                                                                 usage.output_tokens)
    assert a["gen_ai.request.stream"] is True and a["gen_ai.request.max_tokens"] == 32
    assert a["byok.upstream.status_code"] == 200 and a["gen_ai.response.time_to_first_chunk"] > 0
    assert a["gen_ai.response.finish_reasons"]
    assert span.resource["service.name"] == "byok-proxyservice"
    assert {m.get("authorization") for m in receiver.metadata} == {TOKEN}  # BYOK_OTLP_HEADERS on every export


async def test_grpc_errors_are_error_spans_with_the_code_and_the_callers_message(
        traced: Traced) -> None:
    system, receiver = traced.system, traced.receiver
    call = system.chat.Chat(pb.ChatRequest(parameters=params("nokey", "gpt-4o-mini", PROMPT)),
                            metadata=(("traceparent", CALLER_TRACEPARENT),))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    span = in_caller_trace(await exported(system, receiver))
    returned(dict(await call.initial_metadata())["traceparent"], span)
    assert span.is_error and span.status_message == refused.value.details()
    assert span.attributes["error.type"] == "NOT_FOUND" and span.attributes["byok.org_id"] == "nokey"


async def test_http_unified_chat_on_the_platform_key(traced: Traced) -> None:
    system, receiver = traced.system, traced.receiver
    async with mtls_client(system.ids.caller, "plat") as http:
        reply = await http.post(front_url(system.proxy.http_port) + "/v1/chat/completions",
                                headers={"traceparent": CALLER_TRACEPARENT},
                                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}],
                                      "temperature": 0.2})
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    span = in_caller_trace(await exported(system, receiver))
    returned(reply.headers["traceparent"], span)
    a = span.attributes
    assert span.name == "chat gpt-4o-mini" and span.parent_span_id == CALLER_SPAN and not span.is_error
    assert (a["http.request.method"], a["http.route"], a["http.response.status_code"]) == (
        "POST", "/v1/chat/completions", 200)
    assert (a["byok.key_source"], a["gen_ai.provider.name"], a["byok.org_id"]) == ("platform", "openai", "plat")
    assert "byok.credential_id" not in a  # the platform's key is no credential
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (
        answer["usage"]["prompt_tokens"], answer["usage"]["completion_tokens"])
    assert a["gen_ai.request.temperature"] == 0.2 and a["byok.request_id"] == reply.headers["x-byok-request-id"]


async def test_http_native_passthrough_keeps_the_callers_trace_from_the_provider(
        traced: Traced) -> None:
    system, receiver = traced.system, traced.receiver
    body = {"model": "gpt-4o-mini", "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": PROMPT}]}
    async with mtls_client(system.ids.caller, "acme") as http:
        reply = await http.post(front_url(system.proxy.http_port) + "/openai/chat/completions",
                                content=json.dumps(body),
                                headers={"traceparent": CALLER_TRACEPARENT, "tracestate": "acme=1",
                                         "baggage": "user=alice", "content-type": "application/json"})
    assert reply.status_code == 200
    sent = system.upstream.requests[-1].headers
    assert not {"traceparent", "tracestate", "baggage"} & set(sent), "the caller's trace context reached a provider"
    span = in_caller_trace(await exported(system, receiver))
    returned(reply.headers["traceparent"], span)
    a = span.attributes
    assert span.name.startswith("chat ") and a["http.route"] == "/{provider}/{path}"
    assert (a["gen_ai.operation.name"], a["gen_ai.provider.name"], a["byok.key_source"]) == (
        "chat", "openai", "tenant")
    assert a["gen_ai.usage.output_tokens"] > 0 and a["gen_ai.response.model"]


async def test_http_refusals_and_forward_are_traced_too(traced: Traced) -> None:
    system, receiver = traced.system, traced.receiver
    async with mtls_client(system.ids.caller, "acme") as http:
        refused = await http.post(front_url(system.proxy.http_port) + "/no-such-provider-x/chat",
                                  headers={"traceparent": CALLER_TRACEPARENT}, content=b"{}")
    assert refused.status_code == 404
    span = in_caller_trace(await exported(system, receiver))
    returned(refused.headers["traceparent"], span)
    assert span.is_error and span.attributes["http.response.status_code"] == 404
    receiver.clear()
    call = system.chat.Forward(pb.ForwardRequest(
        tenant=pb.Tenant(org_id="acme"), provider="openai", method="POST", path="/chat/completions",
        headers=[pb.Header(name="content-type", value="application/json"),
                 pb.Header(name="traceparent", value="00-" + "ab" * 16 + "-" + "cd" * 8 + "-01")],
        body=json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}]}).encode()),
        metadata=(("traceparent", CALLER_TRACEPARENT),))
    messages = [m async for m in call]
    assert messages[0].start.status == 200
    assert "traceparent" not in system.upstream.requests[-1].headers
    span = in_caller_trace(await exported(system, receiver))
    returned(dict(await call.initial_metadata())["traceparent"], span)
    assert span.attributes["rpc.method"] == "byok.proxy.v1.ChatService/Forward"
    assert span.attributes["gen_ai.operation.name"] == "chat" and span.attributes["byok.status"] == "200"
