"""The frames every floor server makes itself, in OpenAI's chat-completions wire format (stdlib only, so the ASGI
floor can run in a virtualenv holding nothing but the server under comparison).

A model name carries the local upstream's controls (``gpt-4o?frames=64&delay=0.02``): `model_controls` reads them;
`word(i)` is the i-th text delta (the upstream's words); `stream_events` / `completion` are the SSE events and the
JSON body of one answer.
"""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qsl

WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")
CHAT_ID = "chatcmpl-floor"


def model_controls(model: str) -> tuple[str, int, float]:
    """(base name, frames, delay seconds) from a model name with the upstream's ``?k=v`` controls."""
    base, _, query = model.partition("?")
    opts = dict(parse_qsl(query))
    return base, int(opts.get("frames", 16)), float(opts.get("delay", 0.0))


def word(i: int) -> str:
    return ("" if i == 0 else " ") + WORDS[i % len(WORDS)]


def _usage(frames: int) -> dict[str, int]:
    return {"prompt_tokens": 1, "completion_tokens": frames, "total_tokens": frames + 1}


def chunk(base: str, delta: dict[str, str], finish: str | None = None) -> bytes:
    body = {"id": CHAT_ID, "object": "chat.completion.chunk", "created": int(time.time()), "model": base,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


def first_event(base: str) -> bytes:
    return chunk(base, {"role": "assistant", "content": ""})


def last_events(base: str, frames: int) -> bytes:
    """The finish reason, the usage chunk and `[DONE]`."""
    usage = {"id": CHAT_ID, "object": "chat.completion.chunk", "model": base, "choices": [], "usage": _usage(frames)}
    return (chunk(base, {}, "stop") + b"data: " + json.dumps(usage, separators=(",", ":")).encode() + b"\n\n"
            + b"data: [DONE]\n\n")


def completion(base: str, frames: int) -> bytes:
    """A whole `chat.completion` body."""
    return json.dumps({"id": CHAT_ID, "object": "chat.completion", "created": int(time.time()), "model": base,
                       "usage": _usage(frames), "choices": [{
                           "index": 0, "finish_reason": "stop",
                           "message": {"role": "assistant", "content": "".join(word(i) for i in range(frames))}}]},
                      separators=(",", ":")).encode()
