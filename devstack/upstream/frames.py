"""What the stand-in streams: the generated text (`generated_text`, `WORDS`), and `_Generator`, which writes each
family's stream frames (text deltas, tool calls, finish, usage) and the echo-key leak canaries."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from devstack.upstream.answers import _gemini_error, _Opts

WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")


def generated_text(frames: int) -> str:
    """The text a generated response of ``frames`` frames adds up to."""
    return " ".join(WORDS[i % len(WORDS)] for i in range(frames))


def _frame_word(i: int) -> str:
    return ("" if i == 0 else " ") + WORDS[i % len(WORDS)]


async def _echo_key_frames(gen: _Generator, key: str) -> AsyncIterator[bytes]:
    """One frame, then the family's in-stream error event with the key in its message."""
    yield await anext(gen.frames())
    message = f"upstream failure while serving key {key}"
    if gen.family == "anthropic":
        yield _Generator._an_event("error", {"type": "error", "error": {"type": "api_error", "message": message}})
    elif gen.family == "gemini":
        yield b"data: " + json.dumps(_gemini_error(500, "INTERNAL", message)).encode() + b"\r\n\r\n"
    else:
        yield b"data: " + json.dumps({"error": {"message": message, "type": "server_error"}}).encode() + b"\n\n"


async def _one(body: bytes) -> AsyncIterator[bytes]:
    yield body


