"""Adapters: request mapping per family, stream decoding beyond the corpus, errors that never leak keys."""

from __future__ import annotations

import json
from typing import Any

import pytest

from byok.proxy.v1 import chat_service_pb2 as pb
from proxyservice.accumulate import accumulate
from proxyservice.adapters import (
    AdapterError,
    RequestMappingError,
    UpstreamStreamError,
    adapter_for,
    normalise_finish,
)
from proxyservice.adapters.base import safe_text

KEY = "sk-test-" + "Zq8v3LmN0pR4sT7u"  # a fake shaped like a real key
FR = pb.FinishReason


def conversation(**kw: Any) -> pb.ChatParameters:
    return pb.ChatParameters(
        model="m",
        messages=[
            pb.Message(role=pb.ROLE_SYSTEM, content="be brief"),
            pb.Message(role=pb.ROLE_USER, content="weather in Paris and Rome?"),
            pb.Message(role=pb.ROLE_ASSISTANT, content="", tool_calls=[
                pb.ToolCall(id="c1", name="weather", arguments='{"city":"Paris"}'),
                pb.ToolCall(id="c2", name="weather", arguments='{"city":"Rome"}'),
            ]),
            pb.Message(role=pb.ROLE_TOOL, tool_call_id="c1", content='{"t": 20}'),
            pb.Message(role=pb.ROLE_TOOL, tool_call_id="c2", content="sunny"),
        ],
        tools=[pb.Tool(name="weather", description="get weather",
                       parameters_json='{"type":"object","properties":{"city":{"type":"string"}}}')],
        **kw,
    )


def body_of(req: Any) -> Any:
    return json.loads(req.body)


def run(family: str, body: bytes) -> dict[str, Any]:
    dec = adapter_for(family).stream_decoder()
    out = []
    for i in range(0, len(body), 7):
        out += dec.feed(body[i:i + 7])
    return accumulate(out + dec.close(), family)


# ---- request building ------------------------------------------------------------------------------

