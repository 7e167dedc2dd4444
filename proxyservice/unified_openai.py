"""OpenAI's chat-completions format to and from the unified schema, for the HTTP front's `/v1/chat/completions`.

Pure translation, no I/O: `parse_chat_request` turns an OpenAI request body into `ChatParameters` (refusing what
the unified schema cannot carry yet, naming the field as OpenAI's `param` does), `ChunkEncoder` turns the
servicer's stream into `chat.completion.chunk` server-sent events, `completion_json` a whole reply into a
`chat.completion`; reasoning text goes out as the OpenAI-compatible family's `reasoning_content`, cache and
reasoning token counts as OpenAI's usage details. What it accepts is what `ChatParameters` models: messages of
text, image (`image_url`) and PDF (`file` with `file_data`) parts, an assistant's earlier `reasoning_content`, tool
calls and results, function tools and `tool_choice`, `parallel_tool_calls`, `response_format` with a JSON schema,
`reasoning_effort`, temperature, top_p, seed, the penalties, max tokens and stop sequences; anything else a caller
needs goes through the native passthrough (`/openai/…`, `/anthropic/…`), unchanged. `parse_embeddings_request` and
`embeddings_json` do the same for `/v1/embeddings` (text inputs, dimensions, float or base64 vectors).
"""

from __future__ import annotations

import base64
import binascii
import json
import sys
from array import array
from typing import Any, NamedTuple

from byok.proxy.v1 import chat_service_pb2 as pb

_ROLES = {"system": pb.ROLE_SYSTEM, "developer": pb.ROLE_SYSTEM, "user": pb.ROLE_USER,
          "assistant": pb.ROLE_ASSISTANT, "tool": pb.ROLE_TOOL}
_FINISH = {pb.FINISH_REASON_STOP: "stop", pb.FINISH_REASON_LENGTH: "length",
           pb.FINISH_REASON_TOOL_CALLS: "tool_calls", pb.FINISH_REASON_CONTENT_FILTER: "content_filter",
           pb.FINISH_REASON_OTHER: "stop"}
# Fields of OpenAI's request that change nothing here, or that the unified path sets itself.
_IGNORED = frozenset({"stream", "stream_options", "user", "n", "metadata", "store", "messages", "model", "tools",
                      "temperature", "max_tokens", "max_completion_tokens", "stop", "tool_choice",
                      "parallel_tool_calls", "response_format", "reasoning_effort", "top_p", "seed",
                      "presence_penalty", "frequency_penalty"})
_EFFORTS = {"none": pb.REASONING_EFFORT_NONE, "minimal": pb.REASONING_EFFORT_MINIMAL, "low": pb.REASONING_EFFORT_LOW,
            "medium": pb.REASONING_EFFORT_MEDIUM, "high": pb.REASONING_EFFORT_HIGH}
_TOOL_MODES = {"auto": pb.TOOL_CHOICE_MODE_AUTO, "none": pb.TOOL_CHOICE_MODE_NONE,
               "required": pb.TOOL_CHOICE_MODE_REQUIRED}
_NOT_PASSTHROUGH = "; the provider's own API under /{provider}/ takes it"


