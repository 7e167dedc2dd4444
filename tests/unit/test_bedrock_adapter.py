"""The Bedrock Converse adapter, held to botocore's own model of the API.

Requests: every mapping of the unified schema is compared with what botocore's serializer (with its validation)
makes of the same call as boto3 would be given it — the Python parameters a boto3 user would write, blobs as bytes —
so the adapter's body and path are exactly boto3's, and every refusal names its field. Streams: the
ConverseStream body decoded at every byte split (each single cut, and one byte at a time) adds up to what botocore's
own EventStream parser, with the bedrock-runtime ConverseStream shape, reads from the same bytes; the v2 conformance
corpus (../shared/conformance-v2/bedrock) is replayed as tests/unit/test_conformance_v2.py replays the others;
in-stream exceptions and broken frames are errors that keep what came before them. The unary ConverseResponse folds
by the same rules, checked against botocore's rest-json parse of it.
"""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path
from typing import Any

import pytest
from botocore.eventstream import EventStream
from botocore.parsers import EventStreamJSONParser, RestJSONParser
from botocore.serialize import create_serializer
from botocore.session import get_session

from byok.keys.v1 import key_service_pb2 as kpb
from byok.proxy.v1 import chat_service_pb2 as pb
from devstack.cloudfakes import event, exception, message
from proxyservice.accumulate import accumulate_v2, to_chat_response
from proxyservice.adapters import AdapterError, RequestMappingError, UpstreamStreamError, adapter_for
from proxyservice.adapters.bedrock import ConverseStreamDecoder, document_name
from tests.unit.test_conformance_v2 import expected, mismatches, splits

SERVICE = get_session().get_service_model("bedrock-runtime")
SERIALIZER = create_serializer("rest-json", include_validation=True)
CLAUDE = "anthropic.claude-sonnet-4-5-20250929-v1:0"
CLAUDE_46 = "us.anthropic.claude-opus-4-6-v1"
LLAMA = "meta.llama3-3-70b-instruct-v1:0"
CORPUS = Path(__file__).resolve().parents[3] / "shared" / "conformance-v2" / "bedrock"
CASES = sorted(CORPUS.glob("*.eventstream")) if CORPUS.is_dir() else []
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(40))
PDF = b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
R = pb.Role


def user(text: str = "hi", *parts: pb.ContentPart) -> pb.Message:
    return pb.Message(role=R.ROLE_USER, content=text, parts=list(parts))


def chat(*messages: pb.Message, model: str = CLAUDE, **kw: Any) -> pb.ChatParameters:
    return pb.ChatParameters(model=model, messages=list(messages) or [user()], **kw)


def ours(params: pb.ChatParameters, stream: bool = True) -> tuple[str, dict[str, Any]]:
    request = adapter_for("bedrock").build_request(params, api_base="https://bedrock-runtime.us-east-1.amazonaws.com",
                                                   api_key="ABSKfake", model=params.model, stream=stream)
    return request.url.removeprefix("https://bedrock-runtime.us-east-1.amazonaws.com"), json.loads(request.body)


def boto3s(model: str = CLAUDE, stream: bool = True, **call: Any) -> tuple[str, dict[str, Any]]:
    """What botocore sends for `client.converse[_stream](modelId=model, **call)`, validated by its model."""
    request = SERIALIZER.serialize_to_request({"modelId": model, **call},
                                              SERVICE.operation_model("ConverseStream" if stream else "Converse"))
    return request["url_path"], json.loads(request["body"])


def same_as_boto3(params: pb.ChatParameters, **call: Any) -> None:
    assert ours(params) == boto3s(params.model, **call)


def refused(params: pb.ChatParameters, field: str) -> str:
    with pytest.raises(RequestMappingError) as info:
        ours(params)
    assert info.value.field == field
    return str(info.value)


HI = [{"role": "user", "content": [{"text": "hi"}]}]


# ---- requests -------------------------------------------------------------------------------------------------

