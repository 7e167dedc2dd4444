"""Provider adapters, one per wire family: request building, stream decoding, response parsing."""

from __future__ import annotations

from proxyservice.adapters.anthropic import AnthropicAdapter
from proxyservice.adapters.base import (
    Adapter,
    AdapterError,
    RequestMappingError,
    StreamDecoder,
    UpstreamRequest,
    UpstreamStreamError,
    normalise_finish,
)
from proxyservice.adapters.gemini import GeminiAdapter
from proxyservice.adapters.openai import OpenAIAdapter

FAMILIES = ("openai", "anthropic", "gemini")

_ADAPTERS: dict[str, Adapter] = {
    "openai": OpenAIAdapter(),
    "anthropic": AnthropicAdapter(),
    "gemini": GeminiAdapter(),
}


def adapter_for(family: str) -> Adapter:
    """The (stateless, shared) adapter of a wire family; ``KeyError`` for an unknown family."""
    try:
        return _ADAPTERS[family]
    except KeyError:
        raise KeyError(f"unknown provider family {family!r}") from None


__all__ = [
    "FAMILIES",
    "Adapter",
    "AdapterError",
    "AnthropicAdapter",
    "GeminiAdapter",
    "OpenAIAdapter",
    "RequestMappingError",
    "StreamDecoder",
    "UpstreamRequest",
    "UpstreamStreamError",
    "adapter_for",
    "normalise_finish",
]
