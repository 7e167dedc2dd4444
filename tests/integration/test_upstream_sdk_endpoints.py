"""The stand-in's endpoints for the official SDKs' wider calls, driven with the SDKs pointed straight at it: the
Responses API, embeddings, forced tool calls, usage details, Anthropic's extended thinking and Gemini through
google-genai (thoughts, embeddings, both stream framings), and each provider's errors as its SDK's exceptions."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from devstack.upstream import FakeUpstream, UpstreamConfig, embedding, generated_text, generated_thinking, signature
from tests.integration.test_upstream_sdks import ANT_KEY, GEM_KEY, KEY, ant, oai

USER = [{"role": "user", "content": "hi"}]
LOOKUP = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}
OTHER = {"type": "function", "function": {"name": "other", "parameters": {"type": "object", "properties": {}}}}


@pytest.fixture
async def up() -> AsyncIterator[FakeUpstream]:
    keys = {"openai": {KEY}, "anthropic": {ANT_KEY}, "gemini": {GEM_KEY}}
    async with FakeUpstream(UpstreamConfig(keys=keys, frames=5, chunk_size=-1)) as server:
        yield server


def gem(up: FakeUpstream, key: str = GEM_KEY) -> genai.client.AsyncClient:
    options = types.HttpOptions(base_url=up.base_url, api_version="v1beta")
    return genai.Client(api_key=key, http_options=options).aio


def responses_tool(t: dict[str, Any]) -> dict[str, Any]:
    """A Chat Completions function tool in the Responses API's flat shape."""
    return {"type": "function", **t["function"]}


# ---- OpenAI: Responses API -------------------------------------------------------------------------

async def test_responses_whole_and_streamed_events(up: FakeUpstream) -> None:
    async with oai(up) as client:
        whole = await client.responses.create(model="gpt-5?cached=2", input="hi", reasoning={"effort": "low"})
        stream = await client.responses.create(model="gpt-5", input=[{"role": "user", "content": "hi"}],
                                               instructions="be brief", stream=True)
        events = [e async for e in stream]
        async with client.responses.stream(model="gpt-5", input="hi") as helper:
            deltas = [e.delta async for e in helper if e.type == "response.output_text.delta"]
            final = await helper.get_final_response()
    assert whole.status == "completed" and whole.output_text == generated_text(5)
    assert [o.type for o in whole.output] == ["reasoning", "message"]
    u = whole.usage
    assert u is not None and u.input_tokens_details.cached_tokens == 2 and u.output_tokens_details.reasoning_tokens == 3
    assert (u.output_tokens, u.total_tokens) == (8, u.input_tokens + 8)
    assert [e.sequence_number for e in events] == list(range(len(events)))
    kinds = [e.type for e in events]
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.content_part.added", *["response.output_text.delta"] * 5, "response.output_text.done",
                     "response.content_part.done", "response.output_item.done", "response.completed"]
    done = events[-1].response
    assert done.output_text == generated_text(5) and done.usage.output_tokens_details.reasoning_tokens == 0
    assert done.instructions == "be brief" and done.id == events[0].response.id
    assert "".join(deltas) == final.output_text == generated_text(5)


async def test_responses_function_call(up: FakeUpstream) -> None:
    tools = [responses_tool(LOOKUP), responses_tool(OTHER)]
    async with oai(up) as client:
        async with client.responses.stream(model="gpt-5", input="x", tools=tools) as s:
            kinds = [e.type async for e in s]
            final = await s.get_final_response()
        named = await client.responses.create(model="gpt-5", input="x", tools=tools,
                                              tool_choice={"type": "function", "name": "other"})
        none = await client.responses.create(model="gpt-5", input="x", tools=tools, tool_choice="none")
    (call,) = final.output
    assert call.type == "function_call" and call.name == "lookup" and call.arguments == '{"n":1}'
    assert call.call_id.startswith("call_") and call.status == "completed"
    assert kinds.count("response.function_call_arguments.delta") == 2
    assert "response.function_call_arguments.done" in kinds and "response.output_text.delta" not in kinds
    assert [(o.type, getattr(o, "name", "")) for o in named.output] == [("function_call", "other")]
    assert none.output_text == generated_text(5)


