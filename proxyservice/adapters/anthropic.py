"""Anthropic Messages wire family.

Streaming events: ``message_start`` (model, usage; its message's ``content`` is normally empty, but a turn
resumed by programmatic tool calling arrives there whole, with its ``stop_reason``), ``content_block_start``
(``text``, ``tool_use`` with id and name, ``thinking``, ``redacted_thinking``; server-side blocks such as
``server_tool_use`` and their results are not caller tool calls and are skipped), ``content_block_delta``
(``text_delta``, ``input_json_delta``, ``thinking_delta``, ``signature_delta``; others ignored),
``message_delta`` (stop_reason, cumulative usage), ``message_stop``, ``ping``, and ``error``. There is one
choice (index 0); a tool call's index is its order among ``tool_use`` blocks.

Extended thinking: a ``thinking`` block's text is reasoning, its ``signature_delta`` one reasoning signature
(whole, as sent); a ``redacted_thinking`` block's ``data`` is one redacted reasoning block. Usage:
``input_tokens`` is Anthropic's own count (it excludes cache reads and writes, and is never derived here),
``cache_read_input_tokens`` the cached input, ``cache_creation_input_tokens`` the cache write; the API reports
no reasoning count of its own, so reasoning_tokens stays unset. ``message_delta`` usage overrides field by
field what ``message_start`` said, as the SDK's accumulator does.
"""

from __future__ import annotations

import json
from typing import Any

from byok.proxy.v1 import chat_service_pb2 as pb
from byokcommon.wire import auth_headers
from proxyservice.accumulate import to_chat_response
from proxyservice.adapters.base import (
    AdapterError,
    UpstreamRequest,
    UpstreamStreamError,
    arguments_object,
    compact,
    count,
    dumps,
    error_message,
    join_url,
    loads,
    normalise_finish,
    schema,
    string,
    usage,
)
from proxyservice.adapters.stream import SSEJsonDecoder

R = pb.Role
DEFAULT_MAX_TOKENS = 1024


