"""The provider-independent checks of the v2 request fields (proxyservice.validation) and the provider-options
merge (proxyservice.adapters.options): each refusal names the field, and a well-formed request passes."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from byok.proxy.v1 import chat_service_pb2 as pb
from proxyservice.adapters import options
from proxyservice.adapters.base import RequestMappingError
from proxyservice.errors import InvalidArgument
from proxyservice.validation import validate_parameters

Edit = Callable[[pb.ChatParameters], object]  # what it returns is ignored


def params(edit: Edit | None = None) -> pb.ChatParameters:
    p = pb.ChatParameters(tenant=pb.Tenant(org_id="org1"), model="gpt-4o-mini", messages=[
        pb.Message(role=pb.ROLE_USER, parts=[pb.ContentPart(text="what is this?"),
                                             pb.ContentPart(image=pb.ImagePart(url="https://example.com/a.png"))])],
        tools=[pb.Tool(name="lookup")])
    if edit:
        edit(p)
    return p


def test_a_request_using_every_v2_field_passes() -> None:
    def edit(p: pb.ChatParameters) -> None:
        p.messages.add(role=pb.ROLE_ASSISTANT, parts=[
            pb.ContentPart(reasoning=pb.ReasoningPart(text="think", signature="c2ln")),
            pb.ContentPart(reasoning=pb.ReasoningPart(redacted="ZW5j")), pb.ContentPart(text="answer")])
        p.messages.add(role=pb.ROLE_USER, parts=[pb.ContentPart(document=pb.DocumentPart(
            data=b"%PDF-1.7", media_type="application/pdf", filename="a.pdf"))])
        p.reasoning.CopyFrom(pb.ReasoningConfig(effort=pb.REASONING_EFFORT_HIGH, budget_tokens=2048))
        p.response_format.CopyFrom(pb.ResponseFormat(name="answer_v1", schema_json='{"type":"object"}', strict=True))
        p.tool_choice.CopyFrom(pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_TOOL, name="lookup"))
        p.parallel_tool_calls, p.top_p, p.seed = False, 0.9, 7
        p.presence_penalty, p.frequency_penalty = -2, 2
        p.provider_options_json = '{"metadata": {"user_id": "u1"}}'
    validate_parameters(params(edit))


def _image(**kw: object) -> Edit:
    return lambda p: p.messages[0].parts[1].image.CopyFrom(pb.ImagePart(**kw))  # type: ignore[arg-type]


REFUSED: list[tuple[str, Edit, str]] = [
    ("empty part", lambda p: p.messages[0].parts.add(), "parameters.messages[0].parts[2]"),
    ("image with url and data", _image(url="https://e/a.png", data=b"x", media_type="image/png"),
     "parameters.messages[0].parts[1].image"),
    ("image with neither", _image(detail="low"), "parameters.messages[0].parts[1].image"),
    ("inline image without media type", _image(data=b"x"), "parameters.messages[0].parts[1].image.media_type"),
    ("odd media type", _image(data=b"x", media_type="png"), "parameters.messages[0].parts[1].image.media_type"),
    ("plain http url", _image(url="http://169.254.169.254/latest"), "parameters.messages[0].parts[1].image.url"),
    ("file url", _image(url="file:///etc/passwd"), "parameters.messages[0].parts[1].image.url"),
    ("data url not base64", _image(url="data:image/png,raw"), "parameters.messages[0].parts[1].image.url"),
    ("document with neither", lambda p: p.messages[0].parts.add(document=pb.DocumentPart(filename="a.pdf")),
     "parameters.messages[0].parts[2].document"),
    ("reasoning from the user", lambda p: p.messages[0].parts.add(reasoning=pb.ReasoningPart(text="x")),
     "parameters.messages[0].parts[2].reasoning"),
    ("empty reasoning", lambda p: p.messages.add(role=pb.ROLE_ASSISTANT, parts=[
        pb.ContentPart(reasoning=pb.ReasoningPart())]), "parameters.messages[1].parts[0].reasoning"),
    ("redacted reasoning with text", lambda p: p.messages.add(role=pb.ROLE_ASSISTANT, parts=[
        pb.ContentPart(reasoning=pb.ReasoningPart(redacted="x", text="y"))]),
     "parameters.messages[1].parts[0].reasoning"),
    ("unknown effort", lambda p: setattr(p.reasoning, "effort", 99), "parameters.reasoning.effort"),
    ("negative budget", lambda p: setattr(p.reasoning, "budget_tokens", -1), "parameters.reasoning.budget_tokens"),
    ("schema name", lambda p: p.response_format.CopyFrom(pb.ResponseFormat(name="a b", schema_json="{}")),
     "parameters.response_format.name"),
    ("schema not JSON", lambda p: p.response_format.CopyFrom(pb.ResponseFormat(name="a", schema_json="{")),
     "parameters.response_format.schema_json"),
    ("schema not an object", lambda p: p.response_format.CopyFrom(pb.ResponseFormat(name="a", schema_json="[]")),
     "parameters.response_format.schema_json"),
    ("tool choice of an unknown tool", lambda p: p.tool_choice.CopyFrom(
        pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_TOOL, name="other")), "parameters.tool_choice.name"),
    ("a name without TOOL mode", lambda p: p.tool_choice.CopyFrom(
        pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_AUTO, name="lookup")), "parameters.tool_choice.name"),
    ("required without tools", lambda p: p.CopyFrom(pb.ChatParameters(
        tenant=p.tenant, model="m", messages=p.messages, tool_choice=pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_REQUIRED))),
     "parameters.tool_choice"),
    ("unknown tool choice mode", lambda p: setattr(p.tool_choice, "mode", 42), "parameters.tool_choice.mode"),
    ("top_p over 1", lambda p: setattr(p, "top_p", 1.5), "parameters.top_p"),
    ("presence penalty", lambda p: setattr(p, "presence_penalty", 2.5), "parameters.presence_penalty"),
    ("frequency penalty", lambda p: setattr(p, "frequency_penalty", -3), "parameters.frequency_penalty"),
    ("options not JSON", lambda p: setattr(p, "provider_options_json", "{"), options.FIELD),
    ("options not an object", lambda p: setattr(p, "provider_options_json", "[1]"), options.FIELD),
]


@pytest.mark.parametrize(("edit", "field"), [(e, f) for _, e, f in REFUSED], ids=[n for n, _, _ in REFUSED])
def test_each_malformed_v2_field_is_refused_by_name(edit: Edit, field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_parameters(params(edit))
    assert info.value.field == field


@pytest.mark.parametrize("given", [
    {"model": "gpt-5"}, {"provider": {"order": ["azure"]}}, {"models": ["a", "b"]}, {"stream": False},
    {"base_url": "https://evil.example"}, {"api_key": "sk-live-0000000000000000"},
    {"metadata": {"X-Api-Key": "k"}}, {"extra_headers": {"Authorization": "Bearer x"}},
    {"deep": [{"x_goog_api_key": "AIza"}]},
])
def test_options_can_never_set_the_key_the_model_its_provider_or_a_url(given: dict[str, object]) -> None:
    with pytest.raises(RequestMappingError) as info:
        options.parse(json.dumps(given))
    assert info.value.field == options.FIELD
    assert "sk-live" not in str(info.value) and "AIza" not in str(info.value)  # the value is never repeated


def test_options_merge_deeply_and_refuse_to_override_the_schema() -> None:
    body = {"model": "gemini", "generationConfig": {"temperature": 0.2}}
    merged = options.merge(body, '{"generationConfig": {"candidateCount": 2}, "safetySettings": []}')
    assert merged == {"model": "gemini", "generationConfig": {"temperature": 0.2, "candidateCount": 2},
                      "safetySettings": []}
    with pytest.raises(RequestMappingError, match="'generationConfig.temperature' conflicts"):
        options.merge(merged, '{"generationConfig": {"temperature": 1.0}}')
    with pytest.raises(RequestMappingError, match="'safetySettings' conflicts"):
        options.merge(merged, '{"safetySettings": {"a": 1}}')
    assert options.merge({"a": 1}, "") == {"a": 1}
    with pytest.raises(RequestMappingError, match="at most"):
        options.parse(json.dumps({"pad": "x" * options.MAX_BYTES}))
