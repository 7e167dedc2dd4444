"""The fakes' HTTP(S) server: the standard library's threading server on loopback, TLS from a development CA
(google-auth and MSAL insist on https for some URLs), each request handed to a route function.

Tests steer it without sleeping: `fail_next` queues answers served before the route is asked (an outage: 503s,
throttling), and `hold` (a threading.Event) makes requests wait until it is set (a token service that does not
answer, for timeouts). `requests` records what arrived (method, path, header and form field names; values stay in
memory only: they are secrets).
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from byokcommon.tls import TlsFiles


@dataclass(frozen=True)
class Request:
    method: str
    target: str  # path and query as sent
    headers: dict[str, str] = field(repr=False)  # lower-case names
    body: bytes = field(repr=False)

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.target).query).items()}

    @property
    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True).items()}


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


Route = Callable[[Request], Reply]


class FakeHttpServer:
    """Serves `route` on 127.0.0.1 (a free port) over https when `tls` is given, else http."""

    def __init__(self, route: Route, *, tls: TlsFiles | None = None,
                 on_start: Callable[[str], None] | None = None) -> None:
        self._route = route
        self._tls = tls
        self._on_start = on_start  # told the base URL once listening (a fake whose answers name its own URL)
        self.requests: list[Request] = []
        self.fail_next: list[Reply] = []
        self.hold: threading.Event | None = None
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() the server first"
        scheme = "https" if self._tls else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeHttpServer:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        server.daemon_threads = True
        if self._tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self._tls.cert, self._tls.key)
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="authfake", daemon=True)
        self._thread.start()
        if self._on_start is not None:
            self._on_start(self.base_url)
        return self

    def stop(self) -> None:
        if self.hold is not None:
            self.hold.set()  # let held requests finish
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeHttpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def answer(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
            forced = self.fail_next.pop(0) if self.fail_next else None
        hold = self.hold
        if hold is not None:
            hold.wait(timeout=60)
        return forced or self._route(request)


def _handler(fake: FakeHttpServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            reply = fake.answer(Request(self.command, self.path, headers, body))
            self.send_response(reply.status)
            self.send_header("content-type", reply.content_type)
            self.send_header("content-length", str(len(reply.body)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(reply.body)

        do_GET = do_POST = _serve  # noqa: N815 - BaseHTTPRequestHandler's names

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
            pass  # quiet: the request line can carry query parameters

    return Handler
