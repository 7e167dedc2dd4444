"""Anthropic adapter, schema v2: each request mapping and refusal, the body unchanged without the new fields, and the
decoder's citations and model fallbacks (stream at random split points, and the unary answer)."""

from __future__ import annotations

import base64
import json
import random
from typing import Any

import pytest

from byok.proxy.v1 import chat_service_pb2 as pb
from proxyservice.accumulate import to_chat_response
from proxyservice.adapters import AdapterError, RequestMappingError, adapter_for
from proxyservice.adapters.anthropic import claude_version

KEY = "sk-ant-" + "Zq8v3LmN0pR4sT7uWx"  # a fake shaped like a real key
OPTIONS = "parameters.provider_options_json"
PNG = b"\x89PNG\r\n\x1a\nfake"
PDF = b"%PDF-1.7 fake"


def params(*messages: pb.Message, **kw: Any) -> pb.ChatParameters:
    return pb.ChatParameters(model="m", messages=list(messages) or [user("hi")], **kw)


def user(text: str = "", *parts: pb.ContentPart) -> pb.Message:
    return pb.Message(role=pb.ROLE_USER, content=text, parts=list(parts))


def text(t: str) -> pb.ContentPart:
    return pb.ContentPart(text=t)


_SOURCES = {"image": pb.ImagePart, "document": pb.DocumentPart, "reasoning": pb.ReasoningPart}


def part(kind: str, **kw: Any) -> pb.ContentPart:
    """An image, document or reasoning part with those fields."""
    return pb.ContentPart(**{kind: _SOURCES[kind](**kw)})


def image(**kw: Any) -> pb.ContentPart:
    return part("image", **kw)


def document(**kw: Any) -> pb.ContentPart:
    return part("document", **kw)


def reasoning(**kw: Any) -> pb.ContentPart:
    return part("reasoning", **kw)


def request(p: pb.ChatParameters, model: str = "claude-sonnet-4-5", stream: bool = True) -> Any:
    return adapter_for("anthropic").build_request(p, api_base="https://api.anthropic.com/v1", api_key=KEY,
                                                  model=model, stream=stream)


def body(p: pb.ChatParameters, model: str = "claude-sonnet-4-5") -> Any:
    return json.loads(request(p, model).body)


def refused(p: pb.ChatParameters, model: str = "claude-sonnet-4-5") -> RequestMappingError:
    with pytest.raises(RequestMappingError) as exc:
        request(p, model)
    assert KEY not in str(exc.value)
    return exc.value


# ---- the body without the new fields -----------------------------------------------------------------------

# The body this conversation made before schema v2 (test_adapters' conversation, built by the adapter as it was
# then, at 6c8acb6~1).
PINNED = (b'{"model":"claude-sonnet-4-5","max_tokens":300,"messages":[{"role":"user","content":[{"type":"text",'
          b'"text":"weather in Paris and Rome?"}]},{"role":"assistant","content":[{"type":"tool_use","id":"c1",'
          b'"name":"weather","input":{"city":"Paris"}},{"type":"tool_use","id":"c2","name":"weather","input":'
          b'{"city":"Rome"}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"c1","content":'
          b'"{\\"t\\": 20}"},{"type":"tool_result","tool_use_id":"c2","content":"sunny"}]}],"system":"be brief",'
          b'"stream":true,"temperature":0.5,"stop_sequences":["x"],"tools":[{"name":"weather","description":'
          b'"get weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}]}')


def pre_v2(**kw: Any) -> pb.ChatParameters:
    calls = [pb.ToolCall(id=f"c{i}", name="weather", arguments=json.dumps({"city": city}, separators=(",", ":")))
             for i, city in ((1, "Paris"), (2, "Rome"))]
    results = [pb.Message(role=pb.ROLE_TOOL, tool_call_id=c, content=out) for c, out in (("c1", '{"t": 20}'),
                                                                                          ("c2", "sunny"))]
    weather = pb.Tool(name="weather", description="get weather",
                      parameters_json='{"type":"object","properties":{"city":{"type":"string"}}}')
    return params(pb.Message(role=pb.ROLE_SYSTEM, content="be brief"), user("weather in Paris and Rome?"),
                  pb.Message(role=pb.ROLE_ASSISTANT, tool_calls=calls), *results,
                  tools=[weather], stop=["x"], temperature=0.5, max_tokens=300, **kw)


