"""The Gemini adapter's schema v2: each request mapping and each refusal (naming the field), bodies unchanged when no
v2 field is set, and grounding/citation metadata and model changes decoded from streams cut anywhere."""

from __future__ import annotations

import base64
import json
import random
from typing import Any

import pytest

from byok.proxy.v1 import chat_service_pb2 as pb
from proxyservice.accumulate import accumulate_v2
from proxyservice.adapters import RequestMappingError, adapter_for

KEY = "AIza" + "SyTestOnlyNotARealKey0123456789abc"  # a fake shaped like a Gemini key
PNG = b"\x89PNG\r\n\x1a\n\x00\x01"
PDF = b"%PDF-1.7 tiny"
RE = pb.ReasoningEffort
TC = pb.ToolChoiceMode


def conversation(**kw: Any) -> pb.ChatParameters:
    return pb.ChatParameters(model="m", messages=[
        pb.Message(role=pb.ROLE_SYSTEM, content="be brief"),
        pb.Message(role=pb.ROLE_SYSTEM, content="be kind"),
        pb.Message(role=pb.ROLE_USER, content="weather in Paris and Rome?"),
        pb.Message(role=pb.ROLE_ASSISTANT, content="Checking.", tool_calls=[
            pb.ToolCall(id="c1", name="weather", arguments='{"city":"Paris"}'),
            pb.ToolCall(id="c2", name="weather", arguments='{"city":"Rome"}')]),
        pb.Message(role=pb.ROLE_TOOL, tool_call_id="c1", content='{"t": 20}'),
        pb.Message(role=pb.ROLE_TOOL, tool_call_id="c2", name="weather", content="sunny é"),
        pb.Message(role=pb.ROLE_USER, content=""),
    ], tools=[pb.Tool(name="weather", description="get weather",
                      parameters_json='{"type":"object","properties":{"city":{"type":"string"}}}'),
              pb.Tool(name="noargs")], **kw)


def build(params: pb.ChatParameters, model: str = "gemini-3-flash-preview") -> bytes:
    req = adapter_for("gemini").build_request(params, api_base="https://generativelanguage.googleapis.com/v1beta",
                                              api_key=KEY, model=model, stream=True)
    assert KEY.encode() not in req.body and KEY not in req.url
    return req.body


def body(params: pb.ChatParameters, model: str = "gemini-3-flash-preview") -> dict[str, Any]:
    return dict(json.loads(build(params, model)))


def refused(params: pb.ChatParameters, model: str = "gemini-3-flash-preview") -> RequestMappingError:
    with pytest.raises(RequestMappingError) as err:
        build(params, model)
    return err.value


def user(*parts: pb.ContentPart) -> pb.ChatParameters:
    return pb.ChatParameters(messages=[pb.Message(role=pb.ROLE_USER, parts=list(parts))])


def user_parts(params: pb.ChatParameters, model: str = "gemini-3-flash-preview") -> list[dict[str, Any]]:
    return list(body(params, model)["contents"][0]["parts"])


# ---- no v2 field: the body of before ----------------------------------------------------------------------------

# Bodies the adapter built before schema v2 (commit 572b03b), byte for byte.
V1_BODY = (
    b'{"contents":[{"role":"user","parts":[{"text":"weather in Paris and Rome?"}]},{"role":"model","parts":[{"text":'
    b'"Checking."},{"functionCall":{"name":"weather","args":{"city":"Paris"}}},{"functionCall":{"name":"weather",'
    b'"args":{"city":"Rome"}}}]},{"role":"user","parts":[{"functionResponse":{"name":"weather","response":{"t":20}}},'
    b'{"functionResponse":{"name":"weather","response":{"result":"sunny \xc3\xa9"}}},{"text":""}]}],'
    b'"systemInstruction":{"parts":[{"text":"be brief\\n\\nbe kind"}]},"tools":[{"functionDeclarations":[{"name":'
    b'"weather","description":"get weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}},'
    b'{"name":"noargs","description":"","parameters":{"type":"object","properties":{}}}]}]'
)


