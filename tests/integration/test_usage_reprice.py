"""Repricing counted usage (RepriceUsage, `byokctl prices reprice`) on SQLite and the real PostgreSQL: a price set
with a past effective time reprices the hours after it, daily rows stay the sums of their hours, an hour another
price starts inside is left alone, a second run changes nothing, bad input changes nothing, the correction trips a
budget it crosses, and a reprice running against concurrent ReportUsage loses none of their spend."""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from byok.keys.v1 import key_service_pb2 as pb
from keyservice.store import RollupKey, Store, UsageCounts, UsageFilter
from tests.integration.test_keyservice_features import bind, create_request, lease_request, next_event, running, watch
from tests.integration.test_usage import SPEND, batch, budget, key, store, unique, usage  # noqa: F401 - store: fixture
from tests.support.bao import BaoDevServer
from tests.support.stack import Identities, keyservice_settings

# Two hours back, ten minutes in: a whole hour that has ended, whichever hour the test runs in.
USED = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)).replace(minute=10, second=0, microsecond=0)
USED_HOUR = USED.replace(minute=0)


def stamp(at: dt.datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(at)
    return out


def price(model: str, effective: dt.datetime, input_micros: int, output_micros: int = 0) -> pb.SetPriceRequest:
    return pb.SetPriceRequest(price=pb.Price(provider="openai", model=model, effective_time=stamp(effective),
                                             input_micros=input_micros, output_micros=output_micros))


def reprice(since: dt.datetime | None, model: str = "", provider: str = "openai") -> pb.RepriceUsageRequest:
    request = pb.RepriceUsageRequest(provider=provider, model=model)
    if since is not None:
        request.start_time.CopyFrom(stamp(since))
    return request


async def spend_by(admin: Any, org: str, grouping: Any) -> tuple[int, int]:
    """(spend, unpriced requests) of the org summed over hourly or daily rows."""
    rows = (await admin.QueryUsage(pb.QueryUsageRequest(org_id=org, grouping=grouping,
                                                        start_time=stamp(USED_HOUR - dt.timedelta(days=1))))).rows
    return sum(r.spend_micros for r in rows), sum(r.unpriced_requests for r in rows)


async def test_a_price_set_in_the_past_reprices_the_hours_after_it(bao: BaoDevServer, ids: Identities,
                                                                   database_url: str) -> None:
    org = unique("reprice")
    async with running(keyservice_settings(bao, ids, database_url), ids) as ks:
        # gpt-4o at the shipped price (SPEND), and a model with no price at all.
        await ks.proxy.ReportUsage(batch(usage(org, at=USED), usage(org, at=USED, model="house-model-1")))
        assert await spend_by(ks.admin, org, pb.USAGE_GROUPING_HOUR) == (SPEND, 1)
        # The corrections, in force since before the usage: $1 per million input tokens, output free.
        await ks.admin.SetPrice(price("gpt-4o", USED_HOUR - dt.timedelta(hours=1), 1_000_000))
        await ks.admin.SetPrice(price("house-model", USED_HOUR - dt.timedelta(hours=1), 2_000_000))
        assert await spend_by(ks.admin, org, pb.USAGE_GROUPING_HOUR) == (SPEND, 1)  # counted spend is fixed...
        reply = await ks.admin.RepriceUsage(reprice(USED_HOUR - dt.timedelta(minutes=30)))  # ...until repriced
        assert reply.start_time.ToDatetime(tzinfo=dt.UTC) == USED_HOUR  # rounded up to the hour
        assert (reply.hourly_rows, reply.daily_rows, reply.straddled_hours) == (2, 2, 0)
        assert (reply.spend_micros_before, reply.spend_micros_after) == (SPEND, 1000 + 2000)
        for grouping in (pb.USAGE_GROUPING_HOUR, pb.USAGE_GROUPING_DAY):  # the days are the sums of their hours
            assert await spend_by(ks.admin, org, grouping) == (3000, 0)
        again = await ks.admin.RepriceUsage(reprice(USED_HOUR))
        assert (again.hourly_rows, again.daily_rows, again.spend_micros_before, again.spend_micros_after) == (
            0, 0, 3000, 3000)
        # A price that starts inside the hour: the hour's requests cannot be told apart, so it is left alone.
        await ks.admin.SetPrice(price("gpt-4o", USED_HOUR + dt.timedelta(minutes=30), 9_000_000))
        straddled = await ks.admin.RepriceUsage(reprice(USED_HOUR, model="gpt-4o"))
        assert (straddled.hourly_rows, straddled.straddled_hours) == (0, 1)
        assert await spend_by(ks.admin, org, pb.USAGE_GROUPING_DAY) == (3000, 0)
        (event, *_) = (await ks.admin.ListAuditEvents(pb.ListAuditEventsRequest(action="usage.reprice"))).events
        details = json.loads(event.details_json)
        assert event.actor.endswith("/admin") and details["provider"] == "openai" and details["model"] == "gpt-4o"


async def test_bad_input_is_refused_and_changes_nothing(bao: BaoDevServer, ids: Identities,
                                                        database_url: str) -> None:
    org = unique("reprice-bad")
    async with running(keyservice_settings(bao, ids, database_url), ids) as ks:
        await ks.proxy.ReportUsage(batch(usage(org, at=USED)))
        await ks.admin.SetPrice(price("gpt-4o", USED_HOUR - dt.timedelta(hours=1), 1_000_000))
        now = dt.datetime.now(dt.UTC)
        cases = [(reprice(None), "start_time: is required"),
                 (reprice(USED, provider="sk-proj-not-a-provider"), "provider: unknown provider"),
                 (reprice(USED, model="gpt 4o"), "model: must be"),
                 (reprice(now + dt.timedelta(hours=2)), "start_time: must be in the past"),
                 (reprice(now - dt.timedelta(days=200)), "start_time: must be at or after")]
        for request, message in cases:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await ks.admin.RepriceUsage(request)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert (refused.value.details() or "").startswith(message), refused.value.details()
            assert "sk-proj" not in (refused.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as proxy:
            await ks.proxy.RepriceUsage(reprice(USED))
        assert proxy.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert await spend_by(ks.admin, org, pb.USAGE_GROUPING_HOUR) == (SPEND, 0)
        assert not (await ks.admin.ListAuditEvents(pb.ListAuditEventsRequest(action="usage.reprice"))).events


async def test_a_correction_that_crosses_a_budget_trips_it(bao: BaoDevServer, ids: Identities,
                                                           database_url: str) -> None:
    org = unique("reprice-budget")
    async with running(keyservice_settings(bao, ids, database_url), ids) as ks:
        await ks.admin.CreateCredential(create_request(org, "main"))
        await bind(ks.admin, org)
        await ks.admin.SetBudget(budget(org, 2 * SPEND, period=pb.BUDGET_PERIOD_DAY))
        today = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
        used = max(today.replace(hour=0), today - dt.timedelta(hours=1))  # today, in a whole hour
        await ks.proxy.ReportUsage(batch(usage(org, at=used + dt.timedelta(minutes=1))))
        await ks.proxy.IssueKeyLease(lease_request(org))  # under the budget
        stream = await watch(ks.proxy)
        await ks.admin.SetPrice(price("gpt-4o", used - dt.timedelta(hours=1), 10_000_000, 10_000_000))
        await ks.admin.RepriceUsage(reprice(used))  # 1100 tokens at $10 per million: 11000 > 7000
        event = await next_event(stream, lambda e: e.reason == pb.REVOCATION_REASON_BUDGET_EXHAUSTED)
        assert event.org_id == org
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await ks.proxy.IssueKeyLease(lease_request(org))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_a_reprice_beside_concurrent_ingest_loses_no_spend(store: Store) -> None:  # noqa: F811 - the fixture
    """Ingest adds 2 micro-dollars per input token; the reprice sets each hour to 1 per token it saw. Whatever the
    interleaving, an hour ends at 2 x its tokens less what the last reprice of it saw, and every day at the sum of
    its hours: a reprice that read a row, then wrote it over an ingest committed in between, would break both."""
    day = USED_HOUR.replace(hour=0)
    hours = [key(at=day + dt.timedelta(hours=h)) for h in (1, 2)]
    day_key = key("day", at=day)
    seen: dict[RollupKey, int] = {}
    errors: list[BaseException] = []
    go = threading.Barrier(4)

    def ingest(n: int) -> None:
        try:
            go.wait()
            for i in range(n):
                hour = hours[i % 2]
                store.record_usage(str(uuid.uuid4()), "proxy", 1, {
                    hour: UsageCounts(requests=1, input_tokens=3, spend_micros=6),
                    day_key: UsageCounts(requests=1, input_tokens=3, spend_micros=6)}, {})
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    def one_per_token(k: RollupKey, counts: UsageCounts) -> tuple[int, int]:
        seen[k] = counts.input_tokens
        return counts.input_tokens, 0

    def repricer(rounds: int) -> None:
        try:
            go.wait()
            for _ in range(rounds):
                store.reprice_day(day, day, "openai", lambda m: m == "gpt-4o", one_per_token)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=ingest, args=(40,)) for _ in range(3)]
    threads.append(threading.Thread(target=repricer, args=(30,)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    rows = {g.bucket_start: g.counts for g in store.usage_groups(
        UsageFilter(org_id="acme"), granularity="hour", start=None, end=None, by_bucket=True, dimensions=(), limit=10)}
    assert sum(c.input_tokens for c in rows.values()) == 3 * 40 * 3
    for hour in hours:
        counts = rows[hour.bucket_start]
        assert counts.spend_micros == 2 * counts.input_tokens - seen.get(hour, 0)
    (daily,) = store.usage_groups(UsageFilter(org_id="acme"), granularity="day", start=None, end=None,
                                  by_bucket=False, dimensions=(), limit=10)
    assert daily.counts.spend_micros == sum(c.spend_micros for c in rows.values())
    assert daily.counts.input_tokens == 3 * 40 * 3
