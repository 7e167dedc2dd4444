"""The stand-in's v2 request features, driven with the official SDKs' own request shapes: content parts (images,
documents, tool-result arrays), thinking handed back with its signature, Gemini 3's function-call signatures,
structured outputs, sampling controls, citations (``cite=1``), Anthropic's fallback block (``fallback=``) and Gemini's
model-version change (``modelversion=``); and each provider's refusals in its own error shape."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx
import jsonschema
import openai
import pytest
from google.genai import errors as genai_errors
from google.genai import types
from pydantic import BaseModel

from devstack.upstream import FakeUpstream, UpstreamConfig, call_signature, generated_text, seen_note, signature
from devstack.upstream.structured import instance
from tests.integration.test_upstream_sdk_endpoints import gem
from tests.integration.test_upstream_sdks import ANT_KEY, GEM_KEY, KEY, ant, oai

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"
PNG_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()
PDF_URL = "data:application/pdf;base64," + base64.b64encode(PDF).decode()
IMAGE_URL_ERROR = ("Invalid image URL: 'messages[0].content[0].image_url.url'. Expected a base64-encoded data URL with "
                   "an image MIME type (e.g. 'data:image/png;base64,aW1nIGJ5dGVzIGhlcmU='), ")
LOOKUP = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}


class Address(BaseModel):
    street: str
    number: int


class Person(BaseModel):
    name: str
    age: int
    tags: list[str]
    home: Address
    nick: str | None = None


@pytest.fixture
async def up() -> AsyncIterator[FakeUpstream]:
    keys = {"openai": {KEY}, "anthropic": {ANT_KEY}, "gemini": {GEM_KEY}}
    async with FakeUpstream(UpstreamConfig(keys=keys, frames=5, chunk_size=-1)) as server:
        yield server


async def post(up: FakeUpstream, path: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    """A raw request, with the family's key header picked from the path."""
    auth = {"/v1/messages": {"x-api-key": ANT_KEY}}.get(path) or (
        {"x-goog-api-key": GEM_KEY} if path.startswith("/v1beta") else {"authorization": f"Bearer {KEY}"})
    async with httpx.AsyncClient(base_url=up.base_url) as c:
        return await c.post(path, json=body, headers={**auth, **headers})


def openai_error(r: httpx.Response) -> tuple[int, str, str | None, str | None]:
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["type"] == "invalid_request_error"
    return r.status_code, err["message"], err["param"], err["code"]


def anthropic_error(r: httpx.Response) -> tuple[int, str]:
    body = r.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert body["request_id"].startswith("req_")
    return r.status_code, body["error"]["message"]


def gemini_error(r: httpx.Response) -> tuple[int, str, str]:
    err = r.json()["error"]
    return err["code"], err["status"], err["message"]


# ---- the structured-output instance generator ---------------------------------------------------------------

@pytest.mark.parametrize("schema", [
    Person.model_json_schema(),
    {"type": "object", "properties": {"when": {"type": "string", "format": "date-time"},
                                      "n": {"type": "integer", "minimum": 5, "maximum": 9},
                                      "x": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                                      "kind": {"enum": ["b", "a"]}, "ok": {"type": "boolean"},
                                      "code": {"type": "string", "minLength": 8},
                                      "many": {"type": "array", "items": {"type": "string"}, "minItems": 3},
                                      "either": {"anyOf": [{"type": "null"}, {"type": "integer"}]}},
     "required": ["when"], "additionalProperties": False},
    {"$defs": {"node": {"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
                        "required": ["kids"]}}, "$ref": "#/$defs/node"},
])
def test_instance_validates_against_its_schema(schema: dict[str, Any]) -> None:
    value = instance(schema)
    jsonschema.validate(value, schema)
    if "properties" in schema:
        assert set(value) == set(schema["properties"])  # every declared property, optional ones too


def test_instance_reads_gemini_openapi_schemas() -> None:
    schema = {"type": "OBJECT", "properties": {"b": {"type": "STRING"}, "a": {"type": "INTEGER", "nullable": True}},
              "propertyOrdering": ["a", "b"]}
    assert json.dumps(instance(schema)) == '{"a": 1, "b": "alpha"}'  # in propertyOrdering's order


# ---- OpenAI ---------------------------------------------------------------------------------------------------

