"""The official SDKs (openai, anthropic, google-genai), unchanged but for `base_url` and the mTLS client, through
the HTTP front's native passthrough (https://PROXY/{provider}) to the local stand-in: OpenAI chat streamed and
whole with forced tools and usage details, the Responses API streamed (both ways) and whole, embeddings; Anthropic
streams with a forced tool and with extended thinking, its thinking budget check; Gemini streams with thoughts, a
forced function call, embeddings and the model list; provider errors as each SDK's own exception.

Every test checks where the key travelled (the leased key, in the provider's header, never in the URL), the
credential the front names in its answer headers, and the usage the proxy's usage tap wrote in its `native` log
line, which must match what the SDK parsed from the same bytes."""

from __future__ import annotations

import asyncio
import base64
import secrets
import uuid
from collections.abc import AsyncIterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import anthropic
import openai
import pytest
import structlog
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from devstack.upstream import RecordedRequest, embedding, generated_text, generated_thinking, signature
from tests.e2e.conftest import System
from tests.support.http_front import anthropic_sdk, front_url, genai_sdk, mtls_client, mtls_context, openai_sdk

OPENAI_KEY = "sk-proj-" + secrets.token_hex(20)
ANTHROPIC_KEY = "sk-ant-api03-" + secrets.token_hex(20)
GEMINI_KEY = "AIza" + secrets.token_hex(18)[:35]
KEYS = {"openai": OPENAI_KEY, "anthropic": ANTHROPIC_KEY, "gemini": GEMINI_KEY}
KEY_HEADERS = {"openai": "authorization", "anthropic": "x-api-key", "gemini": "x-goog-api-key"}
ORG = "acme"
FRAMES = 5
USER: Any = [{"role": "user", "content": "hi"}]
LOOKUP: Any = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}
OTHER: Any = {"type": "function", "function": {"name": "other", "parameters": {"type": "object", "properties": {}}}}
ANT_TOOLS: Any = [{"name": n, "input_schema": {"type": "object"}} for n in ("lookup", "other")]
THINKING: Any = {"type": "enabled", "budget_tokens": 1024}


