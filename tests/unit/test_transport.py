"""The proxy's HTTP/1.1 transport (proxyservice/transport.py) under httpx, against a real HTTP/1.1 server on
loopback: connections reused; a connection the server closed never handed out (the server closes while the
client's loop is held, so only the pool's own check can see it); a stream whose reader goes away closes its
connection at once; the connection bound and the pool timeout; TLS verified against the right name, which is
also part of the pool's key; framing by length, chunks, the connection's end and HEAD; read timeouts; and no
header that could smuggle a second request. The server runs in threads with blocking sockets, so each test
steps it with events (barriers), never with sleeps."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from byokcommon.devcerts import CertificateAuthority
from byokcommon.egress import EgressPolicy
from proxyservice import errors
from proxyservice.adapters.base import UpstreamRequest
from proxyservice.transport import BODY, Body, Http1Transport
from proxyservice.upstream import Upstream

WAIT = 5.0  # the longest any barrier waits before the test fails
BIG = bytes(range(256)) * (3 << 12)  # 3 MiB: past the transport's high-water mark (1 MiB unread)


class Server:
    """HTTP/1.1 keep-alive server; one thread per connection. Paths: `/r…` answers its path; `/close-after`
    answers as if keeping the connection, then closes it once `close_now` is set (and sets `closed`);
    `/then-408` likewise sends a 408 on the idle connection instead of closing it; `/close`
    answers with `Connection: close`; `/big` sends 3 MiB; `/gzip` a gzip-encoded body; `/stream` sends one
    chunk and waits for the client to go (sets `dropped`); `/hold` sends one chunk and finishes when `release`
    is set; `/silent` sends nothing until `release`; `/until-close` answers without a length and closes;
    `/drop` sends one chunk and closes."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.tls = tls
        self.connections = 0
        self.requests: list[bytes] = []
        self.close_now, self.closed = threading.Event(), threading.Event()
        self.dropped, self.release = threading.Event(), threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")[1:]
                               if line.lower().startswith(b"content-length:")), 0)
                while len(buf) < length:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                buf = buf[length:]
                self.requests.append(head)
                method, path = head.split(b" ", 2)[:2]
                if not self._answer(conn, method, path.decode()):
                    return
        except OSError:
            pass
        finally:
            conn.close()

    def _answer(self, conn: socket.socket, method: bytes, path: str) -> bool:
        """Answer one request; False when the connection ends with it."""
        body = path.encode()
        plain = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), b"" if method == b"HEAD" else body)
        chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n"
        if path == "/close-after":
            conn.sendall(plain)
            self.close_now.wait(WAIT)
            conn.shutdown(socket.SHUT_RDWR)
            conn.close()
            self.closed.set()
            return False
        if path == "/then-408":  # answers, then (once `close_now` is set) sends a 408 on the idle connection
            conn.sendall(plain)
            self.close_now.wait(WAIT)
            conn.sendall(b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n\r\n")
            self.closed.set()
            self.release.wait(WAIT)
            return False
        if path == "/close":
            conn.sendall(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
            return False
        if path == "/stream":
            conn.sendall(chunked)
            try:
                conn.settimeout(WAIT)
                gone = conn.recv(1) == b""
            except ConnectionError:
                gone = True
            except TimeoutError:
                gone = False
            if gone:
                self.dropped.set()
            return False
        if path in ("/hold", "/silent"):
            if path == "/hold":
                conn.sendall(chunked)
            self.release.wait(WAIT)
            conn.sendall(b"0\r\n\r\n" if path == "/hold" else plain)
            return True
        if path == "/until-close":
            conn.sendall(b"HTTP/1.1 200 OK\r\n\r\nall of it")
            return False
        if path == "/drop":
            conn.sendall(chunked)
            return False
        if path in ("/big", "/gzip"):
            payload = BIG if path == "/big" else gzip.compress(b"/gzip" * 100)
            encoding = b"" if path == "/big" else b"content-encoding: gzip\r\n"
            conn.sendall(b"HTTP/1.1 200 OK\r\n%scontent-length: %d\r\n\r\n" % (encoding, len(payload)) + payload)
            return True
        conn.sendall(plain)
        return True

    def url(self, path: str) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self.release.set()
        self.close_now.set()
        self.listener.close()


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    try:
        yield srv
    finally:
        srv.stop()


@contextlib.asynccontextmanager
async def client(max_connections: int = 4, verify: ssl.SSLContext | bool = True,
                 timeout: httpx.Timeout | None = None) -> AsyncIterator[httpx.AsyncClient]:
    transport = Http1Transport(max_connections=max_connections, verify=verify)
    async with httpx.AsyncClient(transport=transport, trust_env=False, timeout=timeout or httpx.Timeout(WAIT)) as c:
        yield c


@contextlib.asynccontextmanager
async def loopback_upstream(read_timeout: float = WAIT) -> AsyncIterator[Upstream]:
    """The proxy's Upstream on this transport, allowed to reach the loopback test server."""
    upstream = Upstream(connect_timeout=WAIT, read_timeout=read_timeout, max_connections=2,
                        egress=EgressPolicy(dev_loopback_http=True))
    try:
        yield upstream
    finally:
        await upstream.close()


async def test_sequential_requests_reuse_one_connection(server: Server) -> None:
    async with client() as c:
        answers = [(await c.get(server.url(f"/r{i}"))).text for i in range(20)]
    assert answers == [f"/r{i}" for i in range(20)] and server.connections == 1


async def test_a_connection_the_server_closed_is_never_handed_out(server: Server) -> None:
    async with client(max_connections=1) as c:
        assert (await c.get(server.url("/close-after"))).text == "/close-after"  # back in the pool, idle
        server.close_now.set()
        # The loop is held here, so the client has not run the socket's callbacks: only the pool's check at
        # hand-out can tell that the server closed the connection.
        assert server.closed.wait(WAIT)
        # A POST, as every chat request is: no client may send it again on its own after a failure.
        assert (await c.post(server.url("/r1"), content=b"{}")).text == "/r1"
        assert (await c.post(server.url("/r2"), content=b"{}")).text == "/r2"  # the body was read: still in step
    assert server.connections == 2


@pytest.mark.parametrize("loop_runs", [False, True])
async def test_a_connection_with_unasked_bytes_is_never_handed_out(server: Server, loop_runs: bool) -> None:
    """A server may send a 408 on an idle connection before closing it: whether the client's loop has read those
    bytes yet (`loop_runs`) or not, the connection is not used again."""
    async with client(max_connections=1) as c:
        assert (await c.get(server.url("/then-408"))).text == "/then-408"
        server.close_now.set()
        if loop_runs:
            assert await asyncio.to_thread(server.closed.wait, WAIT)
        else:
            assert server.closed.wait(WAIT)
        assert (await c.post(server.url("/r1"), content=b"{}")).text == "/r1"
    assert server.connections == 2


async def test_an_answer_saying_connection_close_ends_its_connection(server: Server) -> None:
    async with client(max_connections=1) as c:
        answers = [(await c.get(server.url(p))).text for p in ("/a", "/close", "/b", "/close", "/c")]
    assert answers == ["/a", "/close", "/b", "/close", "/c"] and server.connections == 3


async def test_a_cancelled_reader_closes_the_connection_at_once(server: Server) -> None:
    async with client() as c:
        first = asyncio.Event()

        async def read() -> None:
            async with c.stream("GET", server.url("/stream")) as response:
                async for _ in response.aiter_bytes():
                    first.set()

        task = asyncio.create_task(read())
        await first.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await asyncio.to_thread(server.dropped.wait, WAIT)  # the server saw its client go
        assert (await c.get(server.url("/r2"))).text == "/r2"  # on a new connection: the dropped one is gone
    assert server.connections == 2


async def test_the_upstream_closing_a_stream_early_drops_the_connection(server: Server) -> None:
    async with loopback_upstream() as upstream:
        response = await upstream.open(UpstreamRequest("GET", server.url("/stream"), {}), "openai")
        chunks = response.chunks()
        assert await anext(chunks) == b"first"
        await response.aclose()
        assert await asyncio.to_thread(server.dropped.wait, WAIT)


async def test_a_body_dropped_midway_is_unavailable(server: Server) -> None:
    async with loopback_upstream() as upstream:
        response = await upstream.open(UpstreamRequest("GET", server.url("/drop"), {}), "openai")
        with pytest.raises(errors.Unavailable, match="dropped the stream"):
            _ = [chunk async for chunk in response.chunks()]
        await response.aclose()


async def test_requests_stay_within_the_connection_bound(server: Server) -> None:
    async with client(max_connections=2) as c:
        answers = await asyncio.gather(*(c.get(server.url(f"/r{i}")) for i in range(32)))
    assert [a.text for a in answers] == [f"/r{i}" for i in range(32)] and 1 <= server.connections <= 2


async def test_a_full_pool_times_out_and_a_freed_connection_is_taken(server: Server) -> None:
    async with client(max_connections=1, timeout=httpx.Timeout(WAIT, pool=0.05)) as c:
        async with c.stream("GET", server.url("/hold")) as held:
            with pytest.raises(httpx.PoolTimeout):
                await c.get(server.url("/r1"))
            waiting = asyncio.create_task(c.get(server.url("/r2"), timeout=httpx.Timeout(WAIT)))
            server.release.set()
            assert await held.aread() == b"first"
        assert (await waiting).text == "/r2"
    assert server.connections == 1


async def test_framing_by_length_chunks_the_connections_end_and_head(server: Server) -> None:
    async with client() as c:
        until_close = await c.get(server.url("/until-close"))
        head = await c.head(server.url("/r-head"))
        after = await c.get(server.url("/r-after"))
        server.release.set()
        held = await c.get(server.url("/hold"))
    assert until_close.text == "all of it" and held.text == "first"
    assert head.status_code == 200 and head.headers["content-length"] == "7" and head.content == b""
    assert after.text == "/r-after"


async def test_a_body_past_the_high_water_mark_arrives_whole_and_the_connection_is_reused(server: Server) -> None:
    async with client() as c:
        async with c.stream("GET", server.url("/big")) as response:
            body = response.extensions[BODY]
            first = await body.read()
            rest = [chunk async for chunk in response.aiter_bytes()]
        assert first + b"".join(rest) == BIG
        assert (await c.get(server.url("/r-next"))).text == "/r-next"
    assert server.connections == 1


async def test_an_encoded_answer_is_decoded_for_the_unified_path_and_kept_for_the_native_one(server: Server) -> None:
    async with loopback_upstream() as upstream:
        unified = await upstream.open(UpstreamRequest("GET", server.url("/gzip"), {}), "openai")
        assert await unified.read() == b"/gzip" * 100
        native = await upstream.open_native(UpstreamRequest("GET", server.url("/gzip"), {}), "openai")
        raw = b"".join([chunk async for chunk in native.chunks()])
        await native.aclose()
        assert ("content-encoding", "gzip") in native.headers and gzip.decompress(raw) == b"/gzip" * 100


async def test_a_silent_upstream_is_a_read_timeout(server: Server) -> None:
    async with client(timeout=httpx.Timeout(WAIT, read=0.05)) as c:
        with pytest.raises(httpx.ReadTimeout):
            await c.get(server.url("/silent"))


@pytest.mark.parametrize("headers", [{"x-evil": "a\r\nx-injected: 1"}, {"x-evil": "a\nb"}, {"x-evil": "a\0"},
                                     {"bad name": "v"}, {"x:y": "v"}])
async def test_no_header_can_smuggle_a_request(server: Server, headers: dict[str, str]) -> None:
    async with client() as c:
        with pytest.raises(httpx.LocalProtocolError):
            await c.get(server.url("/r1"), headers=headers)
    assert server.requests == []


async def test_the_relay_reads_the_transports_body_directly(server: Server) -> None:
    async with client() as c:
        async with c.stream("GET", server.url("/r-direct")) as response:
            body = response.extensions[BODY]
            assert isinstance(body, Body)
            assert await body.read() == b"/r-direct" and await body.read() == b""


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[Server, ssl.SSLContext]]:
    """A server with a certificate for "localhost" (and 127.0.0.1) from a CA of its own; the client context
    trusting that CA."""
    ca = CertificateAuthority.create("transport test CA")
    files = ca.write_identity(tmp_path, "upstream")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(files.cert, files.key)
    srv = Server(tls=server_context)
    try:
        yield srv, ssl.create_default_context(cafile=files.ca)
    finally:
        srv.stop()


async def test_tls_is_verified_against_the_name_asked_for(tls_server: tuple[Server, ssl.SSLContext]) -> None:
    server, trusting = tls_server
    async with client() as c:  # the default trust store does not know the server's CA
        with pytest.raises(httpx.ConnectError):
            await c.get(server.url("/r1"))
    async with client(verify=trusting) as c:
        pinned = c.build_request("GET", server.url("/r1"), extensions={"sni_hostname": "localhost"})
        assert (await c.send(pinned)).text == "/r1"
        # Same address, another name: the pooled connection verified for "localhost" is not used for it, and a
        # new one fails verification.
        other = c.build_request("GET", server.url("/r2"), extensions={"sni_hostname": "elsewhere.test"})
        with pytest.raises(httpx.ConnectError):
            await c.send(other)
        assert (await c.send(c.build_request("GET", server.url("/r3"),
                                             extensions={"sni_hostname": "localhost"}))).text == "/r3"
    assert server.connections == 3


async def test_upstream_errors_keep_their_meaning_on_this_transport(server: Server) -> None:
    async with loopback_upstream(read_timeout=0.05) as upstream:
        with pytest.raises(errors.DeadlineExceeded):
            await upstream.open(UpstreamRequest("GET", server.url("/silent"), {}), "openai")
        closed = socket.create_server(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        closed.close()  # nothing listens there now: refused
        with pytest.raises(errors.Unavailable, match="unreachable"):
            await upstream.open(UpstreamRequest("GET", f"http://127.0.0.1:{port}/", {}), "openai")
