"""The fake upstream speaks the providers' wire formats: checked with the official SDKs and raw HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from devstack.upstream import FakeUpstream, UpstreamConfig, generated_text

KEY = "sk-test-" + secrets.token_hex(12)
ANT_KEY = "sk-ant-test-" + secrets.token_hex(12)
GEM_KEY = "AIza-test-" + secrets.token_hex(12)
CORPUS = Path(__file__).resolve().parent.parent / "data" / "conformance"
ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    up = FakeUpstream(UpstreamConfig(keys={"openai": {KEY}, "anthropic": {ANT_KEY}, "gemini": {GEM_KEY}},
                                     frames=5, chunk_size=-1))
    await up.start()
    yield up
    await up.stop()


def oai(up: FakeUpstream, key: str = KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=up.openai_base, api_key=key, max_retries=0)


def ant(up: FakeUpstream, key: str = ANT_KEY) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=up.base_url, api_key=key, max_retries=0)


def expected(family: str, case: str) -> dict:
    return json.loads((CORPUS / family / f"{case}.expected.json").read_text())


async def wait_for(cond, limit: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.002)


# ---- OpenAI SDK ------------------------------------------------------------------------------------

async def test_openai_sdk_stream_and_unary(upstream: FakeUpstream) -> None:
    async with oai(upstream) as client:
        stream = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True,
            stream_options={"include_usage": True})
        texts, finish, usage = [], None, None
        async for chunk in stream:
            for c in chunk.choices:
                texts.append(c.delta.content or "")
                finish = c.finish_reason or finish
            usage = chunk.usage or usage
        assert "".join(texts) == generated_text(5)
        assert finish == "stop" and usage is not None and usage.completion_tokens == 5
        whole = await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert whole.choices[0].message.content == generated_text(5) and whole.model == "gpt-4o-mini"
        models = await client.models.list()
        assert [m.id async for m in models]
    rec = upstream.requests[0]
    assert rec.headers["authorization"] == "<redacted>" and KEY not in repr(upstream.requests)
    assert rec.json["stream"] is True and rec.json["messages"] == [{"role": "user", "content": "hi"}]


async def test_mistral_route_is_as_strict_as_mistral(upstream: FakeUpstream) -> None:
    messages = [{"role": "user", "content": "hi"}]
    async with openai.AsyncOpenAI(base_url=upstream.mistral_base, api_key=KEY, max_retries=0) as client:
        with pytest.raises(openai.UnprocessableEntityError) as ei:
            await client.chat.completions.create(model="mistral-small-latest", messages=messages, stream=True,
                                                 stream_options={"include_usage": True})
        body = ei.value.response.json()
        assert body["object"] == "error" and body["type"] == "invalid_request_error"
        assert body["message"]["detail"][0]["type"] == "extra_forbidden"
        assert body["message"]["detail"][0]["loc"] == ["body", "stream_options"]
        stream = await client.chat.completions.create(model="mistral-small-latest", messages=messages, stream=True)
        chunks = [chunk async for chunk in stream]
    # Mistral reports usage unasked, on the chunk that carries the finish reason.
    last = [c for c in chunks if c.choices and c.choices[0].finish_reason][-1]
    assert last.usage is not None and last.usage.completion_tokens == 5 and last.choices[0].finish_reason == "stop"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == generated_text(5)
    assert upstream.requests[-1].provider == "mistral"


async def test_openai_sdk_tool_call_stream_helper(upstream: FakeUpstream) -> None:
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    async with oai(upstream) as client:
        async with client.chat.completions.stream(
                model="gpt-4o?tool=1&frames=2", messages=[{"role": "user", "content": "x"}], tools=[tool]) as s:
            final = await s.get_final_completion()
    msg = final.choices[0].message
    assert msg.content == generated_text(2) and final.choices[0].finish_reason == "tool_calls"
    assert msg.tool_calls[0].function.name == "lookup" and msg.tool_calls[0].function.arguments == '{"n":1}'


async def test_openai_sdk_wrong_key_and_faults(upstream: FakeUpstream) -> None:
    async with oai(upstream, "sk-test-wrong") as client:
        with pytest.raises(openai.AuthenticationError):
            await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    async with oai(upstream) as client:
        with pytest.raises(openai.RateLimitError) as ei:
            await client.chat.completions.create(model="fault:429", messages=[{"role": "user", "content": "x"}])
        assert ei.value.response.headers["retry-after"] == "7"
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(model="fault:500", messages=[{"role": "user", "content": "x"}])


@pytest.mark.parametrize("case", ["453df473e962", "a0c4f0be184e", "173417d55340", "4cc50a6135d2"])
async def test_openai_sdk_accumulates_replayed_corpus(upstream: FakeUpstream, case: str) -> None:
    exp = expected("openai", case)
    async with oai(upstream) as client:
        async with client.chat.completions.stream(
                model=f"replay:openai/{case}", messages=[{"role": "user", "content": "x"}]) as s:
            try:
                final = await s.get_final_completion()
            except openai.LengthFinishReasonError as e:  # the helper refuses to "parse" a truncated answer
                final = e.completion
    assert final.model == exp["model"]
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (
        exp["usage"]["input_tokens"], exp["usage"]["output_tokens"])
    for choice, want in zip(final.choices, exp["choices"], strict=True):
        assert (choice.message.content or "") == want["text"]
        assert (choice.message.refusal or "") == want["refusal"]
        assert choice.finish_reason == want["finish_reason"]
        got_calls = [{"id": t.id, "name": t.function.name, "arguments": t.function.arguments}
                     for t in choice.message.tool_calls or []]
        assert got_calls == want["tool_calls"]


async def test_replay_is_byte_exact(upstream: FakeUpstream) -> None:
    body = (CORPUS / "anthropic" / "basic_response.sse").read_bytes()
    async with httpx.AsyncClient() as c:
        r = await c.post(upstream.anthropic_base + "/messages", headers={"x-api-key": ANT_KEY},
                         json={"model": "replay:anthropic/basic_response", "stream": True, "messages": []})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert r.content == body


# ---- Anthropic SDK ---------------------------------------------------------------------------------

async def test_anthropic_sdk_stream_and_unary(upstream: FakeUpstream) -> None:
    async with ant(upstream) as client:
        async with client.messages.stream(model="claude-x?frames=3", max_tokens=100, system="be brief",
                                          messages=[{"role": "user", "content": "hi"}]) as s:
            text = "".join([t async for t in s.text_stream])
            final = await s.get_final_message()
        assert text == generated_text(3) and final.stop_reason == "end_turn" and final.usage.output_tokens == 3
        msg = await client.messages.create(model="claude-x?frames=4", max_tokens=2,
                                           messages=[{"role": "user", "content": "hi"}])
        assert msg.content[0].text == generated_text(2) and msg.stop_reason == "max_tokens"
        page = await client.models.list()
        assert page.data[0].id
    rec = upstream.requests[0]
    auth = rec.headers.get("x-api-key") or rec.headers["authorization"]  # newer SDKs send a Bearer header
    assert auth == "<redacted>" and rec.json["system"] == "be brief"
    assert ANT_KEY not in repr(upstream.requests)


async def test_anthropic_sdk_wrong_key(upstream: FakeUpstream) -> None:
    async with ant(upstream, "sk-ant-test-wrong") as client:
        with pytest.raises(anthropic.AuthenticationError):
            await client.messages.create(model="c", max_tokens=5, messages=[{"role": "user", "content": "x"}])
        with pytest.raises(anthropic.AuthenticationError):
            await client.models.list()


@pytest.mark.parametrize("case", ["basic_response", "incomplete_partial_json_response",
                                  "server_tool_result_response", "refusal_response"])
async def test_anthropic_sdk_accumulates_replayed_corpus(upstream: FakeUpstream, case: str) -> None:
    exp = expected("anthropic", case)
    async with ant(upstream) as client:
        async with client.messages.stream(model=f"replay:anthropic/{case}", max_tokens=10,
                                          messages=[{"role": "user", "content": "x"}]) as s:
            final = await s.get_final_message()
    want = exp["choices"][0]
    assert final.model == exp["model"] and final.stop_reason == want["finish_reason"]
    assert "".join(b.text for b in final.content if b.type == "text") == want["text"]
    assert [{"id": b.id, "name": b.name} for b in final.content if b.type == "tool_use"] == [
        {"id": t["id"], "name": t["name"]} for t in want["tool_calls"]]
    assert (final.usage.input_tokens, final.usage.output_tokens) == (
        exp["usage"]["input_tokens"], exp["usage"]["output_tokens"])


# ---- Gemini over raw HTTP (google-genai: test_upstream_sdk_endpoints.py) ---------------------------

async def test_gemini_endpoints(upstream: FakeUpstream) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    async with httpx.AsyncClient(base_url=upstream.gemini_base, headers={"x-goog-api-key": GEM_KEY}) as c:
        r = await c.post("/models/gemini-2.0-flash:streamGenerateContent?alt=sse", json=body)
        assert r.status_code == 200 and r.content.count(b"\r\n\r\n") == 6
        r = await c.post("/models/gemini-2.0-flash:generateContent", json=body)
        assert r.json()["candidates"][0]["content"]["parts"][0]["text"] == generated_text(5)
        assert (await c.get("/models")).json()["models"]
        # Google's answers to a wrong key (400 API_KEY_INVALID) and to none (403).
        r = await c.post("/models/gemini-2.0-flash:generateContent", json=body, headers={"x-goog-api-key": "bad"})
        err = r.json()["error"]
        assert (r.status_code, err["code"], err["status"]) == (400, 400, "INVALID_ARGUMENT")
        assert err["message"] == "API key not valid. Please pass a valid API key."
        assert err["details"][0]["reason"] == "API_KEY_INVALID" and err["details"][0]["domain"] == "googleapis.com"
        r = await c.post("/models/gemini-2.0-flash:generateContent", json=body, headers={"x-goog-api-key": ""})
        assert r.status_code == 403 and r.json()["error"]["status"] == "PERMISSION_DENIED"
        # A key in the URL is refused outright, so a proxy bug that leaks it fails loudly.
        r = await c.post(f"/models/g:generateContent?key={GEM_KEY}", json=body)
        assert r.status_code == 400
    good, url = upstream.requests[0], upstream.requests[-1]
    assert (good.key_header, good.key_in_url, good.authorized, good.status) == ("x-goog-api-key", False, True, 200)
    assert url.key_in_url and url.status == 400  # the recorder can tell when a key rode in the URL


# ---- faults and disconnects ------------------------------------------------------------------------

async def test_stall_notices_client_disconnect_promptly(upstream: FakeUpstream) -> None:
    async with httpx.AsyncClient() as c:
        async with c.stream("POST", upstream.openai_base + "/chat/completions",
                            headers={"authorization": f"Bearer {KEY}"},
                            json={"model": "fault:stall", "stream": True, "messages": []}) as r:
            async for _ in r.aiter_raw():
                break
            await wait_for(lambda: upstream.open_streams == 1)
            closed_at = time.monotonic()
    await wait_for(lambda: upstream.closed_early, limit=1.0)
    assert upstream.closed_early[0] - closed_at < 0.05
    await wait_for(lambda: upstream.open_streams == 0)


async def test_paced_stream_disconnect_and_keepalive(upstream: FakeUpstream) -> None:
    async with httpx.AsyncClient() as c:
        async with c.stream("POST", upstream.anthropic_base + "/messages", headers={"x-api-key": ANT_KEY},
                            json={"model": "c?frames=1000&delay=0.01", "stream": True, "messages": []}) as r:
            async for _ in r.aiter_raw():
                break
        await wait_for(lambda: len(upstream.closed_early) == 1, limit=1.0)
        # Keep-alive: several requests reuse one connection.
        for _ in range(3):
            r = await c.get(upstream.openai_base + "/models", headers={"authorization": f"Bearer {KEY}"})
            assert r.status_code == 200


async def test_reset_and_malformed_faults(upstream: FakeUpstream) -> None:
    async with httpx.AsyncClient() as c:
        with pytest.raises(httpx.RemoteProtocolError):
            async with c.stream("POST", upstream.openai_base + "/chat/completions",
                                headers={"authorization": f"Bearer {KEY}"},
                                json={"model": "fault:reset", "stream": True, "messages": []}) as r:
                async for _ in r.aiter_raw():
                    pass
        r = await c.post(upstream.openai_base + "/chat/completions", headers={"authorization": f"Bearer {KEY}"},
                         json={"model": "fault:malformed", "stream": True, "messages": []})
        assert b'data: {"broken": \n\n' in r.content and r.content.endswith(b"data: [DONE]\n\n")


async def test_many_concurrent_slow_streams(upstream: FakeUpstream) -> None:
    # Raw sockets rather than httpx: this measures the server, not a Python HTTP client.
    body = b'{"model":"m?frames=10&delay=0.02&chunk=0","stream":true,"messages":[]}'
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer " + KEY.encode()
            + b"\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body))
    seen_open = 0

    async def one() -> bytes:
        nonlocal seen_open
        reader, writer = await asyncio.open_connection(upstream.host, upstream.port)
        writer.write(head + body)
        data = await reader.read(65536)
        seen_open = max(seen_open, upstream.open_streams)
        while chunk := await reader.read(65536):
            data += chunk
        writer.close()
        return data

    bodies = await asyncio.gather(*(one() for _ in range(500)))
    end = b"data: [DONE]\n\n\r\n0\r\n\r\n"  # last event, then the chunked-encoding terminator
    bad = [b[:15] + b[-40:] for b in bodies if not (b.startswith(b"HTTP/1.1 200") and b.endswith(end))]
    assert not bad, bad[:3]
    assert seen_open > 100  # they really ran side by side
    await wait_for(lambda: upstream.open_streams == 0)


def test_cli_prints_port_and_stops_on_sigterm() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "devstack.upstream", "--port", "0", "--print-port"],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        port = int(proc.stdout.readline())  # type: ignore[union-attr]
        r = httpx.get(f"http://127.0.0.1:{port}/v1/models", headers={"authorization": "Bearer sk-test-any"})
        assert r.status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
