"""VerifyCredential's provider call: the cheapest authenticated endpoint (list models), through httpx.

This is keyservice's only httpx user. The key travels in a header, never the URL; responses are reduced to a
status code; transport errors to "unreachable". Nothing from the response body is kept.
"""

from __future__ import annotations

import httpx

_HEALTH_BY_STATUS = {200: "active", 401: "invalid", 403: "invalid", 429: "rate_limited"}


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
        with httpx.Client(timeout=timeout, transport=transport, follow_redirects=False) as client:
            status = client.get(url, headers=headers).status_code
    except httpx.HTTPError:
        return "unreachable", 0
    if 200 <= status < 300:
        return "active", status
    return _HEALTH_BY_STATUS.get(status, "unreachable"), status
