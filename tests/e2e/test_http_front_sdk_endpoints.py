"""The official SDKs' wider calls through the HTTP front's native passthrough, unchanged but for `base_url` and
the mTLS client: OpenAI chat with tools and usage details, the Responses API streamed and whole, embeddings;
Anthropic messages streamed with tools and with extended thinking; Gemini streams with thoughts, a forced
function call, embeddings and the model list; provider errors as each SDK's own exception. Every call's key is
the leased one, in the provider's header, never the URL."""

from __future__ import annotations

import base64
import secrets
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from devstack.upstream import embedding, generated_text, generated_thinking, signature
from tests.e2e.conftest import System
from tests.support.http_front import front_url, mtls_client, mtls_context, openai_sdk

OPENAI_KEY = "sk-proj-" + secrets.token_hex(20)
ANTHROPIC_KEY = "sk-ant-api03-" + secrets.token_hex(20)
GEMINI_KEY = "AIza" + secrets.token_hex(16)[:35].ljust(35, "x")
USER = [{"role": "user", "content": "hi"}]
LOOKUP = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}
OTHER = {"type": "function", "function": {"name": "other", "parameters": {"type": "object", "properties": {}}}}
HEADERS = {"openai": "authorization", "anthropic": "x-api-key", "gemini": "x-goog-api-key"}
FRAMES = 5


@pytest.fixture
async def front(system: System) -> AsyncIterator[tuple[System, dict[str, str]]]:
    """The e2e system with one tenant holding a key of each provider; the stand-in accepts only those keys."""
    system.upstream.config.frames = FRAMES
    system.upstream.config.keys = {"openai": {OPENAI_KEY}, "anthropic": {ANTHROPIC_KEY}, "gemini": {GEMINI_KEY}}
    ids = {p: (await system.add_key("acme", p, k)).credential_id
           for p, k in (("openai", OPENAI_KEY), ("anthropic", ANTHROPIC_KEY), ("gemini", GEMINI_KEY))}
    await system.bind("acme")
    yield system, ids
    # Whatever the test did, every request reached the provider with the leased key, in its own header.
    sent = system.upstream.requests
    assert sent and all(r.authorized and r.key_header == HEADERS[r.family] and not r.key_in_url for r in sent), [
        (r.path, r.status) for r in sent]


def ant_sdk(system: System) -> anthropic.AsyncAnthropic:
    client = httpx2.AsyncClient(verify=mtls_context(system.ids.caller), headers={"x-byok-org": "acme"}, timeout=10)
    return anthropic.AsyncAnthropic(base_url=f"{front_url(system.proxy.http_port)}/anthropic", api_key="unused",
                                    http_client=client, max_retries=0)


def gem_sdk(system: System) -> genai.client.AsyncClient:
    return genai.Client(api_key="unused", http_options=types.HttpOptions(
        base_url=f"{front_url(system.proxy.http_port)}/gemini", api_version="v1beta", headers={"x-byok-org": "acme"},
        async_client_args={"ssl": mtls_context(system.ids.caller)},
        retry_options=types.HttpRetryOptions(attempts=1))).aio


def responses_tool(t: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", **t["function"]}


# ---- OpenAI ----------------------------------------------------------------------------------------

async def test_openai_chat_with_tools_and_usage_details(front: tuple[System, dict[str, str]]) -> None:
    system, ids = front
    async with mtls_client(system.ids.caller, "acme") as http:
        client = openai_sdk(system.proxy.http_port, http)
        async with client.chat.completions.stream(
                model="gpt-4o?cached=3", messages=USER, tools=[LOOKUP, OTHER], tool_choice="required",
                reasoning_effort="low", stream_options={"include_usage": True}) as s:
            streamed = await s.get_final_completion()
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=USER, tools=[LOOKUP, OTHER],
            tool_choice={"type": "function", "function": {"name": "other"}})
    call = streamed.choices[0].message.tool_calls[0]
    assert (call.function.name, call.function.arguments) == ("lookup", '{"n":1}')
    assert streamed.choices[0].finish_reason == "tool_calls"
    u = streamed.usage
    assert u is not None and u.prompt_tokens_details.cached_tokens == 3
    assert u.completion_tokens_details.reasoning_tokens == 3 and u.completion_tokens == 8
    assert raw.parse().choices[0].message.tool_calls[0].function.name == "other"
    assert raw.headers["x-byok-credential-id"] == ids["openai"] and raw.headers["x-byok-key-source"] == "tenant"
    assert system.upstream.requests[0].json["tool_choice"] == "required"  # the body went through unchanged


