"""Fans the durable revocation log out to this process's async subscribers (WatchRevocations streams),
so that a revocation committed by any keyservice replica reaches every watcher within a second.

One pump task reads `Store.revocations_since(high-water mark)` whenever it is woken, and hands each new
row to every subscriber queue in sequence order; the high-water mark makes delivery exactly-once however
many wake-ups arrive. Wake-ups come from:
- local commits (the feed registers `poke` with the store, so it runs right after the transaction);
- on PostgreSQL, NOTIFY `byok_revocations` from any replica, LISTENed on a dedicated connection in a
  thread that reconnects with backoff; plus a safety-net poll every `safety_poll_interval` (1 s);
- on SQLite, polling every `poll_interval` (no cross-process notification exists there).
The feed starts at `last_revocation_sequence()`: subscribers get what happens after start, no replay.
On stop, `close_subscribers()` ends every subscription first (a None in each queue: the WatchRevocations stream
returns), so a stopping replica's watchers move to another replica at once instead of watching, for the whole
shutdown grace, a feed that no longer delivers; a proxy clears its lease cache on every new stream, so the move
loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

import structlog

from keyservice.errors import KeyServiceError
from keyservice.store import RevocationRow, Store

log = structlog.get_logger(__name__)

_BATCH = 1000


class RevocationFeed:
    """One per process; start() it on the event loop that serves the subscribers."""

    def __init__(
        self, store: Store, *, poll_interval: float = 0.2, safety_poll_interval: float = 1.0
    ) -> None:
        self._store = store
        self._poll_interval = poll_interval if store.dialect == "sqlite" else safety_poll_interval
        self._subscribers: list[asyncio.Queue[RevocationRow | None]] = []
        self._closed = False
        self._last = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._pump_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._listen_stop = threading.Event()
        self._listen_thread: threading.Thread | None = None

    @property
    def last_sequence(self) -> int:
        """Sequence of the last revocation delivered (or the log's end at start)."""
        return self._last

    async def start(self) -> None:
        if self._pump_task is not None:
            return
        self._closed = False
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._stopping = False
        self._last = await asyncio.to_thread(self._store.last_revocation_sequence)
        self._store.add_revocation_listener(self.poke)
        if self._store.dialect == "postgresql":
            self._listen_stop.clear()
            self._listen_thread = threading.Thread(
                target=self._store.listen_revocations,
                args=(self.poke, self._listen_stop),
                name="byok-revocation-listener",
                daemon=True,
            )
            self._listen_thread.start()
        self._pump_task = asyncio.create_task(self._pump(), name="byok-revocation-pump")

    def close_subscribers(self) -> None:
        """End every subscription (each queue gets None) and every later one at once."""
        self._closed = True
        for q in self._subscribers:
            q.put_nowait(None)
        self._subscribers.clear()

    async def stop(self) -> None:
        self.close_subscribers()
        self._store.remove_revocation_listener(self.poke)
        self._listen_stop.set()
        if self._pump_task is not None:
            # The flag as well as cancel(): Python 3.11's wait_for can swallow a cancellation that
            # lands as its inner wait completes, and the pump must end either way.
            self._stopping = True
            self._pump_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump_task
            self._pump_task = None
        if self._listen_thread is not None:
            await asyncio.to_thread(self._listen_thread.join, 5.0)
            self._listen_thread = None

    def subscribe(self) -> asyncio.Queue[RevocationRow | None]:
        """A queue that receives every revocation committed from now on, in sequence order, and None when the
        feed closes (at once if it has)."""
        q: asyncio.Queue[RevocationRow | None] = asyncio.Queue()
        if self._closed:
            q.put_nowait(None)
        else:
            self._subscribers.append(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[RevocationRow | None]) -> None:
        with contextlib.suppress(ValueError):
            self._subscribers.remove(q)

    def poke(self) -> None:
        """Deliver new revocations now rather than at the next poll. Safe from any thread."""
        loop, wake = self._loop, self._wake
        if loop is None or wake is None:
            return
        try:
            if _running_loop() is loop:
                wake.set()
            else:
                loop.call_soon_threadsafe(wake.set)
        except RuntimeError:  # the loop is closed: the feed is gone
            pass

    async def _pump(self) -> None:
        assert self._wake is not None
        backoff = self._poll_interval
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_interval):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self._drain()
                backoff = self._poll_interval
            except KeyServiceError as exc:
                # Database unavailable: keep the high-water mark and retry; nothing is lost.
                log.warning("revocation feed read failed", error=type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _drain(self) -> None:
        while True:
            rows = await asyncio.to_thread(self._store.revocations_since, self._last, _BATCH)
            for row in rows:
                for q in list(self._subscribers):
                    q.put_nowait(row)
                self._last = row.sequence
            if len(rows) < _BATCH:
                return


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