def test_a_request_without_the_new_fields_is_the_same_body_as_before_them() -> None:
    req = request(pre_v2())
    assert req.body == PINNED
    # Empty options, no reasoning, UNSPECIFIED tool choice and effort: still nothing new on the wire.
    assert request(pre_v2(provider_options_json="")).body == PINNED
    assert request(pre_v2(tool_choice=pb.ToolChoice(), reasoning=pb.ReasoningConfig())).body == PINNED
    assert "anthropic-beta" not in req.headers and KEY.encode() not in req.body


# ---- content parts -----------------------------------------------------------------------------------------

def test_user_parts_become_text_image_and_document_blocks_in_order() -> None:
    b64png, b64pdf = base64.b64encode(PNG).decode(), base64.b64encode(PDF).decode()
    b = body(params(user(
        "ignored: parts replace content",
        text("look"),
        image(data=PNG, media_type="image/png", detail="high"),  # detail is OpenAI's hint: not sent
        image(url="https://x.test/a.webp"),
        image(url=f"data:image/jpeg;base64,{b64png}"),
        document(data=PDF, media_type="application/pdf", filename="report.pdf"),
        document(url="https://x.test/b.pdf"),
        document(data="héllo".encode(), media_type="text/plain"),
        document(url=f"data:application/pdf;base64,{b64pdf}"),
        text(""),  # an empty text block is refused by the API: left out, like empty content
    )))
    assert b["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "look"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": b64png}},
        {"type": "image", "source": {"type": "url", "url": "https://x.test/a.webp"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": b64png}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": b64pdf},
         "title": "report.pdf"},
        {"type": "document", "source": {"type": "url", "url": "https://x.test/b.pdf"}},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "héllo"}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": b64pdf}},
    ]}]


def test_a_plain_text_document_by_data_url_is_a_text_source() -> None:
    url = "data:text/plain;base64," + base64.b64encode(b"notes").decode()
    b = body(params(user("", document(url=url, filename="n.txt"))))
    assert b["messages"][0]["content"] == [
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "notes"}, "title": "n.txt"}]


@pytest.mark.parametrize(("part", "field"), [
    (image(data=PNG, media_type="image/bmp"), "parameters.messages[0].parts[0].image.media_type"),
    (image(url="data:image/svg+xml;base64,PHN2Zz4="), "parameters.messages[0].parts[0].image.url"),
    (document(data=b"x", media_type="application/msword"), "parameters.messages[0].parts[0].document.media_type"),
    (document(url="https://x.test/a.txt", media_type="text/plain"),
     "parameters.messages[0].parts[0].document.media_type"),
    (document(data=b"\xff\xfe", media_type="text/plain"), "parameters.messages[0].parts[0].document.data"),
    (document(url="data:text/plain;base64,//4="), "parameters.messages[0].parts[0].document.url"),
])
def test_media_anthropic_does_not_take_is_refused_naming_the_field(part: pb.ContentPart, field: str) -> None:
    err = refused(params(user("", part)))
    assert err.field == field and "anthropic" in str(err)


