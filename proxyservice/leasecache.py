"""In-memory lease cache: the reason the proxy makes no keyservice call per request.

- One entry per LeaseKey (caller, tenant, route). A hit is a dict lookup and a clock read.
- Concurrent misses for one key share one keyservice call (single flight).
- An entry past `refresh_fraction` of its life is refreshed in the background while still served.
- An entry is never served after its lease's expiry (converted to the monotonic clock, minus a margin).
- Revocation events drop matching entries at once; a fetch that raced with a revocation is used for the
  request that asked but not cached.
The key is in memory only, inside the entry, for the lease's life.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from byok.keys.v1 import key_service_pb2 as kpb
from proxyservice.keyclient import LeaseKey

Fetch = Callable[[LeaseKey, tuple[str, ...]], Awaitable[kpb.IssueKeyLeaseResponse]]
EXPIRY_MARGIN_SECONDS = 1.0


@dataclass(slots=True)
class CachedLease:
    lease: kpb.IssueKeyLeaseResponse
    expires_at: float  # monotonic
    refresh_at: float  # monotonic

    def __repr__(self) -> str:  # never print the key
        return f"CachedLease({self.lease.lease_id}, expires_at={self.expires_at:.1f})"


class LeaseCache:
    def __init__(self, fetch: Fetch, *, refresh_fraction: float = 0.75,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self._fetch = fetch
        self._refresh_fraction = refresh_fraction
        self._clock = clock
        self._wall = wall
        self._entries: dict[LeaseKey, CachedLease] = {}
        self._inflight: dict[LeaseKey, asyncio.Future[CachedLease]] = {}
        self._refreshing: set[LeaseKey] = set()
        self._generation = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.hits = 0
        self.misses = 0
        self.fetches = 0

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: LeaseKey) -> CachedLease:
        return (await self.lookup(key))[0]

    async def lookup(self, key: LeaseKey) -> tuple[CachedLease, bool]:
        """The entry for `key`, and whether it was a hit (served from memory, no keyservice call awaited).
        Told per call, so concurrent requests cannot mistake each other's hits for their own."""
        entry = self._entries.get(key)
        if entry is not None:
            now = self._clock()
            if now < entry.expires_at:
                self.hits += 1
                if now >= entry.refresh_at and key not in self._refreshing:
                    self._refresh_in_background(key)
                return entry, True
            del self._entries[key]
        self.misses += 1
        return await self._single_flight(key), False

    async def replace(self, key: LeaseKey, exclude: tuple[str, ...]) -> CachedLease:
        """Drop `key` and fetch a lease that skips `exclude` (failover after a provider 401/403)."""
        self._entries.pop(key, None)
        return await self._load(key, exclude)

    def _single_flight(self, key: LeaseKey) -> Awaitable[CachedLease]:
        pending = self._inflight.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._load(key, ()))
            self._inflight[key] = pending
            pending.add_done_callback(functools.partial(self._landed, key))
        return asyncio.shield(pending)

    def _landed(self, key: LeaseKey, _done: asyncio.Future[CachedLease]) -> None:
        self._inflight.pop(key, None)

    async def _load(self, key: LeaseKey, exclude: tuple[str, ...]) -> CachedLease:
        generation = self._generation
        self.fetches += 1
        lease = await self._fetch(key, exclude)
        now_mono, now_wall = self._clock(), self._wall()
        remaining = lease.expire_time.ToMicroseconds() / 1e6 - now_wall - EXPIRY_MARGIN_SECONDS
        entry = CachedLease(lease=lease, expires_at=now_mono + remaining,
                            refresh_at=now_mono + remaining * self._refresh_fraction)
        if generation == self._generation and remaining > 0:
            self._entries[key] = entry
        return entry

    def _refresh_in_background(self, key: LeaseKey) -> None:
        self._refreshing.add(key)

        async def refresh() -> None:
            try:
                await self._load(key, ())
            except Exception:  # noqa: BLE001 - the old entry serves until expiry; the next hit retries
                pass
            finally:
                self._refreshing.discard(key)

        task = asyncio.create_task(refresh())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- invalidation -------------------------------------------------------------------------------
    def revoke(self, event: kpb.WatchRevocationsResponse) -> int:
        """Drop the entries an event concerns; returns how many."""
        self._generation += 1
        if event.ready:
            return self.clear()
        if event.reason == kpb.REVOCATION_REASON_CALLER_UNBOUND:
            doomed = [k for k in self._entries if k.caller == event.caller_identity
                      and (not event.org_id or k.org_id == event.org_id)]
        elif event.credential_id:
            doomed = [k for k, v in self._entries.items() if v.lease.credential_id == event.credential_id]
            if event.reason in (kpb.REVOCATION_REASON_SCOPE_CHANGED,):
                doomed += [k for k in self._entries if k.org_id == event.org_id]
        elif event.org_id:
            doomed = [k for k in self._entries if k.org_id == event.org_id]
        else:
            return self.clear()
        for key in set(doomed):
            self._entries.pop(key, None)
        return len(set(doomed))

    def clear(self) -> int:
        self._generation += 1
        count = len(self._entries)
        self._entries.clear()
        return count

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
