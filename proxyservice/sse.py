"""Incremental server-sent-events parser for provider response bodies (the proxy's hot path).

Follows the WHATWG event-stream rules: ``\\n``, ``\\r\\n`` and ``\\r`` line endings, ``:`` comments,
multi-line ``data``, ``field:value`` with or without the single leading space, ``id`` persisting
across events, ``retry`` ignored. Input may be split at any byte (inside a UTF-8 character, between
``\\r`` and ``\\n``): bytes are buffered until a blank line completes an event, and only whole events
are decoded, so a split character is never decoded half-way. The common chunk, one whole single-line ``data``
event (what a provider sends per chunk), takes one scan and no split.

An event may not exceed ``MAX_EVENT_BYTES`` (1 MiB): a provider's events are a few kilobytes, so a bigger one
is a broken or hostile upstream, and buffering it without bound would let one stream exhaust the proxy's
memory. Past the limit the parser drops its buffer and raises ``SSEEventTooLarge`` (a message safe to show).
"""

from __future__ import annotations

from typing import NamedTuple

_BOM = b"\xef\xbb\xbf"
MAX_EVENT_BYTES = 1 << 20


class SSEEventTooLarge(ValueError):
    """An event (or the unfinished one being buffered) grew past the parser's limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"upstream sent a stream event larger than {limit} bytes")


class SSEEvent(NamedTuple):
    """One dispatched event: its type ("message" unless named), its data, and the last event id."""

    event: str
    data: str
    id: str | None


class SSEParser:
    """Feed bytes as they arrive; get back the events they complete."""

    __slots__ = ("_buf", "_last_id", "_started", "_skip_lf", "_max")

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._max = max_event_bytes
        self._buf = b""  # unparsed bytes, line endings already normalised to \n
        self._last_id: str | None = None
        self._started = False  # BOM is only stripped at the very start of the stream
        self._skip_lf = False  # last chunk ended on \r: it may be the first half of \r\n

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Parse ``chunk``; return the events it completes (possibly none)."""
        if not chunk:
            return []
        if not self._started:
            buf = self._buf + chunk
            if len(buf) < 3 and _BOM.startswith(buf):
                self._buf = buf  # too short to know whether it is a BOM yet
                return []
            self._started = True
            self._buf = b""
            chunk = buf[3:] if buf.startswith(_BOM) else buf
        if self._skip_lf:
            # The previous chunk ended on \r, already taken as a line end: a \n here completes \r\n.
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if b"\r" in chunk:
            self._skip_lf = chunk[-1] == 13
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if not self._buf and chunk[:5] == b"data:":
            # The common chunk, one whole single-line data event (a provider sends one per chunk): one scan.
            end = chunk.find(b"\n")
            if end == len(chunk) - 2 and chunk[-1] == 10 and len(chunk) <= self._max:
                value = chunk[6:end] if chunk[5:6] == b" " else chunk[5:end]
                return [SSEEvent("message", value.decode("utf-8", "replace"), self._last_id)]
        # Only the new bytes (and the one before them) can complete a blank line: don't rescan the rest.
        start = len(self._buf) - 1 if self._buf else 0
        buf = self._buf + chunk
        if buf.find(b"\n\n", start) < 0:
            if len(buf) > self._max:
                self._too_large()
            self._buf = buf
            return []
        blocks = buf.split(b"\n\n")
        self._buf = blocks.pop()
        if len(buf) > self._max and (len(self._buf) > self._max or any(len(b) > self._max for b in blocks)):
            self._too_large()
        out: list[SSEEvent] = []
        for block in blocks:
            ev = self._dispatch(block)
            if ev is not None:
                out.append(ev)
        return out

    def _too_large(self) -> None:
        self._buf = b""
        raise SSEEventTooLarge(self._max)

    def close(self) -> list[SSEEvent]:
        """End of stream: dispatch a final event that lacked its trailing blank line."""
        buf, self._buf = self._buf, b""
        if not buf.strip(b"\n"):
            return []
        ev = self._dispatch(buf)
        return [ev] if ev is not None else []

    def _dispatch(self, block: bytes) -> SSEEvent | None:
        event = b""
        data: list[bytes] = []
        for line in block.split(b"\n"):
            if not line or line[0] == 58:  # empty (leading blank line) or ":" comment
                continue
            name, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                data.append(value)
            elif name == b"event":
                event = value
            elif name == b"id":
                if b"\0" not in value:
                    self._last_id = value.decode("utf-8", "replace")
            # "retry" and unknown fields are ignored, as the spec says.
        if not data:
            return None
        text = data[0] if len(data) == 1 else b"\n".join(data)
        return SSEEvent(
            event.decode("utf-8", "replace") if event else "message",
            text.decode("utf-8", "replace"),
            self._last_id,
        )