def test_openai_request() -> None:
    req = adapter_for("openai").build_request(
        conversation(temperature=0.5, max_tokens=50, stop=["END"]),
        api_base="https://api.groq.com/openai/v1/", api_key=KEY, model="llama-3.1-8b", stream=True,
        provider="groq")
    assert (req.method, req.url) == ("POST", "https://api.groq.com/openai/v1/chat/completions")
    assert req.headers["authorization"] == f"Bearer {KEY}"
    b = body_of(req)
    assert b["model"] == "llama-3.1-8b" and b["stream"] is True
    assert b["stream_options"] == {"include_usage": True}
    assert (b["temperature"], b["max_tokens"], b["stop"]) == (0.5, 50, ["END"])
    assert [m["role"] for m in b["messages"]] == ["system", "user", "assistant", "tool", "tool"]
    assert b["messages"][2]["tool_calls"][1] == {
        "id": "c2", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Rome"}'}}
    assert b["messages"][3] == {"role": "tool", "tool_call_id": "c1", "content": '{"t": 20}'}
    assert b["tools"][0]["function"]["parameters"]["properties"]["city"] == {"type": "string"}
    assert KEY not in req.url and KEY.encode() not in req.body and KEY not in repr(req)


def test_openai_uses_max_completion_tokens_on_openai_and_no_stream_options_unstreamed() -> None:
    req = adapter_for("openai").build_request(conversation(max_tokens=9), api_base="https://api.openai.com/v1",
                                              api_key=KEY, model="gpt-4o", stream=False)
    b = body_of(req)
    assert b["max_completion_tokens"] == 9 and "max_tokens" not in b
    assert b["stream"] is False and "stream_options" not in b and "temperature" not in b


@pytest.mark.parametrize(("provider", "api_base", "asks"), [
    ("mistral", "https://api.mistral.ai/v1", False),          # 422 extra_forbidden on stream_options
    ("mistral", "http://127.0.0.1:9/mistral/v1", False),      # by provider name, whatever the base
    ("openai_compatible", "https://api.mistral.ai/v1", False),  # by host, for a custom api_base
    ("openai", "https://api.openai.com/v1", True), ("groq", "https://api.groq.com/openai/v1", True),
    ("together", "https://api.together.xyz/v1", True), ("deepseek", "https://api.deepseek.com", True),
    ("fireworks", "https://api.fireworks.ai/inference/v1", True), ("openrouter", "https://openrouter.ai/api/v1", True),
])
def test_stream_options_only_where_the_provider_accepts_them(provider: str, api_base: str, asks: bool) -> None:
    req = adapter_for("openai").build_request(conversation(), api_base=api_base, api_key=KEY, model="m",
                                              stream=True, provider=provider)
    assert ("stream_options" in body_of(req)) is asks


def test_anthropic_request() -> None:
    req = adapter_for("anthropic").build_request(conversation(stop=["x"]), api_base="https://api.anthropic.com/v1",
                                                 api_key=KEY, model="claude-sonnet-4-5", stream=True)
    assert req.url == "https://api.anthropic.com/v1/messages"
    assert req.headers["x-api-key"] == KEY and req.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in req.headers
    b = body_of(req)
    assert b["system"] == "be brief" and b["max_tokens"] == 1024 and b["stream"] is True
    assert b["stop_sequences"] == ["x"]
    assert [m["role"] for m in b["messages"]] == ["user", "assistant", "user"]
    assert b["messages"][1]["content"] == [
        {"type": "tool_use", "id": "c1", "name": "weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "c2", "name": "weather", "input": {"city": "Rome"}},
    ]
    # Both results of the parallel calls in one user turn, as the API requires.
    assert b["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "c1", "content": '{"t": 20}'},
        {"type": "tool_result", "tool_use_id": "c2", "content": "sunny"},
    ]
    assert b["tools"][0]["input_schema"]["type"] == "object"


def test_gemini_request_key_only_in_header() -> None:
    a = adapter_for("gemini")
    req = a.build_request(conversation(max_tokens=10, temperature=0.1), api_base="https://generativelanguage.googleapis.com/v1beta",
                          api_key=KEY, model="models/gemini-2.0-flash", stream=True)
    assert req.url == ("https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash"
                       ":streamGenerateContent?alt=sse")
    assert req.headers == {"x-goog-api-key": KEY, "content-type": "application/json"}
    assert KEY not in req.url
    b = body_of(req)
    assert b["systemInstruction"] == {"parts": [{"text": "be brief"}]}
    assert [c["role"] for c in b["contents"]] == ["user", "model", "user"]
    assert b["contents"][1]["parts"][0] == {"functionCall": {"name": "weather", "args": {"city": "Paris"}}}
    assert b["contents"][2]["parts"] == [
        {"functionResponse": {"name": "weather", "response": {"t": 20}}},
        {"functionResponse": {"name": "weather", "response": {"result": "sunny"}}},
    ]
    assert b["tools"][0]["functionDeclarations"][0]["name"] == "weather"
    assert b["generationConfig"] == {"temperature": 0.1, "maxOutputTokens": 10}
    unary = a.build_request(conversation(), api_base="http://h/v1beta", api_key=KEY, model="a/b?c", stream=False)
    assert unary.url == "http://h/v1beta/models/a%2Fb%3Fc:generateContent"


@pytest.mark.parametrize("family", ["openai", "anthropic", "gemini"])
def test_bad_tool_schema_is_a_request_error(family: str) -> None:
    params = pb.ChatParameters(messages=[pb.Message(role=pb.ROLE_USER, content="x")],
                               tools=[pb.Tool(name="t", parameters_json="{nope")])
    with pytest.raises(RequestMappingError):
        adapter_for(family).build_request(params, api_base="http://h", api_key=KEY, model="m", stream=True)


# ---- stream decoding -------------------------------------------------------------------------------

def sse(*objs: Any, events: list[str] | None = None, nl: str = "\n") -> bytes:
    out = []
    for i, o in enumerate(objs):
        data = o if isinstance(o, str) else json.dumps(o)
        head = f"event: {events[i]}{nl}" if events else ""
        out.append(f"{head}data: {data}{nl}{nl}")
    return "".join(out).encode()


def test_openai_multiple_choices_tools_and_repeated_ids() -> None:
    def chunk(choices: Any, **kw: Any) -> dict[str, Any]:
        return {"id": "x", "model": "llama-3", "choices": choices, **kw}

    def call(args: str) -> dict[str, Any]:
        return {"index": 0, "id": "t1", "function": {"name": "f", "arguments": args}}
    body = sse(
        chunk([{"index": 1, "delta": {"content": "B"}}, {"index": 0, "delta": {"content": "A"}}]),
        # Some compatible servers repeat id and name on every fragment: they must not be duplicated.
        chunk([{"index": 0, "delta": {"tool_calls": [call('{"a"')]}}]),
        chunk([{"index": 0, "delta": {"tool_calls": [call(":1}")]}}]),
        chunk([{"index": 0, "delta": {}, "finish_reason": "tool_calls"},
               {"index": 1, "delta": {"refusal": "no"}, "finish_reason": "content_filter"}]),
        chunk([], x_groq={"usage": {"prompt_tokens": 3, "completion_tokens": 4}}),
        "[DONE]",
    )
    got = run("openai", body)
    assert got["usage"] == {"input_tokens": 3, "output_tokens": 4}
    assert got["choices"] == [
        {"index": 0, "text": "A", "refusal": "", "finish_reason": "tool_calls",
         "tool_calls": [{"id": "t1", "name": "f", "arguments": '{"a":1}'}]},
        {"index": 1, "text": "B", "refusal": "no", "finish_reason": "content_filter", "tool_calls": []},
    ]


def test_openai_no_usage_is_none() -> None:
    body = sse({"model": "m", "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}]},
               "[DONE]")
    assert run("openai", body)["usage"] is None


def test_malformed_json_raises_safe_error_keeping_earlier_responses() -> None:
    good = {"model": "m", "choices": [{"index": 0, "delta": {"content": "hi"}}]}
    dec = adapter_for("openai").stream_decoder()
    with pytest.raises(AdapterError) as ei:
        dec.feed(sse(good) + b'data: {"oops": ' + KEY.encode() + b"\n\n")
    assert KEY not in str(ei.value)
    assert [r.choices[0].text for r in ei.value.partial] == ["hi"]


def test_anthropic_error_event() -> None:
    body = sse({"type": "message_start", "message": {"model": "claude", "usage": {"input_tokens": 5}}},
               {"type": "error", "error": {"type": "overloaded_error", "message": f"Overloaded {KEY}"}},
               events=["message_start", "error"])
    dec = adapter_for("anthropic").stream_decoder()
    with pytest.raises(UpstreamStreamError) as ei:
        dec.feed(body)
    assert ei.value.error_type == "overloaded_error"
    assert "Overloaded" in str(ei.value) and KEY not in str(ei.value)
    assert ei.value.partial[0].model == "claude"


def test_anthropic_unknown_blocks_thinking_and_usage_update() -> None:
    ev = ["message_start", "content_block_start", "content_block_delta", "content_block_delta",
          "content_block_start", "content_block_delta", "brand_new_event", "message_delta"]
    body = sse(
        {"type": "message_start", "message": {"model": "c", "usage": {"input_tokens": 5, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "s"}},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "tu", "name": "f",
                                                                       "input": {"x": 1}}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "citations_delta", "citation": {}}},
        {"type": "brand_new_event", "whatever": True},
        {"type": "message_delta", "delta": {"stop_reason": "pause_turn"}, "usage": {"input_tokens": 9,
                                                                                   "output_tokens": 7}},
        events=ev,
    )
    got = run("anthropic", body)
    assert got["usage"] == {"input_tokens": 9, "output_tokens": 7}
    assert got["choices"][0]["text"] == ""
    assert got["choices"][0]["tool_calls"] == [{"id": "tu", "name": "f", "arguments": '{"x": 1}'}]
    assert got["choices"][0]["finish_reason"] == "pause_turn"


def test_gemini_stream_with_crlf_thoughts_and_function_calls() -> None:
    body = sse(
        {"candidates": [{"content": {"role": "model", "parts": [{"text": "think", "thought": True},
                                                                  {"text": "Hel"}]}, "index": 0}],
         "modelVersion": "gemini-2.5-flash"},
        {"candidates": [{"content": {"role": "model", "parts": [
            {"text": "lo"}, {"functionCall": {"name": "f", "args": {"a": [1, "é"]}}},
            {"functionCall": {"id": "given", "name": "g", "args": {}}}]},
            "finishReason": "STOP", "index": 0}],
         "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 6, "thoughtsTokenCount": 2},
         "modelVersion": "gemini-2.5-flash"},
        nl="\r\n",
    )
    dec = adapter_for("gemini").stream_decoder()
    responses = dec.feed(body) + dec.close()
    got = accumulate(responses, "gemini")
    assert got["model"] == "gemini-2.5-flash"
    assert got["usage"] == {"input_tokens": 4, "output_tokens": 6}  # candidatesTokenCount: thoughts are apart
    assert got["choices"] == [{"index": 0, "text": "Hello", "refusal": "", "finish_reason": "STOP", "tool_calls": [
        {"id": "call_0", "name": "f", "arguments": '{"a":[1,"é"]}'},
        {"id": "given", "name": "g", "arguments": "{}"}]}]
    finals = [c for r in responses for c in r.choices if c.provider_finish_reason]
    assert finals[0].finish_reason == FR.FINISH_REASON_TOOL_CALLS


def test_gemini_blocked_prompt_and_error() -> None:
    got = run("gemini", sse({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 3}}))
    assert got["choices"][0]["finish_reason"] == "SAFETY"
    with pytest.raises(UpstreamStreamError):
        run("gemini", sse({"error": {"code": 503, "status": "UNAVAILABLE", "message": "overloaded"}}))