async def test_openai_sdk_image_and_file_parts(up: FakeUpstream) -> None:
    content: Any = [{"type": "text", "text": "what are these?"},
                    {"type": "image_url", "image_url": {"url": PNG_URL, "detail": "low"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                    {"type": "file", "file": {"file_data": PDF_URL, "filename": "a.pdf"}}]
    async with oai(up) as client:
        async with client.chat.completions.stream(model="gpt-4o", messages=[{"role": "user", "content": content}]) as s:
            final = await s.get_final_completion()
        whole = await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": content}])
    expected = f"{seen_note(2, 1)} {generated_text(5)}"
    assert seen_note(2, 1) == "[saw 2 images, 1 document]"
    assert final.choices[0].message.content == expected == whole.choices[0].message.content
    assert final.usage is None or final.usage.completion_tokens == 5
    assert up.requests[-1].json["messages"][0]["content"] == content


async def test_openai_tool_text_parts_and_reasoning_content_history(up: FakeUpstream) -> None:
    messages: Any = [
        {"role": "system", "content": [{"type": "text", "text": "be brief"}]},
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": None, "reasoning_content": "hmm",
         "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "42"}]}]
    r = await post(up, "/v1/chat/completions", {"model": "deepseek-reasoner", "messages": messages, "tools": [LOOKUP]})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == generated_text(5)


@pytest.mark.parametrize(("part", "role", "expected"), [
    ({"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}, "user",
     (400, IMAGE_URL_ERROR + "but got an invalid base64-encoded value.",
      "messages[0].content[0].image_url.url", "invalid_value")),
    ({"type": "image_url", "image_url": {"url": PDF_URL}}, "user",
     (400, IMAGE_URL_ERROR + "but got unsupported MIME type 'application/pdf'.",
      "messages[0].content[0].image_url.url", "invalid_value")),
    ({"type": "image_url", "image_url": {"url": "ftp://example.com/a.png"}}, "user",
     (400, IMAGE_URL_ERROR + "but got a value without the 'data:' prefix.",
      "messages[0].content[0].image_url.url", "invalid_value")),
    ({"type": "image_url", "image_url": {"url": "data:image/bmp;base64,AAAA"}}, "user",
     (400, "You uploaded an unsupported image. Please make sure your image has of one the following formats: ['png', "
      "'jpeg', 'gif', 'webp'].", None, "invalid_image_format")),
    ({"type": "image_url", "image_url": {"url": PNG_URL, "detail": "ultra"}}, "user",
     (400, "Invalid value: 'ultra'. Supported values are: 'auto', 'low', 'high', and 'original'.",
      "messages[0].content[0].image_url.detail", "invalid_value")),
    ({"type": "file", "file": {"file_data": PNG_URL, "filename": "a.png"}}, "user",
     (400, "Invalid file data: 'messages[0].content[0].file.file_data'. Expected a base64-encoded data URL with an "
      "application/pdf MIME type (e.g. 'data:application/pdf;base64,SGVsbG8sIFdvcmxkIQ=='), but got unsupported MIME "
      "type 'image/png'.", "messages[0].content[0].file.file_data", "invalid_value")),
    ({"type": "image_url", "image_url": {"url": PNG_URL}}, "system",
     (400, "Invalid 'messages[0]'. Image URLs are only allowed for messages with role 'user', but this message with "
      "role 'system' contains an image URL.", "messages[0]", "invalid_value")),
    ({"type": "image_url", "image_url": {"url": PNG_URL}}, "tool",
     (400, "Invalid 'messages[0]'. Image URLs are only allowed for messages with role 'user', but this message with "
      "role 'tool' contains an image URL.", "messages[0]", "invalid_value")),
    ({"type": "video", "video": {}}, "user",
     (400, "Invalid value: 'video'. Supported values are: 'text', 'image_url', 'input_audio', and 'file'.",
      "messages[0].content[0].type", "invalid_value")),
    ({"type": "refusal", "refusal": "no"}, "tool",
     (400, "Invalid value: 'refusal'. Supported values are: 'text'.", "messages[0].content[0].type", "invalid_value")),
])
async def test_openai_refuses_parts_as_openai_does(up: FakeUpstream, part: dict[str, Any], role: str,
                                                   expected: tuple[Any, ...]) -> None:
    message: dict[str, Any] = {"role": role, "content": [part]}
    if role == "tool":
        message["tool_call_id"] = "call_1"
    r = await post(up, "/v1/chat/completions", {"model": "gpt-4o", "messages": [message]})
    assert openai_error(r) == expected


async def test_openai_sdk_parse_structured_output_whole_and_streamed(up: FakeUpstream) -> None:
    messages: Any = [{"role": "user", "content": "who?"}]
    async with oai(up) as client:
        whole = await client.chat.completions.parse(model="gpt-4o", messages=messages, response_format=Person)
        async with client.chat.completions.stream(model="gpt-4o?frames=7", messages=messages,
                                                  response_format=Person) as s:
            deltas = [e.delta async for e in s if e.type == "content.delta" and e.delta]
            final = await s.get_final_completion()
    parsed = whole.choices[0].message.parsed
    assert isinstance(parsed, Person) and parsed.home.street == "alpha" and parsed.tags == ["alpha"]
    assert final.choices[0].message.parsed == parsed
    assert len(deltas) == 7 and json.loads("".join(deltas)) == parsed.model_dump()
    sent = up.requests[-1].json["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["strict"] is True


async def test_openai_response_format_refusals(up: FakeUpstream) -> None:
    loose = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    r = await post(up, "/v1/chat/completions", {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}],
                                                "response_format": {"type": "json_schema", "json_schema": {
                                                    "name": "thing", "schema": loose, "strict": True}}})
    assert openai_error(r) == (400, "Invalid schema for response_format 'thing': In context=(), 'additionalProperties' "
                               "is required to be supplied and to be false.", "response_format", None)
    nested = {"type": "object", "additionalProperties": False, "required": ["a"],
              "properties": {"a": {"type": "object", "properties": {"b": {"type": "string"}, "c": {"type": "string"}},
                                   "required": ["b"], "additionalProperties": False}}}
    r = await post(up, "/v1/chat/completions", {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}],
                                                "response_format": {"type": "json_schema", "json_schema": {
                                                    "name": "thing", "schema": nested, "strict": True}}})
    assert openai_error(r)[1] == ("Invalid schema for response_format 'thing': In context=('properties', 'a'), "
                                  "'required' is required to be supplied and to be an array including every key in "
                                  "properties. Missing 'c'.")
    r = await post(up, "/v1/chat/completions", {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}],
                                                "response_format": {"type": "json_object"}})
    assert openai_error(r) == (400, "'messages' must contain the word 'json' in some form, to use 'response_format' "
                               "of type 'json_object'.", "messages", None)
    r = await post(up, "/v1/chat/completions", {"model": "gpt-4o", "messages": [{"role": "user", "content": "a JSON"}],
                                                "response_format": {"type": "json_object"}})
    assert r.status_code == 200 and json.loads(r.json()["choices"][0]["message"]["content"]) == {}
    # Not strict: the schema is followed, not policed.
    r = await post(up, "/v1/chat/completions", {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}],
                                                "response_format": {"type": "json_schema", "json_schema": {
                                                    "name": "thing", "schema": loose}}})
    assert json.loads(r.json()["choices"][0]["message"]["content"]) == {"a": "alpha"}


