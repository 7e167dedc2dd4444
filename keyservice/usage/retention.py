"""How long usage data is kept, and the periodic pass that prunes what is older (docs/usage.md, "Retention").

Four kinds of rows grow with traffic: hourly rollups, daily rollups, the ids of counted batches and the per-minute
counts of rate-limited scopes. Each has its own horizon:
- hourly rollups: `hourly_days` (90 by default; 0 keeps them), the detail behind `--group hour` queries;
- daily rollups: `daily_days` (0 by default: kept, they are the bill); when set, at least 32 days, because a
  monthly budget sums the daily rows of its month;
- batch ids: `batch_days` (35). A batch id only has to outlive any retry of its batch; ingest refuses records older
  than this horizon (keyservice/usage/ingest.py), so a proxy resending a batch whose id was pruned cannot count it
  twice — every record of a pruned batch is older than the batch's first arrival, hence past the horizon;
- per-minute rate counts: `RATE_COUNT_MINUTES` (10); only the current minute is ever read.

Every replica runs the pass (a delete of what is past the horizon is the same on each), `interval_seconds` apart.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog

from keyservice import audit
from keyservice.errors import KeyServiceError
from keyservice.store import Store

_log = structlog.get_logger("byok.usage")
RATE_COUNT_MINUTES = 10
MIN_DAILY_DAYS = 32  # a monthly budget reads its month's daily rows


@dataclass(frozen=True)
class UsageRetention:
    hourly_days: int = 90  # 0: keep
    daily_days: int = 0  # 0: keep
    batch_days: int = 35
    interval_seconds: float = 3600.0

    def cutoffs(self, now: dt.datetime) -> dict[str, dt.datetime | None]:
        """What is older than each horizon goes (None: that kind is kept)."""
        days = dt.timedelta(days=1)
        return {
            "hour": now - self.hourly_days * days if self.hourly_days else None,
            "day": now - self.daily_days * days if self.daily_days else None,
            "batches": self.oldest_record(now),
            "rate_counts": now - dt.timedelta(minutes=RATE_COUNT_MINUTES),
        }

    def oldest_record(self, now: dt.datetime) -> dt.datetime:
        """Records made before this are refused at ingest: their batch's id may have been pruned."""
        return now - dt.timedelta(days=self.batch_days)


def prune_once(store: Store, retention: UsageRetention, *, now: dt.datetime | None = None) -> dict[str, int]:
    """Delete what is past each horizon; the rows deleted per kind."""
    cut = retention.cutoffs(now or audit.now())
    return store.prune_usage(hourly_before=cut["hour"], daily_before=cut["day"], batches_before=cut["batches"],
                             rate_counts_before=cut["rate_counts"])


async def run_periodically(run_blocking: Callable[..., Awaitable[Any]], store: Store,
                           retention: UsageRetention) -> None:
    """Prune now, then every `interval_seconds`, until cancelled; a failed pass is logged and tried again later."""
    while True:
        try:
            deleted = await run_blocking(prune_once, store, retention)
            _log.info("usage.pruned", **deleted)
        except KeyServiceError as exc:
            _log.warning("usage.prune_failed", error=exc.message)
        except Exception as exc:  # noqa: BLE001 - a bug in one pass must not end pruning for good
            _log.error("usage.prune_crashed", exc_type=type(exc).__name__)
        await asyncio.sleep(retention.interval_seconds)
