"""What the stand-in streams: the generated text (`generated_text`, `WORDS`) and thinking (`generated_thinking`),
and `_Generator`, which writes each family's stream frames (thinking, text deltas, tool calls, finish, usage) and
whole answers, and the echo-key leak canaries."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

from devstack.upstream.answers import _gemini_error, _Opts

WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")
THOUGHTS = ("hmm", "so", "then", "thus")
TOOL_ARGS = ('{"n":', "1}")  # a tool call's arguments, in the two fragments streams send


def generated_text(frames: int) -> str:
    """The text a generated response of ``frames`` frames adds up to."""
    return " ".join(WORDS[i % len(WORDS)] for i in range(frames))


def generated_thinking(frames: int) -> str:
    """The thinking a generated response with ``frames`` thinking frames adds up to."""
    return " ".join(THOUGHTS[i % len(THOUGHTS)] for i in range(frames))


def signature(text: str) -> str:
    """The (opaque, base64) signature the stand-in attaches to a thinking text."""
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def proto_field(obj: Any, name: str) -> Any:
    """A field of a Google JSON body, which (proto JSON) may spell its name lowerCamel or snake_case."""
    if not isinstance(obj, dict):
        return None
    if name in obj:
        return obj[name]
    return obj.get(re.sub(r"([A-Z])", r"_\1", name).lower())


def _frame_word(i: int, words: tuple[str, ...] = WORDS) -> str:
    return ("" if i == 0 else " ") + words[i % len(words)]


def _tool_name(family: str, payload: dict[str, Any], asked: bool) -> str:
    """The function the answer calls: the request's first with ``tool=1``, else the one ``tool_choice`` forces."""
    tools = payload.get("tools") or []
    if family == "gemini":
        names = [d.get("name", "") for t in tools for d in proto_field(t, "functionDeclarations") or ()]
        cfg = proto_field(proto_field(payload, "toolConfig"), "functionCallingConfig") or {}
        forced, named = cfg.get("mode") == "ANY", (proto_field(cfg, "allowedFunctionNames") or [""])[0]
    else:  # Chat Completions nest the name under "function"; Responses and Anthropic tools carry it on top
        kinds = (None, "custom") if family == "anthropic" else ("function",)
        names = [(t.get("function") or t).get("name", "") for t in tools if t.get("type") in kinds]
        choice = payload.get("tool_choice")
        forced = choice == "required" or (isinstance(choice, dict) and choice.get("type") not in ("auto", "none"))
        named = (choice.get("function") or choice).get("name", "") if isinstance(choice, dict) else ""
    if not names or not (asked or forced):
        return ""
    return named or names[0]


def _thoughts(family: str, payload: dict[str, Any], opts: _Opts) -> int:
    """How many thinking frames the request asks for (0: none)."""
    if family == "anthropic":
        on = (payload.get("thinking") or {}).get("type") == "enabled"
    elif family == "gemini":
        config = proto_field(proto_field(payload, "generationConfig"), "thinkingConfig")
        on = bool(proto_field(config, "includeThoughts"))
    else:  # OpenAI reasons unseen: only its usage counts reasoning tokens
        effort = payload.get("reasoning_effort") or (payload.get("reasoning") or {}).get("effort")
        on = effort not in (None, "none")
    return opts.thoughts if on else 0


def _input_chars(payload: dict[str, Any]) -> int:
    chars = 0
    for m in payload.get("messages") or payload.get("contents") or ():
        chars += len(json.dumps(m.get("content") if "content" in m else m.get("parts")))
    if "input" in payload:  # the Responses API
        chars += len(json.dumps(payload["input"])) + len(payload.get("instructions") or "")
    return chars


def sse_event(name: str, obj: dict[str, Any]) -> bytes:
    """One named server-sent event (Anthropic's and the Responses API's framing)."""
    return b"event: " + name.encode() + b"\ndata: " + json.dumps(obj).encode() + b"\n\n"


async def _echo_key_frames(gen: _Generator, key: str) -> AsyncIterator[bytes]:
    """One frame, then the family's in-stream error event with the key in its message."""
    yield await anext(gen.frames())
    yield gen.error_frame(f"upstream failure while serving key {key}")


async def _one(body: bytes) -> AsyncIterator[bytes]:
    yield body