async def test_openai_sampling_controls_and_tool_choice_rules(up: FakeUpstream) -> None:
    user: Any = [{"role": "user", "content": "x"}]
    async with oai(up) as client:
        done = await client.chat.completions.create(
            model="gpt-4o?tool=1", messages=user, tools=[LOOKUP], tool_choice="none", parallel_tool_calls=False,
            top_p=0.5, seed=7, presence_penalty=0.1, frequency_penalty=-0.1)
        with pytest.raises(openai.BadRequestError) as ei:
            await client.chat.completions.create(model="gpt-4o", messages=user, tool_choice="required")
    assert done.choices[0].message.tool_calls is None and done.choices[0].finish_reason == "stop"  # "none" wins
    sent = up.requests[0].json
    assert (sent["top_p"], sent["seed"], sent["presence_penalty"], sent["parallel_tool_calls"]) == (0.5, 7, 0.1, False)
    assert ei.value.body == {"message": "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' "
                             "are specified.", "type": "invalid_request_error", "param": "tool_choice", "code": None}
    r = await post(up, "/v1/chat/completions", {"model": "gpt-4o", "messages": user, "parallel_tool_calls": True})
    assert openai_error(r)[2] == "parallel_tool_calls"
    strict_tool = {"type": "function", "function": {"name": "f", "strict": True, "parameters": {
        "type": "object", "properties": {"a": {"type": "string"}}}}}
    r = await post(up, "/v1/chat/completions", {"model": "gpt-4o", "messages": user, "tools": [strict_tool]})
    assert openai_error(r) == (400, "Invalid schema for function 'f': In context=(), 'additionalProperties' is "
                               "required to be supplied and to be false.", "tools[0].function.parameters",
                               "invalid_function_parameters")


async def test_mistral_route_takes_random_seed_not_seed_and_its_own_chunks(up: FakeUpstream) -> None:
    user: Any = [{"role": "user", "content": [{"type": "text", "text": "x"},
                                              {"type": "image_url", "image_url": "https://example.com/a.png"},
                                              {"type": "document_url", "document_url": "https://example.com/a.pdf"}]}]
    r = await post(up, "/mistral/v1/chat/completions", {"model": "mistral-small", "messages": user, "random_seed": 3,
                                                        "top_p": 0.9, "presence_penalty": 0.2})
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == f"{seen_note(1, 1)} {generated_text(5)}"
    r = await post(up, "/mistral/v1/chat/completions", {"model": "mistral-small", "messages": user, "seed": 3})
    detail = r.json()["message"]["detail"][0]
    assert r.status_code == 422 and (detail["type"], detail["loc"], detail["input"]) == ("extra_forbidden",
                                                                                         ["body", "seed"], 3)
    bad: Any = [{"role": "user", "content": [{"type": "file", "file": {"file_data": PDF_URL}}]}]
    r = await post(up, "/mistral/v1/chat/completions", {"model": "mistral-small", "messages": bad})
    detail = r.json()["message"]["detail"][0]
    assert r.status_code == 422 and detail["type"] == "missing"
    assert detail["loc"] == ["body", "messages", 0, "user", "content", "list", 0, "file", "file_id"]
    bad = [{"role": "user", "content": [{"type": "input_image", "image_url": PNG_URL}]}]
    r = await post(up, "/mistral/v1/chat/completions", {"model": "mistral-small", "messages": bad})
    assert r.status_code == 422 and r.json()["message"]["detail"][0]["type"] == "union_tag_invalid"


