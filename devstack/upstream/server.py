"""The stand-in's HTTP server (asyncio + h11): routing, auth, the model-name steering, faults, and its command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import h11

from byokcommon.wire import bearer
from devstack.upstream.answers import (
    Response,
    _bad_request,
    _gemini_error,
    _json,
    _mistral_extra_forbidden,
    _models,
    _Opts,
    _rate_limited,
    _redact,
    _server_error,
    _sse_headers,
    _unauthorized,
)
from devstack.upstream.checks import refusal
from devstack.upstream.embeddings import gemini_embeddings, mistral_embeddings, openai_embeddings
from devstack.upstream.frames import _echo_key_frames, _Generator, _json_array, _one
from devstack.upstream.responses_api import ResponsesGenerator

DEFAULT_REPLAY_DIR = Path(__file__).resolve().parents[2] / "tests" / "data" / "conformance"


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
# Mistral's embeddings request (its API reference), as strictly validated.
MISTRAL_EMBEDDING_FIELDS = frozenset({"model", "input", "output_dimension", "output_dtype", "encoding_format",
                                      "metadata"})


GEMINI_ACTIONS = frozenset({"streamGenerateContent", "generateContent", "embedContent", "batchEmbedContents"})
EMBEDDING_KINDS = frozenset({"embeddings", "embedContent", "batchEmbedContents"})
# The routes outside Gemini's: (method, path) → (family, kind).
ROUTES = {
    ("POST", "/v1/chat/completions"): ("openai", "chat"),
    ("POST", "/v1/responses"): ("openai", "responses"),
    ("POST", "/v1/embeddings"): ("openai", "embeddings"),
    ("POST", "/v1/messages"): ("anthropic", "chat"),
    ("GET", "/v1beta/models"): ("gemini", "models"),
}


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
        if mistral and path not in ("/v1/chat/completions", "/v1/models", "/v1/embeddings"):
            return _json(404, {"detail": "Not Found"})
        if (method, path) in ROUTES:
            family, kind = ROUTES[method, path]
        elif path == "/v1/models" and method == "GET":
            # One path, three providers: told apart by the headers each one's clients send.
            if "x-goog-api-key" in headers:
                family = "gemini"  # Gemini's stable v1 lists the same models as its v1beta
            else:
                family = "anthropic" if "x-api-key" in headers or "anthropic-version" in headers else "openai"
            kind = "models"
        elif path.startswith(("/v1beta/models/", "/v1/models/")) and method == "POST" and ":" in path:
            # Gemini serves the same models under its stable v1 and its v1beta (google-genai's default is v1).
            family, kind = "gemini", "chat"
            path = "/v1beta" + path[path.index("/models/"):]
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
            if action not in GEMINI_ACTIONS:
                return _json(404, _gemini_error(404, "NOT_FOUND", f"unknown method {action}"))
            stream = action == "streamGenerateContent"
            model = name
            kind = action if action in EMBEDDING_KINDS else kind
        else:
            if not isinstance(payload, dict) or not isinstance(payload.get("model"), str):
                return _bad_request(family, "request body must be JSON with a model")
            stream = bool(payload.get("stream"))
            model = payload["model"]
        if not isinstance(payload, dict):
            return _bad_request(family, "request body must be a JSON object")
        if mistral:
            extra = sorted(set(payload) - (MISTRAL_EMBEDDING_FIELDS if kind == "embeddings" else MISTRAL_CHAT_FIELDS))
            if extra:
                return _mistral_extra_forbidden(extra[0], payload[extra[0]])
        refused = refusal(family, kind, rec.provider, model, payload, headers)
        if refused is not None:
            return refused
        if kind != "chat":
            return self._generate(family, model, payload, stream, rec.provider, key, kind)
        resp = self._chat(family, model, payload, stream, rec.provider, key)
        if family == "gemini" and query.get("alt") != "sse" and resp.frames is not None \
                and not model.startswith(("fault:", "replay:")):
            # Without alt=sse Gemini streams the same objects as one JSON array.
            resp.frames = _json_array(resp.frames)
            resp.headers = [("content-type", "application/json; charset=UTF-8")]
        return resp

    def _chat(self, family: str, model: str, payload: dict[str, Any], stream: bool,
              provider: str = "", key: str = "") -> Response:
        """A chat answer (tests may wrap this to steer the provider's answers further)."""
        return self._generate(family, model, payload, stream, provider, key, "chat")

    def _generate(self, family: str, model: str, payload: dict[str, Any], stream: bool,
                  provider: str, key: str, kind: str) -> Response:
        """The answer for a model name: a fault, a replay, embeddings, or a generated response (see the docstring)."""
        base, _, q = model.partition("?")
        overrides = dict(parse_qsl(q))
        cfg = self.config
        opts = _Opts(
            frames=int(overrides.get("frames", cfg.frames)),
            delay=float(overrides.get("delay", cfg.frame_delay)),
            chunk=int(overrides["chunk"]) if "chunk" in overrides else cfg.chunk_size,
            tool=overrides.get("tool") == "1",
            thoughts=int(overrides.get("thoughts", 3)),
            cached=int(overrides.get("cached", 0)),
            cache_write=int(overrides.get("cache_write", 0)),
            cite=overrides.get("cite") == "1",
            fallback=overrides.get("fallback", "") if family == "anthropic" else "",
            modelversion=overrides.get("modelversion", "") if family == "gemini" else "",
        )

        def generator() -> _Generator:
            if kind == "responses":
                return ResponsesGenerator(base, payload, opts)
            return _Generator(family, base, payload, opts, provider, kind)

        if base.startswith("fault:"):
            fault = base[6:]
            if fault == "429":
                resp = _rate_limited(family)
                return resp
            if fault == "500":
                return _server_error(family)
            if fault == "echo-key":
                return _bad_request(family, f"Incorrect API key provided: {key}. You can find your key in settings.")
            if fault not in ("echo-key-stream", "stall", "reset", "malformed", "truncate") or kind in EMBEDDING_KINDS:
                return _bad_request(family, f"unknown fault {fault}")
            gen = generator()
            if fault == "echo-key-stream":
                return Response(200, _sse_headers(), frames=_echo_key_frames(gen, key), opts=opts)
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
        if kind == "embeddings":
            return mistral_embeddings(base, payload) if provider == "mistral" else openai_embeddings(base, payload)
        if kind in EMBEDDING_KINDS:
            return gemini_embeddings(kind, base, payload)
        gen = generator()
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

