"""In-memory lease cache: the reason the proxy makes no keyservice call per request.

- One entry per LeaseKey (caller, tenant, route). A hit is a dict lookup and a clock read.
- Concurrent misses for one key share one keyservice call (single flight).
- An entry past `refresh_fraction` of its life is refreshed in the background while still served.
- An entry is never served after its lease's expiry (converted to the monotonic clock, minus a margin), nor after
  the expiry of the temporary AWS credentials it carries, should keyservice ever lease them for longer.
- Revocation events drop matching entries at once; a fetch that raced with a revocation is used for the
  request that asked but not cached.

Bounded, because callers choose the tenant (issue 11, finding 4; docs/security.md):
- At most `max_entries` entries; a new key past that evicts the least recently used one.
- A sweep (every `sweep_interval` seconds, `start()`ed by the server) drops expired entries, and at a lease's
  expiry clears the key from the lease message, also in entries already evicted or revoked that a request
  still holds (a stream outliving its lease, say). Only a weak reference follows them, so a dropped entry
  nobody holds is freed at once.
- Refusals (NOT_FOUND, PERMISSION_DENIED, FAILED_PRECONDITION, INVALID_ARGUMENT from keyservice) are cached
  for `negative_ttl` seconds (a negative cache, bounded as well); a revocation event about the org (keyservice
  sends one when a credential is created, activated or changed) or a reconnection drops them early.
- Each caller may start at most `misses_per_second` keyservice calls (a token bucket holding `miss_burst`);
  past that its misses fail with RESOURCE_EXHAUSTED and retry-after, without a keyservice call, so one caller
  cycling tenants cannot drive keyservice, Vault and the audit log at will. Hits, joining a call already under
  way, negative hits and background refreshes cost no token.
The key (or a Bedrock lease's session credentials) is in memory only, inside the entry, for the lease's life.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import itertools
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from byok.keys.v1 import key_service_pb2 as kpb
from proxyservice import errors
from proxyservice.keyclient import LeaseKey

Fetch = Callable[[LeaseKey, tuple[str, ...]], Awaitable[kpb.IssueKeyLeaseResponse]]
EXPIRY_MARGIN_SECONDS = 1.0
# keyservice's answers that say "no" for this key whatever the moment: cached briefly. UNAVAILABLE (and any
# other failure) is not: the next request asks again.
NEGATIVE = (errors.NotFound, errors.PermissionDenied, errors.FailedPrecondition, errors.InvalidArgument)
_MAX_CALLERS = 10_000  # miss buckets kept (callers are certificate identities, so few; LRU beyond)


@dataclass(frozen=True, slots=True)
class CacheLimits:
    """The cache's bounds (proxy settings BYOK_LEASE_CACHE_*, BYOK_LEASE_MISS_*)."""

    max_entries: int = 50_000
    sweep_interval: float = 1.0
    negative_ttl: float = 2.0  # 0 turns the negative cache off
    max_negative: int = 10_000
    misses_per_second: float = 50.0  # per caller; 0 = unlimited
    miss_burst: int = 200


@dataclass(slots=True, weakref_slot=True)
class CachedLease:
    lease: kpb.IssueKeyLeaseResponse
    expires_at: float  # monotonic
    refresh_at: float  # monotonic

    def __repr__(self) -> str:  # never print the key
        return f"CachedLease({self.lease.lease_id}, expires_at={self.expires_at:.1f})"

    def scrub(self) -> None:
        """Past expiry: drop the key and any session credentials from the lease message (the strs are freed once
        nothing else holds them)."""
        self.lease.ClearField("api_key")
        self.lease.ClearField("aws_credentials")
        self.expires_at = self.refresh_at = float("-inf")


@dataclass(slots=True)
class _Refusal:
    error: errors.ProxyError
    until: float  # monotonic


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float  # monotonic


def _usable_until(lease: kpb.IssueKeyLeaseResponse) -> float:
    """The wall-clock second the lease stops being usable: its expiry, or its AWS credentials' if sooner."""
    until = lease.expire_time.ToMicroseconds() / 1e6
    if lease.HasField("aws_credentials") and lease.aws_credentials.HasField("expire_time"):
        until = min(until, lease.aws_credentials.expire_time.ToMicroseconds() / 1e6)
    return until


def _replay(error: errors.ProxyError) -> errors.ProxyError:
    """A fresh exception equal to a cached refusal (raising one instance from many tasks would chain their
    tracebacks onto it)."""
    again = type(error).__new__(type(error), *error.args)
    again.__dict__.update(error.__dict__)
    return again