def test_an_assistant_turn_hands_back_thinking_in_the_callers_order_then_its_tool_calls() -> None:
    b = body(params(
        user("q"),
        pb.Message(role=pb.ROLE_ASSISTANT, content="ignored", parts=[
            reasoning(text="Let me think.", signature="sig/A=="), reasoning(redacted="EnC+x"), text("Calling."),
            reasoning(text="", signature="sig/B==")],  # thinking shown as omitted: empty text, the signature kept
            tool_calls=[pb.ToolCall(id="t1", name="f", arguments="{}")]),
        pb.Message(role=pb.ROLE_TOOL, tool_call_id="t1", content="ok"),
    ))
    assert b["messages"][1] == {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "Let me think.", "signature": "sig/A=="},
        {"type": "redacted_thinking", "data": "EnC+x"},
        {"type": "text", "text": "Calling."},
        {"type": "thinking", "thinking": "", "signature": "sig/B=="},
        {"type": "tool_use", "id": "t1", "name": "f", "input": {}},
    ]}


def test_thinking_without_its_signature_is_refused() -> None:
    p = params(user("q"), pb.Message(role=pb.ROLE_ASSISTANT, parts=[reasoning(text="from another provider")]))
    assert refused(p).field == "parameters.messages[1].parts[0].reasoning.signature"


@pytest.mark.parametrize(("message", "field"), [
    (pb.Message(role=pb.ROLE_ASSISTANT, parts=[text("a"), image(url="https://x.test/i.png")]),
     "parameters.messages[1].parts[1].image"),
    (pb.Message(role=pb.ROLE_ASSISTANT, parts=[document(url="https://x.test/d.pdf")]),
     "parameters.messages[1].parts[0].document"),
    (pb.Message(role=pb.ROLE_USER, parts=[reasoning(text="t", signature="s")]),
     "parameters.messages[1].parts[0].reasoning"),
    (pb.Message(role=pb.ROLE_SYSTEM, parts=[image(url="https://x.test/i.png")]),
     "parameters.messages[1].parts[0].image"),
    (pb.Message(role=pb.ROLE_TOOL, tool_call_id="t", parts=[reasoning(redacted="r")]),
     "parameters.messages[1].parts[0].reasoning"),
    (pb.Message(role=pb.ROLE_USER, parts=[pb.ContentPart()]), "parameters.messages[1].parts[0]"),
])
def test_a_part_the_role_cannot_take_is_refused_naming_it(message: pb.Message, field: str) -> None:
    assert refused(params(user("q"), message)).field == field


def test_tool_results_with_parts_carry_text_image_and_document_blocks() -> None:
    b = body(params(
        user("q"),
        pb.Message(role=pb.ROLE_ASSISTANT, tool_calls=[pb.ToolCall(id="a", name="f"), pb.ToolCall(id="b", name="f")]),
        pb.Message(role=pb.ROLE_TOOL, tool_call_id="a", content="ignored", parts=[
            text("chart:"), image(url="https://x.test/c.png"), document(data=PDF, media_type="application/pdf")]),
        pb.Message(role=pb.ROLE_TOOL, tool_call_id="b", content="plain"),
    ))
    assert b["messages"][2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "a", "content": [
            {"type": "text", "text": "chart:"},
            {"type": "image", "source": {"type": "url", "url": "https://x.test/c.png"}},
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                            "data": base64.b64encode(PDF).decode()}}]},
        {"type": "tool_result", "tool_use_id": "b", "content": "plain"},
    ]}


def test_system_text_parts_join_like_system_messages() -> None:
    b = body(params(pb.Message(role=pb.ROLE_SYSTEM, parts=[text("You are X."), text("Be brief.")]),
                    pb.Message(role=pb.ROLE_SYSTEM, content="Answer in French."), user("q")))
    assert b["system"] == "You are X.\n\nBe brief.\n\nAnswer in French."


# ---- reasoning ---------------------------------------------------------------------------------------------

E = pb.ReasoningEffort


def test_a_budget_is_enabled_thinking_and_max_tokens_makes_room_for_the_answer() -> None:
    b = body(params(reasoning=pb.ReasoningConfig(budget_tokens=3000)))
    assert b["thinking"] == {"type": "enabled", "budget_tokens": 3000}
    assert b["max_tokens"] == 3000 + 1024
    b = body(params(reasoning=pb.ReasoningConfig(budget_tokens=3000), max_tokens=8000))
    assert (b["thinking"]["budget_tokens"], b["max_tokens"]) == (3000, 8000)