async def test_openai_citations_streamed_and_whole(up: FakeUpstream) -> None:
    user: Any = [{"role": "user", "content": "search"}]
    async with oai(up) as client:
        async with client.chat.completions.stream(model="gpt-4o-search-preview?cite=1", messages=user) as s:
            final = await s.get_final_completion()
        whole = await client.chat.completions.create(model="gpt-4o-search-preview?cite=1", messages=user)
    for message in (final.choices[0].message, whole.choices[0].message):
        assert message.content == generated_text(5)
        (note,) = message.annotations or []
        assert note.type == "url_citation" and note.url_citation.url == "https://example.com/alpha"
        assert (note.url_citation.start_index, note.url_citation.end_index) == (0, len(generated_text(5)))


async def test_responses_api_structured_output_and_citations(up: FakeUpstream) -> None:
    async with oai(up) as client:
        parsed = await client.responses.parse(model="gpt-5", input="who?", text_format=Person)
        cited = await client.responses.create(model="gpt-5?cite=1", input="search")
        async with client.responses.stream(model="gpt-5?cite=1", input="search") as s:
            kinds = [e.type async for e in s]
            final = await s.get_final_response()
    assert isinstance(parsed.output_parsed, Person) and parsed.output_parsed.age == 1
    notes = cited.output[0].content[0].annotations
    assert [(n.type, n.url) for n in notes] == [("url_citation", "https://example.com/alpha")]
    assert "response.output_text.annotation.added" in kinds
    assert final.output[0].content[0].annotations[0].end_index == len(generated_text(5))
    loose = {"type": "json_schema", "name": "x", "schema": {"type": "object", "properties": {}}, "strict": True}
    r = await post(up, "/v1/responses", {"model": "gpt-5", "input": "x", "text": {"format": loose}})
    assert openai_error(r)[2:] == ("text.format.schema", "invalid_json_schema")


# ---- Anthropic ------------------------------------------------------------------------------------------------

async def test_anthropic_sdk_image_document_and_tool_result_blocks(up: FakeUpstream) -> None:
    png, pdf = base64.b64encode(PNG).decode(), base64.b64encode(PDF).decode()
    messages: Any = [
        {"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": pdf},
             "title": "a.pdf", "citations": {"enabled": True}},
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain words"}},
            {"type": "text", "text": "what are these?"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [
            {"type": "text", "text": "a chart"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/webp", "data": png}}]}]}]
    async with ant(up) as client:
        msg = await client.messages.create(model="claude-sonnet-4-5", max_tokens=100, messages=messages)
        async with client.messages.stream(model="claude-sonnet-4-5", max_tokens=100, messages=messages) as s:
            final = await s.get_final_message()
    expected = f"{seen_note(3, 2)} {generated_text(5)}"
    assert msg.content[0].text == expected == final.content[0].text


@pytest.mark.parametrize(("block", "message"), [
    ({"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": "AAAA"}},
     "messages.0.content.0.image.source.base64.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or "
     "'image/webp'"),
    ({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "@@"}},
     "messages.0.content.0.image.source.base64.data: The image data is not valid base64."),
    ({"type": "image", "source": {"type": "path", "path": "/etc/passwd"}},
     "messages.0.content.0.image.source: Input tag 'path' found using 'type' does not match any of the expected tags: "
     "'base64', 'url', 'file'"),
    ({"type": "document", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
     "messages.0.content.0.document.source.base64.media_type: Input should be 'application/pdf'"),
    ({"type": "text", "text": "x", "signature": "abc"}, "messages.0.content.0.text.signature: Extra inputs are not "
     "permitted"),
    ({"type": "tool_result", "tool_use_id": "t", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "text/plain", "data": "AAAA"}}]},
     "messages.0.content.0.tool_result.content.0.image.source.base64.media_type: Input should be 'image/jpeg', "
     "'image/png', 'image/gif' or 'image/webp'"),
])
async def test_anthropic_refuses_blocks_as_anthropic_does(up: FakeUpstream, block: dict[str, Any],
                                                          message: str) -> None:
    r = await post(up, "/v1/messages", {"model": "claude-x", "max_tokens": 10,
                                        "messages": [{"role": "user", "content": [block]}]})
    assert anthropic_error(r) == (400, message)


