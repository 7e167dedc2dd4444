"""VerifyCredential's provider call: the cheapest authenticated endpoint (list models), through httpx.

This is keyservice's only httpx user. The key travels in a header, never the URL; responses are reduced to a
health and a status code (an error body is read, bounded, only for the provider's structured bad-key
evidence, byokcommon/provider_answers.py, and then dropped); transport errors give "unreachable".

The destination is checked when the request is sent (byokcommon/egress.py): the host is resolved, every
address it has must be public (or allowed by ops), and the connection goes to the checked address, so neither
an internal address nor a name rebound to one after validation gets the key or answers as an oracle for
internal ports. A refused destination is FAILED_PRECONDITION naming api_base, before any connection.
"""

from __future__ import annotations

import httpx

from byokcommon.egress import EgressPolicy, EgressRefused, PinningResolver, Unresolvable
from byokcommon.provider_answers import key_rejection
from byokcommon.wire import BoundedBody, auth_headers
from keyservice.errors import FailedPrecondition


def verification_request(family: str, api_base: str, api_key: str) -> tuple[str, dict[str, str]]:
    """URL and headers of the provider's list-models call for a wire family (the smallest page of it)."""
    page = {"anthropic": "?limit=1", "gemini": "?pageSize=1"}.get(family, "")
    return f"{api_base}/models{page}", auth_headers(family, api_key)


class PinnedTransport(httpx.BaseTransport):
    """httpx's transport with the destination checked and pinned: the request goes to the address the resolver
    checked, with the original host kept in the Host header and as the TLS server name (httpx's documented
    `sni_hostname` request extension), so certificates are still verified against the name."""

    def __init__(self, inner: httpx.BaseTransport, resolver: PinningResolver) -> None:
        self._inner = inner
        self._resolver = resolver

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        port = url.port or (443 if url.scheme == "https" else 80)
        address = self._resolver.address_sync(url.scheme, url.host, port)
        if address != url.host:
            request.url = url.copy_with(host=address)
            if url.scheme == "https":
                request.extensions = {**request.extensions, "sni_hostname": url.host}
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


def verify_key(provider: str, family: str, api_base: str, api_key: str, *, timeout: float,
               resolver: PinningResolver | None = None,
               transport: httpx.BaseTransport | None = None) -> tuple[str, int]:
    """Return (health, http_status): active, invalid, rate_limited or unreachable (status 0 when no answer).
    Raises FailedPrecondition when the destination is refused (`resolver` defaults to the strict rules)."""
    url, headers = verification_request(family, api_base, api_key)
    pinned = PinnedTransport(transport or httpx.HTTPTransport(trust_env=False),
                             resolver or PinningResolver(EgressPolicy()))
    try:
        with httpx.Client(timeout=timeout, transport=pinned, follow_redirects=False, trust_env=False) as client, \
                client.stream("GET", url, headers=headers) as response:
            status = response.status_code
            body = b"" if 200 <= status < 300 else _read_bounded(response)
    except EgressRefused as exc:
        raise FailedPrecondition(f"api_base: {exc}") from None
    except (httpx.HTTPError, Unresolvable):
        return "unreachable", 0
    if 200 <= status < 300:
        return "active", status
    if key_rejection(provider, family, status, body):
        return "invalid", status
    if status == 429:
        return "rate_limited", status
    return "unreachable", status


def _read_bounded(response: httpx.Response) -> bytes:
    body = BoundedBody()
    for chunk in response.iter_bytes():
        if body.add(chunk):
            break
    return body.bytes()