@pytest.mark.parametrize(("config", "max_tokens", "field"), [
    (pb.ReasoningConfig(budget_tokens=1023), None, "parameters.reasoning.budget_tokens"),
    (pb.ReasoningConfig(budget_tokens=0), None, "parameters.reasoning.budget_tokens"),
    (pb.ReasoningConfig(budget_tokens=2048), 2048, "parameters.reasoning.budget_tokens"),
    (pb.ReasoningConfig(effort=E.REASONING_EFFORT_NONE, budget_tokens=2048), None,
     "parameters.reasoning.budget_tokens"),
    (pb.ReasoningConfig(effort=E.REASONING_EFFORT_LOW), 1024, "parameters.max_tokens"),
])
def test_anthropics_thinking_limits_are_checked_before_any_call(
        config: pb.ReasoningConfig, max_tokens: int | None, field: str) -> None:
    p = params(reasoning=config)
    if max_tokens is not None:
        p.max_tokens = max_tokens
    assert refused(p).field == field


def test_effort_none_turns_thinking_off() -> None:
    b = body(params(reasoning=pb.ReasoningConfig(effort=E.REASONING_EFFORT_NONE)))
    assert b["thinking"] == {"type": "disabled"} and b["max_tokens"] == 1024 and "output_config" not in b


@pytest.mark.parametrize(("effort", "budget"), [
    (E.REASONING_EFFORT_MINIMAL, 1024), (E.REASONING_EFFORT_LOW, 1024), (E.REASONING_EFFORT_MEDIUM, 2048),
    (E.REASONING_EFFORT_HIGH, 4096)])
@pytest.mark.parametrize("model", ["claude-sonnet-4-5", "claude-3-7-sonnet-20250219", "claude-opus-4-5-20251101",
                                   "deepseek-chat"])