@dataclass
class NativeLog:
    """The proxy's `native` log lines (one per relayed request), by request id, as they are written. The front
    writes a request's line once its answer's last byte is sent, which may be a turn of the loop after the SDK
    returned: `line` waits for it (on an event, not a clock)."""

    lines: dict[str, dict[str, Any]] = field(default_factory=dict)
    _written: dict[str, asyncio.Event] = field(default_factory=dict)

    def _event(self, request_id: str) -> asyncio.Event:
        return self._written.setdefault(request_id, asyncio.Event())

    def processor(self, logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if event.get("event") == "native" and isinstance(event.get("request_id"), str):
            self.lines[event["request_id"]] = dict(event)
            self._event(event["request_id"]).set()
        return event

    async def line(self, request_id: str) -> dict[str, Any]:
        await asyncio.wait_for(self._event(request_id).wait(), timeout=10)
        return self.lines[request_id]


@dataclass
class Front:
    system: System
    credentials: dict[str, str]  # provider → the credential id created for the tenant
    log: NativeLog

    @property
    def port(self) -> int:
        return self.system.proxy.http_port

    def sent(self, family: str) -> list[RecordedRequest]:
        """What reached the stand-in for `family`, each request checked: the tenant's leased key (the stand-in
        accepts no other), in the provider's own header, not in the URL."""
        sent = [r for r in self.system.upstream.requests if r.family == family]
        assert sent, f"no {family} request reached the upstream"
        assert [(r.path, r.key_header, r.authorized, r.key_in_url) for r in sent] == [
            (r.path, KEY_HEADERS[family], True, False) for r in sent]
        return sent

    def named(self, headers: Any, provider: str) -> None:
        """The front's answer headers name the tenant's credential of `provider`."""
        assert headers["x-byok-key-source"] == "tenant"
        assert headers["x-byok-credential-id"] == self.credentials[provider]


@pytest.fixture
async def front(system: System) -> AsyncIterator[Front]:
    """The e2e system with one tenant holding a key of each provider (the stand-in accepts only those keys), and
    the proxy's log lines captured."""
    system.upstream.config.frames = FRAMES
    system.upstream.config.keys = {family: {key} for family, key in KEYS.items()}
    credentials = {p: (await system.add_key(ORG, p, k)).credential_id for p, k in KEYS.items()}
    await system.bind(ORG)
    log = NativeLog()
    with structlog.testing.capture_logs(processors=[log.processor]):
        yield Front(system, credentials, log)


def rid() -> str:
    return uuid.uuid4().hex


def tagged(request_id: str) -> dict[str, str]:
    """The header that names the request in the proxy's log line (echoed as x-byok-request-id)."""
    return {"x-request-id": request_id}


def ant_sdk(front: Front) -> anthropic.AsyncAnthropic:
    return anthropic_sdk(front.port, front.system.ids.caller, ORG)


def gem_v1beta(front: Front) -> genai.client.AsyncClient:
    """google-genai on Gemini's v1beta (the support module's client uses the SDK's default, v1; the stand-in lists
    Gemini's models under v1beta only: its GET /v1/models is OpenAI's and Anthropic's)."""
    return genai.Client(api_key="unused", http_options=types.HttpOptions(
        base_url=f"{front_url(front.port)}/gemini", api_version="v1beta", headers={"x-byok-org": ORG},
        async_client_args={"ssl": mtls_context(front.system.ids.caller)},
        retry_options=types.HttpRetryOptions(attempts=1))).aio


def gem_options(request_id: str) -> types.HttpOptions:
    return types.HttpOptions(headers=tagged(request_id))


def responses_tool(t: dict[str, Any]) -> Any:
    """A Chat Completions function tool in the Responses API's flat shape."""
    return {"type": "function", **t["function"]}


# ---- OpenAI ----------------------------------------------------------------------------------------

async def test_openai_chat_streamed_with_required_tool_and_usage_details(front: Front) -> None:
    request_id = rid()
    async with mtls_client(front.system.ids.caller, ORG) as http:
        client = openai_sdk(front.port, http)
        stream = await client.chat.completions.create(
            model="gpt-4o?cached=3", messages=USER, tools=[LOOKUP, OTHER], tool_choice="required",
            reasoning_effort="low", stream=True, stream_options={"include_usage": True},
            extra_headers=tagged(request_id))
        chunks = [chunk async for chunk in stream]
    front.named(stream.response.headers, "openai")
    assert stream.response.headers["x-byok-request-id"] == request_id
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    calls = [call for d in deltas for call in d.tool_calls or []]
    assert {c.function.name for c in calls if c.function and c.function.name} == {"lookup"}
    assert "".join(c.function.arguments or "" for c in calls if c.function) == '{"n":1}'
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]
    usage = chunks[-1].usage  # include_usage: a last chunk with no choices carries the usage
    assert not chunks[-1].choices and usage is not None
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 3
    assert usage.completion_tokens_details is not None and usage.completion_tokens_details.reasoning_tokens == 3
    assert usage.completion_tokens == FRAMES + 3
    line = await front.log.line(request_id)
    assert (line["provider"], line["path"], line["status"], line["credential_id"], line["key_source"]) == (
        "openai", "/chat/completions", "200", front.credentials["openai"], "tenant")
    assert (line["input_tokens"], line["output_tokens"], line["cached_input_tokens"], line["reasoning_tokens"]) == (
        usage.prompt_tokens, usage.completion_tokens, 3, 3)
    (sent,) = front.sent("openai")
    assert sent.json["tool_choice"] == "required" and sent.json["stream_options"] == {"include_usage": True}


