"""A local fake LLM upstream speaking the OpenAI, Anthropic and Gemini wire formats on one port.

Used by tests, ``make run`` and benchmarks (thousands of slow concurrent streams), so it is raw
asyncio + h11 (HTTP/1.1 with keep-alive; streamed bodies use chunked transfer encoding).

Endpoints (``base_url`` = ``http://127.0.0.1:PORT``):
- OpenAI    ``POST /v1/chat/completions`` (stream or not), ``GET /v1/models`` (Bearer auth)
- Mistral   the same under ``/mistral/v1`` (``mistral_base``), validated as strictly as Mistral does: a body
            field Mistral does not know (``stream_options`` above all) gets its 422 ``extra_forbidden``
            answer, and streams carry ``usage`` on the finishing chunk unasked, as Mistral's do
- Anthropic ``POST /v1/messages`` (stream or not), ``GET /v1/models`` (``x-api-key`` or Bearer auth)
- Gemini    ``POST /v1beta/models/{m}:streamGenerateContent?alt=sse``, ``POST /v1beta/models/{m}:generateContent``,
            ``GET /v1beta/models`` (``x-goog-api-key`` auth; a ``key=`` query parameter is refused with 400,
            because the proxy must never put a key in a URL)
``GET /v1/models`` is answered in Anthropic's shape when the request carries ``x-api-key`` or
``anthropic-version``. Anthropic also accepts ``Authorization: Bearer`` (recent official SDKs send it).

Auth: ``UpstreamConfig.keys[family]`` lists accepted keys; an empty set (or a family absent from the
dict) accepts any non-empty key. A missing or wrong key gets the provider's own answer: 401 with its error
JSON for OpenAI and Anthropic; for Gemini, as Google does, 400 ``INVALID_ARGUMENT`` "API key not valid" with
an ``ErrorInfo`` detail of reason ``API_KEY_INVALID`` for a wrong key, and 403 ``PERMISSION_DENIED`` for none.
Each ``RecordedRequest`` says which header carried the key (``key_header``), whether the key (or a ``key=``
parameter) was in the URL (``key_in_url``), and the status answered, so tests can check where keys travel
even though recorded header values are redacted.

The model name steers the response (so the proxy needs no special channel):
- any ordinary name: ``frames`` text deltas, ``WORDS[i % len(WORDS)]`` each with a leading space
  after the first (see ``generated_text``), paced by ``frame_delay``, then the finish reason and usage
  (input tokens = total characters of the request's messages // 4 + 1, output tokens = frames). When
  the request's max tokens is below ``frames``, only that many frames are sent and the finish is the
  provider's "length" reason.
- ``replay:<family>/<case>`` serves ``<replay_dir>/<family>/<case>.sse`` byte-exactly (streaming only).
- ``fault:429`` (with ``retry-after: 7``), ``fault:500``, ``fault:stall`` (headers + one frame, then
  nothing until the client goes), ``fault:reset`` (headers + one frame, then the socket is aborted),
  ``fault:malformed`` (a frame of broken JSON, then a normal end), ``fault:truncate`` (the first half of
  the frames, then a clean end of the body: no finish reason, no ``[DONE]`` / ``message_stop``),
  ``fault:echo-key`` (a 400 whose error message repeats the key received, as some providers do) and
  ``fault:echo-key-stream`` (one frame, then the provider's in-stream error event repeating the key): leak
  canaries for what the proxy does with provider text.
- a ``?k=v&k=v`` suffix overrides per request: ``frames=N``, ``delay=SECONDS``, ``chunk=N``
  (0 = one piece per frame, -1 = random pieces), ``tool=1`` (after the text, call the request's first
  tool with arguments ``{"n":1}`` sent as two fragments, finishing with the provider's tool-call
  reason). E.g. ``gpt-4o?frames=64&delay=0.02``.
  Gemini model names are URL path segments, so send them percent-encoded (the proxy's adapter does).

Bodies are written in ``chunk_size``-byte pieces when set (``-1`` = random 1..64 byte pieces), else
one piece per frame. Client disconnects are noticed while streaming (the socket is watched, not just
written to) and recorded in ``closed_early`` with the ``time.monotonic()`` of the notice.

Run alone: ``python -m devstack.upstream --port 0 --print-port`` (serves until SIGINT/SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import h11

from byokcommon.wire import KEY_HEADERS, bearer

WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")
DEFAULT_REPLAY_DIR = Path(__file__).resolve().parent.parent / "tests" / "data" / "conformance"
_MODELS = {
    "openai": ["gpt-4o-mini", "gpt-4o"],
    "anthropic": ["claude-sonnet-4-5", "claude-3-5-haiku-latest"],
    "gemini": ["gemini-2.0-flash", "gemini-2.5-pro"],
}


def generated_text(frames: int) -> str:
    """The text a generated response of ``frames`` frames adds up to."""
    return " ".join(WORDS[i % len(WORDS)] for i in range(frames))


def _frame_word(i: int) -> str:
    return ("" if i == 0 else " ") + WORDS[i % len(WORDS)]


@dataclass
class UpstreamConfig:
    """Behaviour of a FakeUpstream (mutable: tests may change it between requests)."""

    keys: dict[str, set[str]] = field(default_factory=dict)  # family → accepted keys; empty/absent = any
    frames: int = 16  # text deltas per generated response
    frame_delay: float = 0.0  # seconds between frames
    chunk_size: int | None = None  # split bodies into pieces of this many bytes; -1 = random pieces
    replay_dir: Path = DEFAULT_REPLAY_DIR  # where replay:<family>/<case> finds <family>/<case>.sse


# The fields of Mistral's chat completion request; Mistral answers any other one with 422 extra_forbidden.
MISTRAL_CHAT_FIELDS = frozenset({
    "model", "messages", "temperature", "top_p", "max_tokens", "stream", "stop", "random_seed", "metadata",
    "response_format", "tools", "tool_choice", "presence_penalty", "frequency_penalty", "n", "prediction",
    "parallel_tool_calls", "prompt_mode", "safe_prompt",
})


@dataclass
class RecordedRequest:
    """What a client sent, with the auth header values replaced by "<redacted>"."""

    method: str
    path: str  # including the query string
    headers: dict[str, str]  # lower-cased names
    json: Any  # parsed body, or None
    family: str = ""
    authorized: bool = False
    key_header: str = ""  # the header the key came in ("authorization", "x-api-key", "x-goog-api-key")
    key_in_url: bool = False  # the key, or a key= query parameter, was in the request target
    status: int = 0  # what this server answered
    provider: str = ""  # "mistral" on Mistral's route; else the family's own provider


@dataclass
class _Opts:
    frames: int
    delay: float
    chunk: int | None
    tool: bool


class _ClientGone(Exception):
    """The client closed its connection while we were streaming."""


class FakeUpstream:
    """The server. ``await start()``, use ``openai_base`` / ``anthropic_base`` / ``gemini_base``, ``await stop()``."""

    def __init__(self, config: UpstreamConfig | None = None) -> None:
        self.config = config or UpstreamConfig()
        self.requests: list[RecordedRequest] = []
        self.open_streams = 0
        self.peak_open_streams = 0  # most streams open at once since start (a caller may reset it to 0)
        self.closed_early: list[float] = []
        self.port = 0
        self.host = "127.0.0.1"
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()
        self._rng = random.Random(0)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base(self) -> str:
        return self.base_url + "/v1"

    @property
    def anthropic_base(self) -> str:
        return self.base_url + "/v1"

    @property
    def open_connections(self) -> int:
        """TCP connections open from clients right now (a client that leaks a pooled connection keeps one)."""
        return len(self._conns)

    @property
    def mistral_base(self) -> str:
        return self.base_url + "/mistral/v1"

    @property
    def gemini_base(self) -> str:
        return self.base_url + "/v1beta"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._server = await asyncio.start_server(self._on_conn, host, port, backlog=4096)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._conns):
            t.cancel()
        if self._conns:
            await asyncio.gather(*self._conns, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FakeUpstream:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- connection handling -------------------------------------------------------------------

    async def _on_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        conn = _Conn(self, reader, writer)
        try:
            await conn.serve()
        except (asyncio.CancelledError, ConnectionError, h11.ProtocolError, _ClientGone):
            pass
        finally:
            self._conns.discard(task)
            if conn.abort:
                writer.transport.abort()
            else:
                writer.close()

    # ---- request routing -----------------------------------------------------------------------

    def _route(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        resp = self._answer(method, target, headers, body)
        self.requests[-1].status = resp.status  # synchronous since _answer appended it: it is this request's
        return resp

    def _answer(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        parts = urlsplit(target)
        path = unquote(parts.path)
        query = dict(parse_qsl(parts.query))
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            payload = None
        rec = RecordedRequest(method, target, _redact(headers), payload)
        self.requests.append(rec)

        mistral = path.startswith("/mistral/v1/")
        if mistral:
            path = path[len("/mistral"):]
        if mistral and path not in ("/v1/chat/completions", "/v1/models"):
            return _json(404, {"detail": "Not Found"})
        if path == "/v1/chat/completions" and method == "POST":
            family, kind = "openai", "chat"
        elif path == "/v1/messages" and method == "POST":
            family, kind = "anthropic", "chat"
        elif path == "/v1/models" and method == "GET":
            anthropic_ = "x-api-key" in headers or "anthropic-version" in headers
            family, kind = ("anthropic" if anthropic_ else "openai"), "models"
        elif path == "/v1beta/models" and method == "GET":
            family, kind = "gemini", "models"
        elif path.startswith("/v1beta/models/") and method == "POST" and ":" in path:
            family, kind = "gemini", "chat"
        else:
            return _json(404, {"error": {"message": f"no route for {method} {parts.path}"}})
        rec.family = family
        rec.provider = "mistral" if mistral else family
        key_header = {"openai": "authorization", "gemini": "x-goog-api-key",
                      "anthropic": "x-api-key" if "x-api-key" in headers else "authorization"}[family]
        key = {"openai": bearer(headers), "anthropic": headers.get("x-api-key") or bearer(headers),
               "gemini": headers.get("x-goog-api-key", "")}[family]
        rec.key_header = key_header if key else ""
        rec.key_in_url = "key" in query or bool(key and (key in target or key in unquote(target)))
        if family == "gemini" and "key" in query:
            return _json(400, _gemini_error(400, "INVALID_ARGUMENT", "API keys must be sent in x-goog-api-key"))
        accepted = self.config.keys.get(family)
        if not key or (accepted and key not in accepted):
            return _unauthorized(family, missing=not key)
        rec.authorized = True
        if kind == "models":
            return _json(200, _models(family))

        if family == "gemini":
            name, _, action = path[len("/v1beta/models/"):].rpartition(":")
            if action not in ("streamGenerateContent", "generateContent"):
                return _json(404, _gemini_error(404, "NOT_FOUND", f"unknown method {action}"))
            stream = action == "streamGenerateContent"
            model = name
        else:
            if not isinstance(payload, dict) or not isinstance(payload.get("model"), str):
                return _bad_request(family, "request body must be JSON with a model")
            stream = bool(payload.get("stream"))
            model = payload["model"]
        if not isinstance(payload, dict):
            return _bad_request(family, "request body must be a JSON object")
        if mistral:
            extra = sorted(set(payload) - MISTRAL_CHAT_FIELDS)
            if extra:
                return _mistral_extra_forbidden(extra[0], payload[extra[0]])
        return self._chat(family, model, payload, stream, rec.provider, key)

    def _chat(self, family: str, model: str, payload: dict[str, Any], stream: bool,
              provider: str = "", key: str = "") -> Response:
        base, _, q = model.partition("?")
        overrides = dict(parse_qsl(q))
        cfg = self.config
        opts = _Opts(
            frames=int(overrides.get("frames", cfg.frames)),
            delay=float(overrides.get("delay", cfg.frame_delay)),
            chunk=int(overrides["chunk"]) if "chunk" in overrides else cfg.chunk_size,
            tool=overrides.get("tool") == "1",
        )
        if base.startswith("fault:"):
            fault = base[6:]
            if fault == "429":
                resp = _rate_limited(family)
                return resp
            if fault == "500":
                return _server_error(family)
            if fault == "echo-key":
                return _bad_request(family, f"Incorrect API key provided: {key}. You can find your key in settings.")
            if fault == "echo-key-stream":
                gen = _Generator(family, base, payload, opts, provider)
                return Response(200, _sse_headers(), frames=_echo_key_frames(gen, key), opts=opts)
            if fault not in ("stall", "reset", "malformed", "truncate"):
                return _bad_request(family, f"unknown fault {fault}")
            gen = _Generator(family, base, payload, opts, provider)
            return Response(200, _sse_headers(), frames=self._fault_frames(gen, fault), opts=opts,
                             reset=fault == "reset")
        if base.startswith("replay:"):
            if not stream:
                return _bad_request(family, "replay models only stream")
            fam, _, case = base[7:].partition("/")
            file = cfg.replay_dir / fam / f"{case}.sse"
            if "/" in case or ".." in case or not file.is_file():
                return _json(404, {"error": {"message": f"no recorded case {base[7:]}"}})
            return Response(200, _sse_headers(), frames=_one(file.read_bytes()), opts=opts)
        gen = _Generator(family, base, payload, opts, provider)
        if not stream:
            return _json(200, gen.whole())
        return Response(200, _sse_headers(), frames=gen.frames(), opts=opts)

    async def _fault_frames(self, gen: _Generator, fault: str) -> AsyncIterator[bytes]:
        frames = gen.frames()
        first = await anext(frames)
        yield first
        if fault == "malformed":
            yield b'data: {"broken": \n\n'
            async for f in frames:
                yield f
            return
        if fault == "truncate":
            for _ in range(gen.n // 2):
                yield await anext(frames)
            return  # a clean end of the body, well before the provider's end of answer
        if fault == "stall":
            await asyncio.Event().wait()  # until the client goes (the watcher cancels us)
        # "reset": the connection is aborted once this generator ends


async def _echo_key_frames(gen: _Generator, key: str) -> AsyncIterator[bytes]:
    """One frame, then the family's in-stream error event with the key in its message."""
    yield await anext(gen.frames())
    message = f"upstream failure while serving key {key}"
    if gen.family == "anthropic":
        yield _Generator._an_event("error", {"type": "error", "error": {"type": "api_error", "message": message}})
    elif gen.family == "gemini":
        yield b"data: " + json.dumps(_gemini_error(500, "INTERNAL", message)).encode() + b"\r\n\r\n"
    else:
        yield b"data: " + json.dumps({"error": {"message": message, "type": "server_error"}}).encode() + b"\n\n"