# ---- unary responses -------------------------------------------------------------------------------

def test_parse_responses() -> None:
    oa = adapter_for("openai").parse_response(json.dumps({
        "model": "gpt", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "content": None, "refusal": None,
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2}}).encode())
    assert oa.model == "gpt" and oa.usage.output_tokens == 2
    assert oa.choices[0].tool_calls[0].name == "f" and oa.choices[0].finish_reason == FR.FINISH_REASON_TOOL_CALLS
    an = adapter_for("anthropic").parse_response(json.dumps({
        "model": "claude", "content": [{"type": "text", "text": "a"}, {"type": "server_tool_use", "id": "s"},
                                       {"type": "text", "text": "b"},
                                       {"type": "tool_use", "id": "t", "name": "f", "input": {"q": 1}}],
        "stop_reason": "tool_use", "usage": {"input_tokens": 3, "output_tokens": 4}}).encode())
    assert an.choices[0].text == "ab" and json.loads(an.choices[0].tool_calls[0].arguments) == {"q": 1}
    assert len(an.choices[0].tool_calls) == 1
    gm = adapter_for("gemini").parse_response(json.dumps({
        "candidates": [{"content": {"parts": [{"text": "hi"}]}, "finishReason": "MAX_TOKENS"}],
        "modelVersion": "gemini"}).encode())
    assert gm.choices[0].finish_reason == FR.FINISH_REASON_LENGTH and not gm.HasField("usage")
    for family in ("openai", "anthropic", "gemini"):
        with pytest.raises(AdapterError):
            adapter_for(family).parse_response(b"<html>")
    with pytest.raises(UpstreamStreamError):
        adapter_for("anthropic").parse_response(
            b'{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}')


