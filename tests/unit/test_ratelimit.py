"""The proxy's rate-limit admission (proxyservice/ratelimit.py): counts learnt from a lease and from ReportUsage
answers, its own unreported requests, the minute's roll-over, a limit's scope, refusals naming the limit with
retry-after = the rest of the minute, a deleted limit, and the request path's cost for a tenant without a limit."""

from __future__ import annotations

import asyncio
import gc
import timeit

import pytest

from byok.keys.v1 import key_service_pb2 as kpb
from proxyservice import errors
from proxyservice.keyclient import LeaseKey
from proxyservice.ratelimit import RateLimiter

T0 = 1_800_000_000.0 - 1_800_000_000.0 % 60 + 20  # 20 s into a minute


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def usage(rpm: int = 0, tpm: int = 0, *, requests: int = 0, tokens: int = 0, at: float = T0, org: str = "acme",
          project: str = "", limit_id: str = "rl_" + "a" * 24) -> kpb.RateLimitUsage:
    u = kpb.RateLimitUsage(limit=kpb.RateLimit(rate_limit_id=limit_id, scope=kpb.Scope(
        org_id=org, project_id=project), requests_per_minute=rpm, tokens_per_minute=tpm),
        requests=requests, tokens=tokens)
    u.minute_start_time.FromSeconds(int(at // 60 * 60))
    return u


def learnt(limiter: RateLimiter, *limits: kpb.RateLimitUsage, org: str = "acme") -> None:
    """A lease carrying `limits`, fetched through the limiter's `learning` wrapper as the lease cache does."""
    async def fetch(_key: LeaseKey, _exclude: tuple[str, ...]) -> kpb.IssueKeyLeaseResponse:
        return kpb.IssueKeyLeaseResponse(lease_id="lease-1", rate_limits=list(limits))
    key = LeaseKey(caller="c", org_id=org, project_id="", user_id="", provider="openai", model="", credential_id="")

    async def fetched() -> None:
        await limiter.learning(fetch)(key, ())
    asyncio.run(fetched())


def batch(n: int, *, at: float = T0, org: str = "acme", project: str = "") -> kpb.ReportUsageRequest:
    records = [kpb.UsageRecord(scope=kpb.Scope(org_id=org, project_id=project)) for _ in range(n)]
    for r in records:
        r.time.FromSeconds(int(at))
    return kpb.ReportUsageRequest(batch_id="b", records=records)


def admitted(limiter: RateLimiter, n: int, project: str = "") -> int:
    count = 0
    for _ in range(n):
        try:
            limiter.admit("acme", project, "")
        except errors.RateLimited:
            continue
        count += 1
    return count


def test_a_lease_s_counts_plus_local_requests_stay_under_the_limit_then_refused_with_retry_after() -> None:
    clock = Clock()
    limiter = RateLimiter(clock=clock)
    learnt(limiter, usage(rpm=10, requests=4))
    assert admitted(limiter, 6) == 6  # 4 reported by others + 6 of ours = 10
    with pytest.raises(errors.RateLimited) as refused:
        limiter.admit("acme", "", "")
    assert refused.value.code.name == "RESOURCE_EXHAUSTED"
    assert "rl_" + "a" * 24 in refused.value.message and "10 requests per minute" in refused.value.message
    assert refused.value.trailers == (("retry-after", "40"),)  # the rest of the minute
    assert limiter.refused == 1


def test_an_answer_replaces_the_count_and_takes_its_batch_out_of_the_local_requests() -> None:
    clock = Clock()
    limiter = RateLimiter(clock=clock)
    learnt(limiter, usage(rpm=10))
    assert admitted(limiter, 5) == 5
    # keyservice counted our 3 reported requests and 4 of another proxy's: 7, plus our 2 still local = 9.
    limiter.answered(batch(3), kpb.ReportUsageResponse(org_ids=["acme"], rate_limits=[usage(rpm=10, requests=7)]))
    assert admitted(limiter, 5) == 1


def test_a_new_minute_starts_with_no_count() -> None:
    clock = Clock()
    limiter = RateLimiter(clock=clock)
    learnt(limiter, usage(rpm=2))
    assert admitted(limiter, 3) == 2
    clock.now += 45  # the next minute
    assert admitted(limiter, 3) == 2
    # An answer about the minute before does not count in this one.
    limiter.answered(batch(2, at=T0), kpb.ReportUsageResponse(org_ids=["acme"],
                                                              rate_limits=[usage(rpm=2, requests=2, at=T0)]))
    clock.now += 60
    assert admitted(limiter, 1) == 1


def test_a_token_limit_counts_what_keyservice_counted() -> None:
    limiter = RateLimiter(clock=Clock())
    learnt(limiter, usage(tpm=1000, tokens=999))
    assert admitted(limiter, 3) == 3  # tokens are known once reported
    limiter.answered(batch(3), kpb.ReportUsageResponse(org_ids=["acme"], rate_limits=[usage(tpm=1000, tokens=1300)]))
    with pytest.raises(errors.RateLimited, match="1000 tokens per minute"):
        limiter.admit("acme", "", "")


def test_a_project_s_limit_leaves_the_org_s_other_projects_alone() -> None:
    limiter = RateLimiter(clock=Clock())
    learnt(limiter, usage(rpm=1, project="web"))
    assert admitted(limiter, 2, project="web") == 1
    assert admitted(limiter, 2, project="batch") == 2


def test_an_answer_without_the_org_s_limits_means_they_were_deleted() -> None:
    limiter = RateLimiter(clock=Clock())
    learnt(limiter, usage(rpm=1))
    assert admitted(limiter, 2) == 1
    limiter.answered(batch(1), kpb.ReportUsageResponse(org_ids=["acme"]))
    assert admitted(limiter, 3) == 3
    # An org the answer does not cover keeps its limits.
    learnt(limiter, usage(rpm=1, org="beta"), org="beta")
    limiter.admit("beta", "", "")
    limiter.answered(batch(1), kpb.ReportUsageResponse(org_ids=["acme"]))
    with pytest.raises(errors.RateLimited):
        limiter.admit("beta", "", "")


def test_the_request_path_s_cost_without_a_limit_is_a_dict_lookup() -> None:
    limiter = RateLimiter()
    limiter.answered(batch(1, org="other"), kpb.ReportUsageResponse(
        org_ids=["other"], rate_limits=[usage(rpm=5, org="other")]))  # someone else's limit is known
    n = 200_000
    gc.disable()
    try:
        cost = min(timeit.repeat(lambda: limiter.admit("acme", "", ""), number=n, repeat=5)) / n
        empty: dict[str, int] = {}
        bare = min(timeit.repeat(lambda: empty.get("acme"), number=n, repeat=5)) / n
    finally:
        gc.enable()
    print(f"\nadmit without a limit: {cost * 1e9:.0f} ns a call (a lambda doing one dict lookup: {bare * 1e9:.0f} ns)")
    assert cost < 3 * bare + 200e-9
