"""What the stand-in streams: the generated text (`generated_text`, `WORDS`) and thinking (`generated_thinking`),
and `_Generator`, which writes each family's stream frames (thinking, text deltas, tool calls, citations, fallbacks,
finish, usage) and whole answers, and the echo-key leak canaries.

The answer's text is a list of pieces, one per text frame, fixed when the generator is built (so streaming adds no
work per frame): the words of `generated_text`, the first prefixed by `media.seen_note` when the request carried
images or documents; or, for a structured request, the JSON document of `structured.answer_text` cut into up to
``frames`` fragments."""

from __future__ import annotations

import asyncio
import functools
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

from devstack.upstream import citations, structured
from devstack.upstream.answers import _gemini_error, _Opts
from devstack.upstream.media import seen, seen_note
from devstack.upstream.wire import call_signature, proto_field, signature

WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")
THOUGHTS = ("hmm", "so", "then", "thus")
TOOL_ARGS = ('{"n":', "1}")  # a tool call's arguments, in the two fragments streams send

__all__ = ["THOUGHTS", "TOOL_ARGS", "WORDS", "call_signature", "generated_text", "generated_thinking", "proto_field",
           "signature", "sse_event"]


def generated_text(frames: int) -> str:
    """The text a generated response of ``frames`` frames adds up to."""
    return " ".join(WORDS[i % len(WORDS)] for i in range(frames))


def generated_thinking(frames: int) -> str:
    """The thinking a generated response with ``frames`` thinking frames adds up to."""
    return " ".join(THOUGHTS[i % len(THOUGHTS)] for i in range(frames))


def _frame_word(i: int, words: tuple[str, ...] = WORDS) -> str:
    return ("" if i == 0 else " ") + words[i % len(words)]


@functools.lru_cache(maxsize=1024)
def _word_pieces(frames: int) -> tuple[str, ...]:
    """The plain answer's text frames (cached: benchmarks build thousands of answers of the same length)."""
    return tuple(_frame_word(i) for i in range(frames))


