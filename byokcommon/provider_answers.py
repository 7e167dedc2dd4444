"""What a provider's HTTP answer says about the key it was given, for both services: keyservice's
VerifyCredential and the proxy's failover read provider answers the same way.

Most providers refuse a bad key with 401 or 403. Gemini answers 400 with the reason `API_KEY_INVALID` in the
error body (its `details[].reason`), the same status it uses for malformed requests, so the body decides.
"""

from __future__ import annotations

KEY_REJECTED_STATUSES = frozenset({401, 403})
_GEMINI_BAD_KEY = b"API_KEY_INVALID"


def rejects_key(family: str, status: int, body: bytes) -> bool:
    """Whether the provider refused the key itself (as opposed to the request, a quota or an outage)."""
    if status in KEY_REJECTED_STATUSES:
        return True
    return family == "gemini" and status == 400 and _GEMINI_BAD_KEY in body