@pytest.mark.parametrize("model", ["gemini-3-pro-preview", "gemini-2.5-flash", "gemini-2.0-flash", "tuned/x"])
def test_a_request_without_v2_fields_is_the_body_of_before(model: str) -> None:
    assert build(conversation(), model) == V1_BODY + b"}"
    sampled = conversation(temperature=0.25, max_tokens=64, stop=["END", "STOP"])
    assert build(sampled, model) == (V1_BODY + b',"generationConfig":{"temperature":0.25,"maxOutputTokens":64,'
                                     b'"stopSequences":["END","STOP"]}}')


def test_empty_v2_messages_and_true_parallel_calls_send_nothing() -> None:
    """A tool choice left UNSPECIFIED, parallel calls allowed (Gemini's behaviour) and empty provider options."""
    p = conversation(parallel_tool_calls=True, provider_options_json="")
    p.tool_choice.CopyFrom(pb.ToolChoice())
    assert build(p) == V1_BODY + b"}"


# ---- content parts ----------------------------------------------------------------------------------------------

def test_text_and_inline_image_and_document_parts() -> None:
    parts = user_parts(user(pb.ContentPart(text="what are these?"), pb.ContentPart(text=""),
                            pb.ContentPart(image=pb.ImagePart(data=PNG, media_type="image/png", detail="high")),
                            pb.ContentPart(document=pb.DocumentPart(data=PDF, media_type="application/pdf",
                                                                    filename="a.pdf"))))
    assert parts == [  # the empty text part carries nothing; detail and filename have no Gemini form
        {"text": "what are these?"},
        {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(PNG).decode()}},
        {"inlineData": {"mimeType": "application/pdf", "data": base64.b64encode(PDF).decode()}},
    ]


def test_parts_replace_the_content() -> None:
    p = user(pb.ContentPart(text="from parts"))
    p.messages[0].content = "ignored"
    assert user_parts(p) == [{"text": "from parts"}]


def test_data_urls_become_inline_data() -> None:
    b64 = base64.b64encode(PNG).decode()
    parts = user_parts(user(pb.ContentPart(image=pb.ImagePart(url=f"data:image/png;base64,{b64}")),
                            pb.ContentPart(document=pb.DocumentPart(url="data:;base64,JVBERg==",
                                                                    media_type="application/pdf"))))
    assert parts == [{"inlineData": {"mimeType": "image/png", "data": b64}},
                     {"inlineData": {"mimeType": "application/pdf", "data": "JVBERg=="}}]


def test_a_data_url_with_no_media_type_anywhere_is_refused() -> None:
    err = refused(user(pb.ContentPart(text="x"), pb.ContentPart(image=pb.ImagePart(url="data:;base64,AAAA"))))
    assert err.field == "parameters.messages[0].parts[1].image.url"


@pytest.mark.parametrize("url", [
    "https://generativelanguage.googleapis.com/v1beta/files/abc123",  # a Files API URI
    "https://www.youtube.com/watch?v=9hE5-98ZeCg",
    "https://example.com/report.pdf",  # an external URL: fetched by the API itself (2.5 and later)
])
def test_https_urls_become_file_data(url: str) -> None:
    doc = pb.ContentPart(document=pb.DocumentPart(url=url, media_type="application/pdf"))
    assert user_parts(user(doc)) == [{"fileData": {"mimeType": "application/pdf", "fileUri": url}}]
    bare = pb.ContentPart(image=pb.ImagePart(url=url))  # FileData.mimeType is optional: not invented
    assert user_parts(user(bare), "gemini-2.5-pro") == [{"fileData": {"fileUri": url}}]


def test_models_before_2_5_take_only_files_api_and_youtube_urls() -> None:
    ok = "https://youtu.be/9hE5-98ZeCg"
    assert user_parts(user(pb.ContentPart(image=pb.ImagePart(url=ok))), "gemini-2.0-flash") == [
        {"fileData": {"fileUri": ok}}]
    err = refused(user(pb.ContentPart(image=pb.ImagePart(url="https://example.com/a.png"))), "gemini-2.0-flash")
    assert err.field == "parameters.messages[0].parts[0].image.url"
    assert "gemini-2.0-flash" in str(err) and "not supported by gemini" in str(err)