async def test_openai_chat_whole_with_a_named_function(front: Front) -> None:
    request_id = rid()
    async with mtls_client(front.system.ids.caller, ORG) as http:
        client = openai_sdk(front.port, http)
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-4o?cached=3", messages=USER, tools=[LOOKUP, OTHER],
            tool_choice={"type": "function", "function": {"name": "other"}}, extra_headers=tagged(request_id))
        async with client.chat.completions.stream(model="gpt-4o", messages=USER, tools=[LOOKUP, OTHER],
                                                  tool_choice={"type": "function", "function": {"name": "other"}},
                                                  stream_options={"include_usage": True}) as helper:
            streamed = await helper.get_final_completion()
    front.named(raw.headers, "openai")
    whole = raw.parse()
    choice = whole.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    call = choice.message.tool_calls[0]
    assert call.type == "function" and (call.function.name, call.function.arguments) == ("other", '{"n":1}')
    streamed_call = streamed.choices[0].message.tool_calls
    assert streamed_call and streamed_call[0].type == "function" and streamed_call[0].function.name == "other"
    assert streamed_call[0].function.arguments == '{"n":1}'  # accumulated from the streamed fragments
    assert whole.usage is not None and whole.usage.prompt_tokens_details is not None
    assert whole.usage.prompt_tokens_details.cached_tokens == 3
    line = await front.log.line(request_id)
    assert (line["input_tokens"], line["output_tokens"], line["cached_input_tokens"]) == (
        whole.usage.prompt_tokens, whole.usage.completion_tokens, 3)
    assert [r.json["tool_choice"]["function"]["name"] for r in front.sent("openai")] == ["other", "other"]


async def test_openai_responses_streamed_both_ways_and_whole(front: Front) -> None:
    tools = [responses_tool(LOOKUP), responses_tool(OTHER)]
    created_id, whole_id = rid(), rid()
    async with mtls_client(front.system.ids.caller, ORG) as http:
        client = openai_sdk(front.port, http)
        stream = await client.responses.create(model="gpt-5", input="x", tools=tools, stream=True,
                                               extra_headers=tagged(created_id))
        events = [e async for e in stream]
        async with client.responses.stream(model="gpt-5", input=[{"role": "user", "content": "hi"}],
                                           instructions="be brief") as helper:
            deltas = [e.delta async for e in helper if e.type == "response.output_text.delta"]
            final = await helper.get_final_response()
        raw = await client.responses.with_raw_response.create(model="gpt-5?cached=2", input="hi",
                                                              reasoning={"effort": "low"},
                                                              extra_headers=tagged(whole_id))
    # create(stream=True) with tools: the function call's events, in order, numbered.
    front.named(stream.response.headers, "openai")
    kinds = [e.type for e in events]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert kinds.count("response.function_call_arguments.delta") == 2
    assert "response.function_call_arguments.done" in kinds and "response.output_text.delta" not in kinds
    args = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert args == '{"n":1}'
    done = [e.item for e in events if e.type == "response.output_item.done"]
    assert [(i.type, getattr(i, "name", None), getattr(i, "arguments", None)) for i in done] == [
        ("function_call", "lookup", '{"n":1}')]
    completed = events[-1]
    assert completed.type == "response.completed"
    (call,) = completed.response.output
    assert call.type == "function_call" and call.call_id.startswith("call_") and call.status == "completed"
    # The stream() helper: text deltas that add up to the final response.
    assert "".join(deltas) == final.output_text == generated_text(FRAMES)
    assert final.instructions == "be brief" and final.status == "completed"
    # Whole: reasoning then message, with the usage details.
    front.named(raw.headers, "openai")
    whole = raw.parse()
    assert whole.status == "completed" and whole.output_text == generated_text(FRAMES)
    assert [o.type for o in whole.output] == ["reasoning", "message"]
    u = whole.usage
    assert u is not None and u.input_tokens_details.cached_tokens == 2
    assert u.output_tokens_details.reasoning_tokens == 3 and u.output_tokens == FRAMES + 3
    streamed_line, whole_line = await front.log.line(created_id), await front.log.line(whole_id)
    usage = completed.response.usage
    assert usage is not None
    assert (streamed_line["path"], streamed_line["input_tokens"], streamed_line["output_tokens"]) == (
        "/responses", usage.input_tokens, usage.output_tokens)
    assert (whole_line["input_tokens"], whole_line["output_tokens"], whole_line["cached_input_tokens"],
            whole_line["reasoning_tokens"]) == (u.input_tokens, u.output_tokens, 2, 3)
    assert [r.path for r in front.sent("openai")] == ["/v1/responses"] * 3


