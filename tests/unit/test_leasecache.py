"""The proxy's lease cache: single flight, refresh ahead of expiry, never past expiry, revocations; and its
bounds (size, expiry sweep clearing the key, negative cache, per-caller miss budget)."""

from __future__ import annotations

import asyncio

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from byok.keys.v1 import key_service_pb2 as kpb
from proxyservice import errors
from proxyservice.keyclient import LeaseKey
from proxyservice.leasecache import CacheLimits, LeaseCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def mono(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now + 1_700_000_000


class FakeKeyService:
    """Stands in for keyservice's IssueKeyLease (the unit under test is the cache, not the RPC)."""

    def __init__(self, clock: Clock, ttl: float = 60.0) -> None:
        self.clock, self.ttl, self.calls, self.gate = clock, ttl, 0, asyncio.Event()
        self.gate.set()

    async def fetch(self, key: LeaseKey, exclude: tuple[str, ...]) -> kpb.IssueKeyLeaseResponse:
        self.calls += 1
        await self.gate.wait()
        expire = Timestamp()
        expire.FromMicroseconds(int((self.clock.wall() + self.ttl) * 1e6))
        return kpb.IssueKeyLeaseResponse(lease_id=f"lease_{self.calls}", credential_id=f"cred_{key.org_id}",
                                         expire_time=expire, api_key="sk-test-" + "x" * 20)


def key(org: str = "acme", caller: str = "spiffe://byok.local/caller/a") -> LeaseKey:
    return LeaseKey(caller=caller, org_id=org, project_id="", user_id="", provider="openai", model="",
                    credential_id="")


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def test_concurrent_misses_make_one_call(clock: Clock) -> None:
    ks = FakeKeyService(clock)
    ks.gate.clear()
    cache = LeaseCache(ks.fetch, clock=clock.mono, wall=clock.wall)
    waiters = [asyncio.ensure_future(cache.get(key())) for _ in range(50)]
    await asyncio.sleep(0)
    ks.gate.set()
    leases = await asyncio.gather(*waiters)
    assert ks.calls == 1 and len({entry.lease.lease_id for entry in leases}) == 1
    assert cache.misses == 50 and cache.fetches == 1


async def test_hits_need_no_call_then_refresh_ahead_then_never_past_expiry(clock: Clock) -> None:
    ks = FakeKeyService(clock, ttl=60)
    cache = LeaseCache(ks.fetch, refresh_fraction=0.75, clock=clock.mono, wall=clock.wall)
    first = await cache.get(key())
    for _ in range(100):
        assert (await cache.get(key())) is first
    assert ks.calls == 1
    clock.now += 50  # past 75 % of the (59 s usable) life: served, and refreshed in the background
    assert (await cache.get(key())) is first
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert ks.calls == 2
    refreshed = await cache.get(key())
    assert refreshed is not first and refreshed.lease.lease_id == "lease_2"
    ks.gate.clear()  # keyservice now hangs: an expired entry must not be served meanwhile
    clock.now += 200
    pending = asyncio.ensure_future(cache.get(key()))
    await asyncio.sleep(0.01)
    assert not pending.done()
    ks.gate.set()
    assert (await pending).lease.lease_id == "lease_3"


async def test_revocations_drop_matching_entries(clock: Clock) -> None:
    ks = FakeKeyService(clock)
    cache = LeaseCache(ks.fetch, clock=clock.mono, wall=clock.wall)
    for org in ("a", "b", "c"):
        await cache.get(key(org))
    await cache.get(key("a", caller="spiffe://byok.local/caller/b"))
    assert len(cache) == 4
    assert cache.revoke(kpb.WatchRevocationsResponse(reason=kpb.REVOCATION_REASON_DEACTIVATED,
                                                     credential_id="cred_b", org_id="b")) == 1
    assert cache.revoke(kpb.WatchRevocationsResponse(reason=kpb.REVOCATION_REASON_CALLER_UNBOUND, org_id="a",
                                                     caller_identity="spiffe://byok.local/caller/b")) == 1
    assert cache.revoke(kpb.WatchRevocationsResponse(reason=kpb.REVOCATION_REASON_SCOPE_CHANGED,
                                                     org_id="c")) == 1
    assert len(cache) == 1
    assert cache.revoke(kpb.WatchRevocationsResponse(ready=True)) == 1 and len(cache) == 0


async def test_a_fetch_racing_a_revocation_is_not_cached(clock: Clock) -> None:
    ks = FakeKeyService(clock)
    ks.gate.clear()
    cache = LeaseCache(ks.fetch, clock=clock.mono, wall=clock.wall)
    pending = asyncio.ensure_future(cache.get(key()))
    while ks.calls == 0:  # the fetch is under way
        await asyncio.sleep(0)
    cache.revoke(kpb.WatchRevocationsResponse(reason=kpb.REVOCATION_REASON_DEACTIVATED, credential_id="cred_acme"))
    ks.gate.set()
    await pending
    assert len(cache) == 0  # the next request asks keyservice again


async def test_failures_are_not_cached(clock: Clock) -> None:
    calls = 0

    async def failing(k: LeaseKey, exclude: tuple[str, ...]) -> kpb.IssueKeyLeaseResponse:
        nonlocal calls
        calls += 1
        raise RuntimeError("keyservice down")

    cache = LeaseCache(failing, clock=clock.mono, wall=clock.wall)
    for _ in range(3):
        with pytest.raises(RuntimeError):
            await cache.get(key())
    assert calls == 3 and len(cache) == 0


# -- bounds (issue 11, finding 4) -------------------------------------------------------------------------
def user_key(i: int, caller: str = "spiffe://byok.local/caller/a") -> LeaseKey:
    return LeaseKey(caller=caller, org_id="acme", project_id="", user_id=f"user-{i}", provider="openai", model="",
                    credential_id="")


UNLIMITED = CacheLimits(misses_per_second=0)


async def test_expired_entries_are_swept_and_their_key_cleared(clock: Clock) -> None:
    ks = FakeKeyService(clock, ttl=60)
    cache = LeaseCache(ks.fetch, limits=UNLIMITED, clock=clock.mono, wall=clock.wall)
    entries = [await cache.get(user_key(i)) for i in range(150)]  # the review's 150 distinct user_ids
    assert len(cache) == 150 and all(e.lease.api_key for e in entries)
    clock.now += 30
    assert cache.sweep() == 0 and len(cache) == 150  # nothing expired yet
    clock.now += 30  # past expiry (60 s minus the margin): no lookup of those keys comes again
    assert cache.sweep() == 150
    assert len(cache) == 0
    # The entries a request might still hold (a stream outliving its lease) lost their key too.
    assert all(e.lease.api_key == "" for e in entries) and cache.scrubbed == 150
    assert cache._expiry == []  # noqa: SLF001 - nothing left to follow


async def test_the_sweep_runs_on_its_own(clock: Clock) -> None:
    ticks: asyncio.Queue[asyncio.Future[None]] = asyncio.Queue()

    async def sleep(_seconds: float) -> None:  # the sweeper's timer, driven by the test
        tick = asyncio.get_running_loop().create_future()
        await ticks.put(tick)
        await tick

    ks = FakeKeyService(clock, ttl=10)
    cache = LeaseCache(ks.fetch, limits=UNLIMITED, clock=clock.mono, wall=clock.wall, sleep=sleep)
    cache.start()
    entry = await cache.get(key())
    clock.now += 20
    (await ticks.get()).set_result(None)  # one interval passes
    await ticks.get()  # the sweeper swept and went back to sleep
    assert len(cache) == 0 and entry.lease.api_key == ""
    await cache.close()


async def test_size_is_bounded_least_recently_used_out(clock: Clock) -> None:
    ks = FakeKeyService(clock)
    cache = LeaseCache(ks.fetch, limits=CacheLimits(max_entries=100, misses_per_second=0), clock=clock.mono,
                       wall=clock.wall)
    held = await cache.get(user_key(0))
    for i in range(1, 100):
        await cache.get(user_key(i))
    assert (await cache.get(user_key(0))) is held  # used again: now the most recent
    for i in range(100, 150):
        await cache.get(user_key(i))
    assert len(cache) == 100 and cache.evictions == 50
    assert user_key(0) in cache._entries and user_key(1) not in cache._entries  # noqa: SLF001
    # An evicted entry a request still holds keeps its key until its lease expires, then loses it.
    evicted = await cache.get(user_key(1))
    assert cache.fetches == 151
    for i in range(150, 250):
        await cache.get(user_key(i))
    assert user_key(1) not in cache._entries and evicted.lease.api_key  # noqa: SLF001
    clock.now += 120
    cache.sweep()
    assert evicted.lease.api_key == "" and len(cache) == 0


async def test_refusals_are_cached_briefly(clock: Clock) -> None:
    calls = 0
    answer: Exception = errors.NotFound("no active credential for the tenant")

    async def refusing(k: LeaseKey, exclude: tuple[str, ...]) -> kpb.IssueKeyLeaseResponse:
        nonlocal calls
        calls += 1
        raise answer

    cache = LeaseCache(refusing, limits=CacheLimits(negative_ttl=2.0), clock=clock.mono, wall=clock.wall)
    for _ in range(5):
        with pytest.raises(errors.NotFound, match="no active credential"):
            await cache.get(key())
    assert calls == 1 and cache.negative_hits == 4
    clock.now += 2.5  # the refusal is forgotten: keyservice is asked again
    with pytest.raises(errors.NotFound):
        await cache.get(key())
    assert calls == 2
    # A revocation event about the org (a credential created or activated comes as one) drops it at once.
    cache.revoke(kpb.WatchRevocationsResponse(reason=kpb.REVOCATION_REASON_SCOPE_CHANGED, org_id="other"))
    with pytest.raises(errors.NotFound):
        await cache.get(key())
    assert calls == 2
    cache.revoke(kpb.WatchRevocationsResponse(reason=kpb.REVOCATION_REASON_SCOPE_CHANGED, org_id="acme"))
    with pytest.raises(errors.NotFound):
        await cache.get(key())
    assert calls == 3
    # keyservice unavailable is not a refusal: never cached.
    answer = errors.Unavailable("keyservice is unavailable")
    clock.now += 2.5
    for _ in range(3):
        with pytest.raises(errors.Unavailable):
            await cache.get(key())
    assert calls == 6


async def test_each_caller_has_a_budget_of_keyservice_calls(clock: Clock) -> None:
    ks = FakeKeyService(clock)
    cache = LeaseCache(ks.fetch, limits=CacheLimits(misses_per_second=10, miss_burst=5), clock=clock.mono,
                       wall=clock.wall)
    for i in range(5):
        await cache.get(user_key(i))
    with pytest.raises(errors.RateLimited) as limited:  # cycling tenants: the 6th new one is refused
        await cache.get(user_key(5))
    assert limited.value.code.name == "RESOURCE_EXHAUSTED" and limited.value.retry_after == "1"
    assert ks.calls == 5 and cache.limited == 1
    for i in range(5):  # hits cost nothing
        await cache.get(user_key(i))
    await cache.get(user_key(5, caller="spiffe://byok.local/caller/b"))  # another caller has its own budget
    clock.now += 0.1  # 10 per second: one more
    await cache.get(user_key(5))
    with pytest.raises(errors.RateLimited):
        await cache.get(user_key(6))
    assert ks.calls == 7


async def test_joining_a_call_under_way_costs_no_budget(clock: Clock) -> None:
    ks = FakeKeyService(clock)
    ks.gate.clear()
    cache = LeaseCache(ks.fetch, limits=CacheLimits(misses_per_second=1, miss_burst=1), clock=clock.mono,
                       wall=clock.wall)
    waiters = [asyncio.ensure_future(cache.get(key())) for _ in range(20)]
    while ks.calls == 0:
        await asyncio.sleep(0)
    ks.gate.set()
    assert len({(await w).lease.lease_id for w in waiters}) == 1 and cache.limited == 0
