"""Usage rollups: add a reported batch exactly once, read sums back by filter, bucket and dimension.

A batch is claimed by inserting its id into `usage_batches` in the same transaction that adds its sums to
`usage_rollups` and advances the credentials' `last_used_at`: a retried batch (the proxy never heard the answer)
finds its id and changes nothing. Rows are upserted in key order, credentials updated in id order, so two
replicas ingesting overlapping batches on PostgreSQL take row locks in one order and never deadlock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timedelta

import sqlalchemy as sa

from keyservice.store._base import StoreBase
from keyservice.store.ratelimits import RateCounts, add_rate_counts
from keyservice.store.rows import (
    USAGE_COUNTS,
    USAGE_DIMENSIONS,
    RollupKey,
    UsageCounts,
    UsageFilter,
    UsageGroup,
    utcnow,
)
from keyservice.store.schema import credentials, rate_counts, usage_batches, usage_rollups


@dataclass(frozen=True, slots=True)
class RepricedDay:
    """What repricing one day changed."""

    hourly_rows: int
    daily_rows: int
    spend_before: int
    spend_after: int
    org_ids: frozenset[str]


# (key, counts) -> (spend_micros, unpriced_requests) now, or None to leave the row as it is.
RowPricer = Callable[[RollupKey, UsageCounts], "tuple[int, int] | None"]


class UsageStore(StoreBase):

    def record_usage(self, batch_id: str, reporter: str, records: int,
                     sums: Mapping[RollupKey, UsageCounts], last_used: Mapping[str, datetime],
                     rate: RateCounts | None = None) -> bool:
        """Add a batch's sums to the rollups, its per-minute counts to the rate limits' (`rate`), and advance
        `last_used_at`, once: False (and nothing changed) when the batch id was counted before."""
        with self._tx(write=True) as conn:
            claimed = self._upsert(usage_batches).values(
                batch_id=batch_id, reporter=reporter, records=records, received_at=utcnow())
            claim = claimed.on_conflict_do_nothing(index_elements=["batch_id"]).returning(usage_batches.c.batch_id)
            if conn.execute(claim).first() is None:  # counted before (rowcount is not reliable here on psycopg)
                return False
            r = usage_rollups.c
            for key in sorted(sums, key=_order):
                counts = asdict(sums[key])
                stmt = self._upsert(usage_rollups).values(**asdict(key), **counts)
                conn.execute(stmt.on_conflict_do_update(
                    index_elements=list(asdict(key)),
                    set_={name: r[name] + stmt.excluded[name] for name in USAGE_COUNTS}))
            add_rate_counts(self, conn, rate or {})
            c = credentials.c
            for credential_id in sorted(last_used):
                at = last_used[credential_id]
                conn.execute(credentials.update()
                             .where(c.credential_id == credential_id,
                                    sa.or_(c.last_used_at.is_(None), c.last_used_at < at))
                             .values(last_used_at=at))
        return True

    def usage_groups(self, where: UsageFilter, *, granularity: str, start: datetime | None, end: datetime | None,
                     by_bucket: bool, dimensions: Sequence[str], limit: int) -> list[UsageGroup]:
        """Sums of the `granularity` rows in [start, end) matching `where`, one group per bucket (if `by_bucket`)
        and per value of each of `dimensions`, in bucket then dimension order; at most `limit` groups."""
        r = usage_rollups.c
        conditions = [r.granularity == granularity, *_matches(where)]
        if start is not None:
            conditions.append(r.bucket_start >= start)
        if end is not None:
            conditions.append(r.bucket_start < end)
        keys = ([r.bucket_start] if by_bucket else []) + [r[name] for name in dimensions]
        sums = [sa.func.coalesce(sa.func.sum(r[name]), 0).label(name) for name in USAGE_COUNTS]
        q = sa.select(*keys, *sums).where(*conditions)
        if keys:
            q = q.group_by(*keys).order_by(*keys).limit(limit)
        with self._tx() as conn:
            rows = conn.execute(q).mappings().all()
        groups = []
        for m in rows:
            counts = UsageCounts(**{name: int(m[name]) for name in USAGE_COUNTS})
            if not keys and counts.requests == 0:
                continue  # an aggregate over no rows: no group
            groups.append(UsageGroup(bucket_start=m["bucket_start"] if by_bucket else None,
                                     dimensions={name: m[name] for name in dimensions}, counts=counts))
        return groups

    def reprice_day(self, day: datetime, start: datetime, provider: str, model_matches: Callable[[str], bool],
                    reprice: RowPricer) -> RepricedDay:
        """In one transaction: the hourly rows of `provider` whose model `model_matches`, in the day starting at
        `day` and from `start` on, take the spend `reprice` gives; then each daily row of their dimensions becomes
        the sum of its day's hourly rows. Rows are locked in ingest's order (record_usage upserts daily rows before
        hourly ones, each in key order), so a ReportUsage of the same rows waits for this one, never deadlocks."""
        r = usage_rollups.c
        day_end = day + timedelta(days=1)
        with self._tx(write=True) as conn:
            found = conn.execute(sa.select(*[r[n] for n in ("bucket_start", *USAGE_DIMENSIONS)]).where(
                r.granularity == "hour", r.provider == provider, r.bucket_start >= day,
                r.bucket_start < day_end)).mappings().all()
            hours = sorted((RollupKey("hour", m["bucket_start"], **{n: m[n] for n in USAGE_DIMENSIONS})
                            for m in found if model_matches(m["model"])), key=_order)
            dims = sorted({tuple(getattr(k, n) for n in USAGE_DIMENSIONS) for k in hours})
            days = [RollupKey("day", day, **dict(zip(USAGE_DIMENSIONS, d, strict=True))) for d in dims]
            for key in days:
                conn.execute(sa.select(r.granularity).where(*_key(key)).with_for_update())
            hourly = before = after = 0
            for key in hours:
                if key.bucket_start < start:
                    continue
                m = conn.execute(sa.select(*[r[n] for n in USAGE_COUNTS]).where(*_key(key)).with_for_update()
                                 ).mappings().first()
                if m is None:
                    continue
                counts = UsageCounts(**{n: int(m[n]) for n in USAGE_COUNTS})
                now = reprice(key, counts)
                spend, unpriced = now if now is not None else (counts.spend_micros, counts.unpriced_requests)
                before, after = before + counts.spend_micros, after + spend
                if (spend, unpriced) != (counts.spend_micros, counts.unpriced_requests):
                    conn.execute(usage_rollups.update().where(*_key(key)).values(
                        spend_micros=spend, unpriced_requests=unpriced))
                    hourly += 1
            daily = 0
            for key in days:
                of_day = [r.granularity == "hour", r.bucket_start >= day, r.bucket_start < day_end,
                          *[r[n] == getattr(key, n) for n in USAGE_DIMENSIONS]]
                spend_sum, unpriced_sum = conn.execute(sa.select(
                    sa.func.coalesce(sa.func.sum(r.spend_micros), 0),
                    sa.func.coalesce(sa.func.sum(r.unpriced_requests), 0)).where(*of_day)).one()
                daily += conn.execute(usage_rollups.update().where(
                    *_key(key), sa.or_(r.spend_micros != spend_sum, r.unpriced_requests != unpriced_sum)).values(
                    spend_micros=int(spend_sum), unpriced_requests=int(unpriced_sum))).rowcount
        return RepricedDay(hourly, daily, before, after, frozenset(k.org_id for k in hours))

    def spend_micros(self, where: UsageFilter, since: datetime) -> int:
        """Spend of the daily rows matching `where` from the day `since` starts (a budget's period) on."""
        r = usage_rollups.c
        q = sa.select(sa.func.coalesce(sa.func.sum(r.spend_micros), 0)).where(
            r.granularity == "day", r.bucket_start >= since, *_matches(where))
        with self._tx() as conn:
            return int(conn.execute(q).scalar() or 0)

    def prune_usage(self, *, hourly_before: datetime | None, daily_before: datetime | None,
                    batches_before: datetime | None, rate_counts_before: datetime | None) -> dict[str, int]:
        """Delete hourly and daily rollups whose bucket starts before the cut, batch ids received before it and
        per-minute rate counts of earlier minutes (None keeps that kind); the rows deleted per kind. One
        transaction per kind, so a long first pass over a large table does not hold the others."""
        r, b, m = usage_rollups.c, usage_batches.c, rate_counts.c
        deletes = {
            "hourly_rollups": (usage_rollups, sa.and_(r.granularity == "hour", r.bucket_start < hourly_before)
                               if hourly_before else None),
            "daily_rollups": (usage_rollups, sa.and_(r.granularity == "day", r.bucket_start < daily_before)
                              if daily_before else None),
            "batch_ids": (usage_batches, b.received_at < batches_before if batches_before else None),
            "rate_counts": (rate_counts, m.minute_start < rate_counts_before if rate_counts_before else None),
        }
        deleted: dict[str, int] = {}
        for kind, (table, condition) in deletes.items():
            if condition is None:
                continue
            with self._tx(write=True) as conn:
                deleted[kind] = conn.execute(table.delete().where(condition)).rowcount
        return deleted


def _matches(where: UsageFilter) -> list[sa.ColumnElement[bool]]:
    r = usage_rollups.c
    return [r[f.name] == value for f in fields(where) if (value := getattr(where, f.name))]


def _key(key: RollupKey) -> list[sa.ColumnElement[bool]]:
    r = usage_rollups.c
    return [r.granularity == key.granularity, r.bucket_start == key.bucket_start,
            *[r[n] == getattr(key, n) for n in USAGE_DIMENSIONS]]


def _order(key: RollupKey) -> tuple[str, ...]:
    return (key.granularity, key.bucket_start.isoformat(), *(getattr(key, name) for name in USAGE_DIMENSIONS))

