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
from proxyservice.adapters.bedrock import BedrockAdapter
from proxyservice.adapters.gemini import GeminiAdapter
from proxyservice.adapters.openai import OpenAIAdapter
from proxyservice.errors import FailedPrecondition

FAMILIES = ("openai", "anthropic", "gemini", "bedrock")

_ADAPTERS: dict[str, Adapter] = {
    "openai": OpenAIAdapter(),
    "anthropic": AnthropicAdapter(),
    "gemini": GeminiAdapter(),
    "bedrock": BedrockAdapter(),
}


def adapter_for(family: str) -> Adapter:
    """The (stateless, shared) adapter of a wire family. A family this proxy does not speak (a lease from a
    newer keyservice) is FAILED_PRECONDITION naming it, not an INTERNAL KeyError."""
    try:
        return _ADAPTERS[family]
    except KeyError:
        raise FailedPrecondition(f"this proxy does not speak the API family {family[:32]!r} of the leased "
                                 f"credential (it speaks {', '.join(FAMILIES)}); upgrade the proxy") from None


__all__ = [
    "FAMILIES",
    "Adapter",
    "AdapterError",
    "AnthropicAdapter",
    "BedrockAdapter",
    "GeminiAdapter",
    "OpenAIAdapter",
    "RequestMappingError",
    "StreamDecoder",
    "UpstreamRequest",
    "UpstreamStreamError",
    "adapter_for",
    "normalise_finish",
]
