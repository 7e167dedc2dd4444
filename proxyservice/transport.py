"""The proxy's HTTP/1.1 engine under httpx: an `httpx.AsyncBaseTransport` on asyncio protocols and httptools.

httpx's own transport (httpcore, h11, anyio) cost the proxy most of its CPU per relayed frame: nested async
generators and a cancel scope per read, a pure-Python parser, and a pool that re-examined every connection on
every request (docs/benchmarks.md, "The upstream client"). Here each connection is an `asyncio.Protocol` whose
bytes go straight into httptools' parser (llhttp, in C); a body chunk is one `data_received`, one parser call,
and one wake-up of the task reading it. Only public APIs: asyncio's protocols and transports, httptools' parser,
and httpx's transport interface (its Request in, its Response out, its exceptions raised).

- **The pool** (`_Pool`) keeps idle connections per destination, most recent first, at most `max_connections`
  open in all. A connection is handed out only after checking it: not closed, within its keep-alive expiry, and
  its socket not readable — an idle HTTP/1.1 connection has nothing to read, so readable means the server closed
  it (or broke the protocol) and the loop has not yet run its callback. Expired idle connections are swept at
  most once a second; a request finding the pool full closes the least recently used idle connection of another
  destination, else waits (up to the pool timeout) for one to be freed.
- **A destination** is (scheme, host, port, TLS server name): a request pinned to an address by
  `upstream.PinnedTransport` names the original host in the `sni_hostname` extension, which is both the name
  TLS verifies and part of the key, so a connection verified for one name is never used for another.
- **Timeouts** are httpx's request extension: connect (TCP and TLS handshake), pool (waiting for a free
  connection), read (the longest wait for the answer's head or for the next body chunk; one timer per
  connection, re-armed from the last wait, rather than one per chunk).
- **A body** is read with `Body.read()` (the next piece as the parser gave it, b"" at the end). The response's
  extension `BODY` holds it, so the proxy's relay reads it directly; httpx's own iteration works too. Closing
  the response returns a finished connection to the pool and aborts an unfinished one at once (a caller that
  went away stops the provider's stream).
- **Requests** are written with one `transport.write`; header names must be tokens and values may hold no CR,
  LF or NUL (the native passthrough relays callers' headers: no request smuggling through them).
"""

from __future__ import annotations

import asyncio
import collections
import re
import select
import ssl
import time
from typing import Any

import httptools
import httpx