def test_effort_on_a_budget_model_is_the_levels_budget(effort: pb.ReasoningEffort, budget: int, model: str) -> None:
    b = body(params(reasoning=pb.ReasoningConfig(effort=effort)), model)
    assert b["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert b["max_tokens"] == budget + 1024 and "output_config" not in b


def test_an_effort_budget_is_cut_to_fit_below_the_callers_max_tokens() -> None:
    b = body(params(reasoning=pb.ReasoningConfig(effort=E.REASONING_EFFORT_HIGH), max_tokens=3000))
    assert (b["thinking"], b["max_tokens"]) == ({"type": "enabled", "budget_tokens": 2999}, 3000)


@pytest.mark.parametrize(("effort", "level", "budget"), [
    (E.REASONING_EFFORT_MINIMAL, "low", 1024), (E.REASONING_EFFORT_LOW, "low", 1024),
    (E.REASONING_EFFORT_MEDIUM, "medium", 2048), (E.REASONING_EFFORT_HIGH, "high", 4096)])
@pytest.mark.parametrize("model", ["claude-opus-4-6", "claude-sonnet-4-6", "claude-opus-4-7", "claude-sonnet-5",
                                   "claude-fable-5-1", "anthropic.claude-opus-4-6-v1"])
def test_effort_on_an_adaptive_model_is_anthropics_own_effort(effort: pb.ReasoningEffort, level: str, budget: int,
                                                              model: str) -> None:
    b = body(params(reasoning=pb.ReasoningConfig(effort=effort)), model)
    assert b["thinking"] == {"type": "adaptive"} and b["output_config"] == {"effort": level}
    assert b["max_tokens"] == budget + 1024


def test_effort_and_budget_on_an_adaptive_model_send_both() -> None:
    b = body(params(reasoning=pb.ReasoningConfig(effort=E.REASONING_EFFORT_MEDIUM, budget_tokens=5000)),
             "claude-opus-4-6")
    assert b["thinking"] == {"type": "enabled", "budget_tokens": 5000} and b["output_config"] == {"effort": "medium"}
    # Where effort has no control of its own, the caller's budget is the whole of it.
    b = body(params(reasoning=pb.ReasoningConfig(effort=E.REASONING_EFFORT_MEDIUM, budget_tokens=5000)))
    assert b["thinking"] == {"type": "enabled", "budget_tokens": 5000} and "output_config" not in b


@pytest.mark.parametrize(("model", "version"), [
    ("claude-opus-4-6", (4, 6)), ("claude-sonnet-4-5-20250929", (4, 5)), ("claude-sonnet-4-20250514", (4, 0)),
    ("claude-3-7-sonnet-20250219", (3, 7)), ("claude-3-haiku-20240307", (3, 0)), ("claude-opus-5", (5, 0)),
    ("claude-fable-5-1", (5, 1)), ("claude-opus-4-6@20260101", (4, 6)), ("anthropic.claude-opus-4-6-v1", (4, 6)),
    ("us.anthropic.claude-3-5-sonnet-20240620-v1:0", (3, 5)), ("claude-opus-4.7", (4, 7)),
    ("glm-4.6", None), ("deepseek-chat", None), ("claude-latest", None)])
def test_claude_version(model: str, version: tuple[int, int] | None) -> None:
    assert claude_version(model) == version


THINKING = pb.ReasoningConfig(budget_tokens=2048)


@pytest.mark.parametrize(("kw", "field"), [
    ({"temperature": 0.7}, "parameters.temperature"),
    ({"top_p": 0.9}, "parameters.top_p"),
    ({"tool_choice": pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_REQUIRED)}, "parameters.tool_choice"),
    ({"tool_choice": pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_TOOL, name="f")}, "parameters.tool_choice"),
    ({"provider_options_json": '{"top_k": 5}'}, OPTIONS),
    ({"provider_options_json": '{"temperature": 0.2}'}, OPTIONS),
    ({"provider_options_json": '{"tool_choice": {"type": "any"}}'}, OPTIONS),
])
@pytest.mark.parametrize("config", [THINKING, pb.ReasoningConfig(effort=E.REASONING_EFFORT_LOW)])
def test_what_thinking_is_not_compatible_with_is_refused_naming_where_it_came_from(
        kw: dict[str, Any], field: str, config: pb.ReasoningConfig) -> None:
    p = params(reasoning=config, tools=[pb.Tool(name="f")], **kw)
    assert refused(p, "claude-opus-4-6").field == field
    assert refused(p, "claude-sonnet-4-5").field == field


def test_what_thinking_allows_passes() -> None:
    b = body(params(reasoning=THINKING, top_p=0.95, tools=[pb.Tool(name="f")],
                    tool_choice=pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_AUTO)))
    assert (b["top_p"], b["tool_choice"]) == (0.95, {"type": "auto"})
    # Thinking off: temperature and forced tools are the caller's to set.
    b = body(params(reasoning=pb.ReasoningConfig(effort=E.REASONING_EFFORT_NONE), temperature=0.7,
                    tools=[pb.Tool(name="f")], tool_choice=pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_REQUIRED)))
    assert (b["temperature"], b["tool_choice"]) == (0.7, {"type": "any"})


def test_thinking_set_through_provider_options_is_checked_too() -> None:
    p = params(temperature=0.5, provider_options_json='{"thinking": {"type": "enabled", "budget_tokens": 2048}}')
    assert refused(p).field == "parameters.temperature"


# ---- structured outputs, tool choice, sampling, options ----------------------------------------------------