async def test_anthropic_thinking_handed_back_with_its_signature(up: FakeUpstream) -> None:
    thinking = {"type": "enabled", "budget_tokens": 1024}
    async with ant(up) as client:
        async with client.messages.stream(model="claude-x", max_tokens=2000, thinking=thinking,
                                          messages=[{"role": "user", "content": "hi"}]) as s:
            first = await s.get_final_message()
        history: Any = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": first.content},
                        {"role": "user", "content": "and?"}]
        again = await client.messages.create(model="claude-x", max_tokens=2000, thinking=thinking,
                                             messages=history)
        redacted: Any = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": [
            {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT"},
            {"type": "text", "text": "ok"}]}, {"role": "user", "content": "and?"}]
        assert (await client.messages.create(model="claude-x", max_tokens=10, messages=redacted)).content
        tampered = json.loads(json.dumps(history, default=lambda b: b.model_dump()))
        tampered[1]["content"][0]["thinking"] += " (edited)"
        with pytest.raises(anthropic.BadRequestError) as ei:
            await client.messages.create(model="claude-x", max_tokens=2000, thinking=thinking,
                                         messages=tampered)
        unsigned = json.loads(json.dumps(history, default=lambda b: b.model_dump()))
        del unsigned[1]["content"][0]["signature"]
        with pytest.raises(anthropic.BadRequestError) as missing:
            await client.messages.create(model="claude-x", max_tokens=10, messages=unsigned)
    assert first.content[0].type == "thinking" and again.content[0].type == "thinking"
    assert first.content[0].signature == signature(first.content[0].thinking)
    assert ei.value.body["error"] == {"type": "invalid_request_error",
                                      "message": "messages.1.content.0: Invalid `signature` in `thinking` block"}
    assert missing.value.body["error"]["message"] == "messages.1.content.0.thinking.signature: Field required"


async def test_anthropic_structured_output_ga_and_beta(up: FakeUpstream) -> None:
    user: Any = [{"role": "user", "content": "who?"}]
    async with ant(up) as client:
        parsed = await client.messages.parse(model="claude-x", max_tokens=100, messages=user, output_format=Person)
        async with client.messages.stream(model="claude-x", max_tokens=100, messages=user,
                                          output_format=Person) as s:
            streamed = await s.get_final_message()
    assert isinstance(parsed.parsed_output, Person) and parsed.parsed_output.home.number == 1
    assert streamed.parsed_output == parsed.parsed_output
    assert up.requests[-1].json["output_config"]["format"]["type"] == "json_schema"
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    body = {"model": "claude-x", "max_tokens": 10, "messages": user,
            "output_format": {"type": "json_schema", "schema": schema}}
    r = await post(up, "/v1/messages", body, **{"anthropic-beta": "structured-outputs-2025-11-13"})
    assert r.status_code == 200 and json.loads(r.json()["content"][0]["text"]) == {"a": 1}
    r = await post(up, "/v1/messages", body)  # the beta's field without the beta
    assert anthropic_error(r) == (400, "output_format: Extra inputs are not permitted")
    r = await post(up, "/v1/messages", {**body, "output_format": None, "output_config": {"format": {"type": "xml"}}},
                   **{"anthropic-beta": "structured-outputs-2025-11-13"})
    assert anthropic_error(r)[1].startswith("output_config.format: Input tag 'xml' found using 'type'")


@pytest.mark.parametrize(("extra", "message"), [
    ({"presence_penalty": 0.5}, "presence_penalty: Extra inputs are not permitted"),
    ({"seed": 1}, "seed: Extra inputs are not permitted"),
    ({"thinking": {"type": "enabled", "budget_tokens": 1024}, "temperature": 0.5},
     "`temperature` may only be set to 1 when thinking is enabled. Please consult our documentation at "
     "https://docs.claude.com/en/docs/build-with-claude/extended-thinking#feature-compatibility"),
    ({"thinking": {"type": "adaptive"}, "top_k": 5},
     "`top_k` must be unset when thinking is enabled. Please consult our documentation at "
     "https://docs.claude.com/en/docs/build-with-claude/extended-thinking#feature-compatibility"),
    ({"thinking": {"type": "enabled", "budget_tokens": 1024}, "top_p": 0.5},
     "`top_p` must be greater than or equal to 0.95 or unset when thinking is enabled. Please consult our "
     "documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#feature-compatibility"),
    ({"thinking": {"type": "sometimes"}},
     "thinking: Input tag 'sometimes' found using 'type' does not match any of the expected tags: 'enabled', "
     "'disabled', 'adaptive', 'between_tools'"),
])
async def test_anthropic_refuses_what_its_api_does_not_take(up: FakeUpstream, extra: dict[str, Any],
                                                            message: str) -> None:
    r = await post(up, "/v1/messages", {"model": "claude-x", "max_tokens": 2000,
                                        "messages": [{"role": "user", "content": "x"}], **extra})
    assert anthropic_error(r) == (400, message)