async def test_openai_responses_api_streamed_and_whole(front: tuple[System, dict[str, str]]) -> None:
    system, _ = front
    async with mtls_client(system.ids.caller, "acme") as http:
        client = openai_sdk(system.proxy.http_port, http)
        whole = await client.responses.create(model="gpt-5?cached=2", input="hi", reasoning={"effort": "low"})
        stream = await client.responses.create(model="gpt-5", input=[{"role": "user", "content": "hi"}],
                                               instructions="be brief", stream=True)
        events = [e async for e in stream]
        async with client.responses.stream(model="gpt-5", input="x",
                                           tools=[responses_tool(LOOKUP), responses_tool(OTHER)]) as helper:
            kinds = [e.type async for e in helper]
            final = await helper.get_final_response()
    assert whole.status == "completed" and whole.output_text == generated_text(FRAMES)
    assert whole.usage is not None and whole.usage.input_tokens_details.cached_tokens == 2
    assert whole.usage.output_tokens_details.reasoning_tokens == 3
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert [e.type for e in events].count("response.output_text.delta") == FRAMES
    assert events[-1].response.output_text == generated_text(FRAMES)
    (call,) = final.output
    assert call.type == "function_call" and call.name == "lookup" and call.arguments == '{"n":1}'
    assert kinds.count("response.function_call_arguments.delta") == 2
    assert all(r.path == "/v1/responses" for r in system.upstream.requests)


async def test_openai_embeddings_base64_and_float(front: tuple[System, dict[str, str]]) -> None:
    system, _ = front
    async with mtls_client(system.ids.caller, "acme") as http:
        client = openai_sdk(system.proxy.http_port, http)
        default = await client.embeddings.create(model="text-embedding-3-small", input=["alpha", "bravo"])
        floats = await client.embeddings.create(model="text-embedding-3-small", input="alpha",
                                                encoding_format="float", dimensions=4)
        with pytest.raises(openai.BadRequestError):
            await client.embeddings.create(model="text-embedding-3-small", input="")
    assert [d.embedding for d in default.data] == [embedding("alpha"), embedding("bravo")]
    assert floats.data[0].embedding == embedding("alpha", 4)
    assert system.upstream.requests[0].json["encoding_format"] == "base64"  # the SDK's own choice, passed on


async def test_openai_errors_are_the_sdks_exceptions(front: tuple[System, dict[str, str]]) -> None:
    system, _ = front
    async with mtls_client(system.ids.caller, "acme") as http:
        client = openai_sdk(system.proxy.http_port, http)
        with pytest.raises(openai.RateLimitError) as limited:
            await client.responses.create(model="fault:429", input="x")
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(model="fault:500", messages=USER)
    assert limited.value.response.headers["retry-after"] == "7"


# ---- Anthropic -------------------------------------------------------------------------------------

async def test_anthropic_streamed_tool_use(front: tuple[System, dict[str, str]]) -> None:
    system, _ = front
    tools = [{"name": n, "input_schema": {"type": "object"}} for n in ("lookup", "other")]
    async with ant_sdk(system) as client:
        async with client.messages.stream(model="claude-x", max_tokens=100, messages=USER, tools=tools,
                                          tool_choice={"type": "tool", "name": "other"}) as s:
            json_parts = [e.partial_json async for e in s if e.type == "input_json"]
            final = await s.get_final_message()
    assert [b.type for b in final.content] == ["text", "tool_use"] and final.stop_reason == "tool_use"
    tool = final.content[1]
    assert tool.type == "tool_use" and tool.name == "other" and tool.input == {"n": 1}
    assert json_parts == ['{"n":', "1}"]