def _fragments(text: str, frames: int) -> list[str]:
    """``text`` cut into ``frames`` fragments of near-equal length (fewer when it is shorter, at least one)."""
    count = max(1, min(frames, len(text)))
    size = -(-len(text) // count)
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


def _text_pieces(family: str, payload: dict[str, Any], frames: int, kind: str) -> list[str]:
    """The answer's text frames before any max-tokens cut (see the module docstring)."""
    doc = structured.answer_text(family, payload, kind)
    if doc is not None:
        return _fragments(doc, frames)
    pieces = _word_pieces(frames)
    note = seen_note(*seen(family, payload)) if pieces and kind == "chat" else ""
    return [f"{note} {pieces[0]}", *pieces[1:]] if note else list(pieces)


def _tool_name(family: str, payload: dict[str, Any], asked: bool) -> str:
    """The function the answer calls: the request's first with ``tool=1``, else the one ``tool_choice`` forces;
    none when the tool choice is "none" (OpenAI), ``{"type": "none"}`` (Anthropic) or mode ``NONE`` (Gemini)."""
    tools = payload.get("tools") or []
    if family == "gemini":
        names = [d.get("name", "") for t in tools for d in proto_field(t, "functionDeclarations") or ()]
        cfg = proto_field(proto_field(payload, "toolConfig"), "functionCallingConfig") or {}
        forced, named = cfg.get("mode") == "ANY", (proto_field(cfg, "allowedFunctionNames") or [""])[0]
        barred = cfg.get("mode") == "NONE"
    else:  # Chat Completions nest the name under "function"; Responses and Anthropic tools carry it on top
        kinds = (None, "custom") if family == "anthropic" else ("function",)
        names = [(t.get("function") or t).get("name", "") for t in tools if t.get("type") in kinds]
        choice = payload.get("tool_choice")
        forced = choice == "required" or (isinstance(choice, dict) and choice.get("type") not in ("auto", "none"))
        named = (choice.get("function") or choice).get("name", "") if isinstance(choice, dict) else ""
        barred = choice == "none" or (isinstance(choice, dict) and choice.get("type") == "none")
    if not names or barred or not (asked or forced):  # a model told to call no tool calls none, even with tool=1
        return ""
    return named or names[0]


def _thoughts(family: str, payload: dict[str, Any], opts: _Opts) -> int:
    """How many thinking frames the request asks for (0: none)."""
    if family == "anthropic":  # adaptive thinking thinks too (Claude decides how much)
        on = (payload.get("thinking") or {}).get("type") in ("enabled", "adaptive")
    elif family == "gemini":  # a thinkingBudget of 0 turns thinking off
        config = proto_field(proto_field(payload, "generationConfig"), "thinkingConfig")
        on = bool(proto_field(config, "includeThoughts")) and proto_field(config, "thinkingBudget") != 0
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

    def __init__(self, family: str, model: str, payload: dict[str, Any], opts: _Opts, provider: str = "",
                 kind: str = "chat") -> None:
        self.family = family
        self.provider = provider or family
        self.model = model
        self.opts = opts
        self.payload = payload
        self.input_tokens = _input_chars(payload) // 4 + 1
        self.cached = opts.cached
        limit = payload.get("max_tokens") or payload.get("max_completion_tokens") or payload.get("max_output_tokens") \
            or proto_field(proto_field(payload, "generationConfig"), "maxOutputTokens")
        pieces = _text_pieces(family, payload, opts.frames, kind)
        self.pieces = pieces[:int(limit)] if limit else pieces
        self.n = len(self.pieces)
        self.truncated = self.n < len(pieces)
        self.text = "".join(self.pieces)
        self.tool = _tool_name(family, payload, opts.tool)
        self.thoughts = _thoughts(family, payload, opts)
        omitted = family == "anthropic" and (payload.get("thinking") or {}).get("display") == "omitted"
        self.thinking = "" if omitted else generated_thinking(self.thoughts)  # omitted: only the signature comes
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
        for piece in self.pieces:
            yield self._oa_chunk([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
        if self.opts.cite:  # web-search models stream their annotations as a delta of their own, after the text
            yield self._oa_chunk([{"index": 0, "delta": {"annotations": citations.openai_annotations(self.text)},
                                   "finish_reason": None}])
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

    def _an_usage(self, output_tokens: int, final: bool = False) -> dict[str, Any]:
        usage: dict[str, Any] = {"input_tokens": self.input_tokens,
                                 "cache_creation_input_tokens": self.opts.cache_write,
                                 "cache_read_input_tokens": self.cached, "output_tokens": output_tokens}
        if final and self.opts.fallback:  # the declined hop, then the fallback model's (whose entry says it served)
            hop = self.n // 2
            usage["iterations"] = [{**usage, "type": "message", "model": self.model, "output_tokens": hop},
                                   {**usage, "type": "fallback_message", "model": self.opts.fallback,
                                    "output_tokens": output_tokens - hop}]
        return usage

    def _an_block(self, index: int, block: dict[str, Any], deltas: list[dict[str, Any]]) -> Iterator[bytes]:
        ev = self._an_event
        yield ev("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})
        if index == 0:
            yield ev("ping", {"type": "ping"})
        for delta in deltas:
            yield ev("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
        yield ev("content_block_stop", {"type": "content_block_stop", "index": index})

    def _an_segments(self) -> list[tuple[dict[str, Any], list[str]]]:
        """The blocks after the thinking, each with its text pieces: one text block, or (``fallback=``) the
        requested model's first half, the fallback block, and the fallback model's rest."""
        if not self.opts.fallback:
            return [({"type": "text", "text": ""}, self.pieces)]
        hop = self.n // 2
        head = [({"type": "text", "text": ""}, self.pieces[:hop])] if hop else []
        return [*head, (citations.fallback_block(self.model, self.opts.fallback), []),
                ({"type": "text", "text": ""}, self.pieces[hop:])]

    def _anthropic(self) -> Iterator[bytes]:
        ev = self._an_event
        yield ev("message_start", {"type": "message_start", "message": {
            "id": "msg_" + self.id, "type": "message", "role": "assistant", "content": [], "model": self.model,
            "stop_reason": None, "stop_sequence": None, "usage": self._an_usage(1)}})
        index = 0
        if self.thoughts:
            thinking = [{"type": "thinking_delta", "thinking": _frame_word(i, THOUGHTS)}
                        for i in range(self.thoughts)] if self.thinking else []
            thinking.append({"type": "signature_delta", "signature": signature(self.thinking)})
            yield from self._an_block(index, {"type": "thinking", "thinking": "", "signature": ""}, thinking)
            index += 1
        segments = self._an_segments()
        for i, (block, pieces) in enumerate(segments):
            deltas: list[dict[str, Any]] = [{"type": "text_delta", "text": p} for p in pieces]
            if self.opts.cite and i == len(segments) - 1:  # the citation comes first in the block it supports
                deltas.insert(0, {"type": "citations_delta", "citation": citations.anthropic_citation(self.payload)})
            yield from self._an_block(index, block, deltas if block["type"] == "text" else [])
            index += 1
        if self.calls_tool():
            yield from self._an_block(index, {"type": "tool_use", "id": "toolu_" + self.id, "name": self.tool,
                                              "input": {}},
                                      [{"type": "input_json_delta", "partial_json": p} for p in TOOL_ARGS])
        yield ev("message_delta", {"type": "message_delta",
                                   "delta": {"stop_reason": self.finish(), "stop_sequence": None},
                                   "usage": self._an_usage(self.n + self.thoughts, final=True)})
        yield ev("message_stop", {"type": "message_stop"})

    def _an_whole(self) -> dict[str, Any]:
        content: list[Any] = []
        if self.thoughts:
            content.append({"type": "thinking", "thinking": self.thinking, "signature": signature(self.thinking)})
        segments = self._an_segments()
        for i, (block, pieces) in enumerate(segments):
            if block["type"] != "text":
                content.append(block)
                continue
            text: dict[str, Any] = {"type": "text", "text": "".join(pieces)}
            if self.opts.cite and i == len(segments) - 1:
                text["citations"] = [citations.anthropic_citation(self.payload)]
            content.append(text)
        if self.calls_tool():
            content.append({"type": "tool_use", "id": "toolu_" + self.id, "name": self.tool, "input": {"n": 1}})
        # After a fallback the whole message is labelled with the model that served it.
        return {"id": "msg_" + self.id, "type": "message", "role": "assistant",
                "model": self.opts.fallback or self.model, "content": content, "stop_reason": self.finish(),
                "stop_sequence": None, "usage": self._an_usage(self.n + self.thoughts, final=True)}

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

    def _gm_chunk(self, parts: list[Any], finish: str | None = None, version: str = "") -> bytes:
        cand: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        obj: dict[str, Any] = {"candidates": [cand], "modelVersion": version or self.model, "responseId": self.id}
        if finish:
            cand["finishReason"] = finish
            if self.opts.cite:
                cand["groundingMetadata"] = citations.gemini_grounding(self.text)
            obj["usageMetadata"] = self._gm_usage()
        return b"data: " + json.dumps(obj).encode() + b"\r\n\r\n"

    def _gm_thought(self, text: str, signed: bool) -> dict[str, Any]:
        part: dict[str, Any] = {"text": text, "thought": True}
        if signed:
            part["thoughtSignature"] = signature(self.thinking)
        return part

    def _gm_call(self) -> list[Any]:
        if not self.calls_tool():
            return []
        part: dict[str, Any] = {"functionCall": {"name": self.tool, "args": {"n": 1}}}
        if self.model.startswith("gemini-3"):  # Gemini 3 signs every function call it answers with
            part["thoughtSignature"] = call_signature(self.tool)
        return [part]

    def _gemini(self) -> Iterator[bytes]:
        # modelversion=<v>: from the middle of the text on, the chunks say another model version served them.
        switch, version = self.n // 2, self.opts.modelversion
        for i in range(self.thoughts):
            yield self._gm_chunk([self._gm_thought(_frame_word(i, THOUGHTS), i == self.thoughts - 1)])
        for i, piece in enumerate(self.pieces):
            yield self._gm_chunk([{"text": piece}], version=version if i >= switch else "")
        yield self._gm_chunk(self._gm_call(), self.finish(), version)

    def _gm_whole(self) -> dict[str, Any]:
        parts: list[Any] = [self._gm_thought(self.thinking, True)] if self.thoughts else []
        parts += [{"text": self.text}, *self._gm_call()]
        cand: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "finishReason": self.finish(),
                                "index": 0}
        if self.opts.cite:
            cand["groundingMetadata"] = citations.gemini_grounding(self.text)
        return {"candidates": [cand], "usageMetadata": self._gm_usage(),
                "modelVersion": self.opts.modelversion or self.model, "responseId": self.id}

    def whole(self) -> dict[str, Any]:
        if self.family == "anthropic":
            return self._an_whole()
        if self.family == "gemini":
            return self._gm_whole()
        msg: dict[str, Any] = {"role": "assistant", "content": self.text, "refusal": None}
        if self.opts.cite:
            msg["annotations"] = citations.openai_annotations(self.text)
        if self.calls_tool():
            msg["tool_calls"] = [{"id": "call_" + self.id[:12], "type": "function",
                                  "function": {"name": self.tool, "arguments": "".join(TOOL_ARGS)}}]
        return {"id": "chatcmpl-" + self.id, "object": "chat.completion", "created": int(time.time()),
                "model": self.model, "choices": [{"index": 0, "message": msg, "finish_reason": self.finish(),
                                                  "logprobs": None}],
                "usage": self._oa_usage()}
