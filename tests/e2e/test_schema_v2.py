"""The unified schema v2 end to end: real keyservice on OpenBao, real mTLS gRPC, the local upstream checking each
provider's request rules (content parts, signed thinking handed back, Gemini 3 call signatures, structured
outputs, strict bodies) and answering with thinking, citations, fallbacks and model changes. Each test asserts
what reached the provider and what came back through StreamChat or Chat."""

from __future__ import annotations

import json
import secrets
from typing import Any

import grpc
import pytest

from byok.proxy.v1 import chat_service_pb2 as pb
from proxyservice.accumulate import accumulate_v2, to_chat_response
from tests.e2e.conftest import System

KEYS = {
    "openai": lambda: "sk-proj-" + secrets.token_hex(20),
    "anthropic": lambda: "sk-ant-api03-" + secrets.token_hex(20),
    "gemini": lambda: "AIza" + secrets.token_hex(18)[:35],
}
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-4-5", "gemini": "gemini-2.5-flash"}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + b"0" * 32
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
          "required": ["city", "population"], "additionalProperties": False}
LOOKUP = pb.Tool(name="lookup", description="find a fact",
                 parameters_json=json.dumps({"type": "object", "properties": {"q": {"type": "string"}}}))


async def tenant(system: System, provider: str, org: str = "acme") -> None:
    key = KEYS[provider]()
    system.upstream.config.keys = {provider: {key}}
    await system.add_key(org, provider, key)
    await system.bind(org)


def request(provider: str, *messages: pb.Message, model: str = "", **kw: Any) -> pb.ChatParameters:
    """A request of the tenant "acme"; a model steering the stand-in (`name?k=v`) names its provider, as such a
    name routes nowhere."""
    model = model or MODELS[provider]
    return pb.ChatParameters(tenant=pb.Tenant(org_id="acme"), model=model, provider=provider if "?" in model else "",
                             messages=list(messages), **kw)


def user(*parts: pb.ContentPart) -> pb.Message:
    return pb.Message(role=pb.ROLE_USER, parts=list(parts))


async def stream(system: System, p: pb.ChatParameters) -> list[pb.StreamChatResponse]:
    return [m async for m in system.chat.StreamChat(pb.StreamChatRequest(parameters=p))]


def folded(messages: list[pb.StreamChatResponse], provider: str) -> dict[str, Any]:
    return accumulate_v2([m for m in messages if not m.HasField("start")], provider)


@pytest.mark.parametrize("provider", sorted(MODELS))
async def test_an_image_and_a_pdf_reach_each_provider_in_its_own_form(system: System, provider: str) -> None:
    await tenant(system, provider)
    p = request(provider, user(pb.ContentPart(text="what are these?"),
                               pb.ContentPart(image=pb.ImagePart(data=PNG, media_type="image/png")),
                               pb.ContentPart(document=pb.DocumentPart(data=PDF, media_type="application/pdf",
                                                                       filename="report.pdf"))))
    got = folded(await stream(system, p), provider)
    assert got["choices"][0]["text"].startswith("[saw 1 image, 1 document]")  # the stand-in counted both
    sent = system.upstream.requests[-1].json
    if provider == "openai":
        kinds = [part["type"] for part in sent["messages"][0]["content"]]
        assert kinds == ["text", "image_url", "file"]
        assert sent["messages"][0]["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")
    elif provider == "anthropic":
        blocks = sent["messages"][0]["content"]
        assert [b["type"] for b in blocks] == ["text", "image", "document"]
        assert blocks[2]["source"]["media_type"] == "application/pdf" and blocks[2]["title"] == "report.pdf"
    else:
        parts = sent["contents"][0]["parts"]
        assert [next(iter(part)) for part in parts] == ["text", "inlineData", "inlineData"]
        assert parts[2]["inlineData"]["mimeType"] == "application/pdf"


