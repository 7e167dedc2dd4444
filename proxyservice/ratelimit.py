"""Tenants' rate limits, admitted by the proxy across every replica (docs/usage.md, keyservice/usage/ratelimits.py).

keyservice keeps per-minute counts of the limited scopes from every proxy's ReportUsage, and tells each proxy
the counts of the current UTC minute: in the lease (the limits of its scope) and in every ReportUsage answer (the
limits of the batch's orgs; an org of the batch with none has none any more). A proxy admits a request while,
for every limit of its scope, keyservice's count plus its own requests not yet in an answered batch stay under
the limit; past it the request is refused with RESOURCE_EXHAUSTED naming the limit and retry-after = the rest of
the minute. A token limit is checked against the tokens keyservice has counted (a request's tokens are known only
at its end): its own answered batches and the other proxies'.

The error: what the other proxies admitted and this one has not heard of yet, at most (N − 1) × r × (report
interval + one ReportUsage) requests for N proxies each serving r a second, plus the requests each admits in the
same instant. The limits of a lease are learnt when the lease cache fetches it (`learning`), so a tenant with no
limit costs the request path one dict lookup (`admit`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from byok.keys.v1 import key_service_pb2 as kpb
from proxyservice import errors
from proxyservice.keyclient import LeaseKey

Fetch = Callable[[LeaseKey, tuple[str, ...]], Awaitable[kpb.IssueKeyLeaseResponse]]


@dataclass(slots=True)
class _Limit:
    """One limit and what this proxy knows of its current minute."""

    limit_id: str
    project_id: str
    user_id: str
    requests_per_minute: int
    tokens_per_minute: int
    minute: int = 0  # epoch minutes of the counts below
    requests: int = 0  # keyservice's count (all proxies' answered reports)
    tokens: int = 0
    local: int = 0  # requests this proxy admitted that no answer has counted yet

    def applies(self, project_id: str, user_id: str) -> bool:
        return self.project_id in ("", project_id) and self.user_id in ("", user_id)

    def roll(self, minute: int) -> None:
        if minute != self.minute:
            self.minute, self.requests, self.tokens, self.local = minute, 0, 0, 0

    def refusal(self) -> str:
        """Why a request is refused, or "" when it is admitted."""
        if self.requests_per_minute and self.requests + self.local >= self.requests_per_minute:
            return f"{self.requests_per_minute} requests per minute"
        if self.tokens_per_minute and self.tokens >= self.tokens_per_minute:
            return f"{self.tokens_per_minute} tokens per minute"
        return ""


def _minute_of(usage: kpb.RateLimitUsage) -> int:
    return usage.minute_start_time.seconds // 60


class RateLimiter:
    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock  # the time source (tests: a fake one)
        self._by_org: dict[str, dict[str, _Limit]] = {}
        self.refused = 0

    def learning(self, fetch: Fetch) -> Fetch:
        """`fetch` (the lease cache's keyservice call) that learns each lease's limits as it arrives, so the request
        path never looks at a lease's limits."""
        async def fetch_and_learn(key: LeaseKey, exclude: tuple[str, ...]) -> kpb.IssueKeyLeaseResponse:
            lease = await fetch(key, exclude)
            if lease.rate_limits:
                self._learn_lease(key.org_id, lease)
            return lease
        return fetch_and_learn

    def admit(self, org_id: str, project_id: str, user_id: str) -> None:
        """Count the request against its scope's limits, or raise RateLimited (see the module docstring)."""
        limits = self._by_org.get(org_id)
        if limits is None:
            return
        now = self.clock()
        minute = int(now // 60)
        applying = [lim for lim in limits.values() if lim.applies(project_id, user_id)]
        for lim in applying:
            lim.roll(minute)
            why = lim.refusal()
            if why:
                self.refused += 1
                raise errors.RateLimited(
                    f"rate limit {lim.limit_id} of org {org_id} reached: {why}",
                    retry_after=str(max(1, 60 - int(now % 60))))
        for lim in applying:
            lim.local += 1

    def answered(self, batch: kpb.ReportUsageRequest, answer: kpb.ReportUsageResponse) -> None:
        """A ReportUsage answer: keyservice's counts now hold the batch, so its requests are no longer local."""
        minute = int(self.clock() // 60)
        fresh: dict[str, dict[str, _Limit]] = {org: {} for org in answer.org_ids}
        for usage in answer.rate_limits:
            org = usage.limit.scope.org_id
            known = self._by_org.get(org, {}).get(usage.limit.rate_limit_id)
            lim = self._limit(usage, known)
            lim.roll(minute)
            if _minute_of(usage) == minute:
                lim.requests, lim.tokens = usage.requests, usage.tokens
            lim.local = max(0, lim.local - _requests_in(batch.records, org, lim, minute))
            fresh.setdefault(org, {})[lim.limit_id] = lim
        for org, limits in fresh.items():
            if limits:
                self._by_org[org] = limits
            else:
                self._by_org.pop(org, None)

    def _learn_lease(self, org_id: str, lease: kpb.IssueKeyLeaseResponse) -> None:
        limits = self._by_org.setdefault(org_id, {})
        minute = int(self.clock() // 60)
        for usage in lease.rate_limits:
            lim = self._limit(usage, limits.get(usage.limit.rate_limit_id))
            lim.roll(minute)
            if _minute_of(usage) == minute:  # a lease's counts may be older than ours: never lower them
                lim.requests, lim.tokens = max(lim.requests, usage.requests), max(lim.tokens, usage.tokens)
            limits[lim.limit_id] = lim

    @staticmethod
    def _limit(usage: kpb.RateLimitUsage, known: _Limit | None) -> _Limit:
        spec = usage.limit
        if known is None:
            return _Limit(spec.rate_limit_id, spec.scope.project_id, spec.scope.user_id, spec.requests_per_minute,
                          spec.tokens_per_minute)
        known.requests_per_minute, known.tokens_per_minute = spec.requests_per_minute, spec.tokens_per_minute
        return known


def _requests_in(records: Iterable[kpb.UsageRecord], org_id: str, lim: _Limit, minute: int) -> int:
    """The batch's requests that count against `lim` in `minute` (by the record's time, as keyservice counts)."""
    return sum(1 for r in records if r.scope.org_id == org_id and lim.applies(r.scope.project_id, r.scope.user_id)
               and r.time.seconds // 60 == minute)