async def test_responses_incomplete_and_errors(up: FakeUpstream) -> None:
    async with oai(up) as client:
        cut = await client.responses.create(model="gpt-5", input="x", max_output_tokens=2)
        assert cut.status == "incomplete" and cut.incomplete_details.reason == "max_output_tokens"
        assert cut.output_text == generated_text(2)
        with pytest.raises(openai.BadRequestError, match="input"):
            await client.responses.create(model="gpt-5")
        with pytest.raises(openai.RateLimitError):
            await client.responses.create(model="fault:429", input="x")
    async with oai(up, "sk-test-wrong") as client:
        with pytest.raises(openai.AuthenticationError):
            await client.responses.create(model="gpt-5", input="x")
    assert up.requests[-1].key_header == "authorization" and not up.requests[-1].authorized


# ---- OpenAI: embeddings ----------------------------------------------------------------------------

async def test_openai_embeddings_base64_default_and_float(up: FakeUpstream) -> None:
    async with oai(up) as client:
        default = await client.embeddings.create(model="text-embedding-3-small", input=["alpha", "bravo"])
        floats = await client.embeddings.create(model="text-embedding-3-small", input="alpha",
                                                encoding_format="float", dimensions=4)
        tokens = await client.embeddings.create(model="text-embedding-3-small", input=[[1, 2, 3], [4]])
        with pytest.raises(openai.BadRequestError):
            await client.embeddings.create(model="text-embedding-3-small", input="")
    # The SDK asks for base64 unless told otherwise, and decodes float32 bytes itself.
    assert up.requests[0].json["encoding_format"] == "base64" and "encoding_format" in up.requests[1].json
    assert [d.embedding for d in default.data] == [embedding("alpha"), embedding("bravo")]
    assert [d.index for d in default.data] == [0, 1] and default.model == "text-embedding-3-small"
    assert default.usage.prompt_tokens == default.usage.total_tokens == 4  # 5 // 4 + 1 per text
    assert floats.data[0].embedding == embedding("alpha", 4) and len(floats.data[0].embedding) == 4
    assert tokens.usage.prompt_tokens == 4 and len(tokens.data) == 2
    async with oai(up, "sk-test-wrong") as client:
        with pytest.raises(openai.AuthenticationError):
            await client.embeddings.create(model="text-embedding-3-small", input="x")


# ---- OpenAI: chat tool_choice and usage details ----------------------------------------------------

async def test_chat_tool_choice_forces_a_call_and_usage_details(up: FakeUpstream) -> None:
    async with oai(up) as client:
        async with client.chat.completions.stream(
                model="gpt-4o?cached=3", messages=USER, tools=[LOOKUP, OTHER], tool_choice="required",
                reasoning_effort="low", stream_options={"include_usage": True}) as s:
            streamed = await s.get_final_completion()
        named = await client.chat.completions.create(
            model="gpt-4o", messages=USER, tools=[LOOKUP, OTHER],
            tool_choice={"type": "function", "function": {"name": "other"}})
        auto = await client.chat.completions.create(model="gpt-4o", messages=USER, tools=[LOOKUP])
    call = streamed.choices[0].message.tool_calls[0]
    assert (call.function.name, call.function.arguments) == ("lookup", '{"n":1}')
    assert streamed.choices[0].finish_reason == "tool_calls"
    u = streamed.usage
    assert u is not None and u.prompt_tokens_details.cached_tokens == 3
    assert u.completion_tokens_details.reasoning_tokens == 3 and u.completion_tokens == 8
    assert named.choices[0].message.tool_calls[0].function.name == "other"
    assert auto.choices[0].message.tool_calls is None and auto.choices[0].finish_reason == "stop"
    assert auto.usage.completion_tokens_details.reasoning_tokens == 0


