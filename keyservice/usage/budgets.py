"""Budgets: a cap on what an org, a project or a user spends per UTC day or month, optionally on one key source.

A budget counts every request made for its scope (the org's budget counts all its projects and users; a project's
only that project's) on keys of its source ("" = both), from the start of the current period. Spend is read
from the daily rollups, so it is what keyservice has ingested: a request counts once its proxy reported it.

- `check`, on every lease keyservice issues: a budget of the request's scope and key source at or past its hard
  limit refuses the lease with RESOURCE_EXHAUSTED naming the budget. Spend is computed at that moment, so a
  raised, lowered or deleted budget takes effect at once, a restart changes nothing (the state is the database),
  and a new period starts with no spend.
- `evaluate`, after each ingested batch, for the orgs in it: a budget that reached its soft threshold gets a
  `budget.threshold` audit event and a metric; one that reached its hard limit a `budget.exhausted` event, the
  metric, and a `budget_exhausted` revocation of the org, so every proxy drops the org's cached leases (and asks
  again, and is refused) within a second. Each is announced once per period, whichever replica sees it first
  (a conditional update in the store). A lease already held keeps serving the request it was taken for: the
  overshoot is what the scope's requests in flight, and those its proxies had not reported yet, spend
  (docs/usage.md gives the bound).
- `set` evaluates the new limits at once, both ways: lowered below the spend, the revocation goes out now;
  raised above it, the next crossing is announced again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import structlog

from keyservice import audit
from keyservice.errors import InvalidArgument, ResourceExhausted
from keyservice.store import BudgetRow, Store, UsageFilter
from keyservice.usage.pricing import micros_to_dollars

_log = structlog.get_logger("byok.budgets")
PERIODS = ("day", "month")
KEY_SOURCES = ("", "tenant", "platform")


@dataclass(frozen=True, slots=True)
class BudgetState:
    """A budget with its spend in the current period."""

    budget: BudgetRow
    period_start: dt.datetime
    spend_micros: int

    @property
    def exhausted(self) -> bool:
        return self.spend_micros >= self.budget.limit_micros


def period_start(period: str, at: dt.datetime) -> dt.datetime:
    """The start of the UTC day or month holding `at`."""
    day = at.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day if period == "day" else day.replace(day=1)


def period_name(period: str, start: dt.datetime) -> str:
    """The period's name as the announcements record it: "2026-05-17" or "2026-05"."""
    return start.strftime("%Y-%m-%d" if period == "day" else "%Y-%m")


def applies(budget: BudgetRow, org_id: str, project_id: str, user_id: str, key_source: str) -> bool:
    """Whether a request of this scope on a key of this source counts against `budget`."""
    return (budget.org_id == org_id and budget.project_id in ("", project_id) and budget.user_id in ("", user_id)
            and budget.key_source in ("", key_source))


def describe(budget: BudgetRow) -> str:
    """The budget as people say it: "org acme, project web, platform keys, per month"."""
    parts = [f"org {budget.org_id}"]
    if budget.project_id:
        parts.append(f"project {budget.project_id}")
    if budget.user_id:
        parts.append(f"user {budget.user_id}")
    parts.append(f"{budget.key_source} keys" if budget.key_source else "all keys")
    parts.append(f"per {budget.period}")
    return ", ".join(parts)