def test_text_turns_system_blocks_and_merged_roles() -> None:
    params = chat(pb.Message(role=R.ROLE_SYSTEM, content="be brief"),
                  pb.Message(role=R.ROLE_SYSTEM, content="in French"), user("hi"), user("again"),
                  pb.Message(role=R.ROLE_ASSISTANT, content="bonjour"), user("ok"))
    same_as_boto3(params, system=[{"text": "be brief"}, {"text": "in French"}], messages=[
        {"role": "user", "content": [{"text": "hi"}, {"text": "again"}]},
        {"role": "assistant", "content": [{"text": "bonjour"}]}, {"role": "user", "content": [{"text": "ok"}]}])


def test_the_unary_path_and_the_encoded_model_id() -> None:
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0"
    for model in (CLAUDE, arn):
        assert ours(chat(model=model), stream=False) == boto3s(model, stream=False, messages=HI)
        assert ours(chat(model=model)) == boto3s(model, messages=HI)


def test_inference_config() -> None:
    params = chat(max_tokens=300, temperature=0.2, top_p=0.9, stop=["END", "STOP"])
    same_as_boto3(params, messages=HI, inferenceConfig={"maxTokens": 300, "temperature": 0.2, "topP": 0.9,
                                                        "stopSequences": ["END", "STOP"]})


def test_images_go_as_bytes_inline_or_from_a_data_url() -> None:
    data_url = "data:image/webp;base64," + base64.b64encode(PNG).decode()
    params = chat(user("", pb.ContentPart(text="what is it?"),
                       pb.ContentPart(image=pb.ImagePart(data=PNG, media_type="image/png")),
                       pb.ContentPart(image=pb.ImagePart(url=data_url))))
    same_as_boto3(params, messages=[{"role": "user", "content": [
        {"text": "what is it?"}, {"image": {"format": "png", "source": {"bytes": PNG}}},
        {"image": {"format": "webp", "source": {"bytes": PNG}}}]}])


def test_media_by_https_url_or_of_another_type_is_refused_by_field() -> None:
    assert "by URL" in refused(chat(user("", pb.ContentPart(image=pb.ImagePart(url="https://x.example/a.png")))),
                               "parameters.messages[0].parts[0].image.url")
    assert "image/bmp" in refused(chat(user("", pb.ContentPart(image=pb.ImagePart(data=PNG, media_type="image/bmp")))),
                                  "parameters.messages[0].parts[0].image.media_type")


def test_documents_are_named_as_converse_allows_and_need_a_text_beside_them() -> None:
    docx = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    params = chat(user("", pb.ContentPart(text="compare"),
                       pb.ContentPart(document=pb.DocumentPart(data=PDF, media_type="application/pdf",
                                                               filename="Q3 report_v2.final.pdf")),
                       pb.ContentPart(document=pb.DocumentPart(data=PDF, media_type="application/pdf",
                                                               filename="Q3 report_v2.final.pdf")),
                       pb.ContentPart(document=pb.DocumentPart(data=b"# notes", media_type="text/markdown")),
                       pb.ContentPart(document=pb.DocumentPart(data=b"PK\x03\x04", media_type=docx,
                                                               filename="brief.docx"))))
    same_as_boto3(params, messages=[{"role": "user", "content": [
        {"text": "compare"},
        {"document": {"format": "pdf", "name": "Q3 report-v2-final", "source": {"bytes": PDF}}},
        {"document": {"format": "pdf", "name": "Q3 report-v2-final (2)", "source": {"bytes": PDF}}},
        {"document": {"format": "md", "name": "document-3", "source": {"bytes": b"# notes"}}},
        {"document": {"format": "docx", "name": "brief", "source": {"bytes": b"PK\x03\x04"}}}]}])
    alone = chat(user("", pb.ContentPart(document=pb.DocumentPart(data=PDF, media_type="application/pdf"))))
    assert "text part" in refused(alone, "parameters.messages[0].parts")