# ---- Anthropic: tools, extended thinking, cache usage ----------------------------------------------

async def test_anthropic_streamed_tool_use(up: FakeUpstream) -> None:
    tools = [{"name": n, "input_schema": {"type": "object"}} for n in ("lookup", "other")]
    async with ant(up) as client:
        async with client.messages.stream(model="claude-x", max_tokens=100, messages=USER, tools=tools,
                                          tool_choice={"type": "tool", "name": "other"}) as s:
            json_parts = [e.partial_json async for e in s if e.type == "input_json"]
            final = await s.get_final_message()
    assert [b.type for b in final.content] == ["text", "tool_use"] and final.stop_reason == "tool_use"
    tool = final.content[1]
    assert tool.type == "tool_use" and tool.name == "other" and tool.input == {"n": 1}
    assert json_parts == ['{"n":', "1}"]


async def test_anthropic_extended_thinking(up: FakeUpstream) -> None:
    thinking = {"type": "enabled", "budget_tokens": 1024}
    async with ant(up) as client:
        async with client.messages.stream(model="claude-x?thoughts=4&cached=5&cache_write=6", max_tokens=2000,
                                          thinking=thinking, messages=USER) as s:
            kinds = [e.type async for e in s]
            final = await s.get_final_message()
        whole = await client.messages.create(model="claude-x", max_tokens=2000, thinking=thinking,
                                             messages=USER)
    think, text = final.content
    assert think.type == "thinking" and think.thinking == generated_thinking(4)
    assert think.signature == signature(generated_thinking(4)) and "signature" in kinds and "thinking" in kinds
    assert text.type == "text" and text.text == generated_text(5)
    u = final.usage
    assert (u.cache_read_input_tokens, u.cache_creation_input_tokens, u.output_tokens) == (5, 6, 9)
    assert [b.type for b in whole.content] == ["thinking", "text"]
    assert whole.content[0].signature == signature(generated_thinking(3))
    assert whole.usage.cache_read_input_tokens == 0 and whole.usage.output_tokens == 8


@pytest.mark.parametrize(("budget", "max_tokens", "message"), [
    (512, 2000, "greater than or equal to 1024"), (2000, 2000, "`max_tokens` must be greater than")])
async def test_anthropic_thinking_budget_is_validated(up: FakeUpstream, budget: int, max_tokens: int,
                                                      message: str) -> None:
    async with ant(up) as client:
        with pytest.raises(anthropic.BadRequestError, match=message) as ei:
            await client.messages.create(model="claude-x", max_tokens=max_tokens, messages=USER,
                                         thinking={"type": "enabled", "budget_tokens": budget})
    assert ei.value.body["error"]["type"] == "invalid_request_error"


# ---- Gemini through google-genai -------------------------------------------------------------------

async def test_gemini_sdk_stream_with_thoughts(up: FakeUpstream) -> None:
    config = types.GenerateContentConfig(thinking_config=types.ThinkingConfig(include_thoughts=True))
    async with gem(up) as client:
        chunks = [c async for c in await client.models.generate_content_stream(
            model="gemini-2.5-flash%3Fcached%3D2", contents="hi", config=config)]
    parts = [p for c in chunks for p in c.candidates[0].content.parts]
    thoughts = [p for p in parts if p.thought]
    assert "".join(p.text or "" for p in thoughts) == generated_thinking(3)
    assert [p.thought_signature for p in thoughts if p.thought_signature] == [
        base64.b64decode(signature(generated_thinking(3)))]
    assert "".join(p.text or "" for p in parts if not p.thought) == generated_text(5)
    usage = chunks[-1].usage_metadata
    assert usage is not None and (usage.thoughts_token_count, usage.cached_content_token_count) == (3, 2)
    assert usage.total_token_count == usage.prompt_token_count + 5 + 3
    assert up.requests[-1].path.endswith(":streamGenerateContent?alt=sse")


