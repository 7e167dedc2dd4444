"""The proxy end to end: real keyservice on OpenBao, real mTLS gRPC, the local upstream speaking each
provider's wire format."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import secrets
import time
from pathlib import Path

import grpc
import pytest
import structlog

from byok.keys.v1 import key_service_pb2 as kpb
from byok.proxy.v1 import chat_service_pb2 as pb
from proxyservice.accumulate import accumulate
from tests.e2e.conftest import System, params

CORPUS = Path(__file__).resolve().parent.parent / "data" / "conformance"


def openai_key() -> str:
    return "sk-proj-" + secrets.token_hex(20)


def anthropic_key() -> str:
    return "sk-ant-api03-" + secrets.token_hex(20)


def gemini_key() -> str:
    return "AIza" + secrets.token_hex(18)[:35]


async def collect(system: System, p: pb.ChatParameters) -> list[pb.StreamChatResponse]:
    return [m async for m in system.chat.StreamChat(pb.StreamChatRequest(parameters=p))]


@pytest.mark.parametrize(("provider", "model", "make_key"), [
    ("openai", "gpt-4o-mini", openai_key), ("anthropic", "claude-3-5-haiku-latest", anthropic_key),
    ("gemini", "gemini-2.0-flash", gemini_key), ("groq", "groq/llama-3.1-8b", lambda: "gsk_" + secrets.token_hex(20)),
])
async def test_streams_each_family_with_the_tenants_key(system: System, provider: str, model: str, make_key) -> None:
    key = make_key()
    system.upstream.config.keys = {"openai": {key}, "anthropic": {key}, "gemini": {key}}
    credential = await system.add_key("acme", provider, key)
    await system.bind("acme")
    messages = await collect(system, params("acme", model))
    start = messages[0].start
    assert (start.provider, start.key_source, start.credential_id) == (provider, pb.KEY_SOURCE_TENANT,
                                                                       credential.credential_id)
    result = accumulate(messages[1:], provider)
    assert result["choices"][0]["text"] == "alpha bravo charlie delta echo foxtrot golf hotel" * 1 + \
        " alpha bravo charlie delta echo foxtrot golf hotel"
    assert result["usage"]["output_tokens"] == 16
    sent = system.upstream.requests[-1]
    header = {"anthropic": "x-api-key", "gemini": "x-goog-api-key"}.get(provider, "authorization")
    assert sent.authorized and sent.key_header == header  # the tenant's key, in the provider's own header
    assert not sent.key_in_url and key not in sent.path  # and never in the URL


async def test_mistral_streams_without_stream_options(system: System) -> None:
    key = secrets.token_hex(16)[:16] + "MiStRaL0123456Zz"  # 32 letters and digits, Mistral's shape
    system.upstream.config.keys = {"openai": {key}}
    await system.add_key("eu", "mistral", key)
    await system.bind("eu")
    messages = await collect(system, params("eu", "mistral-small-latest"))
    assert messages[0].start.provider == "mistral"
    result = accumulate(messages[1:], "mistral")
    assert result["choices"][0]["text"].startswith("alpha bravo") and result["choices"][0]["finish_reason"] == "stop"
    assert result["usage"] == {"input_tokens": result["usage"]["input_tokens"], "output_tokens": 16}
    sent = system.upstream.requests[-1]
    assert sent.provider == "mistral" and sent.authorized and "stream_options" not in sent.json


async def test_unary_chat(system: System) -> None:
    await system.add_key("acme", "anthropic", anthropic_key())
    await system.bind("acme")
    reply = await system.chat.Chat(pb.ChatRequest(parameters=params("acme", "claude-3-opus", request_id="r-1")))
    assert reply.request_id == "r-1" and reply.provider == "anthropic" and reply.key_source == pb.KEY_SOURCE_TENANT
    assert reply.choices[0].text.startswith("alpha bravo") and reply.usage.output_tokens == 16


@pytest.mark.parametrize("case", sorted(p.stem for p in (CORPUS / "openai").glob("*.sse"))
                         + sorted("anthropic/" + p.stem for p in (CORPUS / "anthropic").glob("*.sse")))
async def test_conformance_through_the_proxy(system: System, case: str) -> None:
    family, name = case.split("/") if "/" in case else ("openai", case)
    await system.add_key("conf", family, openai_key() if family == "openai" else anthropic_key())
    await system.bind("conf")
    system.upstream.config.chunk_size = -1  # bodies cut at random points, inside events too
    messages = await collect(system, params("conf", f"replay:{family}/{name}", provider=family))
    got = accumulate([m for m in messages if not m.HasField("start")], family)
    expected = json.loads((CORPUS / family / f"{name}.expected.json").read_text())
    for choice in expected["choices"]:
        for call in choice["tool_calls"]:
            call.pop("input", None)
    for choice in got["choices"]:
        for call in choice["tool_calls"]:
            call.pop("input", None)
    assert got == expected


async def test_one_keyservice_call_per_key_whatever_the_rate(system: System) -> None:
    await system.add_key("busy", "openai", openai_key())
    await system.bind("busy")
    await asyncio.gather(*(collect(system, params("busy", "gpt-4o-mini")) for _ in range(40)))
    for _ in range(20):
        await collect(system, params("busy", "gpt-4o-mini"))
    assert system.proxy.cache.fetches == 1
    issued = await system.admin.ListAuditEvents(kpb.ListAuditEventsRequest(org_id="busy", action="lease.issue"))
    assert len(issued.events) == 1


async def test_caller_must_be_bound_to_the_org(system: System) -> None:
    await system.add_key("private", "openai", openai_key())
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await collect(system, params("private", "gpt-4o-mini"))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_revocation_mid_traffic_stops_the_key_within_a_second(system: System) -> None:
    credential = await system.add_key("rev", "openai", openai_key())
    await system.bind("rev")
    await asyncio.wait_for(system.proxy.revocations_connected.wait(), 5)
    await collect(system, params("rev", "gpt-4o-mini"))
    started = time.perf_counter()
    await system.admin.DeactivateCredential(kpb.DeactivateCredentialRequest(credential_id=credential.credential_id))
    refused_after = None
    while time.perf_counter() - started < 3:
        try:
            await collect(system, params("rev", "gpt-4o-mini"))
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.NOT_FOUND
            refused_after = time.perf_counter() - started
            break
    assert refused_after is not None and refused_after < 1.0


async def test_keyservice_down_warm_leases_keep_working_cold_fail_fast(system: System) -> None:
    await system.add_key("warm", "openai", openai_key())
    await system.add_key("cold", "openai", openai_key())
    await system.bind("warm")
    await system.bind("cold")
    await collect(system, params("warm", "gpt-4o-mini"))
    await system.keyservice.server.stop(0)
    assert len(await collect(system, params("warm", "gpt-4o-mini"))) > 2
    started = time.perf_counter()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await collect(system, params("cold", "gpt-4o-mini"))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert time.perf_counter() - started < 3.0


@pytest.mark.parametrize(("provider", "model", "make_key", "refusal"), [
    ("openai", "gpt-4o-mini", openai_key, 401),
    ("gemini", "gemini-2.0-flash", gemini_key, 400),  # Google's bad-key answer: 400 API_KEY_INVALID
])
async def test_provider_key_refusal_fails_over_to_the_next_credential(system: System, provider: str, model: str,
                                                                       make_key, refusal: int) -> None:
    good, bad = make_key(), make_key()
    system.upstream.config.keys = {provider: {good}}
    bad_cred = await system.add_key("fo", provider, bad, name="a-bad")
    good_cred = await system.add_key("fo", provider, good, name="b-good")
    await system.bind("fo")
    messages = await collect(system, params("fo", model))
    assert messages[0].start.credential_id == good_cred.credential_id
    assert accumulate(messages[1:], provider)["choices"][0]["text"].startswith("alpha bravo")
    refused, served = [r for r in system.upstream.requests if r.family == provider][-2:]
    assert (refused.status, refused.authorized, served.status) == (refusal, False, 200)
    reported = await system.admin.GetCredential(kpb.GetCredentialRequest(credential_id=bad_cred.credential_id))
    assert reported.credential.health == kpb.CREDENTIAL_HEALTH_INVALID


async def test_provider_401_without_alternative_is_failed_precondition(system: System) -> None:
    system.upstream.config.keys = {"openai": {openai_key()}}
    await system.add_key("solo", "openai", openai_key())
    await system.bind("solo")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await collect(system, params("solo", "gpt-4o-mini"))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION


@pytest.mark.parametrize(("fault", "code"), [
    ("fault:429", grpc.StatusCode.RESOURCE_EXHAUSTED), ("fault:500", grpc.StatusCode.UNAVAILABLE),
    ("fault:reset", grpc.StatusCode.UNAVAILABLE), ("fault:malformed", grpc.StatusCode.UNAVAILABLE),
])
async def test_upstream_faults_map_to_codes(system: System, fault: str, code: grpc.StatusCode) -> None:
    key = openai_key()
    await system.add_key("faults", "openai", key)
    await system.bind("faults")
    with structlog.testing.capture_logs() as logs:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await collect(system, params("faults", fault, provider="openai"))
    assert info.value.code() == code
    assert key not in info.value.details() and "127.0.0.1" not in info.value.details()
    assert key not in repr(logs)
    if fault == "fault:429":
        assert dict(info.value.trailing_metadata() or ())["retry-after"] == "7"


@pytest.mark.parametrize(("provider", "make_key"), [
    ("openai", openai_key), ("anthropic", anthropic_key), ("gemini", gemini_key)])
async def test_a_stream_cut_short_cleanly_is_unavailable_not_ok(system: System, provider: str, make_key) -> None:
    await system.add_key("cut", provider, make_key())
    await system.bind("cut")
    received: list[pb.StreamChatResponse] = []
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for message in system.chat.StreamChat(pb.StreamChatRequest(
                parameters=params("cut", "fault:truncate", provider=provider))):
            received.append(message)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert info.value.details() == f"{provider} upstream ended the stream before it was complete"
    assert received[0].HasField("start") and accumulate(received[1:], provider)["choices"][0]["text"]


async def test_upstream_stall_hits_the_read_timeout(system: System) -> None:
    await system.restart_proxy(upstream_read_timeout=0.3)
    await system.add_key("stall", "openai", openai_key())
    await system.bind("stall")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await collect(system, params("stall", "fault:stall", provider="openai"))
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_cancel_closes_the_upstream_stream_within_100ms(system: System) -> None:
    await system.add_key("cancel", "openai", openai_key())
    await system.bind("cancel")
    gaps = []
    for _ in range(5):
        before = len(system.upstream.closed_early)
        call = system.chat.StreamChat(pb.StreamChatRequest(parameters=params("cancel", "fault:stall",
                                                                             provider="openai")))
        await call.read()  # start
        await call.read()  # the one frame the stall sends
        cancelled_at = time.monotonic()
        call.cancel()
        while len(system.upstream.closed_early) == before and time.monotonic() - cancelled_at < 2:
            await asyncio.sleep(0.005)
        assert len(system.upstream.closed_early) > before
        gaps.append(system.upstream.closed_early[-1] - cancelled_at)
    assert max(gaps) < 0.1, gaps
    # Each cancelled stream's connection was closed by the proxy (dropped mid-body), not left open in its pool:
    # the upstream sees no stream and no client connection left over.
    deadline = time.monotonic() + 2
    while (system.upstream.open_streams or system.upstream.open_connections) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert (system.upstream.open_streams, system.upstream.open_connections) == (0, 0)


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda p: p.tenant.ClearField("org_id"), "parameters.tenant.org_id"),
    (lambda p: p.ClearField("messages"), "parameters.messages"),
    (lambda p: p.messages[0].__setattr__("role", pb.ROLE_UNSPECIFIED), "parameters.messages[0].role"),
    (lambda p: p.tools.add(name="f", parameters_json="{nope"), "parameters.tools[0].parameters_json"),
    (lambda p: p.__setattr__("temperature", 9.0), "parameters.temperature"),
])
async def test_bad_requests_name_the_field(system: System, mutate, field: str) -> None:
    p = params("acme", "gpt-4o-mini")
    mutate(p)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await collect(system, p)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith(field)


async def test_random_chunking_of_generated_streams_is_lossless(system: System) -> None:
    await system.add_key("chunks", "gemini", gemini_key())
    await system.bind("chunks")
    rng = random.Random(7)
    for _ in range(3):
        system.upstream.config.chunk_size = rng.choice([1, 3, 17, -1])
        result = accumulate((await collect(system, params("chunks", "gemini-2.0-flash")))[1:], "gemini")
        assert result["choices"][0]["text"].startswith("alpha bravo")


async def test_metrics_endpoints_expose_counts_without_tenant_labels(system: System) -> None:
    import httpx

    await system.add_key("metrics-org", "openai", openai_key())
    await system.bind("metrics-org")
    await collect(system, params("metrics-org", "gpt-4o-mini"))
    await collect(system, params("metrics-org", "gpt-4o-mini"))
    async with httpx.AsyncClient() as client:
        proxy_text = (await client.get(f"http://127.0.0.1:{system.proxy.metrics_port}/metrics")).text
        keys_text = (await client.get(f"http://127.0.0.1:{system.keyservice.metrics_port}/metrics")).text
    assert 'byok_proxy_requests_total{code="OK",provider="openai"} 2.0' in proxy_text
    assert 'byok_proxy_lease_cache_lookups_total{result="hit"} 1.0' in proxy_text
    assert "byok_proxy_ttfb_seconds_bucket" in proxy_text and 'status="200"' in proxy_text
    assert 'byok_leases_issued_total{key_source="tenant",provider="openai"} 1.0' in keys_text
    assert 'byok_rpc_requests_total{code="OK",method="CreateCredential"}' in keys_text
    assert "byok_vault_request_duration_seconds_bucket" in keys_text
    assert "metrics-org" not in proxy_text + keys_text


@pytest.mark.parametrize(("request_id", "header"), [("r-params", ""), ("", "r-header"), ("r-params", "r-header"),
                                                    ("", "")])
async def test_one_request_id_in_the_rpc_and_chat_log_lines(system: System, request_id: str, header: str) -> None:
    # Not bound to the org: the request fails, so the interceptor writes its rpc line beside the chat line.
    metadata = (("x-request-id", header),) if header else None
    with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await system.chat.Chat(pb.ChatRequest(parameters=params("unbound", "gpt-4o-mini", request_id=request_id)),
                                   metadata=metadata)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    ids = {e["event"]: e["request_id"] for e in logs if e["event"] in ("rpc", "chat")}
    assert set(ids) == {"rpc", "chat"} and ids["rpc"] == ids["chat"]
    assert ids["chat"] == (request_id or header or ids["chat"]) and ids["chat"]


@pytest.mark.parametrize("fault", ["fault:echo-key", "fault:echo-key-stream"])
@pytest.mark.parametrize(("provider", "make_key"), [
    ("openai", openai_key), ("anthropic", anthropic_key), ("gemini", gemini_key),
    ("mistral", lambda: secrets.token_hex(8) + "MiStRaL0123456Zz"), ("together", lambda: secrets.token_hex(32))])
async def test_a_key_the_provider_echoes_goes_nowhere(system: System, caplog: pytest.LogCaptureFixture,
                                                      fault: str, provider: str, make_key) -> None:
    import httpx

    key = make_key()
    await system.add_key("canary", provider, key)
    await system.bind("canary")
    for name in ("", "httpx", "httpcore", "grpc", "byok"):
        caplog.set_level(logging.DEBUG, logger=name or None)
    with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await collect(system, params("canary", fault, provider=provider))
    assert info.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNAVAILABLE)
    assert system.upstream.requests[-1].authorized  # the upstream did hold the key, and echoed it
    async with httpx.AsyncClient() as client:
        metrics = [(await client.get(f"http://127.0.0.1:{port}/metrics")).text
                   for port in (system.proxy.metrics_port, system.keyservice.metrics_port)]
    places = {"details": info.value.details() or "", "trailers": repr(info.value.trailing_metadata()),
              "structlog": repr(logs), "logging": caplog.text + repr([r.__dict__ for r in caplog.records]),
              "metrics": "".join(metrics)}
    assert [where for where, text in places.items() if key in text or key[:24] in text] == []
    assert logs and caplog.records  # both log streams were live