def test_response_format_is_output_config_format_beside_the_effort() -> None:
    fmt = pb.ResponseFormat(name="answer", description="d", strict=True,
                            schema_json='{"type":"object","properties":{"a":{"type":"string"}}}')
    b = body(params(response_format=fmt))
    assert b["output_config"] == {"format": {"type": "json_schema", "schema": {
        "type": "object", "properties": {"a": {"type": "string"}}}}}
    b = body(params(response_format=fmt, reasoning=pb.ReasoningConfig(effort=E.REASONING_EFFORT_LOW)),
             "claude-opus-4-6")
    assert b["output_config"]["effort"] == "low" and b["output_config"]["format"]["type"] == "json_schema"
    bad = params(response_format=pb.ResponseFormat(name="a", schema_json="[1]"))
    assert refused(bad).field == "parameters.response_format.schema_json"


TOOLS = [pb.Tool(name="f"), pb.Tool(name="g")]


@pytest.mark.parametrize(("choice", "parallel", "expected"), [
    (pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_AUTO), None, {"type": "auto"}),
    (pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_NONE), None, {"type": "none"}),
    (pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_REQUIRED), None, {"type": "any"}),
    (pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_TOOL, name="g"), None, {"type": "tool", "name": "g"}),
    (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    (pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_REQUIRED), False, {"type": "any", "disable_parallel_tool_use": True}),
    (pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_TOOL, name="f"), False,
     {"type": "tool", "name": "f", "disable_parallel_tool_use": True}),
    (pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_NONE), False, {"type": "none"}),  # ToolChoiceNone has no such field
    (None, True, None),  # parallel use is Anthropic's default
])
def test_tool_choice_and_parallel_tool_calls(choice: pb.ToolChoice | None, parallel: bool | None,
                                             expected: dict[str, Any] | None) -> None:
    p = params(tools=TOOLS)
    if choice is not None:
        p.tool_choice.CopyFrom(choice)
    if parallel is not None:
        p.parallel_tool_calls = parallel
    assert body(p).get("tool_choice") == expected
    p.ClearField("tools")  # without tools neither can change the answer, and the API wants tools with a choice
    assert "tool_choice" not in body(p)


def test_top_p_maps_and_what_anthropic_has_no_field_for_is_refused() -> None:
    assert body(params(top_p=0.3))["top_p"] == 0.3
    for name in ("seed", "presence_penalty", "frequency_penalty"):
        err = refused(params(**{name: 1}))
        assert err.field == f"parameters.{name}" and "anthropic" in str(err)


def test_provider_options_merge_last_deeply_and_never_override() -> None:
    b = body(params(reasoning=pb.ReasoningConfig(effort=E.REASONING_EFFORT_HIGH),
                    provider_options_json='{"metadata": {"user_id": "u1"}, "thinking": {"display": "summarized"},'
                                          ' "output_config": {"format": {"type": "json_schema", "schema": {}}}}'),
             "claude-opus-4-7")
    assert b["metadata"] == {"user_id": "u1"}
    assert b["thinking"] == {"type": "adaptive", "display": "summarized"}
    assert b["output_config"] == {"effort": "high", "format": {"type": "json_schema", "schema": {}}}
    for clash in ('{"max_tokens": 5}', '{"thinking": {"type": "disabled"}}', '{"model": "other"}',
                  '{"x-api-key": "k"}'):
        p = params(reasoning=pb.ReasoningConfig(budget_tokens=2048), provider_options_json=clash)
        assert refused(p).field == OPTIONS


# ---- response: citations and fallbacks ---------------------------------------------------------------------

def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e, ensure_ascii=False)}\n\n".encode() for e in events)


def decode(body: bytes, rng: random.Random | None = None) -> list[pb.StreamChatResponse]:
    """The stream fed whole, or in pieces of random sizes (splits inside events and inside UTF-8 characters)."""
    dec = adapter_for("anthropic").stream_decoder()
    out: list[pb.StreamChatResponse] = []
    i = 0
    while i < len(body):
        n = len(body) if rng is None else rng.randint(1, 40)
        out += dec.feed(body[i:i + n])
        i += n
    return out + dec.close()


def each_split(body: bytes) -> list[pb.ChatResponse]:
    """The folded answer, whole and at twenty random sets of split points."""
    return [to_chat_response(decode(body, None if seed < 0 else random.Random(seed))) for seed in range(-1, 20)]