@pytest.mark.parametrize(("filename", "name"), [
    ("report.pdf", "report"), ("  a\t\tb  .txt", "a b"), (".env", "-env"), ("résumé.pdf", "r-sum-"),
    ("(draft) [v2].docx", "(draft) [v2]"), ("", "document-7"), ("x" * 300 + ".pdf", "x" * 200)])
def test_document_names(filename: str, name: str) -> None:
    assert document_name(filename, 7) == name


def test_parts_a_role_cannot_take_are_refused() -> None:
    image = pb.ContentPart(image=pb.ImagePart(data=PNG, media_type="image/png"))
    assert "assistant message" in refused(chat(user(), pb.Message(role=R.ROLE_ASSISTANT, parts=[image])),
                                          "parameters.messages[1].parts[0].image")
    thinking = pb.ContentPart(reasoning=pb.ReasoningPart(text="t", signature="s"))
    assert "user message" in refused(chat(user("", thinking)), "parameters.messages[0].parts[0].reasoning")
    assert "system message" in refused(chat(pb.Message(role=R.ROLE_SYSTEM, parts=[image])),
                                       "parameters.messages[0].parts[0].image")


def test_reasoning_tool_calls_and_results_go_back_as_converse_blocks() -> None:
    redacted = base64.b64encode(b"\x00opaque-encrypted-reasoning\xff").decode()
    params = chat(
        user("weather in Paris?"),
        pb.Message(role=R.ROLE_ASSISTANT, parts=[
            pb.ContentPart(reasoning=pb.ReasoningPart(text="need the tool", signature="EqQBCkYIBxgCKkD")),
            pb.ContentPart(reasoning=pb.ReasoningPart(redacted=redacted)), pb.ContentPart(text="Checking.")],
            tool_calls=[pb.ToolCall(id="tooluse_abc123", name="get_weather", arguments='{"city": "Paris"}')]),
        pb.Message(role=R.ROLE_TOOL, tool_call_id="tooluse_abc123", name="get_weather", content='{"temp": 21}'),
        pb.Message(role=R.ROLE_TOOL, tool_call_id="tooluse_def456", parts=[
            pb.ContentPart(text="chart:"), pb.ContentPart(image=pb.ImagePart(data=PNG, media_type="image/png"))]),
        tools=[pb.Tool(name="get_weather", description="Weather by city",
                       parameters_json='{"type":"object","properties":{"city":{"type":"string"}}}')])
    same_as_boto3(params, messages=[
        {"role": "user", "content": [{"text": "weather in Paris?"}]},
        {"role": "assistant", "content": [
            {"reasoningContent": {"reasoningText": {"text": "need the tool", "signature": "EqQBCkYIBxgCKkD"}}},
            {"reasoningContent": {"redactedContent": b"\x00opaque-encrypted-reasoning\xff"}},
            {"text": "Checking."},
            {"toolUse": {"toolUseId": "tooluse_abc123", "name": "get_weather", "input": {"city": "Paris"}}}]},
        {"role": "user", "content": [
            {"toolResult": {"toolUseId": "tooluse_abc123", "content": [{"text": '{"temp": 21}'}]}},
            {"toolResult": {"toolUseId": "tooluse_def456", "content": [
                {"text": "chart:"}, {"image": {"format": "png", "source": {"bytes": PNG}}}]}}]}],
        toolConfig={"tools": [{"toolSpec": {"name": "get_weather", "description": "Weather by city", "inputSchema": {
            "json": {"type": "object", "properties": {"city": {"type": "string"}}}}}}]})


@pytest.mark.parametrize(("choice", "converse"), [
    (pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_AUTO), {"auto": {}}),
    (pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_REQUIRED), {"any": {}}),
    (pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_TOOL, name="lookup"), {"tool": {"name": "lookup"}}),
])
def test_tool_choice(choice: pb.ToolChoice, converse: dict[str, Any]) -> None:
    params = chat(tools=[pb.Tool(name="lookup")], tool_choice=choice)
    same_as_boto3(params, messages=HI, toolConfig={
        "tools": [{"toolSpec": {"name": "lookup", "inputSchema": {"json": {"type": "object", "properties": {}}}}}],
        "toolChoice": converse})