class _Generator:
    """Builds a generated response in one family's shape, streamed or whole."""

    def __init__(self, family: str, model: str, payload: dict[str, Any], opts: _Opts, provider: str = "") -> None:
        self.family = family
        self.provider = provider or family
        self.model = model
        self.opts = opts
        chars = 0
        for m in payload.get("messages") or payload.get("contents") or ():
            chars += len(json.dumps(m.get("content") if "content" in m else m.get("parts")))
        self.input_tokens = chars // 4 + 1
        limit = payload.get("max_tokens") or payload.get("max_completion_tokens") \
            or (payload.get("generationConfig") or {}).get("maxOutputTokens")
        self.n = opts.frames if not limit else min(opts.frames, int(limit))
        self.truncated = self.n < opts.frames
        tools = payload.get("tools") or []
        self.tool = ""
        if opts.tool and tools:
            t = tools[0]
            if family == "openai":
                self.tool = (t.get("function") or {}).get("name", "")
            elif family == "anthropic":
                self.tool = t.get("name", "")
            else:
                self.tool = ((t.get("functionDeclarations") or [{}])[0]).get("name", "")
        self.id = uuid.uuid4().hex[:24]

    def finish(self) -> str:
        if self.truncated:
            return {"openai": "length", "anthropic": "max_tokens", "gemini": "MAX_TOKENS"}[self.family]
        if self.tool:
            return {"openai": "tool_calls", "anthropic": "tool_use", "gemini": "STOP"}[self.family]
        return {"openai": "stop", "anthropic": "end_turn", "gemini": "STOP"}[self.family]

    async def frames(self) -> AsyncIterator[bytes]:
        delay = self.opts.delay
        for i, frame in enumerate(getattr(self, "_" + self.family)()):
            if delay and i:
                await asyncio.sleep(delay)
            yield frame

    # -- OpenAI
    def _oa_chunk(self, choices: list[Any], usage: Any = None) -> bytes:
        obj: dict[str, Any] = {"id": "chatcmpl-" + self.id, "object": "chat.completion.chunk",
                               "created": int(time.time()), "model": self.model, "choices": choices}
        if usage is not None:
            obj["usage"] = usage
        return b"data: " + json.dumps(obj).encode() + b"\n\n"

    def _openai(self) -> Any:
        yield self._oa_chunk([{"index": 0, "delta": {"role": "assistant", "content": ""},
                               "finish_reason": None}])
        for i in range(self.n):
            yield self._oa_chunk([{"index": 0, "delta": {"content": _frame_word(i)}, "finish_reason": None}])
        if self.tool and not self.truncated:
            call = {"index": 0, "id": "call_" + self.id[:12], "type": "function",
                    "function": {"name": self.tool, "arguments": '{"n":'}}
            yield self._oa_chunk([{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None}])
            more = {"index": 0, "function": {"arguments": "1}"}}
            yield self._oa_chunk([{"index": 0, "delta": {"tool_calls": [more]}, "finish_reason": None}])
        usage = {"prompt_tokens": self.input_tokens, "completion_tokens": self.n,
                 "total_tokens": self.input_tokens + self.n}
        if self.provider == "mistral":  # Mistral: usage rides on the finishing chunk, unasked
            yield self._oa_chunk([{"index": 0, "delta": {"content": ""}, "finish_reason": self.finish()}], usage)
        else:
            yield self._oa_chunk([{"index": 0, "delta": {}, "finish_reason": self.finish()}])
            yield self._oa_chunk([], usage)
        yield b"data: [DONE]\n\n"

    # -- Anthropic
    @staticmethod
    def _an_event(name: str, obj: dict[str, Any]) -> bytes:
        return b"event: " + name.encode() + b"\ndata: " + json.dumps(obj).encode() + b"\n\n"

    def _anthropic(self) -> Any:
        ev = self._an_event
        yield ev("message_start", {"type": "message_start", "message": {
            "id": "msg_" + self.id, "type": "message", "role": "assistant", "content": [], "model": self.model,
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": self.input_tokens, "output_tokens": 1}}})
        yield ev("content_block_start", {"type": "content_block_start", "index": 0,
                                         "content_block": {"type": "text", "text": ""}})
        yield ev("ping", {"type": "ping"})
        for i in range(self.n):
            yield ev("content_block_delta", {"type": "content_block_delta", "index": 0,
                                             "delta": {"type": "text_delta", "text": _frame_word(i)}})
        yield ev("content_block_stop", {"type": "content_block_stop", "index": 0})
        if self.tool and not self.truncated:
            yield ev("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {
                "type": "tool_use", "id": "toolu_" + self.id, "name": self.tool, "input": {}}})
            for part in ('{"n":', "1}"):
                yield ev("content_block_delta", {"type": "content_block_delta", "index": 1,
                                                 "delta": {"type": "input_json_delta", "partial_json": part}})
            yield ev("content_block_stop", {"type": "content_block_stop", "index": 1})
        yield ev("message_delta", {"type": "message_delta",
                                   "delta": {"stop_reason": self.finish(), "stop_sequence": None},
                                   "usage": {"output_tokens": self.n}})
        yield ev("message_stop", {"type": "message_stop"})

    # -- Gemini (real Gemini separates events with \r\n\r\n)
    def _gm_chunk(self, parts: list[Any], finish: str | None = None) -> bytes:
        cand: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        obj: dict[str, Any] = {"candidates": [cand], "modelVersion": self.model, "responseId": self.id}
        if finish:
            cand["finishReason"] = finish
            obj["usageMetadata"] = {"promptTokenCount": self.input_tokens, "candidatesTokenCount": self.n,
                                    "totalTokenCount": self.input_tokens + self.n}
        return b"data: " + json.dumps(obj).encode() + b"\r\n\r\n"

    def _gemini(self) -> Any:
        for i in range(self.n):
            yield self._gm_chunk([{"text": _frame_word(i)}])
        parts: list[Any] = []
        if self.tool and not self.truncated:
            parts.append({"functionCall": {"name": self.tool, "args": {"n": 1}}})
        yield self._gm_chunk(parts, self.finish())

    def whole(self) -> dict[str, Any]:
        text = generated_text(self.n)
        finish = self.finish()
        tool = self.tool if not self.truncated else ""
        if self.family == "openai":
            msg: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
            if tool:
                msg["tool_calls"] = [{"id": "call_" + self.id[:12], "type": "function",
                                      "function": {"name": tool, "arguments": '{"n":1}'}}]
            return {"id": "chatcmpl-" + self.id, "object": "chat.completion", "created": int(time.time()),
                    "model": self.model, "choices": [{"index": 0, "message": msg, "finish_reason": finish,
                                                      "logprobs": None}],
                    "usage": {"prompt_tokens": self.input_tokens, "completion_tokens": self.n,
                              "total_tokens": self.input_tokens + self.n}}
        if self.family == "anthropic":
            content: list[Any] = [{"type": "text", "text": text}]
            if tool:
                content.append({"type": "tool_use", "id": "toolu_" + self.id, "name": tool, "input": {"n": 1}})
            return {"id": "msg_" + self.id, "type": "message", "role": "assistant", "model": self.model,
                    "content": content, "stop_reason": finish, "stop_sequence": None,
                    "usage": {"input_tokens": self.input_tokens, "output_tokens": self.n}}
        parts: list[Any] = [{"text": text}]
        if tool:
            parts.append({"functionCall": {"name": tool, "args": {"n": 1}}})
        return {"candidates": [{"content": {"parts": parts, "role": "model"}, "finishReason": finish,
                                "index": 0}],
                "usageMetadata": {"promptTokenCount": self.input_tokens, "candidatesTokenCount": self.n,
                                  "totalTokenCount": self.input_tokens + self.n},
                "modelVersion": self.model, "responseId": self.id}