async def test_openai_embeddings_base64_by_default_and_float_with_dimensions(front: Front) -> None:
    default_id = rid()
    async with mtls_client(front.system.ids.caller, ORG) as http:
        client = openai_sdk(front.port, http)
        raw = await client.embeddings.with_raw_response.create(
            model="text-embedding-3-small", input=["alpha", "bravo"], extra_headers=tagged(default_id))
        floats = await client.embeddings.create(model="text-embedding-3-small", input="alpha",
                                                encoding_format="float", dimensions=4)
    front.named(raw.headers, "openai")
    default = raw.parse()
    # The SDK asked for base64 and decoded the float32 bytes itself: the proxy passed both ways through.
    assert [d.embedding for d in default.data] == [embedding("alpha"), embedding("bravo")]
    assert [d.index for d in default.data] == [0, 1]
    assert floats.data[0].embedding == embedding("alpha", 4) and len(floats.data[0].embedding) == 4
    first, second = front.sent("openai")
    assert first.path == second.path == "/v1/embeddings"
    assert first.json["encoding_format"] == "base64"
    assert (second.json["encoding_format"], second.json["dimensions"]) == ("float", 4)
    line = await front.log.line(default_id)
    assert (line["path"], line["input_tokens"]) == ("/embeddings", default.usage.prompt_tokens)


async def test_openai_rate_limit_is_the_sdks_exception_with_retry_after(front: Front) -> None:
    chat_id = rid()
    async with mtls_client(front.system.ids.caller, ORG) as http:
        client = openai_sdk(front.port, http)
        with pytest.raises(openai.RateLimitError) as chat:
            await client.chat.completions.create(model="fault:429", messages=USER, extra_headers=tagged(chat_id))
        with pytest.raises(openai.RateLimitError) as responses:
            await client.responses.create(model="fault:429", input="x", stream=True)
    for caught in (chat, responses):
        assert caught.value.status_code == 429
        assert caught.value.response.headers["retry-after"] == "7"  # the provider's header, passed on
        front.named(caught.value.response.headers, "openai")
    line = await front.log.line(chat_id)
    assert (line["status"], line["upstream_status"], line["credential_id"]) == (
        "429", 429, front.credentials["openai"])
    assert [r.status for r in front.sent("openai")] == [429, 429]


# ---- Anthropic -------------------------------------------------------------------------------------

async def test_anthropic_stream_with_a_named_tool(front: Front) -> None:
    request_id = rid()
    async with ant_sdk(front) as client:
        async with client.messages.stream(model="claude-x", max_tokens=100, messages=USER, tools=ANT_TOOLS,
                                          tool_choice={"type": "tool", "name": "other"},
                                          extra_headers=tagged(request_id)) as stream:
            json_parts = [e.partial_json async for e in stream if e.type == "input_json"]
            final = await stream.get_final_message()
        front.named(stream.response.headers, "anthropic")
    assert [b.type for b in final.content] == ["text", "tool_use"] and final.stop_reason == "tool_use"
    tool = final.content[1]
    assert tool.type == "tool_use" and tool.name == "other" and tool.input == {"n": 1}
    assert json_parts == ['{"n":', "1}"]
    line = await front.log.line(request_id)
    assert (line["provider"], line["path"], line["status"]) == ("anthropic", "/v1/messages", "200")
    assert (line["input_tokens"], line["output_tokens"]) == (final.usage.input_tokens, final.usage.output_tokens)
    (sent,) = front.sent("anthropic")
    assert sent.json["tool_choice"] == {"type": "tool", "name": "other"} and sent.json["stream"] is True


