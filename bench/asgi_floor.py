"""The HTTP floor as a bare ASGI application, for comparing ASGI servers (uvicorn, Granian, Hypercorn) with aiohttp
when choosing the HTTP front's server (`bench/servers.py`). It answers ``POST /openai/chat/completions`` exactly as
the aiohttp floor (`bench/floor.py --http`) does, from the same frames (`bench/sse_frames.py`), and says in
``x-peer-certificate`` whether the server handed it the caller's client certificate (the ASGI TLS extension) —
the front needs that certificate to know who calls.

Run by the server under test: ``uvicorn bench.asgi_floor:app`` and the like (stdlib only, no project imports
beyond `bench.sse_frames`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from bench.sse_frames import chunk, completion, first_event, last_events, model_controls, word

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def _peer_certificate(scope: dict[str, Any]) -> bytes:
    tls = (scope.get("extensions") or {}).get("tls") or {}
    return b"yes" if tls.get("client_cert_chain") else b"no"


async def _body(receive: Receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    payload = json.loads(await _body(receive))
    base, frames, delay = model_controls(payload["model"])
    peer = (b"x-peer-certificate", _peer_certificate(scope))
    if not payload.get("stream"):
        body = completion(base, frames)
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), peer]})
        await send({"type": "http.response.body", "body": body})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"), peer]})
    await send({"type": "http.response.body", "body": first_event(base), "more_body": True})
    for i in range(frames):
        if delay:
            await asyncio.sleep(delay)
        await send({"type": "http.response.body", "body": chunk(base, {"content": word(i)}), "more_body": True})
    await send({"type": "http.response.body", "body": last_events(base, frames)})