class BudgetKeeper:
    def __init__(self, store: Store, *, clock: Callable[[], dt.datetime] = audit.now,
                 announced: Callable[[str], None] | None = None) -> None:
        self.store = store
        self._clock = clock
        self._announced = announced or (lambda _threshold: None)  # the metric, by threshold ("soft", "hard")

    # -- leases ---------------------------------------------------------------------------------------
    def check(self, org_id: str, project_id: str, user_id: str, key_source: str) -> None:
        """Refuse (ResourceExhausted naming the budget) a lease whose scope and key source have a budget at or past
        its hard limit in the current period."""
        now = self._clock()
        for budget in self.store.list_budgets(org_ids=(org_id,)):
            if not applies(budget, org_id, project_id, user_id, key_source):
                continue
            state = self._state(budget, now)
            if state.exhausted:
                raise ResourceExhausted(
                    f"budget {budget.budget_id} ({describe(budget)}) is exhausted: "
                    f"${micros_to_dollars(state.spend_micros)} spent of ${micros_to_dollars(budget.limit_micros)} "
                    f"since {state.period_start.date().isoformat()}; new requests are refused until the period ends "
                    "or the budget is raised")

    # -- administration -------------------------------------------------------------------------------
    def set(self, actor: str, org_id: str, project_id: str, user_id: str, key_source: str, period: str,
            limit_micros: int, soft_limit_micros: int) -> BudgetState:
        if period not in PERIODS:
            raise InvalidArgument("budget.period", "must be day or month")
        if key_source not in KEY_SOURCES:
            raise InvalidArgument("budget.key_source", "must be tenant, platform or unspecified (both)")
        if limit_micros <= 0:
            raise InvalidArgument("budget.limit_micros", "must be positive")
        if not 0 <= soft_limit_micros < limit_micros:
            raise InvalidArgument("budget.soft_limit_micros", "must be 0 (none) or below limit_micros")
        row = self.store.set_budget(
            org_id, project_id, user_id, key_source, period, limit_micros, soft_limit_micros,
            audit=audit.event(actor, "budget.set", org_id=org_id, project_id=project_id, user_id=user_id,
                              key_source=key_source or "all", period=period, limit_micros=limit_micros,
                              soft_limit_micros=soft_limit_micros))
        return self._evaluate_one(actor, row, self._clock())

    def list(self, org_id: str = "") -> list[BudgetState]:
        now = self._clock()
        return [self._state(b, now) for b in self.store.list_budgets(org_ids=(org_id,) if org_id else ())]

    def delete(self, actor: str, budget_id: str) -> None:
        """Remove a budget. No revocation: proxies do not cache a budget's refusal, so the next request is served."""
        row = self.store.get_budget(budget_id)
        self.store.delete_budget(budget_id, audit=audit.event(
            actor, "budget.delete", org_id=row.org_id, project_id=row.project_id, user_id=row.user_id,
            budget_id=budget_id))

    # -- after ingest ---------------------------------------------------------------------------------
    def evaluate(self, actor: str, org_ids: Collection[str]) -> None:
        """Announce the thresholds the orgs' budgets reached (see the module docstring)."""
        if not org_ids:
            return
        now = self._clock()
        for budget in self.store.list_budgets(org_ids=org_ids):
            self._evaluate_one(actor, budget, now)

    def _evaluate_one(self, actor: str, budget: BudgetRow, now: dt.datetime) -> BudgetState:
        state = self._state(budget, now)
        period = period_name(budget.period, state.period_start)
        details: dict[str, Any] = {"budget_id": budget.budget_id, "budget": describe(budget), "period": period,
                   "spend_micros": state.spend_micros, "limit_micros": budget.limit_micros}
        soft_reached = budget.soft_limit_micros > 0 and state.spend_micros >= budget.soft_limit_micros
        for threshold, reached, announced, action, revocation, limit in (
                ("soft", soft_reached, budget.soft_notified_period, "budget.threshold", None,
                 budget.soft_limit_micros),
                ("hard", state.exhausted, budget.hard_notified_period, "budget.exhausted", "budget_exhausted",
                 budget.limit_micros)):
            if reached and announced != period:
                event = audit.event(actor, action, org_id=budget.org_id, project_id=budget.project_id,
                                    user_id=budget.user_id, **details, threshold_micros=limit)
                if self.store.announce_budget(budget.budget_id, threshold, period, audit=event,
                                              revocation=revocation):
                    self._announced(threshold)
                    _log.warning(action, **details)
            elif not reached and announced:
                self.store.forget_announcement(budget.budget_id, threshold)
        return state

    def _state(self, budget: BudgetRow, now: dt.datetime) -> BudgetState:
        start = period_start(budget.period, now)
        where = UsageFilter(org_id=budget.org_id, project_id=budget.project_id, user_id=budget.user_id,
                            key_source=budget.key_source)
        return BudgetState(budget, start, self.store.spend_micros(where, start))