BODY = "byok.body"  # the response extension holding its `Body`
SWEEP_INTERVAL = 1.0  # seconds between sweeps of expired idle connections
_HIGH_WATER = 1 << 20  # unread body bytes at which the socket stops being read (flow control)
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(rb"[\r\n\0]")
_Key = tuple[bytes, str, int, str]  # scheme, host, port, TLS server name ("" for plain http)


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection and the one exchange on it at a time (the parser calls back into it)."""

    def __init__(self, pool: _Pool, key: _Key) -> None:
        self.pool = pool
        self.key = key
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.fd = -1
        self.closed = False
        self.exchanging = False  # a request was sent and its answer not yet put back in the pool
        self.idle_since = 0.0
        self.parser = httptools.HttpResponseParser(self)
        self._begin(head_only=False)
        self._timer: asyncio.TimerHandle | None = None

    # -- per exchange ----------------------------------------------------------------------------
    def _begin(self, *, head_only: bool) -> None:
        self.head_only = head_only  # a HEAD request: its answer has no body, whatever its headers say
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.framed = False  # content-length or chunked: the end is known without the connection closing
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.error: Exception | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.waiting_since = 0.0
        self.wait_timeout: float | None = None

    def send(self, head: bytes, body: bytes, *, head_only: bool) -> None:
        self._begin(head_only=head_only)
        self.exchanging = True
        assert self.transport is not None
        self.transport.write(head + body if body else head)

    async def wait(self, seconds: float | None) -> None:
        """Until the parser has news (head, body, end, error), or httpx.ReadTimeout after `seconds`."""
        waiter = self.waiter = self.loop.create_future()
        self.waiting_since = self.loop.time()
        self.wait_timeout = seconds
        if seconds is not None and self._timer is None:
            self._timer = self.loop.call_at(self.waiting_since + seconds, self._check_timeout)
        try:
            await waiter
        finally:
            self.waiter = None

    def _check_timeout(self) -> None:
        self._timer = None
        timeout = self.wait_timeout
        if self.waiter is None or self.waiter.done() or timeout is None:
            return
        due = self.waiting_since + timeout
        if self.loop.time() >= due:
            self.waiter.set_exception(httpx.ReadTimeout("timed out waiting for the upstream"))
        else:  # a later wait started since the timer was armed
            self._timer = self.loop.call_at(due, self._check_timeout)

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def take(self) -> bytes:
        """The oldest piece of body not yet read, as the parser gave it: one chunk of a chunked body (a provider
        sends one event per chunk, so one read is one frame) or what one socket read brought of a sized body."""
        data = self.chunks.popleft()
        before = self.buffered
        self.buffered -= len(data)
        if before >= _HIGH_WATER > self.buffered and self.transport is not None:
            self.transport.resume_reading()  # paused by on_body
        return data

    # -- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        self.fd = sock.fileno() if sock is not None else -1

    def data_received(self, data: bytes) -> None:
        if not self.exchanging:  # bytes on an idle connection (a 408, garbage): never use it again
            self._fail(httpx.RemoteProtocolError("the upstream sent data on an idle connection"))
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(httpx.RemoteProtocolError("the upstream switched protocols"))
        except httptools.HttpParserError:
            self._fail(httpx.RemoteProtocolError("the upstream sent malformed HTTP"))

    def eof_received(self) -> bool | None:
        return None  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.head_done and not self.complete and not self.framed and self.error is None:
            self.complete = True  # an answer delimited by the connection's end
        elif not self.complete and self.error is None:
            self.error = (httpx.ReadError("the upstream dropped the connection") if self.head_done else
                          httpx.RemoteProtocolError("the upstream disconnected without answering"))
        self._wake()

    def _fail(self, error: Exception) -> None:
        if self.error is None:
            self.error = error
        self.abort()
        self._wake()

    # -- httptools callbacks ----------------------------------------------------------------------
    def on_status(self, reason: bytes) -> None:
        self.reason = reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # informational (103 Early Hints): the answer follows
            self.headers = []
            return
        self.status = status
        self.keep_alive = self.parser.should_keep_alive()
        self.framed = status in (204, 304) or any(
            name.lower() in (b"content-length", b"transfer-encoding") for name, _ in self.headers)
        self.head_done = True
        if self.head_only:  # the parser would wait for a body HEAD's answer does not have: end it here
            self.complete = True
            self.keep_alive = False
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self.complete:
            return
        self.chunks.append(body)
        before = self.buffered
        self.buffered += len(body)
        if before < _HIGH_WATER <= self.buffered and self.transport is not None:
            self.transport.pause_reading()  # the reader is behind: let TCP push back on the provider
        self._wake()

    def on_message_complete(self) -> None:
        if self.head_done and not self.complete:
            self.complete = True
            self._wake()

    # -- lifetime -------------------------------------------------------------------------------
    def usable(self, now: float, expiry: float) -> bool:
        """Idle, open, within its keep-alive, and nothing to read (readable = the server closed it)."""
        if self.closed or now - self.idle_since > expiry:
            return False
        if self.fd >= 0:
            try:
                return not select.select((self.fd,), (), (), 0)[0]
            except (OSError, ValueError):
                return False
        return True

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            self.pool.forget(self)
            if self.transport is not None:
                self.transport.abort()


class Body(httpx.AsyncByteStream):
    """A response body as it arrives; closing it returns the connection to the pool or aborts it."""

    def __init__(self, connection: _Connection, read_timeout: float | None) -> None:
        self._conn: _Connection | None = connection
        self._timeout = read_timeout

    async def read(self) -> bytes:
        """The next piece of the body (waiting for one), b"" once the body is whole."""
        conn = self._conn
        if conn is None:
            return b""
        while True:
            if conn.chunks:
                return conn.take()
            if conn.complete:
                self._release()
                return b""
            if conn.error is not None:
                raise conn.error
            await conn.wait(self._timeout)

    async def __aiter__(self) -> Any:
        while chunk := await self.read():
            yield chunk

    def _release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            if conn.complete and conn.keep_alive and not conn.closed and not conn.chunks:
                conn.pool.put(conn)
            else:
                conn.abort()

    async def aclose(self) -> None:
        self._release()


class _Pool:
    """Idle connections per destination (see the module docstring), at most `max_connections` open."""

    def __init__(self, max_connections: int, keepalive_expiry: float, context: ssl.SSLContext | None) -> None:
        self.max = max_connections
        self.expiry = keepalive_expiry
        self.context = context
        self.open: set[_Connection] = set()
        self.idle: dict[_Key, collections.OrderedDict[_Connection, None]] = {}
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self.next_sweep = 0.0

    def forget(self, conn: _Connection) -> None:
        """A closed connection: out of the pool, its slot free for a waiting request."""
        if conn in self.open:
            self.open.discard(conn)
            idle = self.idle.get(conn.key)
            if idle is not None:
                idle.pop(conn, None)
            self._wake_one()

    def _wake_one(self) -> None:
        """Tell the longest-waiting request (one that has not given up) that a connection came free."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def put(self, conn: _Connection) -> None:
        conn.exchanging = False
        conn.idle_since = now = time.monotonic()
        self.idle.setdefault(conn.key, collections.OrderedDict())[conn] = None
        if now >= self.next_sweep:
            self._sweep(now)
        self._wake_one()  # a waiting request may use this one (or, for another destination, close it for room)

    def _sweep(self, now: float) -> None:
        self.next_sweep = now + SWEEP_INTERVAL
        for key in list(self.idle):
            idle = self.idle[key]
            while idle:
                oldest = next(iter(idle))
                if now - oldest.idle_since <= self.expiry:
                    break
                oldest.abort()  # forget() takes it out of `idle`
            if not idle:
                del self.idle[key]

    def _reuse(self, key: _Key) -> _Connection | None:
        idle = self.idle.get(key)
        now = time.monotonic()
        while idle:
            conn, _ = idle.popitem()  # the most recently used: the least likely to have been closed
            if conn.usable(now, self.expiry):
                return conn
            conn.abort()
        return None

    def _evict_idle(self) -> bool:
        """Close the least recently used idle connection of any destination, to make room."""
        oldest: _Connection | None = None
        for idle in self.idle.values():
            if idle:
                first = next(iter(idle))
                if oldest is None or first.idle_since < oldest.idle_since:
                    oldest = first
        if oldest is None:
            return False
        oldest.abort()
        return True

    async def acquire(self, key: _Key, timeouts: dict[str, float | None]) -> _Connection:
        conn = self._reuse(key)
        if conn is not None:
            return conn
        if len(self.open) >= self.max and not self._evict_idle():
            await self._wait_for_slot(key, timeouts.get("pool"))
            conn = self._reuse(key)
            if conn is not None:
                return conn
        return await self._connect(key, timeouts.get("connect"))

    async def _wait_for_slot(self, key: _Key, seconds: float | None) -> None:
        try:
            async with asyncio.timeout(seconds):
                while len(self.open) >= self.max and not self.idle.get(key) and not self._evict_idle():
                    waiter = asyncio.get_running_loop().create_future()
                    self.waiters.append(waiter)
                    try:
                        await waiter
                    finally:
                        if not waiter.done():
                            waiter.cancel()
        except TimeoutError:
            raise httpx.PoolTimeout("no upstream connection became free in time") from None

    async def _connect(self, key: _Key, seconds: float | None) -> _Connection:
        scheme, host, port, server_name = key
        conn = _Connection(self, key)
        self.open.add(conn)  # holds its slot while connecting
        tls = self.context if scheme == b"https" else None
        try:
            async with asyncio.timeout(seconds):
                await asyncio.get_running_loop().create_connection(
                    lambda: conn, host, port, ssl=tls, server_hostname=server_name if tls else None)
        except TimeoutError:
            conn.abort()
            raise httpx.ConnectTimeout("timed out connecting to the upstream") from None
        except (OSError, ssl.SSLError) as exc:  # ssl.SSLCertVerificationError included
            conn.abort()
            raise httpx.ConnectError(f"could not connect to the upstream ({type(exc).__name__})") from None
        except BaseException:
            conn.abort()
            raise
        return conn

    def close(self) -> None:
        for conn in list(self.open):
            conn.abort()