async def test_anthropic_sampling_and_thinking_modes_accepted(up: FakeUpstream) -> None:
    user: Any = [{"role": "user", "content": "x"}]
    async with ant(up) as client:
        plain = await client.messages.create(model="claude-x", max_tokens=10, messages=user,
                                             thinking={"type": "disabled"}, extra_body={"top_p": 0.5, "top_k": 3})
        adaptive = await client.messages.create(model="claude-x", max_tokens=10, messages=user,
                                                thinking={"type": "adaptive", "display": "omitted"})
        barred = await client.messages.create(model="claude-x?tool=1", max_tokens=10, messages=user,
                                              tools=[{"name": "lookup", "input_schema": {"type": "object"}}],
                                              tool_choice={"type": "none"})
    assert [b.type for b in plain.content] == ["text"]
    thought = adaptive.content[0]
    assert thought.type == "thinking" and thought.thinking == "" and thought.signature == signature("")
    assert adaptive.usage.output_tokens == 5 + 3  # omitted thinking is still thought, and billed
    assert [b.type for b in barred.content] == ["text"] and barred.stop_reason == "end_turn"


async def test_anthropic_citations_web_and_document(up: FakeUpstream) -> None:
    doc: Any = [{"role": "user", "content": [
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "The grass is green."},
         "title": "facts", "citations": {"enabled": True}}, {"type": "text", "text": "colour?"}]}]
    async with ant(up) as client:
        async with client.messages.stream(model="claude-x?cite=1", max_tokens=10,
                                          messages=[{"role": "user", "content": "search"}]) as s:
            web = await s.get_final_message()
        async with client.messages.stream(model="claude-x?cite=1", max_tokens=10, messages=doc) as s:
            cited = await s.get_final_message()
        whole = await client.messages.create(model="claude-x?cite=1", max_tokens=10, messages=doc)
    (w,) = web.content[0].citations or []
    assert w.type == "web_search_result_location" and w.url == "https://example.com/alpha"
    assert web.content[0].text == generated_text(5)
    for message in (cited, whole):
        (c,) = message.content[0].citations or []
        assert c.type == "char_location" and c.cited_text == "The grass is green." and c.document_title == "facts"
        assert (c.document_index, c.start_char_index, c.end_char_index) == (0, 0, 19)


async def test_anthropic_fallback_block_in_the_beta_sdk(up: FakeUpstream) -> None:
    user: Any = [{"role": "user", "content": "x"}]
    beta = ["server-side-fallback-2026-07-01"]
    async with ant(up) as client:
        async with client.beta.messages.stream(model="claude-opus-5?fallback=claude-sonnet-5&frames=6",
                                               max_tokens=100, messages=user, betas=beta,
                                               fallbacks=[{"model": "claude-sonnet-5"}]) as s:
            text = "".join([t async for t in s.text_stream])
            final = await s.get_final_message()
        whole = await client.beta.messages.create(model="claude-opus-5?fallback=claude-sonnet-5&frames=6",
                                                  max_tokens=100, messages=user, betas=beta)
    assert text == generated_text(6)
    for message in (final, whole):
        assert [b.type for b in message.content] == ["text", "fallback", "text"]
        block = message.content[1]
        assert block.from_.model == "claude-opus-5" and block.to.model == "claude-sonnet-5"
        assert block.trigger.type == "refusal"
        assert message.model == "claude-sonnet-5"  # the SDK relabels the stream; the whole answer comes relabelled
        iterations = message.usage.iterations or []
        assert [i.type for i in iterations] == ["message", "fallback_message"]
        assert iterations[-1].model == "claude-sonnet-5" and iterations[-1].output_tokens == 3
    raw = await post(up, "/v1/messages", {"model": "claude-opus-5?fallback=claude-sonnet-5", "max_tokens": 10,
                                          "messages": user, "stream": True})
    starts = [json.loads(line[6:]) for line in raw.text.splitlines()
              if line.startswith("data: ") and '"content_block_start"' in line]
    (fallback,) = [e for e in starts if e["content_block"]["type"] == "fallback"]
    index = fallback["index"]
    assert f'"index": {index}, "delta"' not in raw.text  # a bare start/stop pair: no deltas


# ---- Gemini ---------------------------------------------------------------------------------------------------