class UnifiedRequestError(ValueError):
    """A request the unified endpoint cannot take; `param` is the field, as in OpenAI's error object."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param


class ChatCall(NamedTuple):
    params: pb.ChatParameters
    stream: bool
    include_usage: bool  # stream_options.include_usage: a last chunk with the usage


def _request_object(body: bytes) -> dict[str, Any]:
    """A request body that must be a JSON object, or the 400 saying what it is instead."""
    try:
        request = json.loads(body)
    except ValueError:
        raise UnifiedRequestError("body", "is not valid JSON") from None
    if not isinstance(request, dict):
        raise UnifiedRequestError("body", "must be a JSON object")
    return request


def _refuse_unknown(request: dict[str, Any], known: frozenset[str]) -> None:
    """The first field (set, not null) the unified schema cannot carry is refused by name."""
    for name in request:
        if name not in known and request[name] is not None:
            raise UnifiedRequestError(name, "is not supported by the unified endpoint" + _NOT_PASSTHROUGH)


def parse_chat_request(body: bytes, tenant: pb.Tenant) -> ChatCall:
    """The parameters for the servicer, and how the caller wants the answer."""
    request = _request_object(body)
    model = request.get("model")
    if not isinstance(model, str) or not model:
        raise UnifiedRequestError("model", "is required (a model name, e.g. gpt-4o-mini or claude-sonnet-4-20250514)")
    _refuse_unknown(request, _IGNORED)
    params = pb.ChatParameters(tenant=tenant, model=model, messages=_messages(request.get("messages")),
                               tools=_tools(request.get("tools")))
    for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        if (number := _number(request, name)) is not None:
            setattr(params, name, number)
    for name in ("max_completion_tokens", "max_tokens"):
        limit = request.get(name)
        if limit is not None:
            if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
                raise UnifiedRequestError(name, "must be a positive integer")
            params.max_tokens = limit
            break
    stop = request.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise UnifiedRequestError("stop", "must be a string or a list of strings")
        params.stop.extend(stops)
    _controls(request, params)
    stream = request.get("stream", False)
    if not isinstance(stream, bool):
        raise UnifiedRequestError("stream", "must be true or false")
    options = request.get("stream_options") or {}
    if not isinstance(options, dict):
        raise UnifiedRequestError("stream_options", "must be an object")
    return ChatCall(params, stream, options.get("include_usage") is True)


def _number(request: dict[str, Any], name: str) -> float | None:
    value = request.get(name)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise UnifiedRequestError(name, "must be a number")
    return float(value)


def _controls(request: dict[str, Any], params: pb.ChatParameters) -> None:
    """tool_choice, parallel_tool_calls, response_format, reasoning_effort and seed, in OpenAI's forms."""
    choice = request.get("tool_choice")
    if isinstance(choice, str) and choice in _TOOL_MODES:
        params.tool_choice.mode = _TOOL_MODES[choice]
    elif isinstance(choice, dict):
        function = choice.get("function")
        if choice.get("type") != "function" or not isinstance(function, dict) or not isinstance(
                function.get("name"), str):
            raise UnifiedRequestError("tool_choice", "must name a function: {type: function, function: {name}}")
        params.tool_choice.CopyFrom(pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_TOOL, name=function["name"]))
    elif choice is not None:
        raise UnifiedRequestError("tool_choice", "must be auto, none, required or a named function")
    parallel = request.get("parallel_tool_calls")
    if parallel is not None:
        if not isinstance(parallel, bool):
            raise UnifiedRequestError("parallel_tool_calls", "must be true or false")
        params.parallel_tool_calls = parallel
    effort = request.get("reasoning_effort")
    if effort is not None:
        if effort not in _EFFORTS:
            raise UnifiedRequestError("reasoning_effort", f"must be one of {', '.join(_EFFORTS)}")
        params.reasoning.effort = _EFFORTS[effort]
    seed = request.get("seed")
    if seed is not None:
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise UnifiedRequestError("seed", "must be an integer")
        params.seed = seed
    _response_format(request.get("response_format"), params)


def _response_format(raw: Any, params: pb.ChatParameters) -> None:
    if raw is None or (isinstance(raw, dict) and raw.get("type") == "text"):
        return
    spec = raw.get("json_schema") if isinstance(raw, dict) and raw.get("type") == "json_schema" else None
    if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
        raise UnifiedRequestError("response_format", "only {type: json_schema, json_schema: {name, schema}} is "
                                  "supported by the unified endpoint (json_object has no schema for every provider)"
                                  + _NOT_PASSTHROUGH)
    params.response_format.CopyFrom(pb.ResponseFormat(
        name=str(spec.get("name") or ""), description=str(spec.get("description") or ""),
        schema_json=json.dumps(spec["schema"]), strict=spec.get("strict") is True))


def _messages(raw: Any) -> list[pb.Message]:
    if not isinstance(raw, list) or not raw:
        raise UnifiedRequestError("messages", "is required: a non-empty list of messages")
    out = []
    for i, message in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise UnifiedRequestError(where, "must be an object")
        role = _ROLES.get(message.get("role"))  # type: ignore[arg-type]
        if role is None:
            raise UnifiedRequestError(f"{where}.role", f"must be one of {', '.join(_ROLES)}")
        msg = pb.Message(role=role, tool_calls=_tool_calls(message.get("tool_calls"), where),
                         tool_call_id=str(message.get("tool_call_id") or ""), name=str(message.get("name") or ""))
        content = message.get("content")
        reasoning = message.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning and role == pb.ROLE_ASSISTANT:
            # An OpenAI-compatible reasoning model's own earlier thinking, handed back first, as it came.
            msg.parts.add(reasoning=pb.ReasoningPart(text=reasoning))
        parts = _parts(content, f"{where}.content")
        if msg.parts or any(part.WhichOneof("part") != "text" for part in parts):
            msg.parts.extend(parts)
        else:  # text only: as content, so a text request is the one it always was
            msg.content = "".join(part.text for part in parts)
        out.append(msg)
    return out


