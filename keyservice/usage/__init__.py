"""Usage, spend and budgets in keyservice (docs/usage.md).

Proxies report every request's usage in batches (ReportUsage); keyservice prices each record at the price in force
when it was made and adds it to hourly and daily rollups, once per batch id; admins query them (QueryUsage), set
prices and budgets; budgets refuse leases past their hard limit and revoke the org's cached ones. One module per
concern: `ingest` (a batch in), `rollup` (events to rollup sums), `pricing` (the price table and costs),
`budgets` (limits, lease checks, announcements), `retention` (how long rows are kept, the pruning pass),
`ratelimits` (per-minute counts of rate-limited scopes), `query` (reading rollups back), `reprice` (pricing
counted usage again after a price changed behind it), `rpcs` and
`ratelimit_rpcs` (the servicer's RPCs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from keyservice.store import Store
from keyservice.usage.budgets import BudgetKeeper
from keyservice.usage.ingest import UsageIngest
from keyservice.usage.pricing import PriceCatalog
from keyservice.usage.ratelimits import RateLimits
from keyservice.usage.reprice import UsageRepricing
from keyservice.usage.retention import UsageRetention


@dataclass(frozen=True)
class UsageService:
    """What the usage RPCs and the lease check need, wired once per process."""

    store: Store
    prices: PriceCatalog
    budgets: BudgetKeeper
    ingest: UsageIngest
    rates: RateLimits
    repricing: UsageRepricing

    @classmethod
    def create(cls, store: Store, *, prices_file: str = "", registry: Any = None,
               retention: UsageRetention | None = None) -> UsageService:
        """`prices_file`: ops' price file (BYOK_PRICES_FILE); `registry`: where the metrics go (None: none);
        `retention`: how long usage rows are kept (the BYOK_USAGE_*_RETENTION_DAYS settings)."""
        counted, announced = _metrics(registry)
        prices = PriceCatalog(file=prices_file)
        budgets = BudgetKeeper(store, announced=announced)
        rates = RateLimits(store)
        return cls(store=store, prices=prices, budgets=budgets,
                   ingest=UsageIngest(store, prices, budgets, rates, counted=counted, retention=retention),
                   rates=rates, repricing=UsageRepricing(store, prices, budgets, retention=retention))


def _metrics(registry: Any) -> tuple[Any, Any]:
    if registry is None:
        return None, None
    from prometheus_client import Counter

    records = Counter("byok_usage_records_total", "Usage records proxies reported, by outcome: accepted (counted), "
                      "skipped (failed their checks), duplicate (in a batch counted before).", ["outcome"],
                      registry=registry)
    thresholds = Counter("byok_budget_thresholds_total", "Budget thresholds announced (once per budget and period): "
                         "soft (the warning) or hard (leases refused, proxies' leases revoked).", ["threshold"],
                         registry=registry)

    def counted(outcome: str, n: int) -> None:
        records.labels(outcome).inc(n)

    def announced(threshold: str) -> None:
        thresholds.labels(threshold).inc()
    return counted, announced
