"""The lean connection pool behaves as httpcore's own (issue 13): the same answers, connection reuse, bounds and
handling of connections the server closed, against a real HTTP/1.1 server on loopback; and it is used only with
the httpcore release it was written for, saying which pool runs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpcore
import httpx
import pytest

from proxyservice import lean_pool
from proxyservice.lean_pool import lean_transport, pool_in_use


@dataclass
class Server:
    port: int
    connections: int = 0


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    """HTTP/1.1 with keep-alive; `/close` answers with `Connection: close` and closes; `/slow` waits a turn."""
    state = Server(port=0)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1].decode()
                if path == "/slow":
                    await asyncio.sleep(0)
                body = path.encode()
                closing = path == "/close"
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s"
                             % (len(body), b"Connection: close\r\n" if closing else b"", body))
                await writer.drain()
                if closing:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    state.port = srv.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        srv.close()
        await srv.wait_closed()


def stock(limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    return httpx.AsyncHTTPTransport(limits=limits, trust_env=False)


POOLS: dict[str, Callable[[httpx.Limits], httpx.AsyncHTTPTransport]] = {"lean": lean_transport, "stock": stock}


async def run(pool: str, server: Server, paths: list[str], *, max_connections: int, concurrent: bool
              ) -> tuple[list[tuple[int, str]], int]:
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    async with httpx.AsyncClient(transport=POOLS[pool](limits), trust_env=False) as client:
        async def get(path: str) -> tuple[int, str]:
            r = await client.get(f"http://127.0.0.1:{server.port}{path}")
            return r.status_code, r.text
        if concurrent:
            answers = list(await asyncio.gather(*(get(p) for p in paths)))
        else:
            answers = [await get(p) for p in paths]
    return answers, server.connections


def test_the_lean_pool_runs_with_its_release_only(monkeypatch: pytest.MonkeyPatch) -> None:
    assert httpcore.__version__ == lean_pool.LEAN_POOL_HTTPCORE  # the pin in pyproject.toml
    assert pool_in_use() == "lean"
    monkeypatch.setattr(httpcore, "__version__", "1.0.99")
    assert pool_in_use() == "stock (httpcore 1.0.99)"
    assert type(lean_transport(httpx.Limits(max_connections=1))._pool) is httpcore.AsyncConnectionPool


@pytest.mark.parametrize("pool", sorted(POOLS))
async def test_sequential_requests_reuse_one_connection(pool: str, server: Server) -> None:
    paths = [f"/r{i}" for i in range(20)]
    answers, connections = await run(pool, server, paths, max_connections=4, concurrent=False)
    assert answers == [(200, p) for p in paths] and connections == 1


@pytest.mark.parametrize("pool", sorted(POOLS))
async def test_concurrent_requests_stay_within_the_bound(pool: str, server: Server) -> None:
    paths = [f"/slow{i}" if i % 2 else f"/r{i}" for i in range(64)]
    answers, connections = await run(pool, server, paths, max_connections=8, concurrent=True)
    assert answers == [(200, p) for p in paths] and 1 <= connections <= 8


@pytest.mark.parametrize("pool", sorted(POOLS))
async def test_a_connection_the_server_closed_is_never_handed_out(pool: str, server: Server) -> None:
    paths = ["/a", "/close", "/b", "/close", "/c"]
    answers, connections = await run(pool, server, paths, max_connections=1, concurrent=False)
    assert answers == [(200, p) for p in paths] and connections == 3


async def test_both_pools_answer_alike(server: Server) -> None:
    paths = ["/a", "/close", "/b", "/c", "/close", "/d"]
    lean, lean_conns = await run("lean", server, paths, max_connections=2, concurrent=False)
    server.connections = 0
    stock_answers, stock_conns = await run("stock", server, paths, max_connections=2, concurrent=False)
    assert (lean, lean_conns) == (stock_answers, stock_conns)
