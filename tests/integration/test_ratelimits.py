"""Rate limits in keyservice across two replicas on one database (SQLite file and the real PostgreSQL): each
ReportUsage answer holds every replica's counts of the current minute for the batch's orgs, a retried batch is not
counted twice, a lease carries its scope's limits with the counts, ListRateLimits agrees, a deleted limit leaves
the answers, and the RPCs are the admin's. keyservice's clock is a fake (the minute cannot roll mid-test)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import grpc
import pytest

from byok.keys.v1 import key_service_pb2 as pb
from keyservice.usage import ratelimits
from tests.integration.test_keyservice_features import bind, create_request, lease_request, running
from tests.integration.test_usage import batch, unique, usage
from tests.support.bao import BaoDevServer
from tests.support.stack import Identities, keyservice_settings

MINUTE = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
NOW = MINUTE + dt.timedelta(seconds=20)


@pytest.fixture
def fixed_minute(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(ratelimits, "clock_now", lambda: NOW)
    yield


def counts(answer: pb.ReportUsageResponse | pb.IssueKeyLeaseResponse | pb.ListRateLimitsResponse
           ) -> dict[str, tuple[int, int]]:
    found = answer.limits if isinstance(answer, pb.ListRateLimitsResponse) else answer.rate_limits
    return {"/".join(x for x in (u.limit.scope.org_id, u.limit.scope.project_id) if x): (u.requests, u.tokens)
            for u in found}


def web(record: pb.UsageRecord) -> pb.UsageRecord:
    record.scope.project_id = "web"
    return record


@pytest.mark.usefixtures("fixed_minute")
async def test_two_replicas_answer_with_each_others_counts(bao: BaoDevServer, ids: Identities,
                                                           database_url: str) -> None:
    org = unique("rl")
    settings = keyservice_settings(bao, ids, database_url)
    async with running(settings, ids) as a, running(settings, ids, migrate=False) as b:
        org_limit = (await a.admin.SetRateLimit(pb.SetRateLimitRequest(limit=pb.RateLimit(
            scope=pb.Scope(org_id=org), requests_per_minute=10, tokens_per_minute=5000)))).limit
        await a.admin.SetRateLimit(pb.SetRateLimitRequest(limit=pb.RateLimit(
            scope=pb.Scope(org_id=org, project_id="web"), requests_per_minute=3)))
        first = await a.proxy.ReportUsage(batch(usage(org, at=NOW), usage(org, at=NOW),
                                                web(usage(org, at=NOW))))
        assert list(first.org_ids) == [org]
        assert counts(first) == {org: (3, 3300), f"{org}/web": (1, 1100)}
        sent = batch(usage(org, at=NOW, tokens=(10, 5)), usage(org, at=NOW - dt.timedelta(minutes=2)))
        second = await b.proxy.ReportUsage(sent)  # the other replica: it sees the first one's counts
        assert counts(second) == {org: (4, 3315), f"{org}/web": (1, 1100)}  # a late record counts in its minute
        again = await a.proxy.ReportUsage(sent)  # a retry on the first replica: not counted twice
        assert again.duplicate and counts(again) == counts(second)
        listed = await b.admin.ListRateLimits(pb.ListRateLimitsRequest(org_id=org))
        assert counts(listed) == counts(second)
        await b.admin.CreateCredential(create_request(org, "main"))
        await bind(b.admin, org)
        leased = await b.proxy.IssueKeyLease(lease_request(org))
        assert counts(leased) == {org: (4, 3315)}  # the org's limit only: the lease is not for project web
        assert leased.rate_limits[0].limit.requests_per_minute == 10
        await a.admin.DeleteRateLimit(pb.DeleteRateLimitRequest(rate_limit_id=org_limit.rate_limit_id))
        after = await b.proxy.ReportUsage(batch(usage(org, at=NOW)))
        assert counts(after) == {f"{org}/web": (1, 1100)} and list(after.org_ids) == [org]


async def test_rate_limit_rpcs_are_the_admins_and_check_their_input(bao: BaoDevServer, ids: Identities,
                                                                    tmp_path: object) -> None:
    async with running(keyservice_settings(bao, ids, f"sqlite:///{tmp_path}/ks.db"), ids) as ks:
        with pytest.raises(grpc.aio.AioRpcError) as proxy_sets:
            await ks.proxy.SetRateLimit(pb.SetRateLimitRequest(limit=pb.RateLimit(
                scope=pb.Scope(org_id="acme"), requests_per_minute=1)))
        assert proxy_sets.value.code() == grpc.StatusCode.PERMISSION_DENIED
        for bad in (pb.RateLimit(scope=pb.Scope(org_id="acme")),
                    pb.RateLimit(scope=pb.Scope(org_id="acme"), requests_per_minute=-1),
                    pb.RateLimit(requests_per_minute=1)):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await ks.admin.SetRateLimit(pb.SetRateLimitRequest(limit=bad))
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await ks.admin.DeleteRateLimit(pb.DeleteRateLimitRequest(rate_limit_id="rl_" + "0" * 24))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
