"""What both services (and the local upstream) know of each wire family: how a provider's API takes the key,
which headers can carry a key at all, and how much of an error body is worth reading.

A lease says how its key is presented (`auth_scheme`): "" or "api_key" is the family's own header (Azure OpenAI's
`api-key`, whose API is otherwise the OpenAI family's), "bearer" an `Authorization: Bearer` token (a Bedrock API
key, or a token keyservice derived from a Google service account or an Entra ID application), "aws_sigv4" a
request signed with the lease's temporary AWS credentials: that one is no header of the key alone, and the proxy
signs each request as it sends it (proxyservice/upstream.py).

The provider catalog proper (hosts, key shapes, model patterns, display names) is keyservice/providers.py: only
keyservice needs it, and it hands the proxy what a lease needs (api_base, family). What a provider's answers mean
(bad-key evidence) is byokcommon/provider_answers.py. This module is the part the adapters, VerifyCredential and
the local upstream share, so that the auth headers are written once.
"""

from __future__ import annotations

import re

FAMILIES = ("openai", "anthropic", "gemini", "bedrock")
# The Anthropic API version the proxy and VerifyCredential speak.
ANTHROPIC_VERSION = "2023-06-01"
# Every header a provider key travels in, lower-case: never logged, never forwarded from a caller. Azure's
# `api-key`; AWS's session token rides beside a SigV4 signature (whose `authorization` is already here).
KEY_HEADERS = ("authorization", "x-api-key", "x-goog-api-key", "api-key", "x-amz-security-token")
# How a lease's key is presented (IssueKeyLeaseResponse.auth_scheme; "" is "api_key").
AUTH_SCHEMES = ("", "api_key", "bearer", "aws_sigv4")
SIGV4 = "aws_sigv4"
# The provider whose API is the OpenAI family's but takes its key in `api-key`.
AZURE_OPENAI = "azure_openai"
# An error body says what it has to in far less; more is never read.
MAX_ERROR_BODY = 64 * 1024


def auth_headers(family: str, api_key: str, *, scheme: str = "", provider: str = "") -> dict[str, str]:
    """The headers that present `api_key` to a provider of this wire family (the OpenAI family: a bearer), as the
    lease's `scheme` says (see the module docstring); `provider` names Azure OpenAI, whose key header is its own.
    A SigV4 lease has no such header: asking for one is a programming error, not an unsigned request."""
    if scheme == SIGV4:
        raise ValueError("an aws_sigv4 lease is presented by signing the request, not by a header")
    if scheme == "bearer":
        return {"authorization": f"Bearer {api_key}"}
    if scheme not in AUTH_SCHEMES:
        raise ValueError(f"unknown auth scheme {scheme[:32]!r}")
    if provider == AZURE_OPENAI:
        return {"api-key": api_key}
    if family == "anthropic":
        return {"x-api-key": api_key, "anthropic-version": ANTHROPIC_VERSION}
    if family == "gemini":
        return {"x-goog-api-key": api_key}
    return {"authorization": f"Bearer {api_key}"}


# The version segment that ends an Anthropic or Gemini api_base ("…/v1", "…/v1beta"): their SDKs put it in each
# request's path themselves, so it is not part of the root they are pointed at.
_VERSION_SEGMENT = re.compile(r"/v[0-9]+(?:alpha|beta)?[0-9]*/?$")


def sdk_root(family: str, api_base: str) -> str:
    """The provider's API root as its official SDK's base_url knows it, from a lease's api_base: the OpenAI
    family's base as is (`https://api.openai.com/v1`; the SDK sends `/chat/completions`), Anthropic's and
    Gemini's without their version segment (`https://api.anthropic.com`; the SDK sends `/v1/messages`)."""
    base = api_base.rstrip("/")
    if family in ("anthropic", "gemini"):
        return _VERSION_SEGMENT.sub("", base)
    return base


def bearer(headers: dict[str, str]) -> str:
    """The token of an `Authorization: Bearer …` header ("" without one); `headers` with lower-case names."""
    auth = headers.get("authorization", "")
    return auth[7:].strip() if auth[:7].lower() == "bearer " else ""


def presented_key(headers: dict[str, str]) -> str:
    """The API key a request carries, in whichever family's header; `headers` with lower-case names."""
    return (bearer(headers) or headers.get("x-api-key", "") or headers.get("x-goog-api-key", "")
            or headers.get("api-key", ""))


class BoundedBody:
    """Collects a body's chunks up to MAX_ERROR_BODY; `full` once the limit is reached (stop reading)."""

    __slots__ = ("_chunks", "_size")

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._size = 0

    def add(self, chunk: bytes) -> bool:
        """Keep `chunk`; True when the limit is reached."""
        self._chunks.append(chunk)
        self._size += len(chunk)
        return self._size >= MAX_ERROR_BODY

    def bytes(self) -> bytes:
        return b"".join(self._chunks)[:MAX_ERROR_BODY]
