"""What a provider's HTTP answer says about the key it was given, for both services: the proxy reads it to decide
on failover and a report, keyservice to judge a report and its own VerifyCredential call.

Only structured evidence counts, never a substring of the body: providers echo request text (Gemini repeats
unknown schema field names in its 400s, and a caller's tool schema goes upstream as written), so a caller could
otherwise make an answer look like a bad-key answer. And a 403 is not a bad key: providers answer 403 for
content policy, region blocks and model access. The rules (docs/security.md, "Bad-key reports"):

- Gemini: an `ErrorInfo` detail (`@type` type.googleapis.com/google.rpc.ErrorInfo) in `error.details` whose
  `reason` is `API_KEY_INVALID` (Google sends it with HTTP 400; 401 and 403 are accepted with the same detail).
- Anthropic: HTTP 401 with `error.type` `authentication_error`.
- OpenAI: HTTP 401 with `error.code` `invalid_api_key`.
- The other OpenAI-compatible providers (Mistral, Groq, Together, DeepSeek, Fireworks, OpenRouter, any
  api_base): HTTP 401, their documented authentication status; the body's `error.code` or `error.type`, when
  it is a short token, is carried as the reason.

The evidence is a reason token, the thing the proxy reports; keyservice then confirms it with its own call.
"""

from __future__ import annotations

import json
import re
from typing import Any

GEMINI_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
GEMINI_BAD_KEY = "API_KEY_INVALID"
ANTHROPIC_BAD_KEY = "authentication_error"
OPENAI_BAD_KEY = "invalid_api_key"
GENERIC_BAD_KEY = "http_401"  # an OpenAI-compatible 401 whose body names no reason
_REASON = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


def _error_object(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    error = parsed.get("error") if isinstance(parsed, dict) else None
    return error if isinstance(error, dict) else {}


def _gemini_reasons(error: dict[str, Any]) -> list[str]:
    details = error.get("details")
    if not isinstance(details, list):
        return []
    return [d["reason"] for d in details
            if isinstance(d, dict) and d.get("@type") == GEMINI_ERROR_INFO and isinstance(d.get("reason"), str)]


def key_rejection(provider: str, family: str, status: int, body: bytes) -> str:
    """The reason a provider's answer gives for refusing the key itself, or "" when it does not (a bad
    request, a policy refusal, a quota or an outage)."""
    if family == "gemini":
        if status in (400, 401, 403) and GEMINI_BAD_KEY in _gemini_reasons(_error_object(body)):
            return GEMINI_BAD_KEY
        return ""
    if status != 401:
        return ""
    error = _error_object(body)
    if family == "anthropic":
        return ANTHROPIC_BAD_KEY if error.get("type") == ANTHROPIC_BAD_KEY else ""
    if provider == "openai":
        return OPENAI_BAD_KEY if error.get("code") == OPENAI_BAD_KEY else ""
    for name in ("code", "type"):
        value = error.get(name)
        if isinstance(value, str) and _REASON.fullmatch(value):
            return value
    return GENERIC_BAD_KEY


def reported_rejection_counts(provider: str, family: str, status: int, reason: str) -> bool:
    """Whether a report (status and reason, as the proxy read them) is evidence of a bad key under the rules
    above; keyservice checks this before it spends a provider call confirming it."""
    if family == "gemini":
        return status in (400, 401, 403) and reason == GEMINI_BAD_KEY
    if status != 401 or not _REASON.fullmatch(reason):
        return False
    if family == "anthropic":
        return reason == ANTHROPIC_BAD_KEY
    if provider == "openai":
        return reason == OPENAI_BAD_KEY
    return True