async def test_anthropic_thinking_streams_and_goes_back_signed_on_the_next_turn(system: System) -> None:
    await tenant(system, "anthropic")
    first = request("anthropic", user(pb.ContentPart(text="think first")),
                    reasoning=pb.ReasoningConfig(budget_tokens=2048), max_tokens=4096)
    turn = folded(await stream(system, first), "anthropic")["choices"][0]
    assert turn["reasoning"] and len(turn["reasoning_signatures"]) == 1
    assert system.upstream.requests[-1].json["thinking"] == {"type": "enabled", "budget_tokens": 2048}

    def follow_up(signature: str) -> pb.ChatParameters:
        assistant = pb.Message(role=pb.ROLE_ASSISTANT, parts=[
            pb.ContentPart(reasoning=pb.ReasoningPart(text=turn["reasoning"], signature=signature)),
            pb.ContentPart(text=turn["text"])])
        return request("anthropic", first.messages[0], assistant, user(pb.ContentPart(text="and then?")),
                       reasoning=pb.ReasoningConfig(budget_tokens=2048), max_tokens=4096)

    again = folded(await stream(system, follow_up(turn["reasoning_signatures"][0])), "anthropic")
    assert again["choices"][0]["text"]
    block = system.upstream.requests[-1].json["messages"][1]["content"][0]
    assert block == {"type": "thinking", "thinking": turn["reasoning"], "signature": turn["reasoning_signatures"][0]}
    with pytest.raises(grpc.aio.AioRpcError) as tampered:  # the provider refuses thinking it did not sign
        await stream(system, follow_up("dGFtcGVyZWQ="))
    assert tampered.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_gemini_3_call_signatures_round_trip_and_a_missing_one_is_the_providers_400(system: System) -> None:
    await tenant(system, "gemini")
    first = request("gemini", pb.Message(role=pb.ROLE_USER, content="look it up"), model="gemini-3-pro-preview",
                    tools=[LOOKUP], tool_choice=pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_REQUIRED))
    reply = await system.chat.Chat(pb.ChatRequest(parameters=first))
    call = reply.choices[0].tool_calls[0]
    assert call.name == "lookup" and call.signature  # Gemini 3 signs the calls it makes
    assert system.upstream.requests[-1].json["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}

    def follow_up(signature: str) -> pb.ChatParameters:
        return request("gemini", first.messages[0], pb.Message(role=pb.ROLE_ASSISTANT, tool_calls=[
            pb.ToolCall(id=call.id, name=call.name, arguments=call.arguments, signature=signature)]),
            pb.Message(role=pb.ROLE_TOOL, tool_call_id=call.id, name="lookup", content='{"fact": 42}'),
            model="gemini-3-pro-preview", tools=[LOOKUP])

    answer = await system.chat.Chat(pb.ChatRequest(parameters=follow_up(call.signature)))
    assert answer.choices[0].text
    sent = system.upstream.requests[-1].json["contents"][1]["parts"][0]
    assert sent["thoughtSignature"] == call.signature and sent["functionCall"]["name"] == "lookup"
    with pytest.raises(grpc.aio.AioRpcError) as unsigned:
        await system.chat.Chat(pb.ChatRequest(parameters=follow_up("")))
    assert unsigned.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("provider", sorted(MODELS))
async def test_structured_output_is_json_matching_the_schema(system: System, provider: str) -> None:
    await tenant(system, provider)
    p = request(provider, pb.Message(role=pb.ROLE_USER, content="a city"), response_format=pb.ResponseFormat(
        name="city", schema_json=json.dumps(SCHEMA), strict=True))
    whole = await system.chat.Chat(pb.ChatRequest(parameters=p))
    streamed = folded(await stream(system, p), provider)["choices"][0]["text"]
    for text in (whole.choices[0].text, streamed):
        answer = json.loads(text)
        assert set(answer) == {"city", "population"} and isinstance(answer["population"], int)


@pytest.mark.parametrize("provider", sorted(MODELS))
async def test_citations_come_back_per_choice_streamed_and_whole(system: System, provider: str) -> None:
    await tenant(system, provider)
    p = request(provider, pb.Message(role=pb.ROLE_USER, content="with sources"), model=MODELS[provider] + "?cite=1")
    streamed = folded(await stream(system, p), provider)["choices"][0]["citations"]
    whole = [json.loads(c) for c in (await system.chat.Chat(pb.ChatRequest(parameters=p))).choices[0].citations_json]
    key = {"openai": "annotations", "anthropic": "citation", "gemini": "groundingMetadata"}[provider]
    assert streamed and any(key in c for c in streamed)
    assert whole and any(key in c for c in whole)


async def test_an_anthropic_fallback_says_which_model_answers_from_there_on(system: System) -> None:
    await tenant(system, "anthropic")
    p = request("anthropic", pb.Message(role=pb.ROLE_USER, content="hi"),
                model="claude-opus-4-5?fallback=claude-sonnet-4-5&frames=8")
    messages = await stream(system, p)
    fallbacks = [m for m in messages if m.HasField("fallback")]
    assert len(fallbacks) == 1 and fallbacks[0].model == "claude-sonnet-4-5"
    assert (fallbacks[0].fallback.from_model, fallbacks[0].fallback.to_model) == (
        "claude-opus-4-5", "claude-sonnet-4-5")
    before = "".join(c.text for m in messages[:messages.index(fallbacks[0])] for c in m.choices)
    after = "".join(c.text for m in messages[messages.index(fallbacks[0]):] for c in m.choices)
    assert before and after  # each model's words on its own side of the hop
    whole = await system.chat.Chat(pb.ChatRequest(parameters=p))
    assert [(f.from_model, f.to_model) for f in whole.fallbacks] == [("claude-opus-4-5", "claude-sonnet-4-5")]
    assert to_chat_response(messages[1:]).fallbacks == whole.fallbacks


async def test_a_gemini_model_version_change_mid_stream_is_sent_again(system: System) -> None:
    await tenant(system, "gemini")
    p = request("gemini", pb.Message(role=pb.ROLE_USER, content="hi"), model="gemini-2.5-flash?modelversion=gemini-x")
    models = [m.model for m in await stream(system, p) if m.model]
    assert models[-1] == "gemini-x" and len(set(models)) == 2


@pytest.mark.parametrize(("provider", "edit", "field"), [
    ("anthropic", {"seed": 7}, "parameters.seed"),
    ("anthropic", {"presence_penalty": 1.0}, "parameters.presence_penalty"),
    ("gemini", {"parallel_tool_calls": False, "tools": [LOOKUP]}, "parameters.parallel_tool_calls"),
    ("openai", {"reasoning": pb.ReasoningConfig(budget_tokens=1024)}, "parameters.reasoning.budget_tokens"),
    ("anthropic", {"reasoning": pb.ReasoningConfig(budget_tokens=512)}, "parameters.reasoning.budget_tokens"),
    ("openai", {"provider_options_json": '{"model": "gpt-5"}'}, "parameters.provider_options_json"),
    ("gemini", {"provider_options_json": '{"generationConfig": {"topP": 0.1}}', "top_p": 0.5},
     "parameters.provider_options_json"),
])
async def test_what_a_provider_cannot_take_is_refused_by_name_before_any_upstream_call(
        system: System, provider: str, edit: dict[str, Any], field: str) -> None:
    await tenant(system, provider)
    before = len(system.upstream.requests)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stream(system, request(provider, pb.Message(role=pb.ROLE_USER, content="hi"), **edit))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (refused.value.details() or "").startswith(field)
    assert len(system.upstream.requests) == before


@pytest.mark.parametrize("provider", sorted(MODELS))
async def test_controls_and_provider_options_reach_the_provider(system: System, provider: str) -> None:
    await tenant(system, provider)
    options = {"openai": {"service_tier": "default"}, "anthropic": {"metadata": {"user_id": "u-1"}},
               "gemini": {"generationConfig": {"candidateCount": 1}}}[provider]
    p = request(provider, pb.Message(role=pb.ROLE_USER, content="call it"), tools=[LOOKUP], top_p=0.95,
                tool_choice=pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_TOOL, name="lookup"),
                provider_options_json=json.dumps(options))
    got = folded(await stream(system, p), provider)["choices"][0]
    assert [c["name"] for c in got["tool_calls"]] == ["lookup"]  # the forced tool was called
    sent = system.upstream.requests[-1].json
    if provider == "openai":
        assert sent["tool_choice"] == {"type": "function", "function": {"name": "lookup"}}
        assert sent["top_p"] == 0.95 and sent["service_tier"] == "default"
    elif provider == "anthropic":
        assert sent["tool_choice"] == {"type": "tool", "name": "lookup"}
        assert sent["top_p"] == 0.95 and sent["metadata"] == {"user_id": "u-1"}
    else:
        assert sent["toolConfig"]["functionCallingConfig"] == {"mode": "ANY", "allowedFunctionNames": ["lookup"]}
        assert sent["generationConfig"]["topP"] == 0.95 and sent["generationConfig"]["candidateCount"] == 1
