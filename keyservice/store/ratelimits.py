"""Rate limits, one per scope, and the per-minute counts of the limited scopes (keyservice/usage/ratelimits.py).

The counts are added by `UsageStore.record_usage`, in the transaction that claims a batch (`add_rate_counts`), so
a retried batch is not counted twice and every replica reads every proxy's reports. Rows are upserted in key
order, as the rollups are, so two replicas' transactions take PostgreSQL row locks in one order.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keyservice.errors import NotFound
from keyservice.store._base import StoreBase
from keyservice.store.rows import AuditRow, RateLimitRow, utcnow
from keyservice.store.schema import rate_counts, rate_limits

_SCOPE = ("org_id", "project_id", "user_id")
# (rate_limit_id, minute start) -> (requests, tokens)
RateCounts = Mapping[tuple[str, datetime], tuple[int, int]]


class RateLimitStore(StoreBase):

    def set_rate_limit(self, org_id: str, project_id: str, user_id: str, requests_per_minute: int,
                       tokens_per_minute: int, *, audit: AuditRow | None = None) -> RateLimitRow:
        """Create the rate limit of this scope, or replace its limits (keeping its id and its counts)."""
        now = utcnow()
        scope = dict(zip(_SCOPE, (org_id, project_id, user_id), strict=True))
        limits = {"requests_per_minute": requests_per_minute, "tokens_per_minute": tokens_per_minute,
                  "updated_at": now}
        with self._write() as tx:
            stmt = self._upsert(rate_limits).values(rate_limit_id="rl_" + uuid.uuid4().hex[:24], created_at=now,
                                                    **scope, **limits)
            tx.conn.execute(stmt.on_conflict_do_update(index_elements=list(_SCOPE), set_=limits))
            tx.audit(audit)
            q = rate_limits.select().where(*(rate_limits.c[k] == v for k, v in scope.items()))
            return _row(tx.conn.execute(q).mappings().one())

    def list_rate_limits(self, *, org_ids: Collection[str] = ()) -> list[RateLimitRow]:
        """Rate limits of these orgs (all when empty), by org, project and user."""
        c = rate_limits.c
        q = rate_limits.select().order_by(c.org_id, c.project_id, c.user_id)
        if org_ids:
            q = q.where(c.org_id.in_(sorted(org_ids)))
        with self._tx() as conn:
            return [_row(m) for m in conn.execute(q).mappings()]

    def delete_rate_limit(self, rate_limit_id: str, *, audit: AuditRow | None = None) -> RateLimitRow:
        """Remove a rate limit and its counts (NotFound if absent)."""
        c = rate_limits.c
        with self._write() as tx:
            m = tx.conn.execute(rate_limits.select().where(c.rate_limit_id == rate_limit_id)).mappings().first()
            if m is None:
                raise NotFound(f"rate limit {rate_limit_id} not found")
            tx.conn.execute(rate_limits.delete().where(c.rate_limit_id == rate_limit_id))
            tx.conn.execute(rate_counts.delete().where(rate_counts.c.rate_limit_id == rate_limit_id))
            tx.audit(audit)
            return _row(m)

    def minute_counts(self, rate_limit_ids: Collection[str], minute: datetime) -> dict[str, tuple[int, int]]:
        """(requests, tokens) of each limit in the minute starting at `minute` (absent: none reported)."""
        if not rate_limit_ids:
            return {}
        c = rate_counts.c
        q = sa.select(c.rate_limit_id, c.requests, c.tokens).where(
            c.minute_start == minute, c.rate_limit_id.in_(sorted(rate_limit_ids)))
        with self._tx() as conn:
            return {m.rate_limit_id: (int(m.requests), int(m.tokens)) for m in conn.execute(q)}


def add_rate_counts(store: StoreBase, conn: Connection, counts: RateCounts) -> None:
    """Add a batch's per-minute counts, inside the caller's transaction (UsageStore.record_usage)."""
    c = rate_counts.c
    for (limit_id, minute) in sorted(counts, key=lambda k: (k[0], k[1].isoformat())):
        requests, tokens = counts[(limit_id, minute)]
        stmt = store._upsert(rate_counts).values(  # noqa: SLF001 - the store's own dialect switch
            rate_limit_id=limit_id, minute_start=minute, requests=requests, tokens=tokens)
        conn.execute(stmt.on_conflict_do_update(
            index_elements=["rate_limit_id", "minute_start"],
            set_={"requests": c.requests + stmt.excluded.requests, "tokens": c.tokens + stmt.excluded.tokens}))


def _row(m: Any) -> RateLimitRow:
    return RateLimitRow(
        rate_limit_id=m["rate_limit_id"], org_id=m["org_id"], project_id=m["project_id"], user_id=m["user_id"],
        requests_per_minute=int(m["requests_per_minute"]), tokens_per_minute=int(m["tokens_per_minute"]),
        created_at=m["created_at"], updated_at=m["updated_at"])