async def _one(body: bytes) -> AsyncIterator[bytes]:
    yield body


def _redact(headers: dict[str, str]) -> dict[str, str]:
    return {k: ("<redacted>" if k in KEY_HEADERS else v) for k, v in headers.items()}


@dataclass
class Response:
    """One answer of the stand-in: status, headers, and a body or a stream of frames."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    frames: AsyncIterator[bytes] | None = None
    opts: _Opts | None = None
    reset: bool = False


def _sse_headers() -> list[tuple[str, str]]:
    return [("content-type", "text/event-stream; charset=utf-8"), ("cache-control", "no-cache")]


def _json(status: int, obj: Any, extra: list[tuple[str, str]] | None = None) -> Response:
    body = json.dumps(obj).encode()
    headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
    return Response(status, headers + (extra or []), body)


def _gemini_error(code: int, status: str, message: str, reason: str = "") -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message, "status": status}
    if reason:
        err["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason,
                           "domain": "googleapis.com",
                           "metadata": {"service": "generativelanguage.googleapis.com"}},
                          {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
                           "message": message}]
    return {"error": err}


def _error(family: str, status: int, otype: str, atype: str, gstatus: str, message: str,
           extra: list[tuple[str, str]] | None = None, greason: str = "") -> Response:
    if family == "openai":
        obj: Any = {"error": {"message": message, "type": otype, "param": None, "code": None}}
        if status == 401:
            obj["error"]["code"] = "invalid_api_key"
    elif family == "anthropic":
        obj = {"type": "error", "error": {"type": atype, "message": message},
               "request_id": "req_" + uuid.uuid4().hex[:24]}
    else:
        obj = _gemini_error(status, gstatus, message, greason)
    return _json(status, obj, extra)


def _unauthorized(family: str, *, missing: bool = False) -> Response:
    if family == "gemini":  # Google's answers: 403 without a key, 400 API_KEY_INVALID with a wrong one
        if missing:
            return _json(403, _gemini_error(
                403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity to call this API."))
        return _json(400, _gemini_error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.",
                                        "API_KEY_INVALID"))
    return _error(family, 401, "invalid_request_error", "authentication_error", "UNAUTHENTICATED",
                  "Incorrect API key provided.")


def _mistral_extra_forbidden(name: str, value: Any) -> Response:
    """Mistral's answer to a body field it does not define (its request models forbid extra fields)."""
    return _json(422, {"object": "error", "message": {"detail": [
        {"type": "extra_forbidden", "loc": ["body", name], "msg": "Extra inputs are not permitted", "input": value}]},
        "type": "invalid_request_error", "param": None, "code": None})