class LeaseCache:
    def __init__(self, fetch: Fetch, *, refresh_fraction: float = 0.75, limits: CacheLimits | None = None,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 observe: Callable[[str], None] | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._fetch = fetch
        self._refresh_fraction = refresh_fraction
        self.limits = limits or CacheLimits()
        self._clock = clock
        self._wall = wall
        self._observe = observe or (lambda _result: None)
        self._sleep = sleep
        self._entries: OrderedDict[LeaseKey, CachedLease] = OrderedDict()
        self._inflight: dict[LeaseKey, asyncio.Future[CachedLease]] = {}
        self._refreshing: set[LeaseKey] = set()
        self._refusals: OrderedDict[LeaseKey, _Refusal] = OrderedDict()
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        # (expires_at, seq, key, entry): every entry made, until its expiry, weakly (see the module docstring).
        self._expiry: list[tuple[float, int, LeaseKey, weakref.ref[CachedLease]]] = []
        self._seq = itertools.count()
        self._generation = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self.hits = 0
        self.misses = 0
        self.fetches = 0
        self.negative_hits = 0
        self.limited = 0
        self.evictions = 0
        self.scrubbed = 0

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: LeaseKey) -> CachedLease:
        return (await self.lookup(key))[0]

    async def lookup(self, key: LeaseKey) -> tuple[CachedLease, bool]:
        """The entry for `key`, and whether it was a hit (served from memory, no keyservice call awaited).
        Told per call, so concurrent requests cannot mistake each other's hits for their own."""
        entry = self._entries.get(key)
        now = self._clock()
        if entry is not None:
            if now < entry.expires_at:
                self.hits += 1
                self._entries.move_to_end(key)
                if now >= entry.refresh_at and key not in self._refreshing:
                    self._refresh_in_background(key)
                return entry, True
            del self._entries[key]
            entry.scrub()
            self.scrubbed += 1
        refusal = self._refusals.get(key)
        if refusal is not None:
            if now < refusal.until:
                self.negative_hits += 1
                self._observe("negative")
                raise _replay(refusal.error)
            del self._refusals[key]
        self.misses += 1
        if key not in self._inflight:
            self._take_miss_token(key.caller, now)
        return await self._single_flight(key), False

    async def replace(self, key: LeaseKey, exclude: tuple[str, ...]) -> CachedLease:
        """Drop `key` and fetch a lease that skips `exclude` (failover after a provider 401/403)."""
        self._entries.pop(key, None)
        self._take_miss_token(key.caller, self._clock())
        return await self._load(key, exclude)

    def _take_miss_token(self, caller: str, now: float) -> None:
        rate, burst = self.limits.misses_per_second, self.limits.miss_burst
        if rate <= 0:
            return
        bucket = self._buckets.get(caller)
        if bucket is None:
            bucket = self._buckets[caller] = _Bucket(tokens=float(burst), at=now)
            if len(self._buckets) > _MAX_CALLERS:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(caller)
            bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.at) * rate)
            bucket.at = now
        if bucket.tokens < 1.0:
            self.limited += 1
            self._observe("limited")
            raise errors.RateLimited("too many lease lookups for tenants not in the cache; retry shortly",
                                     retry_after=str(max(1, round((1.0 - bucket.tokens) / rate))))
        bucket.tokens -= 1.0

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
        self._ensure_sweeper()
        generation = self._generation
        self.fetches += 1
        try:
            lease = await self._fetch(key, exclude)
        except NEGATIVE as exc:
            if generation == self._generation and not exclude:
                self._refuse(key, exc)
            raise
        now_mono, now_wall = self._clock(), self._wall()
        remaining = _usable_until(lease) - now_wall - EXPIRY_MARGIN_SECONDS
        entry = CachedLease(lease=lease, expires_at=now_mono + remaining,
                            refresh_at=now_mono + remaining * self._refresh_fraction)
        if remaining > 0:
            heapq.heappush(self._expiry, (entry.expires_at, next(self._seq), key, weakref.ref(entry)))
            if generation == self._generation:
                self._store(key, entry)
            self._compact()
        return entry

    def _store(self, key: LeaseKey, entry: CachedLease) -> None:
        self._refusals.pop(key, None)
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.limits.max_entries:
            self._entries.popitem(last=False)  # the least recently used; scrubbed at its expiry if still held
            self.evictions += 1
            self._observe("evicted")

    def _refuse(self, key: LeaseKey, error: errors.ProxyError) -> None:
        ttl = self.limits.negative_ttl
        if ttl <= 0:
            return
        self._refusals[key] = _Refusal(error=error, until=self._clock() + ttl)
        self._refusals.move_to_end(key)
        while len(self._refusals) > self.limits.max_negative:
            self._refusals.popitem(last=False)

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

    # -- expiry ---------------------------------------------------------------------------------------
    def sweep(self) -> int:
        """Drop the entries whose lease expired and clear the key of every lease past expiry, cached or still
        held by a request; returns how many keys were cleared. Cheap: only the expired are looked at."""
        now = self._clock()
        cleared = 0
        expiry = self._expiry
        while expiry and expiry[0][0] <= now:
            _, _, key, ref = heapq.heappop(expiry)
            entry = ref()
            if entry is None:
                continue  # dropped earlier and no longer held: already freed
            if self._entries.get(key) is entry:
                del self._entries[key]
            entry.scrub()
            cleared += 1
        for key in [k for k, refusal in self._refusals.items() if refusal.until <= now]:
            del self._refusals[key]
        self.scrubbed += cleared
        return cleared

    def _compact(self) -> None:
        """Keep the expiry heap within twice the live entries: forget references to entries already freed."""
        if len(self._expiry) > 2 * len(self._entries) + 1024:
            self._expiry = [item for item in self._expiry if item[3]() is not None]
            heapq.heapify(self._expiry)

    def start(self) -> None:
        """Run the sweep every `sweep_interval` seconds until `close()` (needs a running loop)."""
        self._ensure_sweeper()

    def _ensure_sweeper(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def _sweep_forever(self) -> None:
        while True:
            await self._sleep(self.limits.sweep_interval)
            self.sweep()

    # -- invalidation -------------------------------------------------------------------------------
    def revoke(self, event: kpb.WatchRevocationsResponse) -> int:
        """Drop the entries an event concerns; returns how many. Refusals about the org go too (a credential
        created or activated comes as such an event)."""
        self._generation += 1
        if event.ready:
            return self.clear()
        if event.org_id:
            for key in [k for k in self._refusals if k.org_id == event.org_id]:
                del self._refusals[key]
        else:
            self._refusals.clear()
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
        self._refusals.clear()
        return count

    async def close(self) -> None:
        tasks = list(self._tasks) + ([self._sweeper] if self._sweeper else [])
        for task in tasks:
            task.cancel()
        self._sweeper = None
        for entry in self._entries.values():
            entry.scrub()
        self._entries.clear()