async def test_anthropic_stream_with_extended_thinking_and_cache_usage(front: Front) -> None:
    request_id = rid()
    async with ant_sdk(front) as client:
        async with client.messages.stream(model="claude-x?cached=5&cache_write=6", max_tokens=2000,
                                          thinking=THINKING, messages=USER, extra_headers=tagged(request_id)
                                          ) as stream:
            kinds = [e.type async for e in stream]
            final = await stream.get_final_message()
        front.named(stream.response.headers, "anthropic")
        raw = await client.messages.with_raw_response.create(model="claude-x", max_tokens=2000, thinking=THINKING,
                                                             messages=USER)
    think, text = final.content
    assert think.type == "thinking" and think.thinking == generated_thinking(3)
    assert think.signature == signature(generated_thinking(3))
    assert text.type == "text" and text.text == generated_text(FRAMES)
    assert "thinking" in kinds and "signature" in kinds and kinds.index("signature") < kinds.index("text")
    u = final.usage
    assert (u.cache_read_input_tokens, u.cache_creation_input_tokens, u.output_tokens) == (5, 6, FRAMES + 3)
    front.named(raw.headers, "anthropic")
    whole = await raw.parse()
    assert [b.type for b in whole.content] == ["thinking", "text"]
    assert whole.content[0].type == "thinking" and whole.content[0].signature == signature(generated_thinking(3))
    line = await front.log.line(request_id)
    assert (line["input_tokens"], line["output_tokens"], line["cached_input_tokens"],
            line["cache_creation_input_tokens"]) == (u.input_tokens, u.output_tokens, 5, 6)
    assert [r.json["thinking"] for r in front.sent("anthropic")] == [THINKING, THINKING]


@pytest.mark.parametrize(("budget", "message"), [
    (512, "greater than or equal to 1024"), (2000, "`max_tokens` must be greater than")])
async def test_anthropic_invalid_thinking_budget_is_a_bad_request(front: Front, budget: int, message: str) -> None:
    async with ant_sdk(front) as client:
        with pytest.raises(anthropic.BadRequestError, match=message) as caught:
            await client.messages.create(model="claude-x", max_tokens=2000, messages=USER,
                                         thinking={"type": "enabled", "budget_tokens": budget})
    assert caught.value.status_code == 400
    assert isinstance(caught.value.body, dict) and caught.value.body["error"]["type"] == "invalid_request_error"
    front.named(caught.value.response.headers, "anthropic")
    assert [r.status for r in front.sent("anthropic")] == [400]


async def test_anthropic_rate_limit_is_the_sdks_exception(front: Front) -> None:
    request_id = rid()
    async with ant_sdk(front) as client:
        with pytest.raises(anthropic.RateLimitError) as caught:
            await client.messages.create(model="fault:429", max_tokens=10, messages=USER,
                                         extra_headers=tagged(request_id))
    assert caught.value.status_code == 429 and caught.value.response.headers["retry-after"] == "7"
    front.named(caught.value.response.headers, "anthropic")
    line = await front.log.line(request_id)
    assert (line["status"], line["upstream_status"]) == ("429", 429)
    assert [r.status for r in front.sent("anthropic")] == [429]


# ---- Gemini (google-genai) -------------------------------------------------------------------------

