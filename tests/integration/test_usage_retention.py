"""Usage retention on SQLite and the real PostgreSQL: the pruning pass deletes exactly what is past each horizon
(hourly and daily rollups, batch ids, per-minute rate counts) and nothing else, and a batch resent after its id was
pruned is not counted again, because ingest refuses records older than the batch ids' horizon."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from byokcommon.settings import SettingsError
from keyservice.settings import _usage_retention
from keyservice.store import RollupKey, Store, UsageCounts, UsageFilter
from keyservice.usage.budgets import BudgetKeeper
from keyservice.usage.ingest import UsageIngest
from keyservice.usage.pricing import PriceCatalog, Tokens
from keyservice.usage.ratelimits import RateLimits
from keyservice.usage.retention import UsageRetention, prune_once
from keyservice.usage.rollup import UsageEvent
from tests.integration.test_usage import store  # noqa: F401 - the migrated store on SQLite and PostgreSQL

DAY = dt.timedelta(days=1)
# The pass is run "later" than the rows were written: batch ids get the real time they arrived at.
LATER = dt.datetime.now(dt.UTC).replace(minute=30, second=0, microsecond=0) + 40 * DAY


def rollup(granularity: str, at: dt.datetime) -> RollupKey:
    start = at.replace(minute=0, second=0, microsecond=0)
    if granularity == "day":
        start = start.replace(hour=0)
    return RollupKey(granularity, start, org_id="acme", project_id="", user_id="", credential_id="",
                     provider="openai", model="gpt-4o", key_source="platform")


def starts(db: Store, granularity: str) -> list[dt.datetime]:
    return [g.bucket_start for g in db.usage_groups(UsageFilter(), granularity=granularity, start=None, end=None,
                                                      by_bucket=True, dimensions=(), limit=100)
            if g.bucket_start is not None]


def test_the_pass_deletes_exactly_what_is_past_each_horizon(store: Store) -> None:  # noqa: F811 - the fixture imported above
    old_hour, kept_hour = LATER - 91 * DAY, LATER - 89 * DAY
    old_day, kept_day = LATER - 400 * DAY, LATER - 300 * DAY
    old_minute, kept_minute = (LATER - dt.timedelta(minutes=m) for m in (11, 5))
    sums = {rollup("hour", old_hour): UsageCounts(requests=1), rollup("hour", kept_hour): UsageCounts(requests=1),
            rollup("day", old_day): UsageCounts(requests=1), rollup("day", kept_day): UsageCounts(requests=1)}
    batch = str(uuid.uuid4())
    assert store.record_usage(batch, "proxy", 4, sums, {}, {("rl_a", old_minute): (1, 10),
                                                            ("rl_a", kept_minute): (2, 20)})

    # The defaults: hourly rows 90 days, daily rows kept, batch ids 35 days (this one arrived 40 days "ago").
    deleted = prune_once(store, UsageRetention(), now=LATER)
    assert deleted == {"hourly_rollups": 1, "batch_ids": 1, "rate_counts": 1}
    assert starts(store, "hour") == [rollup("hour", kept_hour).bucket_start]
    assert len(starts(store, "day")) == 2
    assert store.minute_counts(["rl_a"], old_minute) == {}
    assert store.minute_counts(["rl_a"], kept_minute) == {"rl_a": (2, 20)}
    assert store.record_usage(batch, "proxy", 4, sums, {}) is True  # its id is gone: the store alone would recount

    # Daily rows past a set horizon go too; a second pass finds nothing more of what it already deleted.
    again = prune_once(store, UsageRetention(daily_days=365), now=LATER)
    assert again["daily_rollups"] == 1 and again["hourly_rollups"] == 1  # the re-recorded old hour
    assert starts(store, "day") == [rollup("day", kept_day).bucket_start]


def test_a_batch_resent_after_its_id_was_pruned_is_not_counted_again(store: Store) -> None:  # noqa: F811 - the fixture imported above
    made = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    clock = [dt.datetime.now(dt.UTC)]
    ingest = UsageIngest(store, PriceCatalog(), BudgetKeeper(store), RateLimits(store), clock=lambda: clock[0])
    events: list[UsageEvent | None] = [
        UsageEvent(time=made, org_id="acme", project_id="", user_id="", provider="openai", model="gpt-4o",
                   credential_id="", key_source="platform", tokens=Tokens(input=10, output=5), failed=False,
                   duration_ms=3) for _ in range(3)]
    batch = str(uuid.uuid4())
    first = ingest.report("proxy", batch, events)
    assert (first.accepted, first.duplicate) == (3, False)

    clock[0] = clock[0] + 36 * DAY  # the proxy held the batch past the ids' horizon, and the pass ran
    assert prune_once(store, UsageRetention(), now=clock[0])["batch_ids"] == 1
    resent = ingest.report("proxy", batch, events)
    assert (resent.accepted, resent.skipped, resent.duplicate) == (0, 3, False)
    (total,) = store.usage_groups(UsageFilter(org_id="acme"), granularity="day", start=None, end=None,
                                  by_bucket=False, dimensions=(), limit=10)
    assert (total.counts.requests, total.counts.input_tokens) == (3, 30)


def test_retention_settings_are_checked() -> None:
    assert _usage_retention({}) == UsageRetention(hourly_days=90, daily_days=0, batch_days=35)
    assert _usage_retention({"BYOK_USAGE_DAILY_RETENTION_DAYS": "400", "BYOK_USAGE_HOURLY_RETENTION_DAYS": "0"}) \
        == UsageRetention(hourly_days=0, daily_days=400, batch_days=35)
    with pytest.raises(SettingsError, match="BYOK_USAGE_DAILY_RETENTION_DAYS: 0 \\(keep\\) or at least 32"):
        _usage_retention({"BYOK_USAGE_DAILY_RETENTION_DAYS": "10"})
    with pytest.raises(SettingsError, match="BYOK_USAGE_BATCH_RETENTION_DAYS"):
        _usage_retention({"BYOK_USAGE_BATCH_RETENTION_DAYS": "0"})
