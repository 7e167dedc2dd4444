"""The proxy's upstream connection pool: httpcore's, with its per-request bookkeeping made cheap (`_LeanPool`).

httpcore 1.0 re-examines every pooled connection when a request starts and again when it ends, polling each
idle socket and counting connections in a loop within the loop, so with hundreds of streams in flight most of
the proxy's CPU went there (see docs/benchmarks.md). `_LeanPool` overrides private methods of one httpcore
release, so it is used only with exactly that release (pinned in pyproject.toml); with any other the stock pool
runs, slower under many streams, never wrong, and `pool_in_use()` says so (the proxy logs it at start).
tests/unit/test_lean_pool.py holds the two pools to the same behaviour. (The performance issue replaces this
with a supported client; until then it lives here, alone.)
"""

from __future__ import annotations

import ssl
import time
from typing import Any

import httpcore
import httpx

SWEEP_INTERVAL = 1.0  # seconds between full expiry sweeps of the pool


class _LeanPool(httpcore.AsyncConnectionPool):
    """httpcore's connection pool with bookkeeping that does not grow with the pool on every request.

    httpcore 1.0.9 runs `_assign_requests_to_connections` when a request starts and when its response closes;
    each run calls `has_expired()` on every connection (for an idle one, a readability poll of its socket
    through anyio's attribute lookup) and, for every idle connection, counts all connections again: with 256
    idle connections a request cost 80 ms of CPU. Here the full sweep (closed, expired and surplus idle
    connections) runs at most once per SWEEP_INTERVAL; between sweeps a run with no queued request does
    nothing, and a queued request takes the first available connection after checking that one alone (so a
    connection the server closed, or one past its keep-alive expiry, is still never handed out).
    """

    _next_sweep = 0.0

    def _sweep(self, closing: list[Any]) -> None:
        keep: list[Any] = []
        idle = 0
        for connection in self._connections:
            if connection.is_closed():
                continue
            if connection.has_expired():
                closing.append(connection)
                continue
            if connection.is_idle():
                idle += 1
                if idle > self._max_keepalive_connections:
                    closing.append(connection)
                    continue
            keep.append(connection)
        self._connections = keep

    def _assign_requests_to_connections(self) -> list[Any]:
        closing: list[Any] = []
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_INTERVAL
            self._sweep(closing)
        queued = [r for r in self._requests if r.is_queued()]
        if not queued:
            return closing
        connections = self._connections
        for pool_request in queued:
            origin = pool_request.request.url.origin
            chosen = None
            stale: list[Any] = []
            for connection in connections:
                if connection.can_handle_request(origin) and connection.is_available():
                    if connection.is_idle() and connection.has_expired():
                        stale.append(connection)  # the server closed it, or its keep-alive ran out
                        continue
                    chosen = connection
                    break
            for connection in stale:
                connections.remove(connection)
                closing.append(connection)
            if chosen is None:
                if len(connections) >= self._max_connections:
                    connections[:] = [c for c in connections if not c.is_closed()]
                if len(connections) >= self._max_connections:
                    idle_connection = next((c for c in connections if c.is_idle()), None)
                    if idle_connection is None:
                        continue  # stays queued until a connection frees up
                    connections.remove(idle_connection)
                    closing.append(idle_connection)
                chosen = self.create_connection(origin)
                connections.append(chosen)
            pool_request.assign_to_connection(chosen)
        return closing


# _LeanPool overrides private methods of this exact httpcore release (pinned in pyproject.toml); with any
# other, the stock pool is used: slower under many streams, never wrong.
LEAN_POOL_HTTPCORE = "1.0.9"


def lean_transport(limits: httpx.Limits, verify: ssl.SSLContext | bool = True) -> httpx.AsyncHTTPTransport:
    """httpx's own transport (what AsyncClient would build) with the lean pool in place of httpcore's.
    Also used by the benchmark's load generator (bench/clients.py), whose pools reach thousands of connections
    (`verify`: its TLS context, for the HTTPS contenders)."""
    transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False, verify=verify)
    if httpcore.__version__ == LEAN_POOL_HTTPCORE and type(transport._pool) is httpcore.AsyncConnectionPool:
        transport._pool.__class__ = _LeanPool  # same state, cheaper bookkeeping
    return transport


def pool_in_use(transport: httpx.AsyncBaseTransport | None = None) -> str:
    """"lean" or "stock (httpcore X)": which pool `lean_transport` gives (or `transport` has)."""
    transport = transport or lean_transport(httpx.Limits(max_connections=1))
    pool = getattr(transport, "_pool", None)
    return "lean" if isinstance(pool, _LeanPool) else f"stock (httpcore {httpcore.__version__})"