def _convert(params: pb.ChatParameters) -> tuple[str, list[dict[str, Any]]]:
    """(system text, messages) with consecutive same-role turns merged, as the API wants for tool results."""
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for m in params.messages:
        if m.role == R.ROLE_SYSTEM:
            system.append(m.content)
            continue
        blocks: list[dict[str, Any]] = []
        if m.role == R.ROLE_USER:
            role = "user"
            if m.content:
                blocks.append({"type": "text", "text": m.content})
        elif m.role == R.ROLE_ASSISTANT:
            role = "assistant"
            if m.content:
                blocks.append({"type": "text", "text": m.content})
            for c in m.tool_calls:
                blocks.append(
                    {"type": "tool_use", "id": c.id, "name": c.name, "input": arguments_object(c.arguments)}
                )
        elif m.role == R.ROLE_TOOL:
            role = "user"
            blocks.append({"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.content})
        else:
            continue
        if not blocks:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    return "\n\n".join(system), out


# Anthropic's usage fields → the names ``usage()`` takes.
_USAGE_FIELDS = (
    ("input_tokens", "input_tokens"),
    ("output_tokens", "output_tokens"),
    ("cache_read_input_tokens", "cached"),
    ("cache_creation_input_tokens", "cache_creation"),
)


def _known(prev: pb.Usage | None) -> dict[str, int]:
    """What an earlier usage already said, by ``usage()``'s names (optional counts only when reported)."""
    if prev is None:
        return {}
    known = {"input_tokens": prev.input_tokens, "output_tokens": prev.output_tokens}
    if prev.HasField("cached_input_tokens"):
        known["cached"] = prev.cached_input_tokens
    if prev.HasField("cache_creation_input_tokens"):
        known["cache_creation"] = prev.cache_creation_input_tokens
    return known


def _usage(u: Any, prev: pb.Usage | None) -> pb.Usage | None:
    """``u`` over ``prev``: message_delta usage is cumulative and may omit fields, which keep their earlier value."""
    if not isinstance(u, dict):
        return None
    known: dict[str, Any] = _known(prev)
    for wire, name in _USAGE_FIELDS:
        if count(u.get(wire)) is not None:
            known[name] = u[wire]
    return usage(known.get("input_tokens"), known.get("output_tokens"), cached=known.get("cached"),
                 cache_creation=known.get("cache_creation"))


def _finish(stop: str) -> pb.ChoiceDelta:
    return pb.ChoiceDelta(index=0, provider_finish_reason=stop, finish_reason=normalise_finish(stop))


def _tool_arguments(block: dict[str, Any], whole: bool) -> str:
    """A tool_use block's arguments text. A whole block (a unary answer, message_start's content) has its
    input as an object: compact JSON of it. A streamed one normally starts with input {} and sends the
    arguments as input_json_delta fragments; a non-empty input there is the whole call."""
    inp = block.get("input")
    if whole:
        return compact(inp if isinstance(inp, dict) else {})
    return json.dumps(inp, ensure_ascii=False) if inp else ""


def _reasoning_delta(block: dict[str, Any]) -> pb.ChoiceDelta | None:
    """A thinking block's text and signature (a streamed block starts with both empty), or a redacted_thinking
    block's data, which has no text and goes back to the provider as it came."""
    cd = pb.ChoiceDelta(index=0)
    if block.get("type") == "redacted_thinking":
        cd.redacted_reasoning = string(block.get("data"))
    else:
        cd.reasoning = string(block.get("thinking"))
        cd.reasoning_signature = string(block.get("signature"))
    return cd if (cd.reasoning or cd.reasoning_signature or cd.redacted_reasoning) else None


class AnthropicStreamDecoder(SSEJsonDecoder):
    """Turns Messages stream events into StreamChatResponses."""

    __slots__ = ("_model", "_usage", "_tools", "_next_tool")
    source = "anthropic stream"

    def __init__(self) -> None:
        super().__init__()  # complete: message_stop seen
        self._model = ""
        self._usage: pb.Usage | None = None
        self._tools: dict[int, int] = {}  # content block index → tool-call index, for tool_use blocks only
        self._next_tool = 0

    def _skip(self, event: Any) -> bool:
        return bool(event.event == "ping")

    def _event(self, name: str, obj: dict[str, Any]) -> pb.StreamChatResponse | None:
        etype = obj.get("type") or name
        if etype == "content_block_delta":
            cd = self._delta(obj.get("index", -1), obj.get("delta") or {})
            return None if cd is None else pb.StreamChatResponse(choices=[cd])
        if etype == "content_block_start":
            cd = self._block(obj.get("index", -1), obj.get("content_block") or {}, whole=False)
            return None if cd is None else pb.StreamChatResponse(choices=[cd])
        if etype == "message_start":
            return self._message_start(obj.get("message") or {})
        if etype == "message_delta":
            resp = pb.StreamChatResponse()
            stop = (obj.get("delta") or {}).get("stop_reason")
            if stop:
                resp.choices.append(_finish(stop))
            u = _usage(obj.get("usage"), self._usage)
            if u is not None:
                self._usage = u
                resp.usage.CopyFrom(u)
            return resp if (stop or u is not None) else None
        if etype == "error":
            etype_, msg = error_message(obj, "anthropic")
            raise UpstreamStreamError(msg, error_type=etype_)
        if etype == "message_stop":
            self.complete = True
        return None  # content_block_stop, message_stop, unknown events

    def _delta(self, index: int, delta: dict[str, Any]) -> pb.ChoiceDelta | None:
        """One content_block_delta; kinds this schema does not carry (citations_delta, …) yield nothing."""
        dtype = delta.get("type")
        if dtype == "text_delta":
            text = string(delta.get("text"))
            return pb.ChoiceDelta(index=0, text=text) if text else None
        if dtype == "input_json_delta":
            ti = self._tools.get(index)
            part = string(delta.get("partial_json"))
            if ti is not None and part:
                return pb.ChoiceDelta(index=0, tool_calls=[pb.ToolCallDelta(index=ti, arguments=part)])
            return None
        if dtype == "thinking_delta":
            thinking = string(delta.get("thinking"))
            return pb.ChoiceDelta(index=0, reasoning=thinking) if thinking else None
        if dtype == "signature_delta":
            signature = string(delta.get("signature"))
            return pb.ChoiceDelta(index=0, reasoning_signature=signature) if signature else None
        return None

    def _block(self, index: int, block: dict[str, Any], *, whole: bool) -> pb.ChoiceDelta | None:
        """A content block's start (``whole``: the block complete, as in a unary answer)."""
        btype = block.get("type")
        if btype == "text":
            text = string(block.get("text"))
            return pb.ChoiceDelta(index=0, text=text) if text else None
        if btype == "tool_use":
            ti = self._next_tool
            self._next_tool += 1
            self._tools[index] = ti
            tc = pb.ToolCallDelta(index=ti, id=string(block.get("id")), name=string(block.get("name")),
                                  arguments=_tool_arguments(block, whole))
            return pb.ChoiceDelta(index=0, tool_calls=[tc])
        if btype in ("thinking", "redacted_thinking"):
            return _reasoning_delta(block)
        return None  # server tools and their results, and block kinds this schema does not carry

    def _message_start(self, msg: dict[str, Any]) -> pb.StreamChatResponse | None:
        """The model, the usage so far, and whatever content and stop reason the message already has."""
        resp = pb.StreamChatResponse()
        model = msg.get("model")
        if model and model != self._model:
            self._model = resp.model = model
        for i, block in enumerate(msg.get("content") or ()):
            cd = self._block(i, block, whole=True) if isinstance(block, dict) else None
            if cd is not None:
                resp.choices.append(cd)
        stop = msg.get("stop_reason")
        if stop:
            resp.choices.append(_finish(stop))
        u = _usage(msg.get("usage"), None)
        if u is not None:
            self._usage = u
            resp.usage.CopyFrom(u)
        return resp if (resp.model or resp.choices or u is not None) else None

    def message(self, msg: dict[str, Any]) -> pb.ChatResponse:
        """A whole (unary) message as the stream would have folded: the same block rules for both RPCs."""
        # Choice 0 exists even when the message has no content the schema carries.
        responses = [pb.StreamChatResponse(choices=[pb.ChoiceDelta(index=0)])]
        first = self._message_start(msg)
        if first is not None:
            responses.append(first)
        return to_chat_response(responses)


class AnthropicAdapter:
    """The Anthropic Messages API."""

    family = "anthropic"

    def build_request(
        self, params: pb.ChatParameters, *, api_base: str, api_key: str, model: str, stream: bool,
        provider: str = "",
    ) -> UpstreamRequest:
        system, messages = _convert(params)
        body: dict[str, Any] = {
            "model": model,
            "max_tokens": params.max_tokens if params.HasField("max_tokens") else DEFAULT_MAX_TOKENS,
            "messages": messages,
        }
        if system:
            body["system"] = system
        if stream:
            body["stream"] = True
        if params.HasField("temperature"):
            body["temperature"] = params.temperature
        if params.stop:
            body["stop_sequences"] = list(params.stop)
        if params.tools:
            body["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": schema(t.parameters_json)}
                for t in params.tools
            ]
        return UpstreamRequest("POST", join_url(api_base, "/messages"), self._headers(api_key, stream),
                               dumps(body))

    @staticmethod
    def _headers(api_key: str, stream: bool) -> dict[str, str]:
        return {
            **auth_headers("anthropic", api_key),
            "content-type": "application/json",
            "accept": "text/event-stream" if stream else "application/json",
        }

    def stream_decoder(self) -> AnthropicStreamDecoder:
        return AnthropicStreamDecoder()

    def parse_response(self, body: bytes) -> pb.ChatResponse:
        obj = loads(body, "anthropic response")
        if not isinstance(obj, dict):
            raise AdapterError("unexpected JSON in anthropic response from upstream")
        if obj.get("type") == "error" or ("error" in obj and "content" not in obj):
            etype, msg = error_message(obj, "anthropic")
            raise UpstreamStreamError(msg, error_type=etype)
        return AnthropicStreamDecoder().message(obj)