def test_tool_controls_converse_has_no_form_for_are_refused_and_ignored_without_tools() -> None:
    none = pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_NONE)
    assert "none" in refused(chat(tools=[pb.Tool(name="t")], tool_choice=none), "parameters.tool_choice")
    assert "parallel" in refused(chat(tools=[pb.Tool(name="t")], parallel_tool_calls=False),
                                 "parameters.parallel_tool_calls")
    same_as_boto3(chat(tool_choice=none, parallel_tool_calls=False), messages=HI)


@pytest.mark.parametrize("field", ["seed", "presence_penalty", "frequency_penalty"])
def test_sampling_controls_converse_lacks_are_refused(field: str) -> None:
    params = chat()
    setattr(params, field, 1)
    refused(params, f"parameters.{field}")


def test_claude_thinking_is_anthropics_in_additional_model_request_fields() -> None:
    budget = chat(reasoning=pb.ReasoningConfig(budget_tokens=2048))
    same_as_boto3(budget, messages=HI, inferenceConfig={"maxTokens": 2048 + 1024},
                  additionalModelRequestFields={"thinking": {"type": "enabled", "budget_tokens": 2048}})
    capped = chat(reasoning=pb.ReasoningConfig(budget_tokens=2048), max_tokens=4000)
    same_as_boto3(capped, messages=HI, inferenceConfig={"maxTokens": 4000},
                  additionalModelRequestFields={"thinking": {"type": "enabled", "budget_tokens": 2048}})
    adaptive = chat(model=CLAUDE_46, reasoning=pb.ReasoningConfig(effort=pb.REASONING_EFFORT_HIGH))
    same_as_boto3(adaptive, messages=HI, inferenceConfig={"maxTokens": 4096 + 1024},
                  additionalModelRequestFields={"thinking": {"type": "adaptive"}}, outputConfig={"effort": "high"})
    off = chat(reasoning=pb.ReasoningConfig(effort=pb.REASONING_EFFORT_NONE))
    same_as_boto3(off, messages=HI, additionalModelRequestFields={"thinking": {"type": "disabled"}})


def test_thinking_limits_are_claudes_and_other_models_are_refused_reasoning_controls() -> None:
    refused(chat(reasoning=pb.ReasoningConfig(budget_tokens=500)), "parameters.reasoning.budget_tokens")
    refused(chat(reasoning=pb.ReasoningConfig(budget_tokens=2048), max_tokens=2000),
            "parameters.reasoning.budget_tokens")
    assert "Claude" in refused(chat(model=LLAMA, reasoning=pb.ReasoningConfig(effort=pb.REASONING_EFFORT_LOW)),
                               "parameters.reasoning")


def test_structured_output_is_output_config_text_format_with_the_schema_as_text() -> None:
    schema_json = '{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}'
    params = chat(response_format=pb.ResponseFormat(name="place", description="A city", schema_json=schema_json,
                                                    strict=True))
    same_as_boto3(params, messages=HI, outputConfig={"textFormat": {"type": "json_schema", "structure": {
        "jsonSchema": {"schema": schema_json, "name": "place", "description": "A city"}}}})
    refused(chat(response_format=pb.ResponseFormat(name="x", schema_json="[1]")),
            "parameters.response_format.schema_json")


def test_provider_options_split_between_converse_fields_and_the_models_own() -> None:
    options = {"guardrailConfig": {"guardrailIdentifier": "gr-123", "guardrailVersion": "1"},
               "requestMetadata": {"team": "search"}, "top_k": 40,
               "inferenceConfig": {"stopSequences": ["##"]}}
    params = chat(reasoning=pb.ReasoningConfig(budget_tokens=1024), max_tokens=3000,
                  provider_options_json=json.dumps(options))
    same_as_boto3(params, messages=HI, inferenceConfig={"maxTokens": 3000, "stopSequences": ["##"]},
                  guardrailConfig={"guardrailIdentifier": "gr-123", "guardrailVersion": "1"},
                  requestMetadata={"team": "search"},
                  additionalModelRequestFields={"thinking": {"type": "enabled", "budget_tokens": 1024}, "top_k": 40})


