"""Keeps the lease's key out of a relayed body: a provider that echoes the key it was sent (some put it in an
error message) must not hand it to the caller, who never holds a provider key.

Each chunk is searched for the key (one substring search: the key is long and rarely present); an occurrence is
overwritten with asterisks of the same length, so the body's framing (SSE lines, JSON) stays intact. A key split
across two chunks cannot be overwritten in the part already relayed: the relay stops there instead
(`KeyInBody`), the caller gets a cut stream, and the key's first part only.
"""

from __future__ import annotations


class KeyInBody(Exception):
    """The key straddled two chunks of the body; the relay must stop."""


class KeyScrubber:
    __slots__ = ("_key", "_mask", "_tail")

    def __init__(self, key: str) -> None:
        self._key = key.encode() if key else b""
        self._mask = b"*" * len(self._key)
        self._tail = b""

    def clean(self, chunk: bytes) -> bytes:
        key = self._key
        if not key:
            return chunk
        if key in chunk:
            chunk = chunk.replace(key, self._mask)
        keep = len(key) - 1
        if self._tail and key in self._tail + chunk[:keep]:
            raise KeyInBody
        self._tail = chunk[-keep:] if len(chunk) >= keep else (self._tail + chunk)[-keep:]
        return chunk
