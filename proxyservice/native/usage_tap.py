"""Token usage read from a relayed native answer without touching its bytes.

Whatever API the caller used, the provider reports usage in one of a few shapes: OpenAI's chat completions and
embeddings (`usage.prompt_tokens`, `prompt_tokens_details.cached_tokens`,
`completion_tokens_details.reasoning_tokens`), OpenAI's Responses API (`usage.input_tokens`,
`input_tokens_details`, `output_tokens_details`, inside `response` when streamed), Anthropic's messages
(`usage` in `message_start` and `message_delta`, with `cache_read_input_tokens` and
`cache_creation_input_tokens`), Gemini's `usageMetadata`, and Bedrock Converse's `usage` (`inputTokens`,
`outputTokens`, `cacheReadInputTokens`, `cacheWriteInputTokens`; in a ConverseStream, an AWS event stream, the
`metadata` event's, read by the Bedrock adapter's decoder). The tap sees the bytes the caller gets, parses only
the events that mention usage or a model, and keeps the last value of each count (providers report running
totals). A body it cannot read (compressed, not JSON, over the bound) just yields no usage.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from proxyservice.adapters.base import AdapterError
from proxyservice.adapters.bedrock import STREAM_CONTENT_TYPE, ConverseStreamDecoder
from proxyservice.sse import SSEEventTooLarge, SSEParser

_MAX_JSON_BODY = 4 << 20  # a whole JSON answer is buffered only up to this (an embeddings batch fits)


@dataclass(slots=True)
class NativeUsage:
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    reasoning_tokens: int | None = None
    model: str = ""

    def fields(self) -> dict[str, int]:
        """The counts the provider reported, by name (for the log line)."""
        return {name: value for name in ("input_tokens", "output_tokens", "cached_input_tokens",
                                         "cache_creation_input_tokens", "reasoning_tokens")
                if (value := getattr(self, name)) is not None}


def _int(value: Any, previous: int | None) -> int | None:
    """`value` when the provider reported a count there, else what was known before."""
    return value if isinstance(value, int) and not isinstance(value, bool) else previous


class UsageTap:
    """Feed it every chunk relayed (`feed`), then `close()`; `usage` holds what was found."""

    def __init__(self, content_type: str) -> None:
        self.usage = NativeUsage()
        self._sse = SSEParser() if content_type.startswith("text/event-stream") else None
        self._converse = ConverseStreamDecoder() if content_type.startswith(STREAM_CONTENT_TYPE) else None
        self._body: list[bytes] | None = [] if self._sse is None and "json" in content_type else None
        self._size = 0

    def feed(self, chunk: bytes) -> None:
        if self._converse is not None:
            self._converse_usage(self._converse, chunk)
        elif self._sse is not None:
            try:
                events = self._sse.feed(chunk)
            except SSEEventTooLarge:
                self._sse = None
                return
            for event in events:
                data = event.data
                if "sage" in data or "model" in data:  # usage, usageMetadata, model, modelVersion
                    self._read(data)
        elif self._body is not None:
            self._size += len(chunk)
            if self._size > _MAX_JSON_BODY:
                self._body = None
            else:
                self._body.append(chunk)

    def close(self) -> NativeUsage:
        if self._body:
            self._read(b"".join(self._body))
            self._body = None
        return self.usage

    def _read(self, data: str | bytes) -> None:
        try:
            parsed = json.loads(data)
        except ValueError:
            return
        for item in parsed if isinstance(parsed, list) else (parsed,):  # Gemini streams a JSON array without SSE
            if isinstance(item, dict):
                self._take(item)

    def _take(self, obj: dict[str, Any]) -> None:
        for holder in (obj, obj.get("message"), obj.get("response")):
            if not isinstance(holder, dict):
                continue
            model = holder.get("model") or holder.get("modelVersion")
            if isinstance(model, str) and model:
                self.usage.model = model[:128]
            usage = holder.get("usage")
            if isinstance(usage, dict):
                self._counts(usage)
            metadata = holder.get("usageMetadata")
            if isinstance(metadata, dict):
                self._gemini(metadata)

    def _converse_usage(self, decoder: ConverseStreamDecoder, chunk: bytes) -> None:
        try:
            responses = decoder.feed(chunk)
        except AdapterError:  # an in-stream error or a broken frame: the caller gets it as it is; no more usage
            self._converse = None
            return
        for response in responses:
            if response.HasField("usage"):
                u = response.usage
                self.usage.input_tokens, self.usage.output_tokens = u.input_tokens, u.output_tokens
                if u.HasField("cached_input_tokens"):
                    self.usage.cached_input_tokens = u.cached_input_tokens
                if u.HasField("cache_creation_input_tokens"):
                    self.usage.cache_creation_input_tokens = u.cache_creation_input_tokens

    def _counts(self, usage: dict[str, Any]) -> None:
        u = self.usage
        u.input_tokens = _int(usage.get("prompt_tokens", usage.get("input_tokens")), u.input_tokens)
        u.output_tokens = _int(usage.get("completion_tokens", usage.get("output_tokens")), u.output_tokens)
        prompt_details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details")
        if isinstance(prompt_details, dict):
            u.cached_input_tokens = _int(prompt_details.get("cached_tokens"), u.cached_input_tokens)
        completion_details = usage.get("completion_tokens_details") or usage.get("output_tokens_details")
        if isinstance(completion_details, dict):
            u.reasoning_tokens = _int(completion_details.get("reasoning_tokens"), u.reasoning_tokens)
        u.cached_input_tokens = _int(usage.get("cache_read_input_tokens"), u.cached_input_tokens)
        u.cache_creation_input_tokens = _int(usage.get("cache_creation_input_tokens"), u.cache_creation_input_tokens)
        # Bedrock Converse's names.
        u.input_tokens = _int(usage.get("inputTokens"), u.input_tokens)
        u.output_tokens = _int(usage.get("outputTokens"), u.output_tokens)
        u.cached_input_tokens = _int(usage.get("cacheReadInputTokens"), u.cached_input_tokens)
        u.cache_creation_input_tokens = _int(usage.get("cacheWriteInputTokens"), u.cache_creation_input_tokens)

    def _gemini(self, metadata: dict[str, Any]) -> None:
        u = self.usage
        u.input_tokens = _int(metadata.get("promptTokenCount"), u.input_tokens)
        u.output_tokens = _int(metadata.get("candidatesTokenCount"), u.output_tokens)
        u.cached_input_tokens = _int(metadata.get("cachedContentTokenCount"), u.cached_input_tokens)
        u.reasoning_tokens = _int(metadata.get("thoughtsTokenCount"), u.reasoning_tokens)