@pytest.mark.parametrize("options", [
    {"inferenceConfig": {"maxTokens": 9}}, {"thinking": {"type": "disabled"}}, {"model": "x"},
    {"additionalModelRequestFields": {"api_key": "AKIAIOSFODNN7EXAMPLE"}}])
def test_provider_options_never_override_nor_carry_credentials(options: dict[str, Any]) -> None:
    params = chat(max_tokens=2000, reasoning=pb.ReasoningConfig(budget_tokens=1024),
                  provider_options_json=json.dumps(options))
    assert "AKIA" not in refused(params, "parameters.provider_options_json")


def test_a_lease_presents_its_credential() -> None:
    sigv4 = kpb.IssueKeyLeaseResponse(
        provider="bedrock", api_family="bedrock", auth_scheme="aws_sigv4", settings={"region": "us-west-2"},
        api_base="https://bedrock-runtime.us-west-2.amazonaws.com", aws_credentials=kpb.AwsSessionCredentials(
            access_key_id="ASIAZ7FAKEEXAMPLE123", secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYFAKEKEY123",
            session_token="IQoJb3JpZ2luX2VjFAKE"))
    request = adapter_for("bedrock").build_request(
        chat(), api_base=sigv4.api_base, api_key="", model=CLAUDE, stream=True, provider="bedrock", lease=sigv4)
    assert request.sigv4 is not None and request.sigv4.region == "us-west-2"
    assert request.headers == {"content-type": "application/json", "accept": "application/vnd.amazon.eventstream"}


# ---- streams --------------------------------------------------------------------------------------------------

def botocore_events(body: bytes) -> list[dict[str, Any]]:
    """The stream as botocore's own EventStream parser reads it with the ConverseStream shape (CRCs checked)."""
    class Raw:
        def stream(self) -> Any:
            yield body

        def close(self) -> None:
            pass

    shape = SERVICE.operation_model("ConverseStream").output_shape.members["stream"]
    return list(EventStream(Raw(), shape, EventStreamJSONParser(), "ConverseStream"))


def oracle(events: list[dict[str, Any]]) -> dict[str, Any]:
    """What a caller must recover, from botocore's parse: the corpus README's bedrock rules."""
    text, reasoning, signatures, redacted, calls, finish, use = "", "", [], [], {}, "", None
    for ev in events:
        (name, obj), = ev.items()
        if name == "contentBlockStart" and "toolUse" in obj["start"]:
            tool = obj["start"]["toolUse"]
            calls[obj["contentBlockIndex"]] = {"id": tool["toolUseId"], "name": tool["name"], "arguments": ""}
        elif name == "contentBlockDelta":
            delta = obj["delta"]
            text += delta.get("text", "")
            if "toolUse" in delta:
                calls[obj["contentBlockIndex"]]["arguments"] += delta["toolUse"]["input"]
            r = delta.get("reasoningContent", {})
            reasoning += r.get("text", "")
            signatures += [r["signature"]] if "signature" in r else []
            redacted += [base64.b64encode(r["redactedContent"]).decode()] if "redactedContent" in r else []
        elif name == "messageStop":
            finish = obj["stopReason"]
        elif name == "metadata":
            u = obj["usage"]
            use = (u["inputTokens"], u["outputTokens"], u.get("cacheReadInputTokens"), u.get("cacheWriteInputTokens"))
    return {"text": text, "reasoning": reasoning, "signatures": signatures, "redacted": redacted,
            "calls": [calls[k] for k in sorted(calls)], "finish": finish, "usage": use}


