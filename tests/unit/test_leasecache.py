"""The proxy's lease cache: single flight, refresh ahead of expiry, never past expiry, revocations."""

from __future__ import annotations

import asyncio

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from byok.keys.v1 import key_service_pb2 as kpb
from proxyservice.keyclient import LeaseKey
from proxyservice.leasecache import LeaseCache


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