def test_media_in_a_system_message_is_refused_text_parts_join() -> None:
    p = pb.ChatParameters(messages=[
        pb.Message(role=pb.ROLE_SYSTEM, parts=[pb.ContentPart(text="be "), pb.ContentPart(text="brief")]),
        pb.Message(role=pb.ROLE_USER, content="hi")])
    assert body(p)["systemInstruction"] == {"parts": [{"text": "be brief"}]}
    p.messages[0].parts.add(image=pb.ImagePart(data=PNG, media_type="image/png"))
    assert refused(p).field == "parameters.messages[0].parts[2].image"


# ---- reasoning handed back, tool-call signatures --------------------------------------------------------------

def assistant(*parts: pb.ContentPart, calls: tuple[pb.ToolCall, ...] = ()) -> pb.ChatParameters:
    return pb.ChatParameters(messages=[pb.Message(role=pb.ROLE_USER, content="go"),
                                       pb.Message(role=pb.ROLE_ASSISTANT, parts=list(parts), tool_calls=list(calls))])


def model_turn(params: pb.ChatParameters) -> list[dict[str, Any]]:
    contents = body(params)["contents"]
    assert contents[1]["role"] == "model"
    return list(contents[1]["parts"])


def test_reasoning_parts_go_back_as_thought_parts_with_their_signatures() -> None:
    got = model_turn(assistant(
        pb.ContentPart(reasoning=pb.ReasoningPart(text="Plan", signature="c2lnMQ==")),
        pb.ContentPart(reasoning=pb.ReasoningPart(text="unsigned summary")),
        pb.ContentPart(text="Answer"),
        pb.ContentPart(reasoning=pb.ReasoningPart(signature="c2lnMw==")),  # a signature alone, as Gemini sends one
    ))
    assert got == [{"text": "Plan", "thought": True, "thoughtSignature": "c2lnMQ=="},
                   {"text": "unsigned summary", "thought": True},
                   {"text": "Answer"},
                   {"text": "", "thoughtSignature": "c2lnMw=="}]


def test_redacted_reasoning_is_refused() -> None:
    err = refused(assistant(pb.ContentPart(text="a"), pb.ContentPart(reasoning=pb.ReasoningPart(redacted="EnC+x"))))
    assert err.field == "parameters.messages[1].parts[1].reasoning.redacted"
    assert "redacted reasoning" in str(err)


def test_a_tool_calls_signature_goes_back_on_its_function_call_part() -> None:
    got = model_turn(assistant(calls=(pb.ToolCall(id="c1", name="f", arguments='{"q":1}', signature="REVG"),
                                      pb.ToolCall(id="c2", name="g"))))
    assert got == [{"functionCall": {"name": "f", "args": {"q": 1}}, "thoughtSignature": "REVG"},
                   {"functionCall": {"name": "g", "args": {}}}]  # parallel calls: only the first carries one


def test_an_assistant_with_parts_and_calls_keeps_parts_then_calls() -> None:
    got = model_turn(assistant(pb.ContentPart(text="Let me look."), calls=(pb.ToolCall(id="c", name="f"),)))
    assert [next(iter(p)) for p in got] == ["text", "functionCall"]


# ---- tool results with parts ----------------------------------------------------------------------------------

def tool_result(*parts: pb.ContentPart) -> pb.ChatParameters:
    return pb.ChatParameters(messages=[
        pb.Message(role=pb.ROLE_USER, content="chart it"),
        pb.Message(role=pb.ROLE_ASSISTANT, tool_calls=[pb.ToolCall(id="c1", name="chart")]),
        pb.Message(role=pb.ROLE_TOOL, tool_call_id="c1", parts=list(parts))])


def function_response(params: pb.ChatParameters, model: str = "gemini-3-pro-preview") -> dict[str, Any]:
    return dict(body(params, model)["contents"][2]["parts"][0]["functionResponse"])


def test_tool_result_text_parts_are_the_response() -> None:
    got = function_response(tool_result(pb.ContentPart(text='{"ok": '), pb.ContentPart(text="true}")))
    assert got == {"name": "chart", "response": {"ok": True}}