def folded(responses: list[pb.StreamChatResponse]) -> dict[str, Any]:
    got = accumulate_v2(responses, "bedrock")
    empty = {"text": "", "reasoning": "", "reasoning_signatures": [], "redacted_reasoning": [], "tool_calls": [],
             "finish_reason": ""}
    choice: dict[str, Any] = got["choices"][0] if got["choices"] else empty
    u = got["usage"]
    return {"text": choice["text"], "reasoning": choice["reasoning"], "signatures": choice["reasoning_signatures"],
            "redacted": choice["redacted_reasoning"],
            "calls": [{"id": c["id"], "name": c["name"], "arguments": c["arguments"]} for c in choice["tool_calls"]],
            "finish": choice["finish_reason"],
            "usage": None if u is None else (u["input_tokens"], u["output_tokens"], u["cached_input_tokens"],
                                             u["cache_write_input_tokens"])}


def decode(body: bytes, cuts: list[int]) -> tuple[list[pb.StreamChatResponse], ConverseStreamDecoder]:
    decoder = adapter_for("bedrock").stream_decoder()
    assert isinstance(decoder, ConverseStreamDecoder)
    out: list[pb.StreamChatResponse] = []
    last = 0
    for cut in sorted(set(cuts)):
        out += decoder.feed(body[last:cut])
        last = cut
    out += decoder.feed(body[last:]) + decoder.close()
    return out, decoder


def delta(index: int, **d: Any) -> bytes:
    return event("contentBlockDelta", {"contentBlockIndex": index, "delta": d})


# A stream with every event kind the schema carries: reasoning and its signature, redacted reasoning, text, a
# citation, two tool calls, the stop and usage with cache counts.
RICH = b"".join([
    event("messageStart", {"role": "assistant"}),
    delta(0, reasoningContent={"text": "Let me "}), delta(0, reasoningContent={"text": "think — é ✓"}),
    delta(0, reasoningContent={"signature": "EqQBCkYIBxgCKkD2lPwFake=="}),
    event("contentBlockStop", {"contentBlockIndex": 0}),
    delta(1, reasoningContent={"redactedContent": base64.b64encode(b"\x01\x02sealed").decode()}),
    delta(2, text="Héllo, "), delta(2, text="wörld"),
    delta(2, citation={"title": "doc", "location": {"documentChar": {"documentIndex": 0, "start": 1, "end": 5}}}),
    event("contentBlockStop", {"contentBlockIndex": 2}),
    event("contentBlockStart", {"contentBlockIndex": 3, "start": {"toolUse": {"toolUseId": "tooluse_1", "name": "a"}}}),
    delta(3, toolUse={"input": '{"x":'}), delta(3, toolUse={"input": " 1}"}),
    event("contentBlockStop", {"contentBlockIndex": 3}),
    event("contentBlockStart", {"contentBlockIndex": 4, "start": {"toolUse": {"toolUseId": "tooluse_2", "name": "b"}}}),
    event("contentBlockStop", {"contentBlockIndex": 4}),
    event("messageStop", {"stopReason": "tool_use"}),
    event("metadata", {"usage": {"inputTokens": 120, "outputTokens": 33, "totalTokens": 153,
                                 "cacheReadInputTokens": 100, "cacheWriteInputTokens": 7},
                       "metrics": {"latencyMs": 321}}),
])


def test_every_single_byte_split_decodes_as_botocore_reads_the_stream() -> None:
    want = oracle(botocore_events(RICH))
    assert want["calls"] == [{"id": "tooluse_1", "name": "a", "arguments": '{"x": 1}'},
                             {"id": "tooluse_2", "name": "b", "arguments": ""}]
    for cut in range(len(RICH) + 1):
        responses, decoder = decode(RICH, [cut])
        assert folded(responses) == want, cut
        assert decoder.complete
    responses, _ = decode(RICH, list(range(len(RICH))))
    assert folded(responses) == want
    assert [json.loads(c) for r in responses for d in r.choices for c in [d.citations_json] if c] == [
        {"citation": {"title": "doc", "location": {"documentChar": {"documentIndex": 0, "start": 1, "end": 5}}}}]


