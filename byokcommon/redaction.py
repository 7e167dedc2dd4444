"""Masks anything shaped like a provider key, a Vault token or a bearer credential in text.

Used by the logging pipeline on every event and by anything that must turn foreign text into something safe
(the proxy's adapters mask provider messages with `redact_text` too: one key-shape rule for both).
The patterns are deliberately broad: a false positive costs a masked word, a false negative leaks a key.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "[REDACTED]"

# Prefix-less keys: Mistral (32 letters and digits), Together (64 hex digits), and other opaque tokens.
# The rule is a run of 32 or more ASCII letters and digits, bounded on both sides by anything else, except a
# run of exactly 32 lowercase hex digits. Why this shape, given what the services log:
# - request ids, lease ids (lease_ + 32 hex), audit event ids are uuid4().hex: exactly 32 lowercase hex, so
#   they are spared (a random 32-character Mistral key is all-lowercase-hex with probability ~(16/62)^32);
# - credential ids are cred_ + 24 hex (a run of 24: too short), UUIDs with dashes have runs of at most 12,
#   SPIFFE ids are short path segments, key fingerprints are sha256: + 16 hex: none reach 32;
# - only letters and digits count, not - or _, so dashed or underscored identifiers are never one long run.
# A 64-hex string (a Together key, or a full sha256 digest) is always masked: the services log no full digests.
_LONG_OPAQUE_TOKEN = r"(?<![A-Za-z0-9])(?![0-9a-f]{32}(?![A-Za-z0-9]))[A-Za-z0-9]{32,}"

_SECRET_PATTERNS = [
    r"sk-ant-[A-Za-z0-9_\-]{8,}",          # Anthropic
    r"sk-or-[A-Za-z0-9_\-]{8,}",           # OpenRouter
    r"sk-[A-Za-z0-9_\-]{16,}",             # OpenAI, DeepSeek, generic sk-
    r"gsk_[A-Za-z0-9]{16,}",               # Groq
    r"fw_[A-Za-z0-9]{16,}",                # Fireworks
    r"AIza[0-9A-Za-z_\-]{20,}",            # Google / Gemini
    r"hv[sbr]\.[A-Za-z0-9_\-]{16,}",       # Vault service/batch/recovery tokens
    r"s\.[A-Za-z0-9]{20,}",                # legacy Vault tokens
    r"(?:AKIA|ASIA)[A-Z0-9]{16}",          # AWS access key ids (long-lived and STS session): too short for the run rule
    r"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])",  # AWS secret access keys (base64ish, 40)
    r"(?:IQoJb3JpZ2lu|FwoGZXIvYXdz)[A-Za-z0-9/+=]{16,}",      # AWS session tokens
    r"ya29\.[A-Za-z0-9_\-]{16,}",           # Google OAuth2 access tokens
    r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*",  # JWTs (Entra ID tokens, assertions)
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)",  # a service account's key
    r"(?i:bearer)\s+[A-Za-z0-9._~+/\-]{8,}=*",
    r"(?<=(?i:api[_-]key)[=:])[^\s\"',}]{8,}",
    r"(?<=(?i:x-api-key): )\S+",
    r"(?<=(?i:x-goog-api-key): )\S+",
    r"(?<=(?i:x-vault-token): )\S+",
    _LONG_OPAQUE_TOKEN,
]
_SECRET_RE = re.compile("|".join(f"(?:{p})" for p in _SECRET_PATTERNS))

# Field names whose values are always masked, whatever they look like.
SENSITIVE_KEYS = frozenset({
    "api_key", "apikey", "key", "secret", "secret_id", "token", "vault_token", "authorization", "password",
    "x-api-key", "x-goog-api-key", "ciphertext", "plaintext",
    # The cloud credentials' secret fields and what keyservice derives from them.
    "secret_access_key", "session_token", "client_secret", "private_key", "service_account_json", "access_token",
})


def redact_text(text: str) -> str:
    """Return `text` with every key-shaped substring replaced by MASK."""
    return _SECRET_RE.sub(MASK, text)


def redact_value(value: Any) -> Any:
    """Redact strings, and recurse into dicts, lists and tuples."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: (MASK if str(k).lower() in SENSITIVE_KEYS else redact_value(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_value(v) for v in value)
    return value
