"""Counting a proxy's batch of usage records: price it, add it to the rollups once, then let budgets react.

Each record is checked on its own: one the proxy should never have sent (no org, an id that is not one) is
skipped and counted, never failing the batch, because a refused batch would be retried for ever. Times come from
the proxy's clock; one more than `MAX_CLOCK_SKEW` ahead of keyservice's is taken as now (it must not land in a
future hour no query covers yet), a late one is counted in its own hour — unless it is older than the batch ids'
retention (keyservice/usage/retention.py): then it is skipped, because its batch may have been counted and its id
pruned since, and counting it again is the one thing a retry must never do.

The batch id makes a retry harmless: `Store.record_usage` claims it in the transaction that adds the sums, and a
batch found already claimed changes nothing and is acknowledged as a duplicate. Budgets are evaluated after the
commit, for the orgs in the batch (keyservice/usage/budgets.py). The batch's per-minute counts for rate limits go
into the same transaction, and the answer carries the orgs' limits with the current minute's counts
(keyservice/usage/ratelimits.py).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import structlog

from keyservice import audit
from keyservice.errors import InvalidArgument, KeyServiceError
from keyservice.providers import PROVIDERS
from keyservice.store import Store
from keyservice.usage import ratelimits
from keyservice.usage.budgets import BudgetKeeper
from keyservice.usage.pricing import PriceCatalog
from keyservice.usage.ratelimits import RateLimits, RateLimitState
from keyservice.usage.retention import UsageRetention
from keyservice.usage.rollup import UsageEvent, roll_up

_log = structlog.get_logger("byok.usage")
MAX_BATCH_RECORDS = 5000
MAX_CLOCK_SKEW = dt.timedelta(minutes=5)
_BATCH_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True, slots=True)
class IngestResult:
    accepted: int
    skipped: int
    duplicate: bool
    org_ids: tuple[str, ...] = ()
    rate_limits: tuple[RateLimitState, ...] = ()  # the batch's orgs' limits, with the current minute's counts


def batch_id(value: str) -> str:
    if not _BATCH_ID.fullmatch(value):
        raise InvalidArgument("batch_id", "must be a lower-case UUID")
    return value


def family_of(provider: str) -> str:
    spec = PROVIDERS.get(provider)
    return spec.family if spec is not None else "openai"


class UsageIngest:
    def __init__(self, store: Store, prices: PriceCatalog, budgets: BudgetKeeper, rates: RateLimits, *,
                 clock: Callable[[], dt.datetime] = audit.now,
                 counted: Callable[[str, int], None] | None = None,
                 retention: UsageRetention | None = None) -> None:
        self.store = store
        self._retention = retention or UsageRetention()
        self.prices = prices
        self.budgets = budgets
        self.rates = rates
        self._clock = clock
        self._counted = counted or (lambda _outcome, _n: None)  # the metric: outcome (accepted…), how many

    def report(self, actor: str, batch: str, events: Sequence[UsageEvent | None]) -> IngestResult:
        """Count a batch (None entries are records that failed their checks). Synchronous: run in the pool."""
        batch_id(batch)
        if len(events) > MAX_BATCH_RECORDS:
            raise InvalidArgument("records", f"at most {MAX_BATCH_RECORDS} records per batch")
        now = self._clock()
        oldest = self._retention.oldest_record(now)
        kept = [_clamped(e, now) for e in events if e is not None and e.time >= oldest]
        skipped = len(events) - len(kept)
        book = self.prices.book(self.store.list_prices())
        sums, last_used = roll_up(kept, book, family_of)
        orgs = tuple(sorted({e.org_id for e in kept}))
        limits = self.rates.of_orgs(orgs)
        if self.store.record_usage(batch, actor, len(kept), sums, last_used, ratelimits.counts(kept, limits)):
            accepted, skipped_, duplicate = len(kept), skipped, False
            self._counted("accepted", len(kept))
            self._counted("skipped", skipped)
        else:
            accepted, skipped_, duplicate = 0, 0, True
            self._counted("duplicate", len(events))
        result = IngestResult(accepted=accepted, skipped=skipped_, duplicate=duplicate, org_ids=orgs,
                              rate_limits=tuple(self.rates.states(limits)))
        try:
            # A duplicate too: the first delivery may have committed and then failed here, and its retry is the
            # only batch that brings the orgs' budgets up again.
            self.budgets.evaluate(actor, set(orgs))
        except KeyServiceError as exc:
            # Counted already, so no error for the proxy (it would retry a batch that changes nothing); the next
            # batch of the org evaluates again, and leases are checked against the spend meanwhile.
            _log.warning("usage.budgets_not_evaluated", error=exc.message)
        return result


def _clamped(event: UsageEvent, now: dt.datetime) -> UsageEvent:
    return event if event.time - now <= MAX_CLOCK_SKEW else replace(event, time=now)
