"""AWS event-stream framing (``application/vnd.amazon.eventstream``), written as Bedrock writes it.

A message: a 12-byte prelude (total length, headers length, both big-endian uint32, then the CRC32 of those 8
bytes), the headers (each: name length as one byte, the name, value type 7 = string, value length as a big-endian
uint16, the value), the payload, and the CRC32 of everything before it. botocore's ``EventStreamBuffer`` is the
reader the tests hold this writer to. Bedrock's ConverseStream sends each event as ``:event-type`` (its name),
``:content-type: application/json`` and ``:message-type: event`` with the event's JSON as payload; an error inside
the stream as ``:exception-type`` (throttlingException, validationException, …) and ``:message-type: exception``.
"""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

_STRING = 7


def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    return struct.pack("!B", len(raw_name)) + raw_name + struct.pack("!BH", _STRING, len(raw_value)) + raw_value


def message(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message with string headers, in the order given."""
    head = b"".join(_header(n, v) for n, v in headers.items())
    total = 12 + len(head) + len(payload) + 4
    lengths = struct.pack("!II", total, len(head))
    prelude = lengths + struct.pack("!I", zlib.crc32(lengths))
    body = prelude + head + payload
    return body + struct.pack("!I", zlib.crc32(body))


def event(event_type: str, obj: dict[str, Any]) -> bytes:
    """A ConverseStream event message: its JSON payload under ``:event-type``."""
    return message({":event-type": event_type, ":content-type": "application/json", ":message-type": "event"},
                   json.dumps(obj, separators=(",", ":")).encode())


def exception(exception_type: str, text: str) -> bytes:
    """An in-stream exception message (``modelStreamErrorException``, ``throttlingException``, …)."""
    return message({":exception-type": exception_type, ":content-type": "application/json",
                    ":message-type": "exception"}, json.dumps({"message": text}).encode())