async def test_gemini_sdk_inline_and_file_parts(up: FakeUpstream) -> None:
    contents = [types.Content(role="user", parts=[
        types.Part.from_bytes(data=PNG, mime_type="image/png"),
        types.Part.from_bytes(data=PDF, mime_type="application/pdf"),
        types.Part.from_uri(file_uri="https://generativelanguage.googleapis.com/v1beta/files/abc",
                            mime_type="application/pdf"),
        types.Part.from_text(text="what are these?")])]
    async with gem(up) as client:
        whole = await client.models.generate_content(model="gemini-2.5-flash", contents=contents)
        chunks = [c async for c in await client.models.generate_content_stream(model="gemini-2.5-flash",
                                                                               contents=contents)]
    expected = f"{seen_note(1, 2)} {generated_text(5)}"
    assert whole.text == expected == "".join(c.text or "" for c in chunks)
    sent = up.requests[-1].json["contents"][0]["parts"]
    assert base64.b64decode(sent[0]["inlineData"]["data"]) == PNG and "fileData" in sent[2]


async def test_gemini_refuses_bad_inline_data_and_unknown_config_fields(up: FakeUpstream) -> None:
    path = "/v1beta/models/gemini-2.5-flash:generateContent"
    bad = {"contents": [{"role": "user", "parts": [{"inlineData": {"mimeType": "image/png", "data": "@@@"}}]}]}
    r = await post(up, path, bad)
    assert gemini_error(r) == (400, "INVALID_ARGUMENT", "Invalid value at 'contents[0].parts[0].inline_data.data' "
                               "(TYPE_BYTES), Base64 decoding failed for \"@@@\"")
    assert r.json()["error"]["details"][0]["fieldViolations"][0]["field"] == "contents[0].parts[0].inline_data.data"
    hi = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    r = await post(up, path, {**hi, "generationConfig": {"responseFormat": {}, "reasoningEffort": "low"}})
    assert gemini_error(r)[2] == ("Invalid JSON payload received. Unknown name \"reasoningEffort\" at "
                                  "'generation_config': Cannot find field.")
    r = await post(up, path, {**hi, "generationConfig": {"thinkingConfig": {"budget": 5}}})
    assert gemini_error(r)[2].endswith("Unknown name \"budget\" at 'generation_config.thinking_config': Cannot find "
                                       "field.")
    fine = {"topP": 0.5, "seed": 3, "presencePenalty": 0.1, "frequencyPenalty": 0.2, "top_k": 4}
    assert (await post(up, path, {**hi, "generationConfig": fine})).status_code == 200


async def test_gemini_thinking_level_and_budget_rules(up: FakeUpstream) -> None:
    both = types.GenerateContentConfig(thinking_config=types.ThinkingConfig(
        thinking_level=types.ThinkingLevel.HIGH, thinking_budget=1024))
    level = types.GenerateContentConfig(thinking_config=types.ThinkingConfig(
        thinking_level=types.ThinkingLevel.LOW, include_thoughts=True))
    off = types.GenerateContentConfig(thinking_config=types.ThinkingConfig(thinking_budget=0, include_thoughts=True))
    async with gem(up) as client:
        with pytest.raises(genai_errors.ClientError) as ei:
            await client.models.generate_content(model="gemini-3-pro-preview", contents="hi", config=both)
        with pytest.raises(genai_errors.ClientError) as old:
            await client.models.generate_content(model="gemini-2.5-flash", contents="hi", config=level)
        thought = await client.models.generate_content(model="gemini-3-pro-preview", contents="hi", config=level)
        unthought = await client.models.generate_content(model="gemini-2.5-flash", contents="hi", config=off)
    assert (ei.value.code, ei.value.status) == (400, "INVALID_ARGUMENT")
    assert ei.value.message == ("Unable to submit request because thinking_budget and thinking_level are not "
                                "supported together.")
    assert old.value.code == 400 and old.value.message == "Thinking level is not supported for this model."
    assert thought.candidates[0].content.parts[0].thought and thought.usage_metadata.thoughts_token_count == 3
    assert unthought.usage_metadata.thoughts_token_count is None


async def test_gemini_structured_output_schema_and_json_schema(up: FakeUpstream) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "pop": {"type": "integer"}},
              "required": ["city", "pop"]}
    async with gem(up) as client:
        typed = await client.models.generate_content(
            model="gemini-2.5-flash", contents="who?",
            config=types.GenerateContentConfig(response_mime_type="application/json", response_schema=Person))
        chunks = [c async for c in await client.models.generate_content_stream(
            model="gemini-2.5-flash%3Fframes%3D6", contents="where?",
            config=types.GenerateContentConfig(response_mime_type="application/json", response_json_schema=schema))]
        enum = await client.models.generate_content(
            model="gemini-2.5-flash", contents="which?",
            config=types.GenerateContentConfig(response_mime_type="text/x.enum", response_schema={
                "type": "STRING", "enum": ["red", "blue"]}))
    assert isinstance(typed.parsed, Person) and typed.parsed.name == "alpha"
    texts = [c.text or "" for c in chunks if c.text]
    assert len(texts) == 6
    jsonschema.validate(json.loads("".join(texts)), schema)
    assert enum.text == "red"