async def test_anthropic_extended_thinking(front: tuple[System, dict[str, str]]) -> None:
    system, ids = front
    thinking: Any = {"type": "enabled", "budget_tokens": 1024}
    async with ant_sdk(system) as client:
        async with client.messages.stream(model="claude-x?thoughts=4&cached=5&cache_write=6", max_tokens=2000,
                                          thinking=thinking, messages=USER) as s:
            kinds = [e.type async for e in s]
            final = await s.get_final_message()
        raw = await client.messages.with_raw_response.create(model="claude-x", max_tokens=2000, thinking=thinking,
                                                             messages=USER)
        with pytest.raises(anthropic.BadRequestError, match="greater than or equal to 1024"):
            await client.messages.create(model="claude-x", max_tokens=2000, messages=USER,
                                         thinking={"type": "enabled", "budget_tokens": 512})
        with pytest.raises(anthropic.RateLimitError):
            await client.messages.create(model="fault:429", max_tokens=10, messages=USER)
    think, text = final.content
    assert think.type == "thinking" and think.thinking == generated_thinking(4)
    assert think.signature == signature(generated_thinking(4)) and "signature" in kinds
    assert text.type == "text" and text.text == generated_text(FRAMES)
    u = final.usage
    assert (u.cache_read_input_tokens, u.cache_creation_input_tokens) == (5, 6)
    whole = await raw.parse()
    assert [b.type for b in whole.content] == ["thinking", "text"]
    assert raw.headers["x-byok-credential-id"] == ids["anthropic"]


# ---- Gemini ----------------------------------------------------------------------------------------

async def test_gemini_stream_with_thoughts(front: tuple[System, dict[str, str]]) -> None:
    system, _ = front
    config = types.GenerateContentConfig(thinking_config=types.ThinkingConfig(include_thoughts=True))
    async with gem_sdk(system) as client:
        chunks = [c async for c in await client.models.generate_content_stream(
            model="gemini-2.5-flash%3Fcached%3D2", contents="hi", config=config)]
    parts = [p for c in chunks for p in c.candidates[0].content.parts]
    thoughts = [p for p in parts if p.thought]
    assert "".join(p.text or "" for p in thoughts) == generated_thinking(3)
    assert [p.thought_signature for p in thoughts if p.thought_signature] == [
        base64.b64decode(signature(generated_thinking(3)))]
    assert "".join(p.text or "" for p in parts if not p.thought) == generated_text(FRAMES)
    usage = chunks[-1].usage_metadata
    assert usage is not None and (usage.thoughts_token_count, usage.cached_content_token_count) == (3, 2)
    assert system.upstream.requests[-1].path.endswith(":streamGenerateContent?alt=sse")


async def test_gemini_forced_call_embeddings_models_and_errors(front: tuple[System, dict[str, str]]) -> None:
    system, _ = front
    tool = types.Tool(function_declarations=[types.FunctionDeclaration(name="lookup"),
                                             types.FunctionDeclaration(name="other")])
    forced = types.ToolConfig(function_calling_config=types.FunctionCallingConfig(
        mode=types.FunctionCallingConfigMode.ANY, allowed_function_names=["other"]))
    async with gem_sdk(system) as client:
        config = types.GenerateContentConfig(tools=[tool], tool_config=forced)
        called = await client.models.generate_content(model="gemini-2.0-flash", contents="hi", config=config)
        vectors = await client.models.embed_content(model="gemini-embedding-001", contents=["alpha", "bravo"],
                                                    config=types.EmbedContentConfig(output_dimensionality=4))
        names = [m.name async for m in await client.models.list()]
        with pytest.raises(genai_errors.ClientError) as limited:
            await client.models.generate_content(model="fault:429", contents="hi")
    assert [(f.name, f.args) for f in called.function_calls or []] == [("other", {"n": 1})]
    assert [e.values for e in vectors.embeddings or []] == [embedding("alpha", 4), embedding("bravo", 4)]
    assert "models/gemini-2.0-flash" in names
    assert limited.value.code == 429
