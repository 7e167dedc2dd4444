"""Schema v2 on the OpenAI Chat Completions family: every request mapping and refusal (per provider of the family),
pre-v2 requests byte for byte as before, and citations from streamed and whole answers."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from byok.proxy.v1 import chat_service_pb2 as pb
from proxyservice.adapters import RequestMappingError, adapter_for

KEY = "sk-test-" + "Zq8v3LmN0pR4sT7u"
BASES = {
    "openai": "https://api.openai.com/v1", "mistral": "https://api.mistral.ai/v1", "groq": "https://api.groq.com/openai/v1",
    "together": "https://api.together.xyz/v1", "deepseek": "https://api.deepseek.com",
    "fireworks": "https://api.fireworks.ai/inference/v1", "openrouter": "https://openrouter.ai/api/v1",
    "openai_compatible": "https://llm.example.com/v1",
}
PDF = b"%PDF-1.7 fake"
PNG = b"\x89PNG fake"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def conversation(*extra: pb.Message, **kw: Any) -> pb.ChatParameters:
    """The pre-v2 conversation the pinned bodies below were built from (a tool call carrying a Gemini signature)."""
    return pb.ChatParameters(model="m", messages=[
        pb.Message(role=pb.ROLE_SYSTEM, content="be brief"),
        pb.Message(role=pb.ROLE_USER, content="weather in Paris?"),
        pb.Message(role=pb.ROLE_ASSISTANT, content="", tool_calls=[
            pb.ToolCall(id="c1", name="weather", arguments='{"city":"Paris"}', signature="c2ln")]),
        pb.Message(role=pb.ROLE_TOOL, tool_call_id="c1", content="sunny"),
        pb.Message(role=pb.ROLE_ASSISTANT, content="Sunny."),
        *extra,
    ], tools=[pb.Tool(name="weather", description="get weather", parameters_json='{"type":"object"}')], **kw)


def build(params: pb.ChatParameters, provider: str = "openai", *, stream: bool = False,
          api_base: str | None = None) -> Any:
    return adapter_for("openai").build_request(params, api_base=api_base or BASES[provider], api_key=KEY,
                                               model="x", stream=stream, provider=provider)


def body(params: pb.ChatParameters, provider: str = "openai", **kw: Any) -> dict[str, Any]:
    req = build(params, provider, **kw)
    assert KEY.encode() not in req.body
    result: dict[str, Any] = json.loads(req.body)
    return result


def refusal(params: pb.ChatParameters, provider: str = "openai", **kw: Any) -> RequestMappingError:
    with pytest.raises(RequestMappingError) as err:
        build(params, provider, **kw)
    assert KEY not in str(err.value)
    return err.value


def user(*parts: pb.ContentPart, content: str = "") -> pb.Message:
    return pb.Message(role=pb.ROLE_USER, content=content, parts=list(parts))


def assistant(*parts: pb.ContentPart, **kw: Any) -> pb.Message:
    return pb.Message(role=pb.ROLE_ASSISTANT, parts=list(parts), **kw)


def text(t: str) -> pb.ContentPart:
    return pb.ContentPart(text=t)


def image(**kw: Any) -> pb.ContentPart:
    return pb.ContentPart(image=pb.ImagePart(**kw))


def document(**kw: Any) -> pb.ContentPart:
    return pb.ContentPart(document=pb.DocumentPart(**kw))


def reasoning(**kw: Any) -> pb.ContentPart:
    return pb.ContentPart(reasoning=pb.ReasoningPart(**kw))


def last(b: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = b["messages"][-1]
    return message


# ---- requests without the v2 fields: the same bytes as before them -------------------------------------------

_MESSAGES = (b'"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"weather in Paris?"},'
             b'{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":'
             b'{"name":"weather","arguments":"{\\"city\\":\\"Paris\\"}"}}]},{"role":"tool","tool_call_id":"c1",'
             b'"content":"sunny"},{"role":"assistant","content":"Sunny."}]')
_TOOLS = (b'"tools":[{"type":"function","function":{"name":"weather","description":"get weather",'
          b'"parameters":{"type":"object"}}}]')


@pytest.mark.parametrize(("provider", "stream", "kw", "middle"), [
    ("openai", True, {"max_tokens": 9, "temperature": 0.5, "stop": ["END"]},
     b'"stream":true,"stream_options":{"include_usage":true},"temperature":0.5,"max_completion_tokens":9,'
     b'"stop":["END"],'),
    ("mistral", True, {}, b'"stream":true,'),
    ("deepseek", False, {"max_tokens": 3}, b'"stream":false,"max_tokens":3,'),
])
def test_a_request_without_v2_fields_is_byte_identical(provider: str, stream: bool, kw: dict[str, Any],
                                                         middle: bytes) -> None:
    # Pinned from the adapter before schema v2. Empty v2 messages (an effort and a tool-choice mode left unset,
    # no options) say "provider default": nothing is sent for them, and a tool call's signature never goes.
    pinned = b'{"model":"x",' + _MESSAGES + b"," + middle + _TOOLS + b"}"
    assert build(conversation(**kw), provider, stream=stream).body == pinned
    unset = conversation(reasoning=pb.ReasoningConfig(), tool_choice=pb.ToolChoice(), provider_options_json="", **kw)
    assert build(unset, provider, stream=stream).body == pinned


# ---- content parts -------------------------------------------------------------------------------------------

def test_user_parts_become_text_image_url_and_file_parts() -> None:
    params = conversation(user(
        text("Compare"),
        image(url="https://img.example/a.png"),
        image(data=PNG, media_type="image/png", detail="high"),
        image(url="data:image/jpeg;base64," + b64(b"jpg"), detail="low"),
        document(data=PDF, media_type="application/pdf", filename="report.pdf"),
        document(data=PDF, media_type="application/pdf"),
        document(url="data:application/pdf;base64," + b64(PDF)),
        content="ignored: parts replace content",
    ))
    assert last(body(params)) == {"role": "user", "content": [
        {"type": "text", "text": "Compare"},
        {"type": "image_url", "image_url": {"url": "https://img.example/a.png"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + b64(PNG), "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64," + b64(b"jpg"), "detail": "low"}},
        {"type": "file", "file": {"filename": "report.pdf", "file_data": "data:application/pdf;base64," + b64(PDF)}},
        # OpenAI wants a filename with file_data (a 400 naming file_id otherwise): a PDF's default is given.
        {"type": "file", "file": {"filename": "document.pdf", "file_data": "data:application/pdf;base64," + b64(PDF)}},
        {"type": "file", "file": {"filename": "document.pdf", "file_data": "data:application/pdf;base64," + b64(PDF)}},
    ]}


@pytest.mark.parametrize("provider", ["openai", "groq", "together", "deepseek", "fireworks", "openai_compatible"])
def test_a_document_url_is_refused_where_chat_completions_has_no_file_url(provider: str) -> None:
    err = refusal(conversation(user(text("read"), document(url="https://docs.example/a.pdf"))), provider)
    assert err.field == "parameters.messages[5].parts[1].document.url"
    assert "by URL" in str(err) and provider in str(err)


def test_openrouter_takes_a_document_url_as_file_data_and_other_file_types() -> None:
    params = conversation(user(document(url="https://docs.example/a.pdf", filename="a.pdf"),
                               document(data=b"plain", media_type="text/plain")))
    assert last(body(params, "openrouter"))["content"] == [
        {"type": "file", "file": {"filename": "a.pdf", "file_data": "https://docs.example/a.pdf"}},
        {"type": "file", "file": {"filename": "document", "file_data": "data:text/plain;base64," + b64(b"plain")}},
    ]


def test_openai_takes_pdfs_only() -> None:
    err = refusal(conversation(user(document(data=b"x", media_type="text/csv"))))
    assert err.field == "parameters.messages[5].parts[0].document.media_type" and "PDF" in str(err)
    err = refusal(conversation(user(document(url="data:text/csv;base64,eA=="))))
    assert err.field == "parameters.messages[5].parts[0].document.media_type"


def test_mistral_documents_by_document_url_and_refuses_inline_ones() -> None:
    params = conversation(user(text("summarise"), document(url="https://arxiv.org/pdf/1805.04770", filename="paper"),
                               document(url="https://docs.example/b.pdf"), image(url="https://img.example/a.png")))
    assert last(body(params, "mistral"))["content"] == [
        {"type": "text", "text": "summarise"},
        {"type": "document_url", "document_url": "https://arxiv.org/pdf/1805.04770", "document_name": "paper"},
        {"type": "document_url", "document_url": "https://docs.example/b.pdf"},
        {"type": "image_url", "image_url": {"url": "https://img.example/a.png"}},
    ]
    err = refusal(conversation(user(document(data=PDF, media_type="application/pdf"))), "mistral")
    assert err.field == "parameters.messages[5].parts[0].document.data"
    err = refusal(conversation(user(document(url="data:application/pdf;base64," + b64(PDF)))), "mistral")
    assert err.field == "parameters.messages[5].parts[0].document.url"
    # An openai_compatible lease pointed at Mistral's host is Mistral.
    err = refusal(conversation(user(document(data=PDF, media_type="application/pdf"))), "openai_compatible",
                  api_base="https://api.mistral.ai/v1")
    assert err.field == "parameters.messages[5].parts[0].document.data"


def test_system_and_tool_messages_take_text_parts_only() -> None:
    params = conversation(
        pb.Message(role=pb.ROLE_SYSTEM, parts=[text("rule one"), text("rule two")]),
        pb.Message(role=pb.ROLE_TOOL, tool_call_id="c1", parts=[text('{"t":'), text("20}")]),
    )
    b = body(params)
    assert b["messages"][5] == {"role": "system", "content": [{"type": "text", "text": "rule one"},
                                                              {"type": "text", "text": "rule two"}]}
    assert b["messages"][6] == {"role": "tool", "tool_call_id": "c1",
                                "content": [{"type": "text", "text": '{"t":'}, {"type": "text", "text": "20}"}]}
    err = refusal(conversation(pb.Message(role=pb.ROLE_TOOL, tool_call_id="c1",
                                          parts=[text("chart:"), image(url="https://img.example/c.png")])))
    assert err.field == "parameters.messages[5].parts[1].image" and "tool result" in str(err)
    err = refusal(conversation(pb.Message(role=pb.ROLE_TOOL, tool_call_id="c1",
                                          parts=[document(data=PDF, media_type="application/pdf")])))
    assert err.field == "parameters.messages[5].parts[0].document"
    err = refusal(conversation(pb.Message(role=pb.ROLE_SYSTEM, parts=[image(url="https://img.example/a.png")])))
    assert err.field == "parameters.messages[5].parts[0].image" and "system message" in str(err)


def test_assistant_parts_are_text_and_take_no_images() -> None:
    assert last(body(conversation(assistant(text("It is "), text("sunny."))))) == {
        "role": "assistant", "content": [{"type": "text", "text": "It is "}, {"type": "text", "text": "sunny."}]}
    err = refusal(conversation(assistant(image(url="https://img.example/a.png"))))
    assert err.field == "parameters.messages[5].parts[0].image" and "assistant message" in str(err)


# ---- reasoning handed back ----------------------------------------------------------------------------------

def thinking_turn(*parts: pb.ContentPart) -> pb.Message:
    return assistant(*parts, tool_calls=[pb.ToolCall(id="c9", name="weather", arguments="{}", signature="Z2VtaW5p")])


@pytest.mark.parametrize(("provider", "api_base", "field"), [
    ("deepseek", None, "reasoning_content"),                            # its thinking-mode guide, with tool calls
    ("openai_compatible", "https://api.deepseek.com/v1", "reasoning_content"),  # by host
    ("openrouter", None, "reasoning"),                                  # its AssistantMessage schema
])
def test_reasoning_text_goes_back_where_the_provider_documents_a_field(provider: str, api_base: str | None,
                                                                         field: str) -> None:
    params = conversation(thinking_turn(reasoning(text="Paris, so "), reasoning(text="call weather."),
                                        text("Checking")))
    assert last(body(params, provider, api_base=api_base)) == {
        "role": "assistant", "content": [{"type": "text", "text": "Checking"}], field: "Paris, so call weather.",
        "tool_calls": [{"id": "c9", "type": "function", "function": {"name": "weather", "arguments": "{}"}}]}
    # Reasoning alone leaves no content, as an empty content always did.
    only = last(body(conversation(thinking_turn(reasoning(text="hmm"))), provider, api_base=api_base))
    assert only["content"] is None and only[field] == "hmm"


def test_mistral_takes_reasoning_back_as_thinking_chunks_in_order() -> None:
    params = conversation(assistant(reasoning(text="first"), text("A"), reasoning(text="then")))
    assert last(body(params, "mistral"))["content"] == [
        {"type": "thinking", "thinking": [{"type": "text", "text": "first"}]},
        {"type": "text", "text": "A"},
        {"type": "thinking", "thinking": [{"type": "text", "text": "then"}]},
    ]


@pytest.mark.parametrize("provider", ["openai", "groq", "together", "fireworks", "openai_compatible"])
def test_reasoning_is_refused_where_there_is_no_field_for_it(provider: str) -> None:
    err = refusal(conversation(assistant(text("x"), reasoning(text="thought"))), provider)
    assert err.field == "parameters.messages[5].parts[1].reasoning" and provider in str(err)


@pytest.mark.parametrize("provider", ["deepseek", "openrouter", "mistral", "openai"])
def test_signatures_and_redacted_reasoning_are_refused_on_the_whole_family(provider: str) -> None:
    err = refusal(conversation(assistant(reasoning(text="t", signature="sig"))), provider)
    assert err.field == "parameters.messages[5].parts[0].reasoning.signature"
    err = refusal(conversation(assistant(reasoning(signature="sig"))), provider)
    assert err.field == "parameters.messages[5].parts[0].reasoning.signature"
    err = refusal(conversation(assistant(text("ok"), reasoning(redacted="EnC+x"))), provider)
    assert err.field == "parameters.messages[5].parts[1].reasoning.redacted"


# ---- reasoning controls -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("effort", "wire"), [
    (pb.REASONING_EFFORT_NONE, "none"), (pb.REASONING_EFFORT_MINIMAL, "minimal"), (pb.REASONING_EFFORT_LOW, "low"),
    (pb.REASONING_EFFORT_MEDIUM, "medium"), (pb.REASONING_EFFORT_HIGH, "high"),
])
@pytest.mark.parametrize("provider", ["openai", "groq", "mistral", "fireworks"])
def test_effort_is_reasoning_effort(provider: str, effort: int, wire: str) -> None:
    b = body(conversation(reasoning=pb.ReasoningConfig(effort=effort)), provider)  # type: ignore[arg-type]
    assert b["reasoning_effort"] == wire and "reasoning" not in b and "thinking" not in b


def test_deepseek_turns_thinking_off_for_none_and_maps_other_levels_itself() -> None:
    off = body(conversation(reasoning=pb.ReasoningConfig(effort=pb.REASONING_EFFORT_NONE)), "deepseek")
    assert off["thinking"] == {"type": "disabled"} and "reasoning_effort" not in off
    high = body(conversation(reasoning=pb.ReasoningConfig(effort=pb.REASONING_EFFORT_MEDIUM)), "deepseek")
    assert high["reasoning_effort"] == "medium" and "thinking" not in high


@pytest.mark.parametrize("provider", ["openai", "deepseek", "mistral", "groq", "openai_compatible"])
def test_a_token_budget_is_refused_outside_openrouter(provider: str) -> None:
    err = refusal(conversation(reasoning=pb.ReasoningConfig(budget_tokens=2048)), provider)
    assert err.field == "parameters.reasoning.budget_tokens" and provider in str(err)


def test_openrouter_reasoning_object_is_an_effort_or_a_budget() -> None:
    effort = body(conversation(reasoning=pb.ReasoningConfig(effort=pb.REASONING_EFFORT_HIGH)), "openrouter")
    assert effort["reasoning"] == {"effort": "high"} and "reasoning_effort" not in effort
    budget = body(conversation(reasoning=pb.ReasoningConfig(budget_tokens=2000)), "openrouter")
    assert budget["reasoning"] == {"max_tokens": 2000}
    zero = body(conversation(reasoning=pb.ReasoningConfig(budget_tokens=0)), "openrouter")
    assert zero["reasoning"] == {"max_tokens": 0}  # set, though 0: sent
    both = refusal(conversation(reasoning=pb.ReasoningConfig(effort=pb.REASONING_EFFORT_LOW, budget_tokens=10)),
                   "openrouter")
    assert both.field == "parameters.reasoning.budget_tokens" and "not both" in str(both)


# ---- structured output, tool choice, sampling ---------------------------------------------------------------

SCHEMA = '{"type":"object","properties":{"answer":{"type":"string"}},"required":["answer"]}'


@pytest.mark.parametrize("provider", ["openai", "mistral", "groq", "openrouter"])
def test_response_format_is_json_schema(provider: str) -> None:
    full = body(conversation(response_format=pb.ResponseFormat(name="answer", description="the answer",
                                                               schema_json=SCHEMA, strict=True)), provider)
    assert full["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "answer", "description": "the answer", "schema": json.loads(SCHEMA), "strict": True}}
    bare = body(conversation(response_format=pb.ResponseFormat(name="a", schema_json="{}")), provider)
    assert bare["response_format"]["json_schema"] == {"name": "a", "schema": {}, "strict": False}


def test_deepseek_refuses_a_json_schema() -> None:
    err = refusal(conversation(response_format=pb.ResponseFormat(name="a", schema_json=SCHEMA)), "deepseek")
    assert err.field == "parameters.response_format" and "json_object" in str(err)


@pytest.mark.parametrize(("mode", "provider", "wire"), [
    (pb.TOOL_CHOICE_MODE_AUTO, "openai", "auto"), (pb.TOOL_CHOICE_MODE_NONE, "openai", "none"),
    (pb.TOOL_CHOICE_MODE_REQUIRED, "openai", "required"), (pb.TOOL_CHOICE_MODE_REQUIRED, "groq", "required"),
    (pb.TOOL_CHOICE_MODE_REQUIRED, "mistral", "any"), (pb.TOOL_CHOICE_MODE_NONE, "mistral", "none"),
    (pb.TOOL_CHOICE_MODE_TOOL, "openai", {"type": "function", "function": {"name": "weather"}}),
    (pb.TOOL_CHOICE_MODE_TOOL, "mistral", {"type": "function", "function": {"name": "weather"}}),
])
def test_tool_choice(mode: int, provider: str, wire: Any) -> None:
    name = "weather" if mode == pb.TOOL_CHOICE_MODE_TOOL else ""
    b = body(conversation(tool_choice=pb.ToolChoice(mode=mode, name=name)), provider)  # type: ignore[arg-type]
    assert b["tool_choice"] == wire


@pytest.mark.parametrize("value", [True, False])
def test_parallel_tool_calls_with_tools(value: bool) -> None:
    assert body(conversation(parallel_tool_calls=value))["parallel_tool_calls"] is value


def test_tool_controls_without_tools_are_left_out() -> None:
    # OpenAI 400s on either without tools ("only allowed when 'tools' are specified"); with no tools to call,
    # "auto", "none" and parallelism cannot change the answer.
    params = pb.ChatParameters(model="m", messages=[pb.Message(role=pb.ROLE_USER, content="hi")],
                               tool_choice=pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_NONE), parallel_tool_calls=False)
    b = body(params)
    assert "tool_choice" not in b and "parallel_tool_calls" not in b and "tools" not in b


def test_sampling_controls_set_even_at_zero() -> None:
    params = conversation(top_p=0.0, seed=0, presence_penalty=-2.0, frequency_penalty=0.5)
    b = body(params)
    assert (b["top_p"], b["seed"], b["presence_penalty"], b["frequency_penalty"]) == (0.0, 0, -2.0, 0.5)
    m = body(conversation(seed=42, top_p=0.9), "mistral")
    assert m["random_seed"] == 42 and "seed" not in m and m["top_p"] == 0.9
    assert not {"top_p", "seed", "presence_penalty", "frequency_penalty"} & set(body(conversation()))


# ---- provider options ---------------------------------------------------------------------------------------

def test_provider_options_merge_last_and_never_override() -> None:
    params = conversation(response_format=pb.ResponseFormat(name="a", schema_json="{}"),
                          provider_options_json='{"service_tier":"flex","response_format":{"json_schema":{"x":1}}}')
    b = body(params)
    assert b["service_tier"] == "flex" and b["response_format"]["json_schema"] == {
        "name": "a", "schema": {}, "strict": False, "x": 1}
    # A key a v2 field already set is a conflict, so options cannot undo the schema.
    err = refusal(conversation(seed=1, provider_options_json='{"seed":2}'))
    assert err.field == "parameters.provider_options_json" and "seed" in str(err)
    err = refusal(conversation(provider_options_json='{"messages":[]}'))
    assert err.field == "parameters.provider_options_json"
    # Mistral's seed is random_seed: a caller's "seed" there is Mistral's unknown key, not a conflict of ours.
    assert body(conversation(seed=1, provider_options_json='{"safe_prompt":true}'), "mistral")["safe_prompt"] is True


# ---- citations ----------------------------------------------------------------------------------------------

ANNOTATION = {"type": "url_citation", "url_citation": {"start_index": 0, "end_index": 5, "title": "AP",
                                                        "url": "https://apnews.com/a"}}


def sse(*objs: Any) -> bytes:
    return "".join(f"data: {o if isinstance(o, str) else json.dumps(o)}\n\n" for o in objs).encode()


def decode(raw: bytes, step: int = 3) -> list[pb.StreamChatResponse]:
    dec = adapter_for("openai").stream_decoder()
    out: list[pb.StreamChatResponse] = []
    for i in range(0, len(raw), step):
        out += dec.feed(raw[i:i + step])
    return out + dec.close()


def citations(responses: list[pb.StreamChatResponse]) -> list[tuple[int, Any]]:
    return [(c.index, json.loads(c.citations_json)) for r in responses for c in r.choices if c.citations_json]


def test_streamed_annotations_arrive_once_on_their_delta() -> None:
    raw = sse({"model": "gpt-4o-search-preview", "choices": [{"index": 0, "delta": {"content": "Today"}}]},
              {"choices": [{"index": 0, "delta": {"annotations": [ANNOTATION]}}]},
              {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}, "[DONE]")
    out = decode(raw)
    assert citations(out) == [(0, {"annotations": [ANNOTATION]})]
    assert "".join(c.text for r in out for c in r.choices) == "Today"


def test_top_level_citations_repeated_per_chunk_are_sent_once_and_again_when_they_change() -> None:
    first = ["https://a.example"]
    grown = ["https://a.example", "https://b.example"]
    results = [{"title": "A", "url": "https://a.example"}]
    raw = sse(
        {"model": "sonar", "citations": first, "search_results": results,
         "choices": [{"index": 0, "delta": {"content": "A"}}]},
        {"citations": first, "search_results": results, "choices": [{"index": 0, "delta": {"content": "B"}}]},
        {"citations": grown, "search_results": results, "choices": [{"index": 0, "delta": {"content": "C"}}]},
        {"citations": grown, "search_results": results, "choices": [], "usage": {"prompt_tokens": 1,
                                                                                 "completion_tokens": 3}},
        "[DONE]")
    assert citations(decode(raw)) == [(0, {"citations": first, "search_results": results}),
                                      (0, {"citations": grown})]


def test_top_level_citations_in_a_chunk_without_choice_zero_go_to_choice_zero() -> None:
    raw = sse({"choices": [{"index": 1, "delta": {"content": "x", "annotations": [ANNOTATION]}}],
               "citations": ["https://a.example"]})
    got = citations(decode(raw))
    assert got == [(1, {"annotations": [ANNOTATION]}), (0, {"citations": ["https://a.example"]})]


def test_unary_citations_per_choice() -> None:
    resp = adapter_for("openai").parse_response(json.dumps({
        "model": "sonar", "citations": ["https://a.example"], "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"content": "A", "annotations": [ANNOTATION]}},
            {"index": 1, "finish_reason": "stop", "message": {"content": "B", "annotations": []}},
            {"index": 2, "finish_reason": "stop", "message": {"content": "C", "annotations": [ANNOTATION]}}]})
        .encode())
    assert [[json.loads(c) for c in ch.citations_json] for ch in resp.choices] == [
        [{"annotations": [ANNOTATION], "citations": ["https://a.example"]}], [], [{"annotations": [ANNOTATION]}]]
    plain = adapter_for("openai").parse_response(json.dumps({
        "model": "m", "choices": [{"index": 0, "message": {"content": "hi"}}]}).encode())
    assert list(plain.choices[0].citations_json) == []
