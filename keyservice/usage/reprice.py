"""Pricing counted usage again after the price table changed behind it — a price set with an effective time in the
past, a corrected entry in ops' file — since spend is otherwise fixed when a batch is counted (docs/usage.md).

Hour by hour from a whole hour on, each hourly row is priced from its tokens with the entry in force in that hour;
an hour in which another entry takes effect is left as it was (its requests' times are gone), and counted. Each day
is one transaction in which the day's daily rows become the sums of its hourly rows. Then the orgs touched have
their budgets evaluated on the new spend, so a budget the correction crosses trips as it would have at ingest."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from keyservice import audit
from keyservice.errors import InvalidArgument
from keyservice.store import RollupKey, Store, UsageCounts
from keyservice.usage.budgets import BudgetKeeper
from keyservice.usage.ingest import family_of
from keyservice.usage.pricing import PriceCatalog, Tokens, cost_picos, picos_to_micros
from keyservice.usage.retention import UsageRetention
from keyservice.usage.rollup import bucket_end, bucket_start

_HOUR = dt.timedelta(hours=1)
_DAY = dt.timedelta(days=1)
_LAST_MICROSECOND = dt.timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class RepriceResult:
    start: dt.datetime
    hourly_rows: int
    daily_rows: int
    straddled_hours: int
    spend_before: int
    spend_after: int


class UsageRepricing:
    def __init__(self, store: Store, prices: PriceCatalog, budgets: BudgetKeeper, *,
                 retention: UsageRetention | None = None, clock: Callable[[], dt.datetime] = audit.now) -> None:
        self._store = store
        self._prices = prices
        self._budgets = budgets
        self._retention = retention or UsageRetention()
        self._clock = clock

    def earliest_start(self, now: dt.datetime) -> dt.datetime | None:
        """The first whole day whose hourly rows are all kept (None: every hour is kept)."""
        cut = self._retention.cutoffs(now)["hour"]
        return bucket_end("day", cut) if cut is not None else None

    def run(self, actor: str, provider: str, model: str, start: dt.datetime) -> RepriceResult:
        """Reprice `provider`'s usage (only `model` and the models it is a prefix of, if given) from `start`,
        rounded up to a whole hour. Blocking: run in the pool."""
        now = self._clock()
        start = bucket_end("hour", start)
        if start > now:
            raise InvalidArgument("start_time", "must be in the past")
        earliest = self.earliest_start(now)
        if earliest is not None and start < earliest:
            raise InvalidArgument("start_time", f"must be at or after {earliest.isoformat()}: hourly usage before it "
                                                "is no longer kept (BYOK_USAGE_HOURLY_RETENTION_DAYS)")
        book = self._prices.book(self._store.list_prices())
        family = family_of(provider)
        straddled = [0]

        def price_row(key: RollupKey, counts: UsageCounts) -> tuple[int, int] | None:
            tokens = Tokens(counts.input_tokens, counts.output_tokens, counts.cached_input_tokens,
                            counts.cache_write_tokens, counts.reasoning_tokens)
            if not tokens.any():
                return None
            price = book.price(provider, key.model, key.bucket_start)
            if price != book.price(provider, key.model, key.bucket_start + _HOUR - _LAST_MICROSECOND):
                straddled[0] += 1
                return None
            if price is None:
                return None  # still no price: it stays unpriced
            return picos_to_micros(cost_picos(family, tokens, price)), 0

        def matches(answered: str) -> bool:
            return not model or answered == model or answered.startswith(model + "-")

        hourly = daily = before = after = 0
        orgs: set[str] = set()
        day = bucket_start("day", start)
        while day < now:
            changed = self._store.reprice_day(day, start, provider, matches, price_row)
            hourly, daily = hourly + changed.hourly_rows, daily + changed.daily_rows
            before, after = before + changed.spend_before, after + changed.spend_after
            orgs |= changed.org_ids
            day += _DAY
        result = RepriceResult(start, hourly, daily, straddled[0], before, after)
        self._store.append_audit(audit.event(
            actor, "usage.reprice", provider=provider, model=model, start_time=start.isoformat(),
            hourly_rows=hourly, daily_rows=daily, straddled_hours=straddled[0], spend_micros_before=before,
            spend_micros_after=after))
        self._budgets.evaluate(actor, orgs)
        return result
