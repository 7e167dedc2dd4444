"""VerifyCredential's provider call: the cheapest authenticated endpoint (list models), through httpx.

This is keyservice's only httpx user. The key travels in a header, never the URL; responses are reduced to a
health and a status code (the body is read, bounded, only to tell Gemini's bad-key 400 from a bad request, and
then dropped); transport errors give "unreachable".
"""

from __future__ import annotations

import httpx

from byokcommon.provider_answers import rejects_key

_MAX_BODY = 64 * 1024  # an error body says what it has to in far less; more is not read


def verification_request(family: str, api_base: str, api_key: str) -> tuple[str, dict[str, str]]:
    """URL and headers of the provider's list-models call for a wire family."""
    if family == "anthropic":
        return f"{api_base}/models?limit=1", {"x-api-key": api_key, "anthropic-version": "2023-06-01"}
    if family == "gemini":
        return f"{api_base}/models?pageSize=1", {"x-goog-api-key": api_key}
    return f"{api_base}/models", {"authorization": f"Bearer {api_key}"}


def verify_key(family: str, api_base: str, api_key: str, *, timeout: float,
               transport: httpx.BaseTransport | None = None) -> tuple[str, int]:
    """Return (health, http_status): active, invalid, rate_limited or unreachable (status 0 when no answer)."""
    url, headers = verification_request(family, api_base, api_key)
    try:
        with httpx.Client(timeout=timeout, transport=transport, follow_redirects=False, trust_env=False) as client, \
                client.stream("GET", url, headers=headers) as response:
            status = response.status_code
            body = b"" if 200 <= status < 300 else _read_bounded(response)
    except httpx.HTTPError:
        return "unreachable", 0
    if 200 <= status < 300:
        return "active", status
    if rejects_key(family, status, body):
        return "invalid", status
    if status == 429:
        return "rate_limited", status
    return "unreachable", status


def _read_bounded(response: httpx.Response) -> bytes:
    body = b""
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) >= _MAX_BODY:
            break
    return body[:_MAX_BODY]
