"""Masks anything shaped like a provider key, a Vault token or a bearer credential in text.

Used by the logging pipeline on every event and by anything that must turn foreign text into something safe.
The patterns are deliberately broad: a false positive costs a masked word, a false negative leaks a key.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "[REDACTED]"

_SECRET_PATTERNS = [
    r"sk-ant-[A-Za-z0-9_\-]{8,}",          # Anthropic
    r"sk-or-[A-Za-z0-9_\-]{8,}",           # OpenRouter
    r"sk-[A-Za-z0-9_\-]{16,}",             # OpenAI, DeepSeek, generic sk-
    r"gsk_[A-Za-z0-9]{16,}",               # Groq
    r"fw_[A-Za-z0-9]{16,}",                # Fireworks
    r"AIza[0-9A-Za-z_\-]{20,}",            # Google / Gemini
    r"hv[sbr]\.[A-Za-z0-9_\-]{16,}",       # Vault service/batch/recovery tokens
    r"s\.[A-Za-z0-9]{20,}",                # legacy Vault tokens
    r"(?i:bearer)\s+[A-Za-z0-9._~+/\-]{8,}=*",
    r"(?<=(?i:api[_-]key)[=:])[^\s\"',}]{8,}",
    r"(?<=(?i:x-api-key): )\S+",
    r"(?<=(?i:x-goog-api-key): )\S+",
    r"(?<=(?i:x-vault-token): )\S+",
]
_SECRET_RE = re.compile("|".join(f"(?:{p})" for p in _SECRET_PATTERNS))

# Field names whose values are always masked, whatever they look like.
SENSITIVE_KEYS = frozenset({
    "api_key", "apikey", "key", "secret", "secret_id", "token", "vault_token", "authorization", "password",
    "x-api-key", "x-goog-api-key", "ciphertext", "plaintext",
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
