"""Anthropic Messages wire family.

Streaming events: ``message_start`` (model, usage.input_tokens), ``content_block_start`` (``text``,
``tool_use`` with id and name; server-side blocks such as ``server_tool_use`` or ``thinking`` are not
caller tool calls and are skipped), ``content_block_delta`` (``text_delta``, ``input_json_delta``;
others ignored), ``message_delta`` (stop_reason, cumulative usage), ``message_stop``, ``ping``, and
``error``. There is one choice (index 0); a tool call's index is its order among ``tool_use`` blocks.
"""

from __future__ import annotations

import json
from typing import Any

from byok.proxy.v1 import chat_service_pb2 as pb
from byokcommon.wire import auth_headers
from proxyservice.adapters.base import (
    AdapterError,
    UpstreamRequest,
    UpstreamStreamError,
    arguments_object,
    dumps,
    error_message,
    join_url,
    loads,
    normalise_finish,
    schema,
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


def _usage(u: Any, prev: pb.Usage | None) -> pb.Usage | None:
    if not isinstance(u, dict):
        return None
    inp = u.get("input_tokens")
    out = u.get("output_tokens")
    if prev is not None:  # message_delta usage is cumulative and may omit input tokens
        inp = prev.input_tokens if inp is None else inp
        out = prev.output_tokens if out is None else out
    return usage(inp, out)


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
            delta = obj.get("delta") or {}
            dtype = delta.get("type")
            if dtype == "text_delta":
                text = delta.get("text")
                if text:
                    return pb.StreamChatResponse(choices=[pb.ChoiceDelta(index=0, text=text)])
            elif dtype == "input_json_delta":
                ti = self._tools.get(obj.get("index", -1))
                part = delta.get("partial_json")
                if ti is not None and part:
                    tc = pb.ToolCallDelta(index=ti, arguments=part)
                    return pb.StreamChatResponse(choices=[pb.ChoiceDelta(index=0, tool_calls=[tc])])
            return None
        if etype == "content_block_start":
            block = obj.get("content_block") or {}
            btype = block.get("type")
            if btype == "text":
                text = block.get("text")
                if text:
                    return pb.StreamChatResponse(choices=[pb.ChoiceDelta(index=0, text=text)])
            elif btype == "tool_use":
                ti = self._next_tool
                self._next_tool += 1
                self._tools[obj.get("index", -1)] = ti
                inp = block.get("input")
                # Streams normally start with input {} and send the arguments as deltas; a non-empty
                # input here is the whole call.
                args = json.dumps(inp, ensure_ascii=False) if inp else ""
                tc = pb.ToolCallDelta(index=ti, id=block.get("id") or "", name=block.get("name") or "",
                                      arguments=args)
                return pb.StreamChatResponse(choices=[pb.ChoiceDelta(index=0, tool_calls=[tc])])
            return None
        if etype == "message_start":
            msg = obj.get("message") or {}
            resp = pb.StreamChatResponse()
            model = msg.get("model")
            if model and model != self._model:
                self._model = resp.model = model
            u = _usage(msg.get("usage"), None)
            if u is not None:
                self._usage = u
                resp.usage.CopyFrom(u)
            return resp if (resp.model or u is not None) else None
        if etype == "message_delta":
            resp = pb.StreamChatResponse()
            stop = (obj.get("delta") or {}).get("stop_reason")
            if stop:
                resp.choices.append(
                    pb.ChoiceDelta(index=0, provider_finish_reason=stop, finish_reason=normalise_finish(stop))
                )
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
        resp = pb.ChatResponse(model=obj.get("model") or "")
        ch = resp.choices.add(index=0)
        texts: list[str] = []
        for block in obj.get("content") or ():
            btype = block.get("type")
            if btype == "text":
                texts.append(block.get("text") or "")
            elif btype == "tool_use":
                ch.tool_calls.add(id=block.get("id") or "", name=block.get("name") or "",
                                  arguments=json.dumps(block.get("input") or {}, ensure_ascii=False,
                                                                 separators=(",", ":")))
        ch.text = "".join(texts)
        stop = obj.get("stop_reason") or ""
        ch.provider_finish_reason = stop
        ch.finish_reason = normalise_finish(stop)
        u = _usage(obj.get("usage"), None)
        if u is not None:
            resp.usage.CopyFrom(u)
        return resp
