"""What may be shown of a key: a hint (known prefix and last four characters) and a fingerprint."""

from __future__ import annotations

import hashlib

from keyservice.providers import ProviderSpec


def key_hint(spec: ProviderSpec, api_key: str) -> str:
    """e.g. 'sk-ant-…a1b2'; keys without a documented prefix show only their last four characters."""
    prefix = spec.key_prefix if spec.key_prefix and api_key.startswith(spec.key_prefix) else ""
    return f"{prefix}…{api_key[-4:]}"


def fingerprint(api_key: str) -> str:
    """A stable identifier of a key that reveals nothing usable: 64 bits of its SHA-256."""
    return "sha256:" + hashlib.sha256(api_key.encode()).hexdigest()[:16]