def _text(content: Any, where: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    raise UnifiedRequestError(where, "must be a string or a list of content parts")


def _parts(content: Any, where: str) -> list[pb.ContentPart]:
    """OpenAI content parts as the schema's: text, image_url (a URL or a data: URL) and file (inline PDF)."""
    if not isinstance(content, list):
        text = _text(content, where)
        return [pb.ContentPart(text=text)] if text else []
    parts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            parts.append(pb.ContentPart(text=part["text"]))
        elif kind == "image_url" and isinstance(part.get("image_url"), dict) and isinstance(
                part["image_url"].get("url"), str):
            image = part["image_url"]
            parts.append(pb.ContentPart(image=pb.ImagePart(url=image["url"], detail=str(image.get("detail") or ""))))
        elif kind == "file" and isinstance(part.get("file"), dict):
            parts.append(pb.ContentPart(document=_file(part["file"], f"{where}[{j}].file")))
        else:
            raise UnifiedRequestError(f"{where}[{j}].type", f"{kind or 'this part'} is not supported by the unified "
                                      f"endpoint (text, image_url and file parts){_NOT_PASSTHROUGH}")
    return parts


def _file(file: dict[str, Any], where: str) -> pb.DocumentPart:
    """OpenAI's inline file part: `file_data` is a data: URL (`data:application/pdf;base64,…`); a `file_id` names a
    file uploaded to one provider's Files API, which no other provider can read."""
    data = file.get("file_data")
    if not isinstance(data, str) or not data.startswith("data:") or ";base64," not in data:
        raise UnifiedRequestError(f"{where}.file_data", "must be a base64 data: URL (file_id is provider-specific"
                                  + _NOT_PASSTHROUGH + ")")
    media_type, _, encoded = data[5:].partition(";base64,")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise UnifiedRequestError(f"{where}.file_data", "is not valid base64") from None
    return pb.DocumentPart(data=raw, media_type=media_type, filename=str(file.get("filename") or ""))


def _tool_calls(raw: Any, where: str) -> list[pb.ToolCall]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise UnifiedRequestError(f"{where}.tool_calls", "must be a list")
    calls = []
    for j, call in enumerate(raw):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise UnifiedRequestError(f"{where}.tool_calls[{j}].function", "must be an object with a name")
        calls.append(pb.ToolCall(id=str(call.get("id") or ""), name=function["name"],
                                 arguments=str(function.get("arguments") or "")))
    return calls


def _tools(raw: Any) -> list[pb.Tool]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise UnifiedRequestError("tools", "must be a list")
    tools = []
    for i, tool in enumerate(raw):
        function = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise UnifiedRequestError(f"tools[{i}]", "must be a function tool with a name")
        parameters = function.get("parameters")
        tools.append(pb.Tool(name=function["name"], description=str(function.get("description") or ""),
                             parameters_json=json.dumps(parameters) if parameters is not None else ""))
    return tools


# Families whose output_tokens exclude the reasoning tokens (OpenAI's completion_tokens include them).
_REASONING_APART = frozenset({"gemini"})


def _usage(usage: pb.Usage, api_family: str) -> dict[str, Any]:
    """OpenAI's usage object; the cache and reasoning details only where the provider reported them."""
    completion = usage.output_tokens
    if api_family in _REASONING_APART:
        completion += usage.reasoning_tokens
    out: dict[str, Any] = {"prompt_tokens": usage.input_tokens, "completion_tokens": completion,
                           "total_tokens": usage.input_tokens + completion}
    if usage.HasField("cached_input_tokens"):
        out["prompt_tokens_details"] = {"cached_tokens": usage.cached_input_tokens}
    if usage.HasField("reasoning_tokens"):
        out["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    return out


class ChunkEncoder:
    """One stream's `chat.completion.chunk` events, from the servicer's messages in order."""

    def __init__(self, completion_id: str, created: int, model: str, *, include_usage: bool = True) -> None:
        self._base = {"id": completion_id, "object": "chat.completion.chunk", "created": created}
        self._model = model
        self._include_usage = include_usage
        self._started: set[int] = set()
        self._usage: pb.Usage | None = None
        self._api_family = ""

    def _event(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        chunk = {**self._base, "model": self._model, "choices": choices, **extra}
        return b"data: " + json.dumps(chunk, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"

    def encode(self, message: pb.StreamChatResponse) -> bytes:
        if message.HasField("start"):
            # OpenAI's first chunk: the role, no content. Sent at once, it also puts the status and headers on the
            # wire before the provider's first token (aiohttp sends the headers with the first body bytes).
            self._started.add(0)
            self._api_family = message.start.api_family
            return self._event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        if message.model:
            self._model = message.model
        if message.HasField("usage"):
            self._usage = message.usage
        out = []
        for choice in message.choices:
            delta: dict[str, Any] = {}
            if choice.index not in self._started:
                self._started.add(choice.index)
                delta["role"] = "assistant"
            if choice.reasoning:
                delta["reasoning_content"] = choice.reasoning  # the OpenAI-compatible family's reasoning field
            if choice.text:
                delta["content"] = choice.text
            if choice.refusal:
                delta["refusal"] = choice.refusal
            if choice.tool_calls:
                delta["tool_calls"] = [_tool_delta(call) for call in choice.tool_calls]
            finish = (_FINISH.get(choice.finish_reason, "stop")
                      if choice.finish_reason or choice.provider_finish_reason else None)
            if delta or finish:
                out.append(self._event([{"index": choice.index, "delta": delta, "finish_reason": finish}]))
        return b"".join(out)

    def close(self) -> bytes:
        """The usage chunk (when the provider reported usage) and the end of the stream."""
        tail = b""
        if self._usage is not None and self._include_usage:
            tail = self._event([], usage=_usage(self._usage, self._api_family))
        return tail + b"data: [DONE]\n\n"


def _tool_delta(call: pb.ToolCallDelta) -> dict[str, Any]:
    function: dict[str, str] = {"arguments": call.arguments}
    delta: dict[str, Any] = {"index": call.index, "function": function}
    if call.id:
        delta["id"], delta["type"] = call.id, "function"
    if call.name:
        function["name"] = call.name
    return delta


def completion_json(reply: pb.ChatResponse, completion_id: str, created: int, model: str) -> bytes:
    """A `chat.completion` object for a whole reply."""
    choices = []
    for choice in reply.choices:
        message: dict[str, Any] = {"role": "assistant", "content": choice.text or None}
        if choice.refusal:
            message["refusal"] = choice.refusal
        if choice.reasoning:
            message["reasoning_content"] = choice.reasoning
        if choice.tool_calls:
            message["tool_calls"] = [{"id": c.id, "type": "function",
                                      "function": {"name": c.name, "arguments": c.arguments}}
                                     for c in choice.tool_calls]
        choices.append({"index": choice.index, "message": message,
                        "finish_reason": _FINISH.get(choice.finish_reason, "stop")})
    body: dict[str, Any] = {"id": completion_id, "object": "chat.completion", "created": created,
                            "model": reply.model or model, "choices": choices}
    if reply.HasField("usage"):
        body["usage"] = _usage(reply.usage, reply.api_family)
    return json.dumps(body, ensure_ascii=False).encode()


# OpenAI's create-embeddings fields the unified endpoint takes (`user` changes nothing here).
_EMBEDDING_FIELDS = frozenset({"model", "input", "dimensions", "encoding_format", "user"})


class EmbeddingsCall(NamedTuple):
    request: pb.EmbedRequest
    base64: bool  # encoding_format "base64": the vectors as little-endian float32 bytes, as the openai SDK asks


def parse_embeddings_request(body: bytes, tenant: pb.Tenant) -> EmbeddingsCall:
    """OpenAI's `POST /embeddings` body as an `EmbedRequest` (text inputs; token-id arrays are one tokenizer's)."""
    request = _request_object(body)
    _refuse_unknown(request, _EMBEDDING_FIELDS)
    model = request.get("model")
    if not isinstance(model, str) or not model:
        raise UnifiedRequestError("model", "is required (an embeddings model, e.g. text-embedding-3-small)")
    raw = request.get("input")
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise UnifiedRequestError("input", "must be a string or a non-empty list of strings (token arrays are "
                                  "one provider's tokenizer" + _NOT_PASSTHROUGH + ")")
    out = pb.EmbedRequest(tenant=tenant, model=model, inputs=[pb.EmbedInput(text=t) for t in texts])
    dimensions = request.get("dimensions")
    if dimensions is not None:
        if not isinstance(dimensions, int) or isinstance(dimensions, bool):
            raise UnifiedRequestError("dimensions", "must be an integer")
        out.dimensions = dimensions
    encoding = request.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise UnifiedRequestError("encoding_format", "must be float or base64")
    return EmbeddingsCall(out, encoding == "base64")


def embeddings_json(reply: pb.EmbedResponse, *, base64_vectors: bool) -> bytes:
    """OpenAI's embeddings list for a reply: vectors as float lists, or base64 float32 as the SDK asked."""
    data = []
    for e in reply.embeddings:
        values: Any = list(e.values)
        if base64_vectors:
            vector = array("f", e.values)
            if sys.byteorder == "big":  # the wire's float32 are little-endian
                vector.byteswap()
            values = base64.b64encode(vector.tobytes()).decode()
        data.append({"object": "embedding", "index": e.index, "embedding": values})
    tokens = reply.usage.input_tokens if reply.HasField("usage") else 0
    return json.dumps({"object": "list", "data": data, "model": reply.model,
                       "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}).encode()
