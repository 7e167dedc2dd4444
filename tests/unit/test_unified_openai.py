"""OpenAI's chat-completions and embeddings formats to and from the unified schema (proxyservice/unified_openai.py)."""

from __future__ import annotations

import base64
import json
import struct

import pytest

from byok.proxy.v1 import chat_service_pb2 as pb
from proxyservice.unified_openai import (
    ChunkEncoder,
    UnifiedRequestError,
    completion_json,
    embeddings_json,
    parse_chat_request,
    parse_embeddings_request,
)

TENANT = pb.Tenant(org_id="acme")


def parse(**body: object) -> tuple[pb.ChatParameters, bool, bool]:
    return parse_chat_request(json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
                                          **body}).encode(), TENANT)


def events(data: bytes) -> list[object]:
    out = []
    for block in data.decode().split("\n\n"):
        if block:
            assert block.startswith("data: ")
            payload = block[len("data: "):]
            out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def test_a_full_request_maps_every_modelled_field() -> None:
    params, stream, include_usage = parse_chat_request(json.dumps({
        "model": "claude-sonnet-4-20250514", "stream": True, "stream_options": {"include_usage": True},
        "temperature": 0.2, "max_completion_tokens": 99, "stop": "END", "tool_choice": "auto", "user": "u1",
        "tools": [{"type": "function", "function": {"name": "lookup", "description": "d",
                                                    "parameters": {"type": "object"}}}],
        "messages": [
            {"role": "developer", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "assistant", "content": None,
             "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "42"}]}).encode(), TENANT)
    assert (stream, include_usage) == (True, True)
    assert params.model == "claude-sonnet-4-20250514" and params.tenant.org_id == "acme"
    assert params.max_tokens == 99 and list(params.stop) == ["END"] and params.temperature == pytest.approx(0.2)
    assert [m.role for m in params.messages] == [pb.ROLE_SYSTEM, pb.ROLE_USER, pb.ROLE_ASSISTANT, pb.ROLE_TOOL]
    assert params.messages[1].content == "ab"
    assert params.messages[2].tool_calls[0] == pb.ToolCall(id="call_1", name="lookup", arguments="{}")
    assert params.messages[3].tool_call_id == "call_1" and params.messages[3].content == "42"
    assert params.tools[0].name == "lookup" and json.loads(params.tools[0].parameters_json) == {"type": "object"}


@pytest.mark.parametrize(("body", "param"), [
    (b"not json", "body"), (b"[1]", "body"), (b'{"messages": [{"role": "user", "content": "x"}]}', "model"),
    (b'{"model": "m", "messages": []}', "messages"),
    (b'{"model": "m", "messages": ["x"]}', "messages[0]"),
    (b'{"model": "m", "messages": [{"role": "user", "content": 3}]}', "messages[0].content"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "logprobs": true}', "logprobs"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}', "max_tokens"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": true}', "max_tokens"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": [1]}', "stop"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "any"}', "tool_choice"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": {"type": "function"}}',
     "tool_choice"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "reasoning_effort": "max"}', "reasoning_effort"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "seed": 1.5}', "seed"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "top_p": "1"}', "top_p"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "parallel_tool_calls": 1}',
     "parallel_tool_calls"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}}',
     "response_format"),
    (b'{"model": "m", "messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}',
     "messages[0].content[0].type"),
    (b'{"model": "m", "messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "f"}}]}]}',
     "messages[0].content[0].file.file_data"),
    (b'{"model": "m", "messages": [{"role": "user", "content": [{"type": "file", "file": '
     b'{"file_data": "data:application/pdf;base64,!!"}}]}]}', "messages[0].content[0].file.file_data"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}', "stream"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "web"}]}', "tools[0]"),
    (b'{"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"function": {}}]}]}',
     "messages[0].tool_calls[0].function"),
])
def test_what_cannot_be_carried_is_refused_naming_the_field(body: bytes, param: str) -> None:
    with pytest.raises(UnifiedRequestError) as caught:
        parse_chat_request(body, TENANT)
    assert caught.value.param == param and str(caught.value).startswith(param)


def test_null_optional_fields_are_accepted() -> None:
    params, stream, _ = parse(temperature=None, response_format=None, stream=False)
    assert not stream and not params.HasField("temperature")