def test_finish_reason_normalisation() -> None:
    cases = {"stop": FR.FINISH_REASON_STOP, "end_turn": FR.FINISH_REASON_STOP, "stop_sequence": FR.FINISH_REASON_STOP,
             "STOP": FR.FINISH_REASON_STOP, "length": FR.FINISH_REASON_LENGTH, "max_tokens": FR.FINISH_REASON_LENGTH,
             "MAX_TOKENS": FR.FINISH_REASON_LENGTH, "tool_calls": FR.FINISH_REASON_TOOL_CALLS,
             "tool_use": FR.FINISH_REASON_TOOL_CALLS, "function_call": FR.FINISH_REASON_TOOL_CALLS,
             "content_filter": FR.FINISH_REASON_CONTENT_FILTER, "refusal": FR.FINISH_REASON_CONTENT_FILTER,
             "SAFETY": FR.FINISH_REASON_CONTENT_FILTER, "pause_turn": FR.FINISH_REASON_OTHER,
             "": FR.FINISH_REASON_UNSPECIFIED}
    for reason, norm in cases.items():
        assert normalise_finish(reason) == norm, reason


def test_safe_text_masks_keys() -> None:
    assert KEY not in safe_text(f"Incorrect API key provided: {KEY}")
    assert "AIza" not in safe_text("key AIzaSyA1234567890abcdefghij bad")


def test_safe_text_masks_before_it_truncates() -> None:
    mistral = "M1stRaLk3y" * 3 + "Qz"  # 32 letters and digits: only the long-token rule catches it
    out = safe_text("x" * 190 + " " + mistral)
    assert len(out) <= 200 and mistral[:9] not in out