async def test_gemini_stream_with_thoughts(front: Front) -> None:
    request_id = rid()
    config = types.GenerateContentConfig(thinking_config=types.ThinkingConfig(include_thoughts=True),
                                         http_options=gem_options(request_id))
    client = genai_sdk(front.port, front.system.ids.caller, ORG).aio  # the SDK's default API version, v1
    async with client:
        # The model is a path segment: the stand-in's `?cached=2` suffix goes percent-encoded, which the front's
        # path check accepts (it refuses only encoded separators and dots).
        chunks = [c async for c in await client.models.generate_content_stream(
            model="gemini-2.5-flash%3Fcached%3D2", contents="hi", config=config)]
    contents = [c.candidates[0].content for c in chunks if c.candidates]
    parts = [p for content in contents if content for p in content.parts or []]
    thoughts = [p for p in parts if p.thought]
    assert "".join(p.text or "" for p in thoughts) == generated_thinking(3)
    assert [p.thought_signature for p in thoughts if p.thought_signature] == [
        base64.b64decode(signature(generated_thinking(3)))]
    assert "".join(p.text or "" for p in parts if not p.thought) == generated_text(FRAMES)
    usage = chunks[-1].usage_metadata
    assert usage is not None and (usage.thoughts_token_count, usage.cached_content_token_count) == (3, 2)
    headers = chunks[0].sdk_http_response.headers if chunks[0].sdk_http_response else None
    assert headers is not None
    front.named(headers, "gemini")
    (sent,) = front.sent("gemini")
    # aiohttp's URL normalising may unescape the "=" (legal in a path); the "?" stays encoded either way.
    path, _, query = sent.path.partition("?")
    assert path.startswith("/v1/models/gemini-2.5-flash%3Fcached") and path.endswith(":streamGenerateContent")
    assert query == "alt=sse"
    line = await front.log.line(request_id)
    assert line["path"] == path  # the front logs the path without its query
    assert (line["input_tokens"], line["output_tokens"], line["cached_input_tokens"], line["reasoning_tokens"]) == (
        usage.prompt_token_count, usage.candidates_token_count, 2, 3)


async def test_gemini_forced_function_call_and_embeddings(front: Front) -> None:
    call_id, embed_id = rid(), rid()
    tool = types.Tool(function_declarations=[types.FunctionDeclaration(name="lookup"),
                                             types.FunctionDeclaration(name="other")])
    forced = types.ToolConfig(function_calling_config=types.FunctionCallingConfig(
        mode=types.FunctionCallingConfigMode.ANY, allowed_function_names=["other"]))
    client = genai_sdk(front.port, front.system.ids.caller, ORG).aio
    async with client:
        called = await client.models.generate_content(
            model="gemini-2.0-flash", contents="hi",
            config=types.GenerateContentConfig(tools=[tool], tool_config=forced, http_options=gem_options(call_id)))
        vectors = await client.models.embed_content(
            model="gemini-embedding-001", contents=["alpha", "bravo"],
            config=types.EmbedContentConfig(output_dimensionality=4, http_options=gem_options(embed_id)))
    assert [(f.name, f.args) for f in called.function_calls or []] == [("other", {"n": 1})]
    assert called.sdk_http_response is not None and called.sdk_http_response.headers is not None
    front.named(called.sdk_http_response.headers, "gemini")
    assert [e.values for e in vectors.embeddings or []] == [embedding("alpha", 4), embedding("bravo", 4)]
    call_line, embed_line = await front.log.line(call_id), await front.log.line(embed_id)
    assert called.usage_metadata is not None
    assert (call_line["input_tokens"], call_line["output_tokens"]) == (
        called.usage_metadata.prompt_token_count, called.usage_metadata.candidates_token_count)
    assert (embed_line["path"], embed_line["status"], embed_line["credential_id"]) == (
        "/v1/models/gemini-embedding-001:batchEmbedContents", "200", front.credentials["gemini"])
    generate, embed = front.sent("gemini")
    assert generate.path == "/v1/models/gemini-2.0-flash:generateContent"
    assert embed.path == "/v1/models/gemini-embedding-001:batchEmbedContents"


async def test_gemini_models_list(front: Front) -> None:
    async with gem_v1beta(front) as client:
        names = [m.name async for m in await client.models.list()]
    assert "models/gemini-2.0-flash" in names and "models/gemini-embedding-001" in names
    assert [r.path.split("?")[0] for r in front.sent("gemini")] == ["/v1beta/models"]


async def test_gemini_rate_limit_is_a_client_error_429(front: Front) -> None:
    request_id = rid()
    async with gem_v1beta(front) as client:
        with pytest.raises(genai_errors.ClientError) as caught:
            await client.models.generate_content(model="fault:429", contents="hi",
                                                 config=types.GenerateContentConfig(
                                                     http_options=gem_options(request_id)))
    assert caught.value.code == 429
    line = await front.log.line(request_id)
    assert (line["status"], line["upstream_status"], line["credential_id"]) == (
        "429", 429, front.credentials["gemini"])
    assert [r.status for r in front.sent("gemini")] == [429]

