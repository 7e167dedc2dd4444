"""What may be shown of a secret: a hint (a key's known prefix and last four characters; for the cloud
credentials an identifier that is not secret, see keyservice/cloud_fields.py) and a fingerprint."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from keyservice.providers import ProviderSpec


def key_hint(spec: ProviderSpec, api_key: str) -> str:
    """e.g. 'sk-ant-…a1b2'; keys without a documented prefix show only their last four characters."""
    prefix = spec.key_prefix if spec.key_prefix and api_key.startswith(spec.key_prefix) else ""
    return f"{prefix}…{api_key[-4:]}"


def fingerprint(api_key: str) -> str:
    """A stable identifier of a key that reveals nothing usable: 64 bits of its SHA-256."""
    return "sha256:" + hashlib.sha256(api_key.encode()).hexdigest()[:16]


def fingerprint_secret(secret: Mapping[str, str]) -> str:
    """The fingerprint of a whole secret: of its api_key when that is all it is (the same as before secrets had
    fields), else of every field, names included, in one canonical JSON form (a change to any field changes it)."""
    if set(secret) == {"api_key"}:
        return fingerprint(secret["api_key"])
    return fingerprint(json.dumps(dict(secret), sort_keys=True, separators=(",", ":"), ensure_ascii=False))