CITE_A = {"type": "char_location", "cited_text": "Paris is the capital", "document_index": 0,
          "document_title": "Ré", "start_char_index": 0, "end_char_index": 20}
CITE_B = {"type": "web_search_result_location", "cited_text": "…", "url": "https://x.test", "title": "X",
          "encrypted_index": "Eo8B=="}
START = {"type": "message_start", "message": {"model": "claude-sonnet-4-5", "content": [],
                                              "usage": {"input_tokens": 3, "output_tokens": 1}}}
STOP: list[dict[str, Any]] = [
    {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}},
    {"type": "message_stop"}]


def test_citations_one_per_delta_as_sent_at_every_split() -> None:
    body = sse(START,
               {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": "",
                                                                            "citations": []}},
               {"type": "content_block_delta", "index": 0, "delta": {"type": "citations_delta", "citation": CITE_A}},
               {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Paris."}},
               {"type": "content_block_delta", "index": 0, "delta": {"type": "citations_delta", "citation": CITE_B}},
               {"type": "content_block_delta", "index": 0, "delta": {"type": "citations_delta", "citation": None}},
               {"type": "content_block_stop", "index": 0}, *STOP)
    deltas = [cd.citations_json for r in decode(body) for cd in r.choices if cd.citations_json]
    assert [json.loads(c) for c in deltas] == [{"citation": CITE_A}, {"citation": CITE_B}]
    assert deltas[0] == json.dumps({"citation": CITE_A}, ensure_ascii=False, separators=(",", ":"))
    for got in each_split(body):
        assert got.choices[0].text == "Paris."
        assert list(got.choices[0].citations_json) == deltas


def test_unary_text_block_citations_fold_like_the_stream() -> None:
    an = adapter_for("anthropic").parse_response(json.dumps({
        "model": "claude-x", "stop_reason": "end_turn", "content": [
            {"type": "text", "text": "Paris.", "citations": [CITE_A, CITE_B]},
            {"type": "text", "text": " More.", "citations": None}],
        "usage": {"input_tokens": 1, "output_tokens": 2}}).encode())
    ch = an.choices[0]
    assert ch.text == "Paris. More."
    assert [json.loads(c) for c in ch.citations_json] == [{"citation": CITE_A}, {"citation": CITE_B}]


FALLBACK = {"type": "fallback", "from": {"model": "claude-fable-5"}, "to": {"model": "claude-opus-5"},
            "trigger": {"type": "refusal", "category": "cyber"}}


def test_a_fallback_block_is_a_response_of_its_own_with_the_new_model_at_every_split() -> None:
    body = sse({"type": "message_start", "message": {"model": "claude-fable-5", "content": [],
                                                     "usage": {"input_tokens": 3, "output_tokens": 0}}},
               {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
               {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "I can"}},
               {"type": "content_block_stop", "index": 0},
               {"type": "content_block_start", "index": 1, "content_block": FALLBACK},
               {"type": "content_block_stop", "index": 1},
               {"type": "content_block_start", "index": 2, "content_block": {"type": "text", "text": ""}},
               {"type": "content_block_delta", "index": 2, "delta": {"type": "text_delta", "text": "Here it is."}},
               {"type": "content_block_stop", "index": 2}, *STOP)
    responses = decode(body)
    hops = [r for r in responses if r.HasField("fallback")]
    assert len(hops) == 1 and not hops[0].choices
    assert hops[0].model == "claude-opus-5"
    assert (hops[0].fallback.from_model, hops[0].fallback.to_model) == ("claude-fable-5", "claude-opus-5")
    assert json.loads(hops[0].fallback.reason_json) == {"type": "refusal", "category": "cyber"}
    # What the earlier model said stays before the hop.
    texts = [cd.text for r in responses for cd in r.choices if cd.text]
    hop_at = responses.index(hops[0])
    assert [cd.text for r in responses[:hop_at] for cd in r.choices if cd.text] == ["I can"]
    assert texts == ["I can", "Here it is."]
    for got in each_split(body):
        assert (got.model, got.choices[0].text) == ("claude-opus-5", "I canHere it is.")
        assert list(got.fallbacks) == [hops[0].fallback]