async def _json_array(frames: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Gemini's stream without ``alt=sse``: the events' JSON objects as one JSON array, written as they come."""
    sep = b"["
    async for frame in frames:
        yield sep + frame.removeprefix(b"data: ").rstrip(b"\r\n")
        sep = b"\n,\r\n"
    yield b"]" if sep != b"[" else b"[]"


class _Generator:
    """Builds a generated response in one family's shape, streamed or whole.

    Token counts: ``input_tokens`` is the uncached input; ``cached`` (``cached=N``) is read from the prompt cache
    on top of it and ``cache_write`` (``cache_write=N``, Anthropic) written to it; ``thoughts`` thinking frames
    count as reasoning tokens, on top of the ``n`` text frames."""

    def __init__(self, family: str, model: str, payload: dict[str, Any], opts: _Opts, provider: str = "") -> None:
        self.family = family
        self.provider = provider or family
        self.model = model
        self.opts = opts
        self.input_tokens = _input_chars(payload) // 4 + 1
        self.cached = opts.cached
        limit = payload.get("max_tokens") or payload.get("max_completion_tokens") or payload.get("max_output_tokens") \
            or proto_field(proto_field(payload, "generationConfig"), "maxOutputTokens")
        self.n = opts.frames if not limit else min(opts.frames, int(limit))
        self.truncated = self.n < opts.frames
        self.tool = _tool_name(family, payload, opts.tool)
        self.thoughts = _thoughts(family, payload, opts)
        self.thinking = generated_thinking(self.thoughts)
        self.id = uuid.uuid4().hex[:24]

    def finish(self) -> str:
        if self.truncated:
            return {"openai": "length", "anthropic": "max_tokens", "gemini": "MAX_TOKENS"}[self.family]
        if self.tool:
            return {"openai": "tool_calls", "anthropic": "tool_use", "gemini": "STOP"}[self.family]
        return {"openai": "stop", "anthropic": "end_turn", "gemini": "STOP"}[self.family]

    def calls_tool(self) -> bool:
        return bool(self.tool) and not self.truncated

    async def frames(self) -> AsyncIterator[bytes]:
        delay = self.opts.delay
        for i, frame in enumerate(self._frames()):
            if delay and i:
                await asyncio.sleep(delay)
            yield frame

    def _frames(self) -> Iterator[bytes]:
        return {"openai": self._openai, "anthropic": self._anthropic, "gemini": self._gemini}[self.family]()

    def error_frame(self, message: str) -> bytes:
        """The family's in-stream error event."""
        if self.family == "anthropic":
            return self._an_event("error", {"type": "error", "error": {"type": "api_error", "message": message}})
        if self.family == "gemini":
            return b"data: " + json.dumps(_gemini_error(500, "INTERNAL", message)).encode() + b"\r\n\r\n"
        return b"data: " + json.dumps({"error": {"message": message, "type": "server_error"}}).encode() + b"\n\n"

    # -- OpenAI
    def _oa_usage(self) -> dict[str, Any]:
        prompt, completion = self.input_tokens + self.cached, self.n + self.thoughts
        usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                                 "total_tokens": prompt + completion}
        if self.provider != "mistral":
            usage["prompt_tokens_details"] = {"cached_tokens": self.cached, "audio_tokens": 0}
            usage["completion_tokens_details"] = {"reasoning_tokens": self.thoughts, "audio_tokens": 0,
                                                  "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
        return usage

    def _oa_chunk(self, choices: list[Any], usage: Any = None) -> bytes:
        obj: dict[str, Any] = {"id": "chatcmpl-" + self.id, "object": "chat.completion.chunk",
                               "created": int(time.time()), "model": self.model, "choices": choices}
        if usage is not None:
            obj["usage"] = usage
        return b"data: " + json.dumps(obj).encode() + b"\n\n"

    def _openai(self) -> Iterator[bytes]:
        yield self._oa_chunk([{"index": 0, "delta": {"role": "assistant", "content": ""},
                               "finish_reason": None}])
        for i in range(self.n):
            yield self._oa_chunk([{"index": 0, "delta": {"content": _frame_word(i)}, "finish_reason": None}])
        if self.calls_tool():
            call: dict[str, Any] = {"index": 0, "id": "call_" + self.id[:12], "type": "function",
                                    "function": {"name": self.tool, "arguments": TOOL_ARGS[0]}}
            yield self._oa_chunk([{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None}])
            more = {"index": 0, "function": {"arguments": TOOL_ARGS[1]}}
            yield self._oa_chunk([{"index": 0, "delta": {"tool_calls": [more]}, "finish_reason": None}])
        if self.provider == "mistral":  # Mistral: usage rides on the finishing chunk, unasked
            yield self._oa_chunk([{"index": 0, "delta": {"content": ""}, "finish_reason": self.finish()}],
                                 self._oa_usage())
        else:
            yield self._oa_chunk([{"index": 0, "delta": {}, "finish_reason": self.finish()}])
            yield self._oa_chunk([], self._oa_usage())
        yield b"data: [DONE]\n\n"

    # -- Anthropic
    _an_event = staticmethod(sse_event)

    def _an_usage(self, output_tokens: int) -> dict[str, Any]:
        return {"input_tokens": self.input_tokens, "cache_creation_input_tokens": self.opts.cache_write,
                "cache_read_input_tokens": self.cached, "output_tokens": output_tokens}

    def _an_block(self, index: int, block: dict[str, Any], deltas: list[dict[str, Any]]) -> Iterator[bytes]:
        ev = self._an_event
        yield ev("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})
        if index == 0:
            yield ev("ping", {"type": "ping"})
        for delta in deltas:
            yield ev("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
        yield ev("content_block_stop", {"type": "content_block_stop", "index": index})

    def _anthropic(self) -> Iterator[bytes]:
        ev = self._an_event
        yield ev("message_start", {"type": "message_start", "message": {
            "id": "msg_" + self.id, "type": "message", "role": "assistant", "content": [], "model": self.model,
            "stop_reason": None, "stop_sequence": None, "usage": self._an_usage(1)}})
        index = 0
        if self.thoughts:
            deltas = [{"type": "thinking_delta", "thinking": _frame_word(i, THOUGHTS)} for i in range(self.thoughts)]
            deltas.append({"type": "signature_delta", "signature": signature(self.thinking)})
            yield from self._an_block(index, {"type": "thinking", "thinking": "", "signature": ""}, deltas)
            index += 1
        yield from self._an_block(index, {"type": "text", "text": ""},
                                  [{"type": "text_delta", "text": _frame_word(i)} for i in range(self.n)])
        if self.calls_tool():
            yield from self._an_block(index + 1, {"type": "tool_use", "id": "toolu_" + self.id, "name": self.tool,
                                                  "input": {}},
                                      [{"type": "input_json_delta", "partial_json": p} for p in TOOL_ARGS])
        yield ev("message_delta", {"type": "message_delta",
                                   "delta": {"stop_reason": self.finish(), "stop_sequence": None},
                                   "usage": self._an_usage(self.n + self.thoughts)})
        yield ev("message_stop", {"type": "message_stop"})

    # -- Gemini (real Gemini separates events with \r\n\r\n)
    def _gm_usage(self) -> dict[str, Any]:
        prompt = self.input_tokens + self.cached
        usage: dict[str, Any] = {"promptTokenCount": prompt, "candidatesTokenCount": self.n,
                                 "totalTokenCount": prompt + self.n + self.thoughts}
        if self.thoughts:
            usage["thoughtsTokenCount"] = self.thoughts
        if self.cached:
            usage["cachedContentTokenCount"] = self.cached
        return usage

    def _gm_chunk(self, parts: list[Any], finish: str | None = None) -> bytes:
        cand: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        obj: dict[str, Any] = {"candidates": [cand], "modelVersion": self.model, "responseId": self.id}
        if finish:
            cand["finishReason"] = finish
            obj["usageMetadata"] = self._gm_usage()
        return b"data: " + json.dumps(obj).encode() + b"\r\n\r\n"

    def _gm_thought(self, text: str, signed: bool) -> dict[str, Any]:
        part: dict[str, Any] = {"text": text, "thought": True}
        if signed:
            part["thoughtSignature"] = signature(self.thinking)
        return part

    def _gm_call(self) -> list[Any]:
        return [{"functionCall": {"name": self.tool, "args": {"n": 1}}}] if self.calls_tool() else []

    def _gemini(self) -> Iterator[bytes]:
        for i in range(self.thoughts):
            yield self._gm_chunk([self._gm_thought(_frame_word(i, THOUGHTS), i == self.thoughts - 1)])
        for i in range(self.n):
            yield self._gm_chunk([{"text": _frame_word(i)}])
        yield self._gm_chunk(self._gm_call(), self.finish())

    def whole(self) -> dict[str, Any]:
        text = generated_text(self.n)
        finish = self.finish()
        if self.family == "openai":
            msg: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
            if self.calls_tool():
                msg["tool_calls"] = [{"id": "call_" + self.id[:12], "type": "function",
                                      "function": {"name": self.tool, "arguments": "".join(TOOL_ARGS)}}]
            return {"id": "chatcmpl-" + self.id, "object": "chat.completion", "created": int(time.time()),
                    "model": self.model, "choices": [{"index": 0, "message": msg, "finish_reason": finish,
                                                      "logprobs": None}],
                    "usage": self._oa_usage()}
        if self.family == "anthropic":
            content: list[Any] = [{"type": "text", "text": text}]
            if self.thoughts:
                content.insert(0, {"type": "thinking", "thinking": self.thinking,
                                   "signature": signature(self.thinking)})
            if self.calls_tool():
                content.append({"type": "tool_use", "id": "toolu_" + self.id, "name": self.tool, "input": {"n": 1}})
            return {"id": "msg_" + self.id, "type": "message", "role": "assistant", "model": self.model,
                    "content": content, "stop_reason": finish, "stop_sequence": None,
                    "usage": self._an_usage(self.n + self.thoughts)}
        parts: list[Any] = [self._gm_thought(self.thinking, True)] if self.thoughts else []
        parts += [{"text": text}, *self._gm_call()]
        return {"candidates": [{"content": {"parts": parts, "role": "model"}, "finishReason": finish,
                                "index": 0}],
                "usageMetadata": self._gm_usage(), "modelVersion": self.model, "responseId": self.id}