class Http1Transport(httpx.AsyncBaseTransport):
    """httpx transport: HTTP/1.1 over a keep-alive pool (see the module docstring). `verify`: True (the system's
    trust store), an SSLContext (its own CAs, a client certificate), or False (no TLS verification: tests)."""

    def __init__(self, *, max_connections: int = 100, keepalive_expiry: float = 60.0,
                 verify: ssl.SSLContext | bool = True) -> None:
        if isinstance(verify, ssl.SSLContext):
            context = verify
        else:  # what httpx's own transport would verify against (certifi's CAs), never SSL_CERT_FILE & co.
            context = httpx.create_ssl_context(verify=verify, trust_env=False)
            context.set_alpn_protocols(["http/1.1"])
        self._pool = _Pool(max_connections, keepalive_expiry, context)
        self._names: set[bytes] = set()  # header names already checked (a handful, sent again and again)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.raw_scheme
        if scheme not in (b"http", b"https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        server_name = str(request.extensions.get("sni_hostname") or url.host) if scheme == b"https" else ""
        key = (scheme, url.host, url.port or (443 if scheme == b"https" else 80), server_name)
        head = self._head(request)
        body = request.content if isinstance(request.stream, httpx.ByteStream) else await request.aread()
        if request.headers.get("transfer-encoding", "").lower() == "chunked":
            body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
        conn = await self._pool.acquire(key, timeouts)
        read_timeout = timeouts.get("read")
        try:
            conn.send(head, body, head_only=request.method == "HEAD")
            while not conn.head_done:
                if conn.error is not None:
                    raise conn.error
                await conn.wait(read_timeout)
        except BaseException:
            conn.abort()  # cancelled or failed before the head: the connection's state is unknown
            raise
        stream = Body(conn, read_timeout)
        return httpx.Response(conn.status, headers=conn.headers, stream=stream,
                              extensions={"http_version": b"HTTP/1.1", "reason_phrase": conn.reason, BODY: stream})

    def _head(self, request: httpx.Request) -> bytes:
        lines = [request.method.encode("ascii"), b" ", request.url.raw_path, b" HTTP/1.1\r\n"]
        values = []
        for name, value in request.headers.raw:
            if name not in self._names:
                if not _TOKEN.fullmatch(name):
                    raise httpx.LocalProtocolError("invalid header name")
                if len(self._names) < 256:
                    self._names.add(name)
            values.append(value)
            lines += (name, b": ", value, b"\r\n")
        if _BAD_VALUE.search(b"".join(values)) or _BAD_VALUE.search(lines[2]):
            raise httpx.LocalProtocolError("invalid header value or request target")
        lines.append(b"\r\n")
        return b"".join(lines)

    async def aclose(self) -> None:
        self._pool.close()