def test_the_stream_encodes_as_openai_chunks() -> None:
    encoder = ChunkEncoder("chatcmpl-1", 1700000000, "gpt-4o-mini", include_usage=True)
    data = encoder.encode(pb.StreamChatResponse(start=pb.StreamStart(request_id="r")))
    data += encoder.encode(pb.StreamChatResponse(model="gpt-4o-mini-2024-07-18", choices=[
        pb.ChoiceDelta(index=0, text="hel")]))
    data += encoder.encode(pb.StreamChatResponse(choices=[pb.ChoiceDelta(index=0, tool_calls=[
        pb.ToolCallDelta(index=0, id="call_1", name="lookup", arguments='{"n":')])]))
    data += encoder.encode(pb.StreamChatResponse(choices=[pb.ChoiceDelta(index=0, tool_calls=[
        pb.ToolCallDelta(index=0, arguments="1}")])]))
    data += encoder.encode(pb.StreamChatResponse(
        choices=[pb.ChoiceDelta(index=0, finish_reason=pb.FINISH_REASON_TOOL_CALLS, provider_finish_reason="tool_use")],
        usage=pb.Usage(input_tokens=3, output_tokens=5)))
    data += encoder.close()
    chunks = events(data)
    assert chunks[-1] == "[DONE]"
    first, text, call, more, finish, usage = chunks[:-1]
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}  # type: ignore[index]
    assert text["choices"][0]["delta"] == {"content": "hel"}  # type: ignore[index]
    assert text["model"] == "gpt-4o-mini-2024-07-18"  # type: ignore[index]
    assert call["choices"][0]["delta"]["tool_calls"] == [  # type: ignore[index]
        {"index": 0, "id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"n":'}}]
    assert more["choices"][0]["delta"]["tool_calls"] == [{"index": 0, "function": {"arguments": "1}"}}]  # type: ignore[index]
    assert finish["choices"][0]["finish_reason"] == "tool_calls"  # type: ignore[index]
    assert usage["choices"] == [] and usage["usage"] == {  # type: ignore[index]
        "prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}
    assert {c["id"] for c in chunks[:-1]} == {"chatcmpl-1"}  # type: ignore[index]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks[:-1])  # type: ignore[index]


def test_usage_is_left_out_unless_asked_for() -> None:
    encoder = ChunkEncoder("chatcmpl-1", 1, "m", include_usage=False)
    encoder.encode(pb.StreamChatResponse(usage=pb.Usage(input_tokens=1, output_tokens=1)))
    assert events(encoder.close()) == ["[DONE]"]


def test_a_whole_reply_is_a_chat_completion() -> None:
    reply = pb.ChatResponse(model="claude-sonnet-4-20250514", usage=pb.Usage(input_tokens=2, output_tokens=4),
                            choices=[pb.Choice(index=0, text="", finish_reason=pb.FINISH_REASON_TOOL_CALLS,
                                               tool_calls=[pb.ToolCall(id="t1", name="f", arguments="{}")])])
    body = json.loads(completion_json(reply, "chatcmpl-2", 5, "claude"))
    assert body["object"] == "chat.completion" and body["model"] == "claude-sonnet-4-20250514"
    message = body["choices"][0]["message"]
    assert message["content"] is None and message["tool_calls"][0]["function"] == {"name": "f", "arguments": "{}"}
    assert body["choices"][0]["finish_reason"] == "tool_calls" and body["usage"]["total_tokens"] == 6


def test_reasoning_and_usage_details_go_out_in_openai_compatible_fields() -> None:
    encoder = ChunkEncoder("chatcmpl-3", 1, "deepseek-reasoner", include_usage=True)
    data = encoder.encode(pb.StreamChatResponse(choices=[pb.ChoiceDelta(index=0, reasoning="think")]))
    data += encoder.encode(pb.StreamChatResponse(usage=pb.Usage(input_tokens=9, output_tokens=7,
                                                                cached_input_tokens=4, reasoning_tokens=5)))
    chunks = events(data + encoder.close())
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "reasoning_content": "think"}  # type: ignore[index]
    assert chunks[1]["usage"] == {"prompt_tokens": 9, "completion_tokens": 7, "total_tokens": 16,  # type: ignore[index]
                                  "prompt_tokens_details": {"cached_tokens": 4},
                                  "completion_tokens_details": {"reasoning_tokens": 5}}
    plain = ChunkEncoder("c", 1, "m", include_usage=True)
    plain.encode(pb.StreamChatResponse(usage=pb.Usage(input_tokens=1, output_tokens=1)))
    assert "prompt_tokens_details" not in events(plain.close())[0]["usage"]  # type: ignore[index]
    reply = pb.ChatResponse(choices=[pb.Choice(index=0, text="a", reasoning="r")],
                            usage=pb.Usage(input_tokens=1, output_tokens=2, reasoning_tokens=1))
    body = json.loads(completion_json(reply, "c", 1, "m"))
    assert body["choices"][0]["message"]["reasoning_content"] == "r"
    assert body["usage"]["completion_tokens_details"] == {"reasoning_tokens": 1}


def test_gemini_thinking_counts_into_openai_completion_tokens() -> None:
    """Gemini's output_tokens (candidatesTokenCount) leave its thinking out; OpenAI's completion_tokens hold it."""
    encoder = ChunkEncoder("c", 1, "gemini-2.5-pro", include_usage=True)
    encoder.encode(pb.StreamChatResponse(start=pb.StreamStart(provider="gemini", api_family="gemini")))
    encoder.encode(pb.StreamChatResponse(usage=pb.Usage(input_tokens=4, output_tokens=6, reasoning_tokens=2)))
    assert events(encoder.close())[0]["usage"] == {  # type: ignore[index]
        "prompt_tokens": 4, "completion_tokens": 8, "total_tokens": 12,
        "completion_tokens_details": {"reasoning_tokens": 2}}
    reply = pb.ChatResponse(api_family="gemini", choices=[pb.Choice(index=0, text="a")],
                            usage=pb.Usage(input_tokens=1, output_tokens=2, reasoning_tokens=3))
    assert json.loads(completion_json(reply, "c", 1, "m"))["usage"]["completion_tokens"] == 5
    reply.api_family = "openai"  # OpenAI's own count already holds its reasoning
    assert json.loads(completion_json(reply, "c", 1, "m"))["usage"]["completion_tokens"] == 2


def test_images_files_reasoning_and_the_v2_controls_map_to_the_schema() -> None:
    pdf = base64.b64encode(b"%PDF-1.7 x").decode()
    params, _, _ = parse_chat_request(json.dumps({
        "model": "gpt-5", "reasoning_effort": "low", "seed": 7, "top_p": 0.5, "presence_penalty": 1,
        "frequency_penalty": -1, "parallel_tool_calls": False,
        "tool_choice": {"type": "function", "function": {"name": "lookup"}},
        "response_format": {"type": "json_schema", "json_schema": {"name": "out", "strict": True,
                                                                    "schema": {"type": "object"}}},
        "tools": [{"type": "function", "function": {"name": "lookup"}}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}},
                {"type": "file", "file": {"filename": "a.pdf", "file_data": f"data:application/pdf;base64,{pdf}"}}]},
            {"role": "assistant", "content": "ok", "reasoning_content": "thought first"}]}).encode(), TENANT)
    user, assistant = params.messages
    assert not user.content and [p.WhichOneof("part") for p in user.parts] == ["text", "image", "document"]
    assert user.parts[1].image == pb.ImagePart(url="https://example.com/a.png", detail="low")
    assert user.parts[2].document == pb.DocumentPart(data=b"%PDF-1.7 x", media_type="application/pdf",
                                                     filename="a.pdf")
    assert [p.WhichOneof("part") for p in assistant.parts] == ["reasoning", "text"]
    assert assistant.parts[0].reasoning.text == "thought first" and assistant.parts[1].text == "ok"
    assert params.reasoning.effort == pb.REASONING_EFFORT_LOW and params.seed == 7
    assert (params.top_p, params.presence_penalty, params.frequency_penalty) == (0.5, 1, -1)
    assert params.parallel_tool_calls is False
    assert params.tool_choice == pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_TOOL, name="lookup")
    assert params.response_format.name == "out" and params.response_format.strict
    assert json.loads(params.response_format.schema_json) == {"type": "object"}
    for mode, want in (("none", pb.TOOL_CHOICE_MODE_NONE), ("required", pb.TOOL_CHOICE_MODE_REQUIRED)):
        assert parse(tool_choice=mode)[0].tool_choice.mode == want