async def test_gemini_sdk_unary_forced_call_embeddings_and_models(up: FakeUpstream) -> None:
    tool = types.Tool(function_declarations=[types.FunctionDeclaration(name="lookup"),
                                             types.FunctionDeclaration(name="other")])
    forced = types.ToolConfig(function_calling_config=types.FunctionCallingConfig(
        mode=types.FunctionCallingConfigMode.ANY, allowed_function_names=["other"]))
    async with gem(up) as client:
        plain = await client.models.generate_content(model="gemini-2.0-flash", contents="hi")
        config = types.GenerateContentConfig(tools=[tool], tool_config=forced)
        called = await client.models.generate_content(model="gemini-2.0-flash", contents="hi", config=config)
        vectors = await client.models.embed_content(model="gemini-embedding-001", contents=["alpha", "bravo"],
                                                    config=types.EmbedContentConfig(output_dimensionality=4))
        names = [m.name async for m in await client.models.list()]
    assert plain.text == generated_text(5) and plain.usage_metadata.thoughts_token_count is None
    assert [(f.name, f.args) for f in called.function_calls or []] == [("other", {"n": 1})]
    assert [e.values for e in vectors.embeddings or []] == [embedding("alpha", 4), embedding("bravo", 4)]
    assert up.requests[-2].path.endswith("models/gemini-embedding-001:batchEmbedContents")
    assert "models/gemini-embedding-001" in names and "models/gemini-2.0-flash" in names


async def test_gemini_errors_raise_the_sdk_exceptions(up: FakeUpstream) -> None:
    async with gem(up, "AIza-wrong") as client:
        with pytest.raises(genai_errors.ClientError) as ei:
            await client.models.generate_content(model="gemini-2.0-flash", contents="hi")
    assert ei.value.code == 400 and ei.value.status == "INVALID_ARGUMENT"
    async with gem(up) as client:
        with pytest.raises(genai_errors.ClientError) as ei:
            await client.models.generate_content(model="fault:429", contents="hi")
        assert ei.value.code == 429
        with pytest.raises(genai_errors.ServerError):
            await client.models.generate_content(model="fault:500", contents="hi")


async def test_gemini_raw_embed_content_and_json_array_stream(up: FakeUpstream) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    async with httpx.AsyncClient(base_url=up.gemini_base, headers={"x-goog-api-key": GEM_KEY}) as c:
        one = await c.post("/models/gemini-embedding-001:embedContent", json={"content": {"parts": [{"text": "a"}]}})
        empty = await c.post("/models/gemini-embedding-001:embedContent", json={"content": {"parts": []}})
        other = await c.post("/models/gemini-embedding-001:batchEmbedContents", json={"requests": [
            {"model": "models/other", "content": {"parts": [{"text": "a"}]}}]})
        array = await c.post("/models/gemini-2.0-flash:streamGenerateContent", json=body)
    assert one.status_code == 200 and one.json() == {"embedding": {"values": embedding("a")}}
    assert empty.status_code == other.status_code == 400 and empty.json()["error"]["status"] == "INVALID_ARGUMENT"
    # Without alt=sse Gemini streams a single JSON array of the same response objects.
    assert array.headers["content-type"].startswith("application/json") and b"data:" not in array.content
    items = json.loads(array.content)
    assert "".join(p["text"] for i in items for p in i["candidates"][0]["content"]["parts"]) == generated_text(5)
    assert items[-1]["candidates"][0]["finishReason"] == "STOP" and "usageMetadata" in items[-1]


async def test_gemini_sdk_lists_models_on_its_default_v1(up: FakeUpstream) -> None:
    async with genai.Client(api_key=GEM_KEY, http_options=types.HttpOptions(base_url=up.base_url)).aio as client:
        names = [m.name async for m in await client.models.list()]
    assert "models/gemini-2.0-flash" in names
    assert up.requests[-1].path.startswith("/v1/models") and up.requests[-1].family == "gemini"
    assert up.requests[-1].key_header == "x-goog-api-key"
