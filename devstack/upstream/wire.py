"""Small facts of the wire formats that the request checks and the answer generators share: the stand-in's
signatures over thinking and function calls, and how Google's JSON names fields."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any


def signature(text: str) -> str:
    """The (opaque, base64) signature the stand-in attaches to a thinking text."""
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def call_signature(name: str) -> str:
    """The ``thoughtSignature`` a Gemini 3 answer puts on its call of function ``name``.

    Bound to the name, not the arguments: a proxy may re-encode the arguments (1 → 1.0) without tampering."""
    return signature("functionCall:" + name)


def same_bytes(a: Any, b: str) -> bool:
    """Whether proto-JSON bytes field ``a`` holds the bytes base64 ``b`` does: Google decodes either alphabet, with or
    without padding, so a client may re-encode a signature (google-genai keeps it as bytes) and still send it back."""
    if not isinstance(a, str):
        return False
    try:
        return base64.urlsafe_b64decode(a.replace("+", "-").replace("/", "_") + "=" * (-len(a) % 4)) == \
            base64.b64decode(b)
    except (ValueError, TypeError):
        return False


def proto_field(obj: Any, name: str) -> Any:
    """A field of a Google JSON body, which (proto JSON) may spell its name lowerCamel or snake_case."""
    if not isinstance(obj, dict):
        return None
    if name in obj:
        return obj[name]
    return obj.get(snake(name))


def snake(name: str) -> str:
    """``thinkingConfig`` → ``thinking_config`` (the proto field name Google's errors quote)."""
    return re.sub(r"([A-Z])", r"_\1", name).lower()