def test_a_fallback_without_trigger_or_models_says_what_it_has() -> None:
    body = sse(START, {"type": "content_block_start", "index": 0,
                       "content_block": {"type": "fallback", "to": {"model": "claude-opus-5"}}}, *STOP)
    (hop,) = [r for r in decode(body) if r.HasField("fallback")]
    assert (hop.fallback.from_model, hop.fallback.to_model, hop.fallback.reason_json) == ("", "claude-opus-5", "")
    body = sse(START, {"type": "content_block_start", "index": 0, "content_block": {"type": "fallback"}}, *STOP)
    (hop,) = [r for r in decode(body) if r.HasField("fallback")]
    assert hop.model == "" and hop.fallback.to_model == ""
    assert to_chat_response(decode(body)).model == "claude-sonnet-4-5"


TURN = {"model": "claude-fable-5", "stop_reason": "end_turn", "content": [
    {"type": "thinking", "thinking": "hmm", "signature": "s1"},
    {"type": "text", "text": "No."},
    FALLBACK,
    {"type": "text", "text": "Yes", "citations": [CITE_A]},
    {**FALLBACK, "from": {"model": "claude-opus-5"}, "to": {"model": "claude-opus-4-8"}, "trigger": None},
    {"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}}],
    "usage": {"input_tokens": 4, "output_tokens": 5}}


def test_unary_fallbacks_in_order_and_the_model_that_answered_last() -> None:
    an = adapter_for("anthropic").parse_response(json.dumps(TURN).encode())
    assert [(f.from_model, f.to_model, f.reason_json) for f in an.fallbacks] == [
        ("claude-fable-5", "claude-opus-5", '{"type":"refusal","category":"cyber"}'),
        ("claude-opus-5", "claude-opus-4-8", "")]
    assert an.model == "claude-opus-4-8"
    ch = an.choices[0]
    assert (ch.text, ch.reasoning, list(ch.reasoning_signatures)) == ("No.Yes", "hmm", ["s1"])
    assert [json.loads(c) for c in ch.citations_json] == [{"citation": CITE_A}]
    assert [(c.id, c.arguments) for c in ch.tool_calls] == [("t", '{"a":1}')]
    assert ch.provider_finish_reason == "end_turn" and an.usage.output_tokens == 5


def test_a_whole_turn_in_message_start_splits_at_each_fallback_hop_in_the_stream() -> None:
    body = sse({"type": "message_start", "message": TURN}, {"type": "message_stop"})
    responses = decode(body)
    assert [(r.model, r.fallback.to_model, [cd.text for cd in r.choices if cd.text]) for r in responses] == [
        ("claude-fable-5", "", ["No."]), ("claude-opus-5", "claude-opus-5", ["Yes"]),
        ("claude-opus-4-8", "claude-opus-4-8", [])]
    assert responses[-1].choices[-1].provider_finish_reason == "end_turn"
    unary = adapter_for("anthropic").parse_response(json.dumps(TURN).encode())
    for got in each_split(body):
        assert list(got.fallbacks) == list(unary.fallbacks) and got.model == unary.model
        assert list(got.choices[0].citations_json) == list(unary.choices[0].citations_json)


def test_an_error_after_a_split_turn_keeps_every_response_before_it() -> None:
    body = sse({"type": "message_start", "message": TURN},
               {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    dec = adapter_for("anthropic").stream_decoder()
    with pytest.raises(AdapterError) as exc:
        dec.feed(body)
    assert [r.model for r in exc.value.partial] == ["claude-fable-5", "claude-opus-5", "claude-opus-4-8"]
    assert "Overloaded" in str(exc.value)