def test_gemini_stream_is_complete_only_with_a_finish_reason_or_a_blocked_prompt() -> None:
    chunk = b'data: {"candidates":[{"content":{"parts":[{"text":"hi"}]},"index":0}]}\r\n\r\n'
    done = b'data: {"candidates":[{"content":{"parts":[]},"finishReason":"STOP","index":0}]}\r\n\r\n'
    blocked = b'data: {"promptFeedback":{"blockReason":"SAFETY"}}\r\n\r\n'
    for body, whole in ((chunk, False), (chunk + done, True), (blocked, True)):
        dec = adapter_for("gemini").stream_decoder()
        dec.feed(body)
        dec.close()
        assert dec.complete is whole


def test_an_unknown_api_family_is_a_clear_failed_precondition() -> None:
    """A lease naming a family this proxy does not speak (a newer keyservice) must not surface as INTERNAL."""
    import grpc

    from proxyservice.adapters import adapter_for
    from proxyservice.errors import FailedPrecondition

    with pytest.raises(FailedPrecondition) as err:
        adapter_for("bedrock_converse")
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "bedrock_converse" in err.value.message and "openai" in err.value.message


# ---- schema v2: reasoning, signatures, cache and reasoning usage -------------------------------------

def run_v2(family: str, body: bytes) -> dict[str, Any]:
    from proxyservice.accumulate import accumulate_v2

    dec = adapter_for(family).stream_decoder()
    out = []
    for i in range(0, len(body), 5):
        out += dec.feed(body[i:i + 5])
    return accumulate_v2(out + dec.close(), family)


def test_openai_reasoning_deltas_mistral_thinking_parts_and_usage_details() -> None:
    def chunk(delta: Any, **kw: Any) -> dict[str, Any]:
        return {"model": "m", "choices": [{"index": 0, "delta": delta}], **kw}
    body = sse(
        chunk({"reasoning_content": "Think", "reasoning": "Think"}),  # both, same text: taken once
        chunk({"reasoning": " more", "content": None}),
        chunk({"content": [{"type": "thinking", "thinking": [{"type": "text", "text": "!"}]},
                           {"type": "text", "text": "<think>is text</think>"}, {"type": "image_url"}]}),
        chunk({}, usage={"prompt_tokens": 9, "completion_tokens": 7,
                         "prompt_tokens_details": {"cached_tokens": 4},
                         "completion_tokens_details": {"reasoning_tokens": 5}}),
        "[DONE]",
    )
    got = run_v2("openai", body)
    assert got["choices"][0]["reasoning"] == "Think more!"
    assert got["choices"][0]["text"] == "<think>is text</think>"
    assert got["usage"] == {"input_tokens": 9, "output_tokens": 7, "reasoning_tokens": 5, "cached_input_tokens": 4,
                            "cache_write_input_tokens": None}
    # DeepSeek's and Azure's spellings; no details at all leaves the counts unset, not 0.
    deepseek = run_v2("openai", sse(chunk({}, usage={"prompt_tokens": 3, "completion_tokens": 2,
                                                     "prompt_cache_hit_tokens": 1, "reasoning_tokens": 0})))
    assert (deepseek["usage"]["cached_input_tokens"], deepseek["usage"]["reasoning_tokens"]) == (1, 0)
    plain = run_v2("openai", sse(chunk({}, usage={"prompt_tokens": 3, "completion_tokens": 2,
                                                  "prompt_tokens_details": None})))
    assert plain["usage"]["cached_input_tokens"] is None and plain["usage"]["reasoning_tokens"] is None