def test_embeddings_requests_map_and_refuse_by_field() -> None:
    call = parse_embeddings_request(json.dumps({"model": "text-embedding-3-small", "input": ["a", "b"],
                                                "dimensions": 4, "encoding_format": "base64",
                                                "user": "u"}).encode(), TENANT)
    assert [i.text for i in call.request.inputs] == ["a", "b"] and call.request.dimensions == 4 and call.base64
    assert not parse_embeddings_request(b'{"model": "m", "input": "x"}', TENANT).base64
    for body, param in ((b'{"model": "m", "input": []}', "input"), (b'{"model": "m", "input": [1]}', "input"),
                        (b'{"input": "x"}', "model"),
                        (b'{"model": "m", "input": "x", "dimensions": "4"}', "dimensions"),
                        (b'{"model": "m", "input": "x", "encoding_format": "int8"}', "encoding_format"),
                        (b'{"model": "m", "input": "x", "truncate": true}', "truncate")):
        with pytest.raises(UnifiedRequestError) as caught:
            parse_embeddings_request(body, TENANT)
        assert caught.value.param == param


def test_embeddings_answer_in_openai_shape_with_base64_little_endian_float32() -> None:
    reply = pb.EmbedResponse(model="m", embeddings=[pb.Embedding(index=0, values=[0.5, -1.0])],
                             usage=pb.Usage(input_tokens=3))
    as_floats = json.loads(embeddings_json(reply, base64_vectors=False))
    assert as_floats["data"] == [{"object": "embedding", "index": 0, "embedding": [0.5, -1.0]}]
    assert as_floats["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    packed = json.loads(embeddings_json(reply, base64_vectors=True))["data"][0]["embedding"]
    assert struct.unpack("<2f", base64.b64decode(packed)) == (0.5, -1.0)