async def test_gemini_tool_config_none_calls_no_tool(up: FakeUpstream) -> None:
    tool = types.Tool(function_declarations=[types.FunctionDeclaration(name="lookup")])
    none = types.ToolConfig(function_calling_config=types.FunctionCallingConfig(
        mode=types.FunctionCallingConfigMode.NONE))
    config = types.GenerateContentConfig(tools=[tool], tool_config=none)
    async with gem(up) as client:
        answer = await client.models.generate_content(model="gemini-2.5-flash%3Ftool%3D1", contents="x", config=config)
    assert answer.function_calls is None and answer.text == generated_text(5)


async def test_gemini_3_function_call_signatures(up: FakeUpstream) -> None:
    tool = types.Tool(function_declarations=[types.FunctionDeclaration(name="lookup")])
    config = types.GenerateContentConfig(tools=[tool])
    model = "gemini-3-pro-preview%3Ftool%3D1"
    user = types.Content(role="user", parts=[types.Part.from_text(text="look it up")])
    async with gem(up) as client:
        first = await client.models.generate_content(model=model, contents=[user], config=config)
        call = first.candidates[0].content
        answer = types.Content(role="user", parts=[types.Part.from_function_response(name="lookup",
                                                                                    response={"v": 42})])
        # The SDK's own history (the model's content appended as it came) passes.
        again = await client.models.generate_content(model="gemini-3-pro-preview", contents=[user, call, answer],
                                                     config=config)
    (part,) = [p for p in call.parts if p.function_call]
    assert part.thought_signature == base64.b64decode(call_signature("lookup"))
    assert again.text == generated_text(5)
    history = [{"role": "user", "parts": [{"text": "look it up"}]},
               {"role": "model", "parts": [{"functionCall": {"name": "lookup", "args": {}}}]},
               {"role": "user", "parts": [{"functionResponse": {"name": "lookup", "response": {"v": 42}}}]}]
    path = "/v1beta/models/gemini-3-pro-preview:generateContent"
    r = await post(up, path, {"contents": history})
    assert gemini_error(r) == (400, "INVALID_ARGUMENT", (
        "Function call is missing a thought_signature in functionCall parts. This is required for tools to work "
        "correctly, and missing thought_signature may lead to degraded model performance. Additional data, function "
        "call `default_api:lookup` , position 2. Please refer to https://ai.google.dev/gemini-api/docs/"
        "thought-signatures for more details."))
    history[1]["parts"][0]["thoughtSignature"] = signature("something else")
    assert gemini_error(await post(up, path, {"contents": history}))[2] == "Corrupted thought signature."
    history[1]["parts"][0]["thoughtSignature"] = "skip_thought_signature_validator"  # Google's documented dummy
    assert (await post(up, path, {"contents": history})).status_code == 200
    # Only the current turn is checked: after a new user text, an old unsigned call is accepted,
    # and Gemini 2.5 does not enforce the rule at all.
    del history[1]["parts"][0]["thoughtSignature"]
    later = [*history, {"role": "model", "parts": [{"text": "42"}]}, {"role": "user", "parts": [{"text": "thanks"}]}]
    assert (await post(up, path, {"contents": later})).status_code == 200
    assert (await post(up, "/v1beta/models/gemini-2.5-flash:generateContent", {"contents": history})).status_code == 200


async def test_gemini_grounding_and_model_version(up: FakeUpstream) -> None:
    async with gem(up) as client:
        chunks = [c async for c in await client.models.generate_content_stream(
            model="gemini-2.5-flash%3Fcite%3D1%26modelversion%3Dgemini-2.5-flash-002%26frames%3D4", contents="news")]
        whole = await client.models.generate_content(model="gemini-2.5-flash%3Fcite%3D1", contents="news")
    assert [c.model_version for c in chunks] == ["gemini-2.5-flash"] * 2 + ["gemini-2.5-flash-002"] * 3
    streamed = "".join(c.text or "" for c in chunks)
    assert streamed == generated_text(4) and whole.text == generated_text(5)
    for grounding, text in ((chunks[-1].candidates[0].grounding_metadata, streamed),
                            (whole.candidates[0].grounding_metadata, whole.text)):
        assert grounding is not None and grounding.web_search_queries == ["alpha"]
        assert grounding.grounding_chunks[0].web.uri == "https://example.com/alpha"
        support = grounding.grounding_supports[0]
        assert support.grounding_chunk_indices == [0]
        assert (support.segment.start_index, support.segment.end_index, support.segment.text) == (
            0, len(text.encode()), text)
    assert all(c.candidates[0].grounding_metadata is None for c in chunks[:-1])