def test_openai_unary_reasoning_and_usage_details() -> None:
    oa = adapter_for("openai").parse_response(json.dumps({
        "model": "deepseek-reasoner", "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"content": "4", "reasoning_content": "2+2"}},
            {"index": 1, "finish_reason": "stop", "message": {"content": "4", "reasoning": "sum"}},
            {"index": 2, "finish_reason": "stop", "message": {"content": [
                {"type": "thinking", "thinking": "plain"}, {"type": "text", "text": "four"}]}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 6, "prompt_tokens_details": {"cached_tokens": 2},
                  "completion_tokens_details": {"reasoning_tokens": 3}}}).encode())
    assert [(c.text, c.reasoning) for c in oa.choices] == [("4", "2+2"), ("4", "sum"), ("four", "plain")]
    assert (oa.usage.cached_input_tokens, oa.usage.reasoning_tokens) == (2, 3)
    assert not oa.usage.HasField("cache_creation_input_tokens")
    bare = adapter_for("openai").parse_response(json.dumps({
        "model": "m", "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}).encode())
    assert not bare.usage.HasField("reasoning_tokens") and not bare.usage.HasField("cached_input_tokens")


def test_anthropic_thinking_redacted_thinking_and_cache_usage() -> None:
    events = [
        {"type": "message_start", "message": {"model": "claude-x", "content": [], "usage": {
            "input_tokens": 5, "output_tokens": 1, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 0}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "",
                                                                       "signature": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Let me"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": " think."}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sig/A=="}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "redacted_thinking", "data": "EnC+x"}},
        {"type": "content_block_stop", "index": 1},
        {"type": "content_block_start", "index": 2, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "text_delta", "text": "Done"}},
        {"type": "content_block_start", "index": 3, "content_block": {"type": "fallback_or_anything_new"}},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
         "usage": {"output_tokens": 40, "cache_creation_input_tokens": 7}},
        {"type": "message_stop"},
    ]
    got = run_v2("anthropic", sse(*events, events=[e["type"] for e in events]))
    assert got["model"] == "claude-x"
    # The provider's own numbers: input excludes the cache; reasoning is not a count Anthropic reports.
    assert got["usage"] == {"input_tokens": 5, "output_tokens": 40, "reasoning_tokens": None,
                            "cached_input_tokens": 100, "cache_write_input_tokens": 7}
    choice = got["choices"][0]
    assert (choice["text"], choice["reasoning"]) == ("Done", "Let me think.")
    assert choice["reasoning_signatures"] == ["sig/A=="] and choice["redacted_reasoning"] == ["EnC+x"]


def test_anthropic_message_start_carrying_a_whole_turn() -> None:
    """Programmatic tool calling resumes a turn whose tool_use block and stop_reason come in message_start."""
    events = [{"type": "message_start", "message": {
        "model": "claude-x", "stop_reason": "tool_use", "usage": {"input_tokens": 0, "output_tokens": 0},
        "content": [{"type": "tool_use", "id": "toolu_1", "name": "roll", "input": {"player": "p2"},
                     "caller": {"type": "code_execution_20250825"}}]}}, {"type": "message_stop"}]
    got = run_v2("anthropic", sse(*events, events=[e["type"] for e in events]))
    assert got["choices"][0]["tool_calls"] == [
        {"id": "toolu_1", "name": "roll", "arguments": '{"player":"p2"}', "signature": None}]
    assert got["choices"][0]["finish_reason"] == "tool_use"
    assert got["usage"]["cached_input_tokens"] is None  # not reported: unset, not 0


def test_anthropic_unary_thinking_redacted_thinking_and_cache_usage() -> None:
    an = adapter_for("anthropic").parse_response(json.dumps({
        "model": "claude-x", "stop_reason": "tool_use", "content": [
            {"type": "thinking", "thinking": "First ", "signature": "s1"},
            {"type": "redacted_thinking", "data": "opaque=="},
            {"type": "text", "text": "Calling."},
            {"type": "thinking", "thinking": "then", "signature": "s2"},
            {"type": "tool_use", "id": "t", "name": "f", "input": {}}],
        "usage": {"input_tokens": 3, "output_tokens": 4, "cache_read_input_tokens": 10,
                  "cache_creation_input_tokens": 20}}).encode())
    ch = an.choices[0]
    assert (ch.text, ch.reasoning) == ("Calling.", "First then")
    assert list(ch.reasoning_signatures) == ["s1", "s2"] and list(ch.redacted_reasoning) == ["opaque=="]
    assert [(c.id, c.arguments, c.signature) for c in ch.tool_calls] == [("t", "{}", "")]
    assert (an.usage.input_tokens, an.usage.cached_input_tokens, an.usage.cache_creation_input_tokens) == (3, 10, 20)
    assert not an.usage.HasField("reasoning_tokens")
    empty = adapter_for("anthropic").parse_response(b'{"model": "c", "content": [], "stop_reason": "end_turn"}')
    assert len(empty.choices) == 1 and not empty.HasField("usage")


def test_gemini_thoughts_signatures_and_usage_counts() -> None:
    body = sse(
        {"candidates": [{"content": {"parts": [{"text": "Plan", "thought": True, "thoughtSignature": "c2lnMQ=="},
                                               {"text": "Hi"}]}}], "modelVersion": "gemini-3-pro"},
        {"candidates": [{"content": {"parts": [
            {"functionCall": {"name": "f", "args": {"q": 1}}, "thoughtSignature": "c2lnMg=="},
            {"functionCall": {"name": "g", "args": {}}}, {"text": "", "thoughtSignature": "c2lnMw=="}]},
            "finishReason": "STOP"}],
         "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 6, "thoughtsTokenCount": 2,
                           "cachedContentTokenCount": 3}},
        nl="\r\n",
    )
    got = run_v2("gemini", body)
    choice = got["choices"][0]
    assert (choice["text"], choice["reasoning"]) == ("Hi", "Plan")
    assert choice["reasoning_signatures"] == ["c2lnMQ==", "c2lnMg==", "c2lnMw=="]  # every part's, in order
    assert [(c["name"], c["arguments"], c["signature"]) for c in choice["tool_calls"]] == [
        ("f", '{"q":1}', "c2lnMg=="), ("g", "{}", None)]
    # Gemini's own counts, none derived: candidatesTokenCount leaves the thinking to thoughtsTokenCount.
    assert got["usage"] == {"input_tokens": 4, "output_tokens": 6, "reasoning_tokens": 2, "cached_input_tokens": 3,
                            "cache_write_input_tokens": None}


def test_gemini_unary_thoughts_signatures_and_usage_counts() -> None:
    gm = adapter_for("gemini").parse_response(json.dumps({
        "candidates": [{"content": {"parts": [
            {"text": "hmm", "thought": True}, {"text": "Answer", "thoughtSignature": "QUJD"},
            {"functionCall": {"id": "c9", "name": "f", "args": {"a": "é"}}, "thoughtSignature": "REVG"}]},
            "finishReason": "STOP"}, {"index": 1, "content": {"parts": []}}],
        "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 5, "thoughtsTokenCount": 11},
        "modelVersion": "gemini-2.5-pro-001"}).encode())
    assert gm.model == "gemini-2.5-pro-001" and len(gm.choices) == 2
    ch = gm.choices[0]
    assert (ch.text, ch.reasoning, list(ch.reasoning_signatures)) == ("Answer", "hmm", ["QUJD", "REVG"])
    assert [(c.id, c.name, c.arguments, c.signature) for c in ch.tool_calls] == [("c9", "f", '{"a":"é"}', "REVG")]
    assert ch.finish_reason == FR.FINISH_REASON_TOOL_CALLS
    assert (gm.usage.output_tokens, gm.usage.reasoning_tokens) == (5, 11)
    assert not gm.usage.HasField("cached_input_tokens")


def test_gemini_streamed_function_call_arguments() -> None:
    """Vertex AI's partialArgs: strings concatenate per path; numbers, booleans and null are set; a call the
    stream leaves open is closed with what came; a usageMetadata with no count is no usage."""
    def part(fc: dict[str, Any]) -> dict[str, Any]:
        return {"candidates": [{"content": {"role": "model", "parts": [{"functionCall": fc}]}}],
                "usageMetadata": {"trafficType": "ON_DEMAND"}}
    body = sse(
        part({"name": "book", "willContinue": True}),
        part({"partialArgs": [{"jsonPath": "$.who.name", "stringValue": "Ad", "willContinue": True}],
              "willContinue": True}),
        part({"partialArgs": [{"jsonPath": "$.who.name", "stringValue": "a"},
                              {"jsonPath": "$.seats[1]", "numberValue": 2},
                              {"jsonPath": "$['window']", "boolValue": True},
                              {"jsonPath": "$.note", "nullValue": "NULL_VALUE"},
                              {"jsonPath": "not a path", "stringValue": "x"}], "willContinue": True}),
        part({}),
        part({"name": "pay", "willContinue": True}),
        part({"partialArgs": [{"jsonPath": "$.amount", "numberValue": 9.5}], "willContinue": True}),
    )
    got = run_v2("gemini", body)
    assert got["usage"] is None
    calls = got["choices"][0]["tool_calls"]
    assert [(c["id"], c["name"]) for c in calls] == [("call_0", "book"), ("call_1", "pay")]
    assert json.loads(calls[0]["arguments"]) == {"who": {"name": "Ada"}, "seats": [None, 2], "window": True,
                                                 "note": None}
    assert json.loads(calls[1]["arguments"]) == {"amount": 9.5}