def test_usage_keeps_reported_apart_from_absent() -> None:
    plain = event("metadata", {"usage": {"inputTokens": 5, "outputTokens": 2, "totalTokens": 7},
                               "metrics": {"latencyMs": 1}})
    (response,), _ = decode(plain, [])
    assert (response.usage.input_tokens, response.usage.output_tokens) == (5, 2)
    assert not response.usage.HasField("cached_input_tokens") and not response.usage.HasField("reasoning_tokens")


def test_the_stop_reason_is_the_providers_with_a_normalised_one_beside() -> None:
    for stop, normal in (("end_turn", pb.FINISH_REASON_STOP), ("max_tokens", pb.FINISH_REASON_LENGTH),
                         ("tool_use", pb.FINISH_REASON_TOOL_CALLS), ("guardrail_intervened",
                                                                     pb.FINISH_REASON_CONTENT_FILTER),
                         ("malformed_tool_use", pb.FINISH_REASON_OTHER)):
        (response,), decoder = decode(event("messageStop", {"stopReason": stop}), [])
        assert (response.choices[0].provider_finish_reason, response.choices[0].finish_reason) == (stop, normal)
        assert decoder.complete


def test_a_stream_cut_before_message_stop_is_not_complete() -> None:
    end = RICH.index(b"messageStop") - 30  # inside the messageStop message's prelude or headers
    responses, decoder = decode(RICH[:end], [end // 2])
    assert not decoder.complete and folded(responses)["text"] == "Héllo, wörld"


@pytest.mark.parametrize(("frame", "kind"), [
    (exception("throttlingException", "Too many tokens, please wait before trying again."), "throttlingException"),
    (exception("modelStreamErrorException", "Model stopped"), "modelStreamErrorException"),
    (message({":message-type": "error", ":error-code": "InternalFailure", ":error-message": "boom"}, b""),
     "InternalFailure"),
])
def test_in_stream_errors_keep_what_came_before(frame: bytes, kind: str) -> None:
    body = delta(0, text="partial ") + delta(0, text="answer") + frame
    for cut in (0, 10, len(body) - 3):
        decoder = ConverseStreamDecoder()
        early = decoder.feed(body[:cut])
        with pytest.raises(UpstreamStreamError) as info:
            decoder.feed(body[cut:])
        assert info.value.error_type == kind
        assert "".join(d.text for r in early + info.value.partial for d in r.choices) == "partial answer"


def test_a_corrupt_frame_is_a_protocol_error_naming_no_bytes() -> None:
    good = delta(0, text="ok")
    bad = bytearray(delta(0, text="AKIAIOSFODNN7EXAMPLE"))
    bad[-1] ^= 0xFF  # the message CRC no longer matches
    with pytest.raises(AdapterError) as info:
        ConverseStreamDecoder().feed(good + bytes(bad))
    assert "malformed event stream" in str(info.value) and "AKIA" not in str(info.value)
    assert [d.text for r in info.value.partial for d in r.choices] == ["ok"]


def test_unknown_events_and_blocks_carry_nothing() -> None:
    body = (event("messageStart", {"role": "assistant"}) + event("futureEvent", {"x": 1})
            + delta(0, image={"bytes": "AAAA"}) + event("contentBlockStart", {"contentBlockIndex": 0, "start": {
                "image": {"format": "png"}}}))
    assert decode(body, [])[0] == []


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_conformance_v2_case(case: Path) -> None:
    body, exp = case.read_bytes(), expected(case)
    want = oracle(botocore_events(body))
    for cuts in splits(body, case.stem):
        responses, decoder = decode(body, cuts)
        assert decoder.complete
        assert mismatches(accumulate_v2(responses, "bedrock"), exp, "bedrock") == [], cuts
        assert folded(responses) == want
        assert all(r.choices or r.model or r.HasField("usage") for r in responses)  # nothing empty is sent


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_conformance_v2_case_folds_to_the_same_unary_answer(case: Path) -> None:
    responses, _ = decode(case.read_bytes(), [])
    whole, streamed = to_chat_response(responses, "bedrock"), accumulate_v2(responses, "bedrock")
    for choice, want in zip(whole.choices, streamed["choices"], strict=True):
        assert (choice.text, choice.reasoning, list(choice.redacted_reasoning)) == (
            want["text"], want["reasoning"], want["redacted_reasoning"])


def test_the_corpus_is_here() -> None:
    assert len(CASES) >= 7 and all(c.with_name(c.stem + ".expected.json").is_file() for c in CASES)


def test_a_random_long_stream_at_random_splits() -> None:
    rng = random.Random(16)
    frames = [delta(0, text=f"w{i}é ") for i in range(400)] + [event("messageStop", {"stopReason": "end_turn"})]
    body = b"".join(frames)
    responses, decoder = decode(body, [rng.randrange(len(body)) for _ in range(300)])
    assert decoder.complete and folded(responses)["text"] == "".join(f"w{i}é " for i in range(400))


# ---- the unary answer -----------------------------------------------------------------------------------------

CONVERSE_RESPONSE = {
    "output": {"message": {"role": "assistant", "content": [
        {"reasoningContent": {"reasoningText": {"text": "Thinking it over.", "signature": "EqQBCkYIsig=="}}},
        {"reasoningContent": {"redactedContent": base64.b64encode(b"\x00sealed").decode()}},
        {"text": "It is 21°C."},
        {"citationsContent": {"content": [{"text": " Source: the report."}],
                              "citations": [{"title": "report", "sourceContent": [{"text": "21"}],
                                             "location": {"documentPage": {"documentIndex": 0, "start": 1,
                                                                           "end": 2}}}]}},
        {"toolUse": {"toolUseId": "tooluse_9", "name": "log", "input": {"level": "info", "n": [1, 2]}}},
    ]}},
    "stopReason": "tool_use",
    "usage": {"inputTokens": 50, "outputTokens": 20, "totalTokens": 70, "cacheReadInputTokens": 40},
    "metrics": {"latencyMs": 800},
}


def test_the_unary_answer_folds_as_the_stream_does() -> None:
    body = json.dumps(CONVERSE_RESPONSE).encode()
    parsed = RestJSONParser().parse({"status_code": 200, "headers": {}, "body": body},
                                    SERVICE.operation_model("Converse").output_shape)
    assert parsed["stopReason"] == "tool_use"  # botocore reads the same body as a valid ConverseResponse
    reply = adapter_for("bedrock").parse_response(body)
    (choice,) = reply.choices
    assert choice.text == "It is 21°C. Source: the report."
    assert (choice.reasoning, list(choice.reasoning_signatures)) == ("Thinking it over.", ["EqQBCkYIsig=="])
    assert [base64.b64decode(r) for r in choice.redacted_reasoning] == [
        parsed["output"]["message"]["content"][1]["reasoningContent"]["redactedContent"]]
    assert [(c.id, c.name, json.loads(c.arguments)) for c in choice.tool_calls] == [
        ("tooluse_9", "log", {"level": "info", "n": [1, 2]})]
    assert json.loads(choice.citations_json[0])["citation"]["title"] == "report"
    assert (choice.provider_finish_reason, choice.finish_reason) == ("tool_use", pb.FINISH_REASON_TOOL_CALLS)
    assert (reply.usage.input_tokens, reply.usage.output_tokens, reply.usage.cached_input_tokens) == (50, 20, 40)
    assert not reply.usage.HasField("cache_creation_input_tokens")


def test_a_unary_error_body_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamStreamError, match="Too many requests"):
        adapter_for("bedrock").parse_response(b'{"message": "Too many requests, please wait."}')
    with pytest.raises(AdapterError, match="malformed JSON"):
        adapter_for("bedrock").parse_response(b"<html>")
