"""The HTTP front's OpenAI-shaped unified endpoint, with the official openai SDK at `https://PROXY/v1`: chat
completions (streamed and not, with tools) routed by model to OpenAI, Anthropic or Gemini through the same adapters
as StreamChat, and `/v1/models` listing what the tenant can reach."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import openai
import pydantic
import pytest

from byok.keys.v1 import key_service_pb2 as kpb
from devstack.upstream import embedding, generated_text
from tests.e2e.conftest import System, running_system
from tests.support.bao import BaoDevServer
from tests.support.http_front import front_url, mtls_client, openai_sdk
from tests.support.stack import Identities

OPENAI_KEY = "sk-proj-" + secrets.token_hex(20)
ANTHROPIC_KEY = "sk-ant-api03-" + secrets.token_hex(20)
GEMINI_KEY = "AIza" + secrets.token_hex(16)[:35].ljust(35, "x")
PLATFORM_KEY = "sk-proj-platform" + secrets.token_hex(16)
USER = [{"role": "user", "content": "hi"}]
LOOKUP = {"type": "function", "function": {"name": "lookup", "description": "look it up",
                                           "parameters": {"type": "object", "properties": {"n": {"type": "integer"}}}}}
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-4-20250514", "gemini": "gemini-2.0-flash"}


@pytest.fixture
async def platform_system(bao: BaoDevServer, ids: Identities, tmp_path: Path) -> AsyncIterator[System]:
    async with running_system(bao, ids, tmp_path, platform_keys={"OPENAI_API_KEY": PLATFORM_KEY}) as system:
        yield system


async def _tenant_with_all_three(system: System) -> dict[str, str]:
    ids = {}
    for provider, key in (("openai", OPENAI_KEY), ("anthropic", ANTHROPIC_KEY), ("gemini", GEMINI_KEY)):
        ids[provider] = (await system.add_key("acme", provider, key)).credential_id
    await system.bind("acme")
    return ids


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
async def test_openai_sdk_calls_any_provider_through_v1(system: System, provider: str) -> None:
    credentials = await _tenant_with_all_three(system)
    frames = system.upstream.config.frames
    async with mtls_client(system.ids.caller, "acme") as http:
        client = openai_sdk(system.proxy.http_port, http, provider="v1")
        raw = await client.chat.completions.with_raw_response.create(model=MODELS[provider], messages=USER,
                                                                     max_tokens=64)
        whole = raw.parse()
        stream = await client.chat.completions.create(model=MODELS[provider], messages=USER, stream=True,
                                                      stream_options={"include_usage": True})
        chunks = [chunk async for chunk in stream]
    assert raw.headers["x-byok-key-source"] == "tenant"
    assert raw.headers["x-byok-credential-id"] == credentials[provider]
    assert raw.headers["x-byok-request-id"]
    assert whole.object == "chat.completion" and whole.choices[0].message.content == generated_text(frames)
    assert whole.choices[0].finish_reason == "stop" and whole.usage is not None and whole.usage.completion_tokens
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == generated_text(frames)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert len({c.id for c in chunks}) == 1
    sent = [r for r in system.upstream.requests if r.family == provider]
    assert len(sent) == 2 and all(r.authorized for r in sent)  # the provider's own wire format, with its key


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
async def test_tool_calls_round_trip_in_openai_shape(system: System, provider: str) -> None:
    await _tenant_with_all_three(system)
    model = MODELS[provider] + "?tool=1"  # the stand-in's control; x-byok-provider routes a name it cannot
    async with mtls_client(system.ids.caller, "acme", provider=provider) as http:
        client = openai_sdk(system.proxy.http_port, http, provider="v1")
        async with client.chat.completions.stream(model=model, messages=USER, tools=[LOOKUP]) as stream:
            final = await stream.get_final_completion()
        call = final.choices[0].message.tool_calls[0]
        assert final.choices[0].finish_reason == "tool_calls"
        assert call.function.name == "lookup" and json.loads(call.function.arguments) == {"n": 1}
        whole = await client.chat.completions.create(model=model, messages=USER, tools=[LOOKUP])
        assert whole.choices[0].message.tool_calls[0].function.name == "lookup"
        # The next turn hands the result back, as an OpenAI caller does.
        follow = await client.chat.completions.create(model=MODELS[provider], tools=[LOOKUP], messages=[
            *USER, {"role": "assistant", "content": None, "tool_calls": [
                {"id": call.id, "type": "function", "function": {"name": "lookup", "arguments": '{"n":1}'}}]},
            {"role": "tool", "tool_call_id": call.id, "content": "42"}])
        assert follow.choices[0].message.content
    last = [r for r in system.upstream.requests if r.family == provider][-1].json
    tools_sent = json.dumps(last)
    assert "lookup" in tools_sent and "42" in tools_sent


async def test_models_lists_what_the_tenant_reaches(platform_system: System) -> None:
    system = platform_system
    await system.add_key("acme", "anthropic", ANTHROPIC_KEY)
    await system.admin.SetOrgPolicy(kpb.SetOrgPolicyRequest(
        policy=kpb.OrgPolicy(org_id="acme", allow_platform_fallback=True)))
    await system.bind("acme")
    await system.bind("solo")
    async with mtls_client(system.ids.caller, "acme") as http:
        models = [m async for m in openai_sdk(system.proxy.http_port, http, provider="v1").models.list()]
    owners = {m.owned_by for m in models}
    assert owners == {"anthropic", "openai"}  # its own Anthropic key, and OpenAI through the platform's key
    assert all(m.object == "model" and m.id for m in models)
    async with mtls_client(system.ids.caller, "solo") as http:
        assert [m async for m in openai_sdk(system.proxy.http_port, http, provider="v1").models.list()] == []
    async with mtls_client(system.ids.caller, "not-bound") as http:
        with pytest.raises(openai.PermissionDeniedError):
            await openai_sdk(system.proxy.http_port, http, provider="v1").models.list()


async def test_platform_key_source_is_in_the_headers(platform_system: System) -> None:
    system = platform_system
    await system.admin.SetOrgPolicy(kpb.SetOrgPolicyRequest(
        policy=kpb.OrgPolicy(org_id="acme", allow_platform_fallback=True)))
    await system.bind("acme")
    async with mtls_client(system.ids.caller, "acme") as http:
        raw = await openai_sdk(system.proxy.http_port, http, provider="v1").chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=USER)
    assert raw.headers["x-byok-key-source"] == "platform" and raw.headers["x-byok-credential-id"] == ""


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "gpt-4o-mini", "messages": USER, "response_format": {"type": "json_object"}}, "response_format"),
    ({"model": "gpt-4o-mini", "messages": []}, "messages"),
    ({"model": "", "messages": USER}, "model"),
    ({"model": "gpt-4o-mini", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
    ({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
     "messages[0].content[0].type"),
    ({"model": "gpt-4o-mini", "messages": USER, "temperature": "hot"}, "temperature"),
])
async def test_bad_requests_are_openai_errors_naming_the_field(system: System, body: dict[str, object],
                                                                param: str) -> None:
    await _tenant_with_all_three(system)
    before = len(system.upstream.requests)
    async with mtls_client(system.ids.caller, "acme") as http:
        with pytest.raises(openai.BadRequestError) as caught:
            await openai_sdk(system.proxy.http_port, http, provider="v1").chat.completions.create(**body)
    error = caught.value.body
    assert isinstance(error, dict) and error["param"] == param and param in error["message"]
    assert len(system.upstream.requests) == before  # refused before any upstream call


async def test_unknown_model_missing_org_and_unknown_path(system: System) -> None:
    await _tenant_with_all_three(system)
    async with mtls_client(system.ids.caller, "acme") as http:
        with pytest.raises(openai.BadRequestError, match="model"):
            await openai_sdk(system.proxy.http_port, http, provider="v1").chat.completions.create(
                model="no-such-model-family", messages=USER)
        reply = await http.post(f"{front_url(system.proxy.http_port)}/v1/completions", json={})
        assert reply.status_code == 404 and "/v1/chat/completions" in reply.json()["error"]["message"]
    async with mtls_client(system.ids.caller) as http:
        with pytest.raises(openai.BadRequestError, match="x-byok-org"):
            await openai_sdk(system.proxy.http_port, http, provider="v1").chat.completions.create(
                model="gpt-4o-mini", messages=USER)


async def test_provider_errors_are_sdk_exceptions_and_x_byok_provider_routes(system: System) -> None:
    await _tenant_with_all_three(system)
    async with mtls_client(system.ids.caller, "acme") as http:
        client = openai_sdk(system.proxy.http_port, http, provider="v1")
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(model="fault:429", messages=USER,
                                                 extra_headers={"x-byok-provider": "openai"})
        assert caught.value.response.headers["retry-after"] == "7"
        with pytest.raises(openai.RateLimitError):
            await client.chat.completions.create(model="fault:429", messages=USER, stream=True,
                                                 extra_headers={"x-byok-provider": "anthropic"})
        with pytest.raises(openai.BadRequestError, match="provider"):
            await client.chat.completions.create(model="gpt-4o-mini", messages=USER,
                                                 extra_headers={"x-byok-provider": "nope"})
    assert [r.family for r in system.upstream.requests] == ["openai", "anthropic"]


async def test_a_stream_broken_midway_raises_the_sdks_api_error(system: System) -> None:
    await _tenant_with_all_three(system)
    async with mtls_client(system.ids.caller, "acme", provider="openai") as http:
        stream = await openai_sdk(system.proxy.http_port, http, provider="v1").chat.completions.create(
            model="fault:reset", messages=USER, stream=True)
        with pytest.raises(openai.APIError, match="upstream"):
            async for _chunk in stream:
                pass


async def test_the_callers_own_key_is_dropped_and_the_lease_key_never_returned(system: System) -> None:
    await _tenant_with_all_three(system)
    system.upstream.config.keys = {"openai": {OPENAI_KEY}}  # only the leased key is accepted
    caller_key = "sk-proj-caller" + secrets.token_hex(20)
    async with mtls_client(system.ids.caller, "acme") as http:
        url = f"{front_url(system.proxy.http_port)}/v1/chat/completions"
        for stream in (False, True):
            reply = await http.post(url, json={"model": "gpt-4o-mini", "messages": USER, "stream": stream},
                                    headers={"authorization": f"Bearer {caller_key}"})
            assert reply.status_code == 200
            assert OPENAI_KEY not in reply.text + json.dumps(dict(reply.headers))
    sent = [r for r in system.upstream.requests if r.family == "openai"]
    assert len(sent) == 2 and all(r.authorized for r in sent)
    assert caller_key not in json.dumps([r.json for r in sent])


async def test_caller_disconnect_closes_the_provider_stream(system: System) -> None:
    await _tenant_with_all_three(system)
    before = len(system.upstream.closed_early)
    async with mtls_client(system.ids.caller, "acme") as http:
        async with http.stream("POST", f"{front_url(system.proxy.http_port)}/v1/chat/completions",
                               json={"model": "fault:stall", "messages": USER, "stream": True},
                               headers={"x-byok-provider": "anthropic"}) as reply:
            assert reply.status_code == 200
            async for _line in reply.aiter_lines():
                break
    for _ in range(200):  # bounded: the proxy closes the provider's stream when the caller goes
        if len(system.upstream.closed_early) > before:
            break
        await asyncio.sleep(0.01)
    assert len(system.upstream.closed_early) > before


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
async def test_openai_sdk_sends_an_image_and_parses_a_structured_answer_from_any_provider(
        system: System, provider: str) -> None:
    """`chat.completions.parse` with a pydantic model (the SDK's own json_schema response_format) and an image_url
    data part, through /v1 to each family; the provider gets the image in its own form."""
    class City(pydantic.BaseModel):
        name: str
        population: int

    await _tenant_with_all_three(system)
    png = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 16).decode()
    async with mtls_client(system.ids.caller, "acme") as http:
        client = openai_sdk(system.proxy.http_port, http, provider="v1")
        parsed = await client.chat.completions.parse(model=MODELS[provider], response_format=City, messages=[
            {"role": "user", "content": [{"type": "text", "text": "which city?"},
                                         {"type": "image_url", "image_url": {"url": png}}]}])
    city = parsed.choices[0].message.parsed
    assert isinstance(city, City) and isinstance(city.population, int)
    sent = [r for r in system.upstream.requests if r.family == provider][-1].json
    if provider == "openai":
        assert sent["messages"][0]["content"][1]["image_url"]["url"] == png
        assert sent["response_format"]["json_schema"]["name"] == "City"
    elif provider == "anthropic":
        assert sent["messages"][0]["content"][1]["source"]["type"] == "base64"
        assert sent["output_config"]["format"]["type"] == "json_schema"
    else:
        assert sent["contents"][0]["parts"][1]["inlineData"]["mimeType"] == "image/png"
        assert sent["generationConfig"]["responseMimeType"] == "application/json"


@pytest.mark.parametrize(("provider", "model"), [("openai", "text-embedding-3-small"),
                                                 ("gemini", "gemini-embedding-001")])
async def test_openai_sdk_embeds_through_v1_with_any_embeddings_provider(system: System, provider: str,
                                                                         model: str) -> None:
    """`embeddings.create` (the SDK asks for base64 float32 and decodes it) and `encoding_format="float"`,
    routed by model through the Embed core; the vectors are the provider's, in order."""
    credentials = await _tenant_with_all_three(system)
    texts = ["alpha", "bravo", "charlie"]
    async with mtls_client(system.ids.caller, "acme") as http:
        client = openai_sdk(system.proxy.http_port, http, provider="v1")
        raw = await client.embeddings.with_raw_response.create(model=model, input=texts, dimensions=4)
        decoded = raw.parse()
        floats = await client.embeddings.create(model=model, input="alpha", dimensions=4, encoding_format="float")
        with pytest.raises(openai.BadRequestError) as refused:
            await client.embeddings.create(model=model, input=[[1, 2, 3]])
    assert raw.headers["x-byok-credential-id"] == credentials[provider]
    assert [d.index for d in decoded.data] == [0, 1, 2]
    assert [d.embedding for d in decoded.data] == [pytest.approx(embedding(t, 4)) for t in texts]
    assert floats.data[0].embedding == pytest.approx(embedding("alpha", 4)) and decoded.usage is not None
    assert refused.value.body["param"] == "input"  # type: ignore[index]
    sent = [r for r in system.upstream.requests if r.family == provider][-2].json
    if provider == "openai":
        assert sent["input"] == texts and sent["dimensions"] == 4
    else:
        assert [r["content"]["parts"][0]["text"] for r in sent["requests"]] == texts
