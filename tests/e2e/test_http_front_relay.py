"""The native passthrough's rules, on the HTTP front and through Forward: bytes unchanged, headers filtered,
paths checked, keys failed over and revoked, cancellation, refusals in the provider's shape, no key anywhere."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from pathlib import Path

import grpc
import httpx
import openai
import pytest
import structlog

from byok.keys.v1 import key_service_pb2 as kpb
from byok.proxy.v1 import chat_service_pb2 as pb
from tests.e2e.conftest import System
from tests.support.http_front import front_url, mtls_client, openai_sdk

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "conformance"
CORPUS = SHARED if SHARED.is_dir() else ROOT / "tests" / "data" / "conformance"
CASES = sorted(f"{p.parent.name}/{p.stem}" for family in ("openai", "anthropic")
               for p in (CORPUS / family).glob("*.sse"))
ROUTES = {"openai": "/openai/chat/completions", "anthropic": "/anthropic/v1/messages"}


def openai_key() -> str:
    return "sk-proj-" + secrets.token_hex(20)


def anthropic_key() -> str:
    return "sk-ant-api03-" + secrets.token_hex(20)


def chat_body(model: str, stream: bool = True) -> bytes:
    return json.dumps({"model": model, "stream": stream, "max_tokens": 16,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()


async def tenant(system: System, org: str, provider: str = "openai", key: str = "") -> kpb.Credential:
    credential = await system.add_key(org, provider, key or (openai_key() if provider != "anthropic"
                                                              else anthropic_key()))
    await system.bind(org)
    return credential


@pytest.mark.parametrize("case", CASES)
async def test_recorded_streams_come_back_byte_identical(system: System, case: str) -> None:
    family = case.split("/")[0]
    system.upstream.config.replay_dir = CORPUS
    await tenant(system, "conf", family)
    recorded = (CORPUS / f"{case}.sse").read_bytes()
    async with mtls_client(system.ids.caller, "conf") as http:  # the upstream splits it into random pieces
        async with http.stream("POST", front_url(system.proxy.http_port) + ROUTES[family],
                               content=chat_body(f"replay:{case}?chunk=-1")) as reply:
            assert reply.status_code == 200
            assert reply.headers["content-type"].startswith("text/event-stream")
            relayed = b"".join([chunk async for chunk in reply.aiter_raw()])
    assert relayed == recorded
    forwarded = [m async for m in system_forward(system, "conf", family, ROUTES[family].split("/", 2)[2],
                                                 chat_body(f"replay:{case}?chunk=-1"))]
    assert forwarded[0].start.status == 200
    assert b"".join(m.body for m in forwarded[1:]) == recorded


def system_forward(system: System, org: str, provider: str, path: str, body: bytes, **fields):
    return system.chat.Forward(pb.ForwardRequest(
        tenant=pb.Tenant(org_id=org), provider=provider, method="POST", path="/" + path, body=body,
        headers=[pb.Header(name="content-type", value="application/json")], **fields))


async def test_caller_credentials_and_proxy_headers_never_reach_the_provider(system: System) -> None:
    key = openai_key()
    system.upstream.config.keys = {"openai": {key}}
    credential = await tenant(system, "hdr", key=key)
    caller_key = openai_key()
    async with mtls_client(system.ids.caller, "hdr") as http:
        reply = await http.post(
            front_url(system.proxy.http_port) + f"/openai/chat/completions?key={caller_key}&trace=1",
            content=chat_body("gpt-4o-mini", stream=False),
            headers={"authorization": f"Bearer {caller_key}", "x-api-key": caller_key, "cookie": "s=1",
                     "openai-organization": "org-other", "x-goog-api-key": caller_key,
                     "x-forwarded-for": "10.0.0.1", "x-custom": "kept", "content-type": "application/json"})
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-byok-credential-id"] == credential.credential_id
    assert reply.headers["x-byok-key-source"] == "tenant" and reply.headers["x-byok-request-id"]
    sent = system.upstream.requests[-1]
    assert sent.authorized and sent.key_header == "authorization" and not sent.key_in_url
    assert "key=" not in sent.path and "trace=1" in sent.path
    assert sent.headers["x-custom"] == "kept" and sent.headers.get("accept-encoding") == "identity"
    for dropped in ("x-api-key", "x-goog-api-key", "cookie", "openai-organization", "x-forwarded-for",
                    "x-byok-org"):
        assert dropped not in sent.headers, dropped


@pytest.mark.parametrize("path", ["/openai/../anthropic/v1/messages", "/openai/chat%2Fcompletions",
                                  "/openai/%2e%2e/x", "/openai//chat/completions", "/openai/http://evil/x"])
async def test_paths_that_could_leave_the_root_are_refused(system: System, path: str) -> None:
    await tenant(system, "path")
    async with mtls_client(system.ids.caller, "path") as http:
        # httpx would normalise dot segments itself: send the target as written.
        request = http.build_request("POST", front_url(system.proxy.http_port) + "/", content=b"{}")
        request.url = request.url.copy_with(raw_path=path.encode())
        reply = await http.send(request)
    assert reply.status_code in (400, 404), (path, reply.status_code, reply.text)
    assert "error" in reply.json()
    assert not [r for r in system.upstream.requests if r.family]


async def test_ops_allowlist_restricts_paths(system: System) -> None:
    from proxyservice.native.paths import PathAllowlist

    await system.restart_proxy(http_path_allowlist=PathAllowlist.parse("openai=/chat/completions"))
    await tenant(system, "allow")
    async with mtls_client(system.ids.caller, "allow") as http:
        client = openai_sdk(system.proxy.http_port, http)
        assert (await client.chat.completions.create(model="gpt-4o-mini", messages=[
            {"role": "user", "content": "hi"}])).choices
        with pytest.raises(openai.PermissionDeniedError) as caught:
            await client.models.list()
    assert "allowlist" in str(caught.value)


async def test_refusals_raise_the_sdks_usual_exceptions(system: System) -> None:
    await system.add_key("unbound", "openai", openai_key())
    async with mtls_client(system.ids.caller, "unbound") as http:
        with pytest.raises(openai.PermissionDeniedError):
            await openai_sdk(system.proxy.http_port, http).chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    await system.bind("nokey")
    async with mtls_client(system.ids.caller, "nokey") as http:
        with pytest.raises(openai.NotFoundError):
            await openai_sdk(system.proxy.http_port, http).chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        reply = await http.post(front_url(system.proxy.http_port) + "/Not-A-Provider/x", content=b"{}")
        assert reply.status_code == 404 and "provider" in reply.json()["error"]["message"]
        reply = await http.post(front_url(system.proxy.http_port) + "/gemini/v1beta/models/x:generateContent",
                                content=b"{}")
        assert reply.json()["error"]["status"] == "NOT_FOUND"  # Google's shape under /gemini


async def test_a_body_over_the_limit_is_413_before_any_lease(system: System) -> None:
    await system.restart_proxy(http_max_body_bytes=4096)
    await tenant(system, "big")
    async with mtls_client(system.ids.caller, "big") as http:
        with pytest.raises(openai.APIStatusError) as caught:
            await openai_sdk(system.proxy.http_port, http).chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "x" * 8192}])
    assert caught.value.status_code == 413 and "4096" in str(caught.value)


async def test_provider_errors_pass_through_in_their_own_shape(system: System) -> None:
    await tenant(system, "err")
    async with mtls_client(system.ids.caller, "err") as http:
        with pytest.raises(openai.RateLimitError) as caught:
            await openai_sdk(system.proxy.http_port, http).chat.completions.create(
                model="fault:429", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.response.headers.get("retry-after")


async def test_key_refusal_fails_over_to_the_next_credential(system: System) -> None:
    good, bad = openai_key(), openai_key()
    system.upstream.config.keys = {"openai": {good}}
    bad_cred = await system.add_key("fo", "openai", bad, name="a-bad")
    good_cred = await system.add_key("fo", "openai", good, name="b-good")
    await system.bind("fo")
    async with mtls_client(system.ids.caller, "fo") as http:
        reply = await openai_sdk(system.proxy.http_port, http).chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert reply.headers["x-byok-credential-id"] == good_cred.credential_id
    refused, served = [r for r in system.upstream.requests if r.path.endswith("/chat/completions")][-2:]
    assert (refused.status, served.status) == (401, 200) and refused.json == served.json  # the same body again
    reported = await system.admin.GetCredential(kpb.GetCredentialRequest(credential_id=bad_cred.credential_id))
    assert reported.credential.health == kpb.CREDENTIAL_HEALTH_INVALID


async def test_deactivated_key_stops_on_the_front_within_a_second(system: System) -> None:
    credential = await tenant(system, "rev")
    await asyncio.wait_for(system.proxy.revocations_connected.wait(), 5)
    async with mtls_client(system.ids.caller, "rev") as http:
        url = front_url(system.proxy.http_port) + "/openai/chat/completions"
        assert (await http.post(url, content=chat_body("gpt-4o-mini", False))).status_code == 200
        started = time.perf_counter()
        await system.admin.DeactivateCredential(kpb.DeactivateCredentialRequest(
            credential_id=credential.credential_id))
        refused_after = None
        while time.perf_counter() - started < 3:
            if (await http.post(url, content=chat_body("gpt-4o-mini", False))).status_code == 404:
                refused_after = time.perf_counter() - started
                break
    assert refused_after is not None and refused_after < 1.0


async def test_caller_disconnect_closes_the_upstream_within_100ms(system: System) -> None:
    await tenant(system, "cancel")
    gaps = []
    async with mtls_client(system.ids.caller, "cancel") as http:
        for _ in range(3):
            before = len(system.upstream.closed_early)
            async with http.stream("POST", front_url(system.proxy.http_port) + "/openai/chat/completions",
                                   content=chat_body("fault:stall")) as reply:
                async for _chunk in reply.aiter_raw():
                    break  # the one frame the stall sends
                cancelled_at = time.monotonic()
            await http.aclose()  # drop the connection, as a caller that goes away does
            while len(system.upstream.closed_early) == before and time.monotonic() - cancelled_at < 2:
                await asyncio.sleep(0.005)
            assert len(system.upstream.closed_early) > before
            gaps.append(system.upstream.closed_early[-1] - cancelled_at)
            http = mtls_client(system.ids.caller, "cancel")
    assert max(gaps) < 0.1, gaps


async def test_keyservice_down_without_a_lease_is_503_with_retry_after(system: System) -> None:
    await tenant(system, "cold")
    await system.keyservice.server.stop(0)
    async with mtls_client(system.ids.caller, "cold") as http:
        reply = await http.post(front_url(system.proxy.http_port) + "/openai/chat/completions",
                                content=chat_body("gpt-4o-mini", False))
    assert reply.status_code == 503 and reply.headers["retry-after"]
    assert reply.json()["error"]["type"] == "server_error"


async def test_a_client_without_a_certificate_is_refused(system: System) -> None:
    import ssl

    context = ssl.create_default_context(cafile=system.ids.caller.ca)
    async with httpx.AsyncClient(verify=context) as http:
        with pytest.raises(httpx.HTTPError):
            await http.post(front_url(system.proxy.http_port) + "/openai/chat/completions", content=b"{}",
                            headers={"x-byok-org": "acme"})


@pytest.mark.parametrize("fault", ["fault:echo-key", "fault:echo-key-stream"])
async def test_a_key_the_provider_echoes_reaches_no_caller_log_or_metric(
        system: System, caplog: pytest.LogCaptureFixture, fault: str) -> None:
    key = openai_key()
    await tenant(system, "canary", key=key)
    for name in ("", "httpx", "httpcore", "aiohttp", "grpc", "byok"):
        caplog.set_level(logging.DEBUG, logger=name or None)
    with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        async with mtls_client(system.ids.caller, "canary") as http:
            try:
                reply = await http.post(front_url(system.proxy.http_port) + "/openai/chat/completions",
                                        content=chat_body(fault, stream=fault.endswith("stream")))
                seen = reply.text + repr(reply.headers)
            except httpx.HTTPError as exc:  # a cut stream is an acceptable end
                seen = repr(exc)
        forwarded = ""
        try:
            async for message in system_forward(system, "canary", "openai", "chat/completions",
                                                chat_body(fault, stream=fault.endswith("stream"))):
                forwarded += repr(message)
        except grpc.aio.AioRpcError as exc:
            forwarded += exc.details() or ""
    assert system.upstream.requests[-1].authorized  # the upstream did hold the key, and echoed it
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(f"http://127.0.0.1:{system.proxy.metrics_port}/metrics")).text
    places = {"reply": seen, "forward": forwarded, "structlog": repr(logs), "metrics": metrics,
              "logging": caplog.text + repr([r.__dict__ for r in caplog.records])}
    assert [where for where, text in places.items() if key in text or key[:24] in text] == []
    assert logs