def test_tool_result_media_goes_in_function_response_parts_on_gemini_3() -> None:
    b64 = base64.b64encode(PNG).decode()
    got = function_response(tool_result(
        pb.ContentPart(text="done"), pb.ContentPart(image=pb.ImagePart(data=PNG, media_type="image/png")),
        pb.ContentPart(document=pb.DocumentPart(url="data:application/pdf;base64,JVBERg=="))))
    assert got == {"name": "chart", "response": {"result": "done"}, "parts": [
        {"inlineData": {"mimeType": "image/png", "data": b64}},
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBERg=="}}]}


def test_tool_result_media_by_url_or_for_older_models_is_refused() -> None:
    by_url = tool_result(pb.ContentPart(image=pb.ImagePart(url="https://example.com/chart.png")))
    assert refused(by_url, "gemini-3-pro-preview").field == "parameters.messages[2].parts[0].image.url"
    inline = tool_result(pb.ContentPart(text="x"), pb.ContentPart(image=pb.ImagePart(data=PNG,
                                                                                      media_type="image/png")))
    err = refused(inline, "gemini-2.5-flash")
    assert err.field == "parameters.messages[2].parts[1].image" and "gemini-2.5-flash" in str(err)


# ---- reasoning controls -----------------------------------------------------------------------------------------

def reasoning(effort: int = 0, budget: int | None = None) -> pb.ChatParameters:
    p = pb.ChatParameters(messages=[pb.Message(role=pb.ROLE_USER, content="think")])
    p.reasoning.CopyFrom(pb.ReasoningConfig(effort=effort))  # type: ignore[arg-type]
    if budget is not None:
        p.reasoning.budget_tokens = budget
    return p


@pytest.mark.parametrize(("model", "effort", "budget", "thinking"), [
    # Gemini 3: effort → thinkingLevel, the levels each model documents.
    ("gemini-3-pro-preview", RE.REASONING_EFFORT_LOW, None, {"thinkingLevel": "low"}),
    ("gemini-3-pro-preview", RE.REASONING_EFFORT_HIGH, None, {"thinkingLevel": "high"}),
    ("gemini-3.1-pro-preview", RE.REASONING_EFFORT_MEDIUM, None, {"thinkingLevel": "medium"}),
    ("models/gemini-3-flash-preview", RE.REASONING_EFFORT_MINIMAL, None, {"thinkingLevel": "minimal"}),
    ("gemini-3-flash-preview", RE.REASONING_EFFORT_MEDIUM, None, {"thinkingLevel": "medium"}),
    ("gemini-3.1-flash-lite-preview", RE.REASONING_EFFORT_MINIMAL, None, {"thinkingLevel": "minimal"}),
    # A budget on Gemini 3 is still thinkingBudget (accepted for backwards compatibility).
    ("gemini-3-flash-preview", 0, 2048, {"thinkingBudget": 2048}),
    ("gemini-3-flash-preview", 0, 0, {"thinkingBudget": 0}),
    # Gemini 2.5: the budgets Gemini's OpenAI-compatibility guide gives the efforts, within each tier's limits.
    ("gemini-2.5-pro", RE.REASONING_EFFORT_LOW, None, {"thinkingBudget": 1024}),
    ("gemini-2.5-flash", RE.REASONING_EFFORT_MEDIUM, None, {"thinkingBudget": 8192}),
    ("gemini-2.5-flash-lite", RE.REASONING_EFFORT_HIGH, None, {"thinkingBudget": 24576}),
    ("gemini-2.5-flash", RE.REASONING_EFFORT_NONE, None, {"thinkingBudget": 0}),
    ("gemini-2.5-flash-lite-preview-09-2025", RE.REASONING_EFFORT_NONE, None, {"thinkingBudget": 0}),
    ("gemini-2.5-pro", 0, 128, {"thinkingBudget": 128}),
    ("gemini-2.5-pro", 0, 32768, {"thinkingBudget": 32768}),
    ("gemini-2.5-flash", 0, 24576, {"thinkingBudget": 24576}),
    ("gemini-2.5-flash-lite", 0, 512, {"thinkingBudget": 512}),
    ("gemini-2.5-flash-lite", 0, 0, {"thinkingBudget": 0}),
    # Reasoning set with neither: thoughts shown, the model's own default thinking.
    ("gemini-2.5-pro", 0, None, {}),
    # A name that does not say its generation: the current API's controls, for the provider to judge.
    ("gemini-flash-latest", RE.REASONING_EFFORT_LOW, None, {"thinkingLevel": "low"}),
    ("gemini-flash-latest", RE.REASONING_EFFORT_NONE, None, {"thinkingBudget": 0}),
    ("gemini-flash-latest", 0, 99999, {"thinkingBudget": 99999}),
])
def test_reasoning_maps_to_the_models_thinking_config(model: str, effort: int, budget: int | None,
                                                      thinking: dict[str, Any]) -> None:
    assert body(reasoning(effort, budget), model)["generationConfig"] == {
        "thinkingConfig": {"includeThoughts": True, **thinking}}


@pytest.mark.parametrize(("model", "effort", "budget", "field"), [
    ("gemini-3-pro-preview", RE.REASONING_EFFORT_MINIMAL, None, "parameters.reasoning.effort"),  # low, high only
    ("gemini-3-pro-preview", RE.REASONING_EFFORT_MEDIUM, None, "parameters.reasoning.effort"),
    ("gemini-3.1-pro-preview", RE.REASONING_EFFORT_MINIMAL, None, "parameters.reasoning.effort"),
    ("gemini-3-flash-preview", RE.REASONING_EFFORT_NONE, None, "parameters.reasoning.effort"),  # always thinks
    ("gemini-3-pro-preview", 0, 0, "parameters.reasoning.budget_tokens"),
    ("gemini-3-flash-preview", RE.REASONING_EFFORT_LOW, 1024, "parameters.reasoning"),  # level and budget: a 400
    ("gemini-2.5-flash", RE.REASONING_EFFORT_LOW, 1024, "parameters.reasoning"),
    ("gemini-2.5-pro", RE.REASONING_EFFORT_NONE, None, "parameters.reasoning.effort"),  # cannot turn thinking off
    ("gemini-2.5-flash", RE.REASONING_EFFORT_MINIMAL, None, "parameters.reasoning.effort"),  # no documented budget
    ("gemini-2.5-pro", 0, 0, "parameters.reasoning.budget_tokens"),
    ("gemini-2.5-pro", 0, 127, "parameters.reasoning.budget_tokens"),
    ("gemini-2.5-pro", 0, 32769, "parameters.reasoning.budget_tokens"),
    ("gemini-2.5-flash", 0, 24577, "parameters.reasoning.budget_tokens"),
    ("gemini-2.5-flash-lite", 0, 511, "parameters.reasoning.budget_tokens"),
    ("gemini-2.0-flash", RE.REASONING_EFFORT_HIGH, None, "parameters.reasoning"),  # no thinking before 2.5
    ("gemini-1.5-pro", 0, None, "parameters.reasoning"),
])
def test_reasoning_the_model_cannot_take_is_refused(model: str, effort: int, budget: int | None, field: str) -> None:
    err = refused(reasoning(effort, budget), model)
    assert err.field == field
    assert model.removeprefix("models/") in str(err) or field == "parameters.reasoning"


def test_budget_refusals_say_the_tiers_limits() -> None:
    assert "128 to 32768 (thinking cannot be turned off)" in str(refused(reasoning(budget=5), "gemini-2.5-pro"))
    assert "0 to 24576" in str(refused(reasoning(budget=30000), "gemini-2.5-flash"))
    assert "0 (off), or 512 to 24576" in str(refused(reasoning(budget=100), "gemini-2.5-flash-lite"))


# ---- structured output, tool choice, sampling -----------------------------------------------------------------

def test_response_format_is_json_mode_with_the_json_schema() -> None:
    schema = {"type": "object", "properties": {"a": {"type": ["string", "null"]}}, "additionalProperties": False}
    p = pb.ChatParameters(messages=[pb.Message(role=pb.ROLE_USER, content="json")])
    p.response_format.CopyFrom(pb.ResponseFormat(name="answer", schema_json=json.dumps(schema), strict=True))
    config = body(p)["generationConfig"]
    assert config == {"responseMimeType": "application/json", "responseJsonSchema": schema}
    p.response_format.strict = False  # no Gemini switch: the same request either way
    assert body(p)["generationConfig"] == config


def test_response_format_description_becomes_the_schemas_unless_it_has_one() -> None:
    p = pb.ChatParameters(messages=[pb.Message(role=pb.ROLE_USER, content="json")])
    p.response_format.CopyFrom(pb.ResponseFormat(name="a", description="the answer", schema_json='{"type":"object"}'))
    assert body(p)["generationConfig"]["responseJsonSchema"] == {"type": "object", "description": "the answer"}
    p.response_format.schema_json = '{"type":"object","description":"its own"}'
    assert body(p)["generationConfig"]["responseJsonSchema"]["description"] == "its own"


@pytest.mark.parametrize(("mode", "name", "calling"), [
    (TC.TOOL_CHOICE_MODE_AUTO, "", {"mode": "AUTO"}),
    (TC.TOOL_CHOICE_MODE_NONE, "", {"mode": "NONE"}),
    (TC.TOOL_CHOICE_MODE_REQUIRED, "", {"mode": "ANY"}),
    (TC.TOOL_CHOICE_MODE_TOOL, "weather", {"mode": "ANY", "allowedFunctionNames": ["weather"]}),
])
def test_tool_choice_is_the_function_calling_config(mode: int, name: str, calling: dict[str, Any]) -> None:
    p = conversation()
    p.tool_choice.CopyFrom(pb.ToolChoice(mode=mode, name=name))  # type: ignore[arg-type]
    got = body(p)
    assert got["toolConfig"] == {"functionCallingConfig": calling}
    assert list(got) == ["contents", "systemInstruction", "tools", "toolConfig"]


def test_parallel_tool_calls_off_is_refused() -> None:
    err = refused(conversation(parallel_tool_calls=False))
    assert err.field == "parameters.parallel_tool_calls" and "not supported by gemini" in str(err)


def test_tool_controls_without_tools_are_left_out() -> None:
    """Neither can change an answer that cannot call tools: not sent, and no refusal."""
    p = pb.ChatParameters(messages=[pb.Message(role=pb.ROLE_USER, content="hi")], parallel_tool_calls=False)
    p.tool_choice.CopyFrom(pb.ToolChoice(mode=TC.TOOL_CHOICE_MODE_NONE))
    assert body(p) == {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}


def test_sampling_controls_follow_v1s_in_generation_config() -> None:
    p = conversation(temperature=0.5, top_p=0.9, seed=7, presence_penalty=-1.5, frequency_penalty=2.0)
    assert body(p)["generationConfig"] == {"temperature": 0.5, "topP": 0.9, "seed": 7, "presencePenalty": -1.5,
                                           "frequencyPenalty": 2.0}
    zero = body(conversation(seed=0, top_p=0.0))["generationConfig"]  # set to 0 is set: sent
    assert zero == {"topP": 0.0, "seed": 0}


# ---- provider options -----------------------------------------------------------------------------------------

def test_provider_options_merge_deeply_last() -> None:
    opts = {"safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
            "generationConfig": {"topK": 40, "thinkingConfig": {"thinkingBudget": 0}}}
    p = reasoning()
    p.top_p = 0.5
    p.provider_options_json = json.dumps(opts)
    got = body(p, "gemini-2.5-flash")
    assert got["safetySettings"] == opts["safetySettings"]
    assert got["generationConfig"] == {"topP": 0.5, "topK": 40,
                                       "thinkingConfig": {"includeThoughts": True, "thinkingBudget": 0}}


def test_provider_options_cannot_override_what_the_schema_set() -> None:
    p = conversation(top_p=0.5, provider_options_json='{"generationConfig": {"topP": 1}}')
    err = refused(p)
    assert err.field == "parameters.provider_options_json" and "generationConfig.topP" in str(err)
    key = refused(conversation(provider_options_json='{"x-goog-api-key": "k"}'))
    assert key.field == "parameters.provider_options_json"


# ---- response side: grounding and citations, model changes --------------------------------------------------

GROUNDING = {
    "webSearchQueries": ["who won euro 2024"],
    "searchEntryPoint": {"renderedContent": "<style>…</style><div>…</div>"},
    "groundingChunks": [{"web": {"uri": "https://vertexaisearch.cloud.google.com/grounding-api-redirect/x",
                                 "title": "uefa.com"}}],
    "groundingSupports": [{"segment": {"startIndex": 0, "endIndex": 30, "text": "Spain won Euro 2024, beating"},
                           "groundingChunkIndices": [0], "confidenceScores": [0.97]}],
}
CITATION = {"citationSources": [{"startIndex": 4, "endIndex": 40, "uri": "https://example.com/é", "license": ""}]}


def sse(*events: dict[str, Any]) -> bytes:
    return "".join(f"data: {json.dumps(e, ensure_ascii=False)}\r\n\r\n" for e in events).encode()


GROUNDED_STREAM = sse(
    {"candidates": [{"content": {"role": "model", "parts": [{"text": "Spain won Euro 2024, "}]}, "index": 0}],
     "modelVersion": "gemini-2.5-flash"},
    {"candidates": [{"content": {"role": "model", "parts": [{"text": "beating England 2–1."}]}, "index": 0,
                     "citationMetadata": CITATION}], "modelVersion": "gemini-2.5-flash"},
    {"candidates": [{"content": {"role": "model", "parts": [{"text": ""}]}, "finishReason": "STOP", "index": 0,
                     "groundingMetadata": GROUNDING}],
     "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 12, "toolUsePromptTokenCount": 40},
     "modelVersion": "gemini-2.5-flash-002"},
)


def decode(body_bytes: bytes, cuts: list[int]) -> list[pb.StreamChatResponse]:
    dec = adapter_for("gemini").stream_decoder()
    out: list[pb.StreamChatResponse] = []
    last = 0
    for c in sorted(set(cuts)):
        out += dec.feed(body_bytes[last:c])
        last = c
    out += dec.feed(body_bytes[last:]) + dec.close()
    assert dec.complete
    return out


@pytest.mark.parametrize("seed", range(12))
def test_grounding_and_citations_at_any_split(seed: int) -> None:
    rng = random.Random(seed)
    cuts = [rng.randrange(len(GROUNDED_STREAM) + 1) for _ in range(rng.randint(1, 60))]
    if seed == 0:
        cuts = list(range(len(GROUNDED_STREAM)))  # every byte its own read
    got = accumulate_v2(decode(GROUNDED_STREAM, cuts), "gemini")
    choice = got["choices"][0]
    assert choice["text"] == "Spain won Euro 2024, beating England 2–1."
    assert choice["citations"] == [{"citationMetadata": CITATION}, {"groundingMetadata": GROUNDING}]
    assert choice["finish_reason"] == "STOP" and got["model"] == "gemini-2.5-flash-002"


def test_citations_are_compact_json_of_the_candidates_keys_as_sent() -> None:
    """Grounding first, then citations, whichever order the candidate had them in; nothing else of it."""
    event = {"candidates": [{"index": 0, "content": {"parts": [{"text": "x"}]}, "citationMetadata": CITATION,
                             "groundingMetadata": GROUNDING, "safetyRatings": [], "finishReason": "STOP"}]}
    deltas = [cd for r in decode(sse(event), []) for cd in r.choices]
    cited = [cd.citations_json for cd in deltas if cd.citations_json]
    assert cited == [json.dumps({"groundingMetadata": GROUNDING, "citationMetadata": CITATION},
                                ensure_ascii=False, separators=(",", ":"))]


def test_each_candidate_keeps_its_own_citations() -> None:
    event = {"candidates": [{"index": 0, "content": {"parts": [{"text": "a"}]}, "finishReason": "STOP"},
                            {"index": 1, "content": {"parts": [{"text": "b"}]}, "finishReason": "STOP",
                             "citationMetadata": CITATION}]}
    got = accumulate_v2(decode(sse(event), []), "gemini")
    assert [c["citations"] for c in got["choices"]] == [[], [{"citationMetadata": CITATION}]]


def test_unary_answers_carry_citations_per_choice() -> None:
    answer = {"candidates": [{"index": 0, "content": {"role": "model", "parts": [{"text": "Spain."}]},
                              "finishReason": "STOP", "groundingMetadata": GROUNDING}],
              "modelVersion": "gemini-2.5-pro"}
    gm = adapter_for("gemini").parse_response(json.dumps(answer).encode())
    assert [json.loads(c) for c in gm.choices[0].citations_json] == [{"groundingMetadata": GROUNDING}]
    plain = adapter_for("gemini").parse_response(json.dumps(
        {"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": "STOP"}]}).encode())
    assert list(plain.choices[0].citations_json) == []


def test_a_change_of_model_version_mid_stream_is_sent_again() -> None:
    responses = decode(GROUNDED_STREAM, [])
    assert [r.model for r in responses if r.model] == ["gemini-2.5-flash", "gemini-2.5-flash-002"]