def _rate_limited(family: str) -> Response:
    return _error(family, 429, "requests", "rate_limit_error", "RESOURCE_EXHAUSTED",
                  "Rate limit reached; retry later.", [("retry-after", "7")])


def _server_error(family: str) -> Response:
    return _error(family, 500, "server_error", "api_error", "INTERNAL", "The server had an error.")


def _bad_request(family: str, message: str) -> Response:
    return _error(family, 400, "invalid_request_error", "invalid_request_error", "INVALID_ARGUMENT", message)


def _models(family: str) -> dict[str, Any]:
    names = _MODELS[family]
    if family == "openai":
        return {"object": "list",
                "data": [{"id": n, "object": "model", "created": 1700000000, "owned_by": "system"} for n in names]}
    if family == "anthropic":
        return {"data": [{"type": "model", "id": n, "display_name": n, "created_at": "2025-01-01T00:00:00Z"}
                         for n in names],
                "has_more": False, "first_id": names[0], "last_id": names[-1]}
    return {"models": [{"name": f"models/{n}", "displayName": n, "supportedGenerationMethods":
                        ["generateContent", "streamGenerateContent"]} for n in names]}


class _Generator:
    """Builds a generated response in one family's shape, streamed or whole."""

    def __init__(self, family: str, model: str, payload: dict[str, Any], opts: _Opts, provider: str = "") -> None:
        self.family = family
        self.provider = provider or family
        self.model = model
        self.opts = opts
        chars = 0
        for m in payload.get("messages") or payload.get("contents") or ():
            chars += len(json.dumps(m.get("content") if "content" in m else m.get("parts")))
        self.input_tokens = chars // 4 + 1
        limit = payload.get("max_tokens") or payload.get("max_completion_tokens") \
            or (payload.get("generationConfig") or {}).get("maxOutputTokens")
        self.n = opts.frames if not limit else min(opts.frames, int(limit))
        self.truncated = self.n < opts.frames
        tools = payload.get("tools") or []
        self.tool = ""
        if opts.tool and tools:
            t = tools[0]
            if family == "openai":
                self.tool = (t.get("function") or {}).get("name", "")
            elif family == "anthropic":
                self.tool = t.get("name", "")
            else:
                self.tool = ((t.get("functionDeclarations") or [{}])[0]).get("name", "")
        self.id = uuid.uuid4().hex[:24]

    def finish(self) -> str:
        if self.truncated:
            return {"openai": "length", "anthropic": "max_tokens", "gemini": "MAX_TOKENS"}[self.family]
        if self.tool:
            return {"openai": "tool_calls", "anthropic": "tool_use", "gemini": "STOP"}[self.family]
        return {"openai": "stop", "anthropic": "end_turn", "gemini": "STOP"}[self.family]

    async def frames(self) -> AsyncIterator[bytes]:
        delay = self.opts.delay
        for i, frame in enumerate(getattr(self, "_" + self.family)()):
            if delay and i:
                await asyncio.sleep(delay)
            yield frame

    # -- OpenAI
    def _oa_chunk(self, choices: list[Any], usage: Any = None) -> bytes:
        obj: dict[str, Any] = {"id": "chatcmpl-" + self.id, "object": "chat.completion.chunk",
                               "created": int(time.time()), "model": self.model, "choices": choices}
        if usage is not None:
            obj["usage"] = usage
        return b"data: " + json.dumps(obj).encode() + b"\n\n"

    def _openai(self) -> Any:
        yield self._oa_chunk([{"index": 0, "delta": {"role": "assistant", "content": ""},
                               "finish_reason": None}])
        for i in range(self.n):
            yield self._oa_chunk([{"index": 0, "delta": {"content": _frame_word(i)}, "finish_reason": None}])
        if self.tool and not self.truncated:
            call = {"index": 0, "id": "call_" + self.id[:12], "type": "function",
                    "function": {"name": self.tool, "arguments": '{"n":'}}
            yield self._oa_chunk([{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None}])
            more = {"index": 0, "function": {"arguments": "1}"}}
            yield self._oa_chunk([{"index": 0, "delta": {"tool_calls": [more]}, "finish_reason": None}])
        usage = {"prompt_tokens": self.input_tokens, "completion_tokens": self.n,
                 "total_tokens": self.input_tokens + self.n}
        if self.provider == "mistral":  # Mistral: usage rides on the finishing chunk, unasked
            yield self._oa_chunk([{"index": 0, "delta": {"content": ""}, "finish_reason": self.finish()}], usage)
        else:
            yield self._oa_chunk([{"index": 0, "delta": {}, "finish_reason": self.finish()}])
            yield self._oa_chunk([], usage)
        yield b"data: [DONE]\n\n"

    # -- Anthropic
    @staticmethod
    def _an_event(name: str, obj: dict[str, Any]) -> bytes:
        return b"event: " + name.encode() + b"\ndata: " + json.dumps(obj).encode() + b"\n\n"

    def _anthropic(self) -> Any:
        ev = self._an_event
        yield ev("message_start", {"type": "message_start", "message": {
            "id": "msg_" + self.id, "type": "message", "role": "assistant", "content": [], "model": self.model,
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": self.input_tokens, "output_tokens": 1}}})
        yield ev("content_block_start", {"type": "content_block_start", "index": 0,
                                         "content_block": {"type": "text", "text": ""}})
        yield ev("ping", {"type": "ping"})
        for i in range(self.n):
            yield ev("content_block_delta", {"type": "content_block_delta", "index": 0,
                                             "delta": {"type": "text_delta", "text": _frame_word(i)}})
        yield ev("content_block_stop", {"type": "content_block_stop", "index": 0})
        if self.tool and not self.truncated:
            yield ev("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {
                "type": "tool_use", "id": "toolu_" + self.id, "name": self.tool, "input": {}}})
            for part in ('{"n":', "1}"):
                yield ev("content_block_delta", {"type": "content_block_delta", "index": 1,
                                                 "delta": {"type": "input_json_delta", "partial_json": part}})
            yield ev("content_block_stop", {"type": "content_block_stop", "index": 1})
        yield ev("message_delta", {"type": "message_delta",
                                   "delta": {"stop_reason": self.finish(), "stop_sequence": None},
                                   "usage": {"output_tokens": self.n}})
        yield ev("message_stop", {"type": "message_stop"})

    # -- Gemini (real Gemini separates events with \r\n\r\n)
    def _gm_chunk(self, parts: list[Any], finish: str | None = None) -> bytes:
        cand: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        obj: dict[str, Any] = {"candidates": [cand], "modelVersion": self.model, "responseId": self.id}
        if finish:
            cand["finishReason"] = finish
            obj["usageMetadata"] = {"promptTokenCount": self.input_tokens, "candidatesTokenCount": self.n,
                                    "totalTokenCount": self.input_tokens + self.n}
        return b"data: " + json.dumps(obj).encode() + b"\r\n\r\n"

    def _gemini(self) -> Any:
        for i in range(self.n):
            yield self._gm_chunk([{"text": _frame_word(i)}])
        parts: list[Any] = []
        if self.tool and not self.truncated:
            parts.append({"functionCall": {"name": self.tool, "args": {"n": 1}}})
        yield self._gm_chunk(parts, self.finish())

    def whole(self) -> dict[str, Any]:
        text = generated_text(self.n)
        finish = self.finish()
        tool = self.tool if not self.truncated else ""
        if self.family == "openai":
            msg: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
            if tool:
                msg["tool_calls"] = [{"id": "call_" + self.id[:12], "type": "function",
                                      "function": {"name": tool, "arguments": '{"n":1}'}}]
            return {"id": "chatcmpl-" + self.id, "object": "chat.completion", "created": int(time.time()),
                    "model": self.model, "choices": [{"index": 0, "message": msg, "finish_reason": finish,
                                                      "logprobs": None}],
                    "usage": {"prompt_tokens": self.input_tokens, "completion_tokens": self.n,
                              "total_tokens": self.input_tokens + self.n}}
        if self.family == "anthropic":
            content: list[Any] = [{"type": "text", "text": text}]
            if tool:
                content.append({"type": "tool_use", "id": "toolu_" + self.id, "name": tool, "input": {"n": 1}})
            return {"id": "msg_" + self.id, "type": "message", "role": "assistant", "model": self.model,
                    "content": content, "stop_reason": finish, "stop_sequence": None,
                    "usage": {"input_tokens": self.input_tokens, "output_tokens": self.n}}
        parts: list[Any] = [{"text": text}]
        if tool:
            parts.append({"functionCall": {"name": tool, "args": {"n": 1}}})
        return {"candidates": [{"content": {"parts": parts, "role": "model"}, "finishReason": finish,
                                "index": 0}],
                "usageMetadata": {"promptTokenCount": self.input_tokens, "candidatesTokenCount": self.n,
                                  "totalTokenCount": self.input_tokens + self.n},
                "modelVersion": self.model, "responseId": self.id}


class _Conn:
    """One client connection: h11 request/response cycles, keep-alive, disconnect watching."""

    def __init__(self, up: FakeUpstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.up = up
        self.reader = reader
        self.writer = writer
        self.h = h11.Connection(h11.SERVER)
        self.abort = False

    async def _next(self) -> Any:
        while True:
            ev = self.h.next_event()
            if ev is h11.NEED_DATA:
                data = await self.reader.read(65536)
                self.h.receive_data(data)
                continue
            return ev

    async def _send(self, ev: Any) -> None:
        data = self.h.send(ev)
        if data:
            self.writer.write(data)
            await self.writer.drain()

    async def serve(self) -> None:
        while True:
            ev = await self._next()
            if isinstance(ev, h11.ConnectionClosed) or ev is h11.PAUSED:
                return
            if not isinstance(ev, h11.Request):
                return
            body = bytearray()
            while True:
                part = await self._next()
                if isinstance(part, h11.Data):
                    body += part.data
                elif isinstance(part, h11.EndOfMessage):
                    break
                else:
                    return
            headers = {k.decode().lower(): v.decode("latin-1") for k, v in ev.headers}
            resp = self.up._route(ev.method.decode(), ev.target.decode(), headers, bytes(body))
            await self._respond(resp)
            if self.abort or self.h.our_state is h11.MUST_CLOSE or self.h.their_state is h11.MUST_CLOSE:
                return
            try:
                self.h.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _respond(self, resp: Response) -> None:
        if resp.frames is None:
            await self._send(h11.Response(status_code=resp.status, headers=resp.headers))
            if resp.body:
                await self._send(h11.Data(data=resp.body))
            await self._send(h11.EndOfMessage())
            return
        await self._stream(resp)

    async def _stream(self, resp: Response) -> None:
        up = self.up
        me = asyncio.current_task()
        assert me is not None and resp.frames is not None and resp.opts is not None
        gone = False

        def on_read(t: asyncio.Task[bytes]) -> None:
            nonlocal gone
            if t.cancelled():
                return
            data = b"" if t.exception() is not None else t.result()
            if data:  # a pipelined request: keep it for the next cycle and keep watching
                self.h.receive_data(data)
                watch()
                return
            gone = True
            me.cancel()

        watcher: asyncio.Task[bytes] | None = None

        def watch() -> None:
            nonlocal watcher
            watcher = asyncio.ensure_future(self.reader.read(65536))
            watcher.add_done_callback(on_read)

        up.open_streams += 1
        up.peak_open_streams = max(up.peak_open_streams, up.open_streams)
        chunk = resp.opts.chunk
        try:
            await self._send(h11.Response(status_code=resp.status, headers=resp.headers))
            watch()
            async for frame in resp.frames:
                if chunk:
                    for piece in self._pieces(frame, chunk):
                        await self._send(h11.Data(data=piece))
                else:
                    await self._send(h11.Data(data=frame))
            if resp.reset:
                self.abort = True
                return
            await self._send(h11.EndOfMessage())
        except (asyncio.CancelledError, ConnectionError) as e:
            if gone or isinstance(e, ConnectionError):
                up.closed_early.append(time.monotonic())
                self.abort = True
                raise _ClientGone from None
            raise
        finally:
            up.open_streams -= 1
            with contextlib.suppress(Exception):
                await resp.frames.aclose()  # type: ignore[attr-defined]
            w = watcher
            if w is not None:
                w.remove_done_callback(on_read)
                if w.done():
                    # Finished but its callback has not run yet: keep pipelined bytes for the next cycle.
                    if not gone and not w.cancelled() and w.exception() is None and w.result():
                        self.h.receive_data(w.result())
                else:
                    w.cancel()
                    with contextlib.suppress(BaseException):
                        await w

    def _pieces(self, data: bytes, size: int) -> list[bytes]:
        if size > 0:
            return [data[i:i + size] for i in range(0, len(data), size)]
        rng = self.up._rng
        out, i = [], 0
        while i < len(data):
            n = rng.randint(1, 64)
            out.append(data[i:i + n])
            i += n
        return out


async def _main(host: str, port: int, print_port: bool, frames: int, delay: float) -> None:
    up = FakeUpstream(UpstreamConfig(frames=frames, frame_delay=delay))
    await up.start(host, port)
    if print_port:
        print(up.port, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await up.stop()


def main(argv: list[str] | None = None) -> None:
    """CLI: serve until SIGINT/SIGTERM. Accepts any non-empty key for every family."""
    ap = argparse.ArgumentParser(prog="python -m devstack.upstream", description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--print-port", action="store_true", help="print the bound port on stdout")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--frame-delay", type=float, default=0.0)
    args = ap.parse_args(argv)
    try:
        import uvloop  # noqa: PLC0415  (optional speed-up, as in the services)

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_main(args.host, args.port, args.print_port, args.frames, args.frame_delay))


if __name__ == "__main__":
    main()
