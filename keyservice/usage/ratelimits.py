"""Rate limits: per-minute caps on a scope's requests and tokens, held across every proxy (docs/usage.md).

keyservice does not admit requests: proxies do, each against the counts keyservice last told it plus its own
not-yet-reported requests (proxyservice/ratelimit.py). keyservice keeps the counts. `counts` turns a batch's events
into per-minute additions for the limits they fall under (an org's limit counts all its projects and users); the
store adds them in the transaction that claims the batch. `states` is what ReportUsage answers and a lease
carries: each limit with the counts of the current UTC minute, read after the batch committed, so an answer holds
every report any replica committed before it.

Tokens are input + output as the provider reported them (cached input is inside input for OpenAI and Gemini).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass

from keyservice import audit
from keyservice.errors import InvalidArgument
from keyservice.store import RateLimitRow, Store
from keyservice.usage.rollup import UsageEvent

MAX_PER_MINUTE = 1 << 40
clock_now = audit.now  # keyservice's clock for the current minute; tests replace it (a fake time source)


@dataclass(frozen=True, slots=True)
class RateLimitState:
    """A limit with what was reported in one minute."""

    limit: RateLimitRow
    minute_start: dt.datetime
    requests: int
    tokens: int


def minute_start(at: dt.datetime) -> dt.datetime:
    """The start of the UTC minute holding `at`."""
    return at.astimezone(dt.UTC).replace(second=0, microsecond=0)


def applies(limit: RateLimitRow, org_id: str, project_id: str, user_id: str) -> bool:
    """Whether a request of this scope counts against `limit`."""
    return limit.org_id == org_id and limit.project_id in ("", project_id) and limit.user_id in ("", user_id)


def counts(events: Iterable[UsageEvent], limits: Sequence[RateLimitRow]
           ) -> dict[tuple[str, dt.datetime], tuple[int, int]]:
    """What a batch adds per (limit, minute): requests and input + output tokens."""
    out: dict[tuple[str, dt.datetime], tuple[int, int]] = {}
    if not limits:
        return out
    for event in events:
        tokens = (event.tokens.input or 0) + (event.tokens.output or 0)
        for limit in limits:
            if applies(limit, event.org_id, event.project_id, event.user_id):
                key = (limit.rate_limit_id, minute_start(event.time))
                requests, total = out.get(key, (0, 0))
                out[key] = (requests + 1, total + tokens)
    return out


class RateLimits:
    def __init__(self, store: Store, *, clock: Callable[[], dt.datetime] | None = None) -> None:
        self.store = store
        self._clock = clock  # None: `clock_now`, looked up at each call

    def of_orgs(self, org_ids: Collection[str]) -> list[RateLimitRow]:
        return self.store.list_rate_limits(org_ids=org_ids) if org_ids else []

    def states(self, limits: Sequence[RateLimitRow]) -> list[RateLimitState]:
        """Each limit with the current minute's counts."""
        minute = minute_start((self._clock or clock_now)())
        found = self.store.minute_counts([lim.rate_limit_id for lim in limits], minute)
        return [RateLimitState(lim, minute, *found.get(lim.rate_limit_id, (0, 0))) for lim in limits]

    def for_scope(self, org_id: str, project_id: str, user_id: str) -> list[RateLimitState]:
        """The limits a lease of this scope carries, with the current minute's counts."""
        return self.states([lim for lim in self.of_orgs((org_id,)) if applies(lim, org_id, project_id, user_id)])

    def set(self, actor: str, org_id: str, project_id: str, user_id: str, requests_per_minute: int,
            tokens_per_minute: int) -> RateLimitRow:
        for name, value in (("requests_per_minute", requests_per_minute), ("tokens_per_minute", tokens_per_minute)):
            if not 0 <= value <= MAX_PER_MINUTE:
                raise InvalidArgument(f"limit.{name}", f"must be between 0 (none) and {MAX_PER_MINUTE}")
        if not requests_per_minute and not tokens_per_minute:
            raise InvalidArgument("limit", "requests_per_minute or tokens_per_minute must be set")
        return self.store.set_rate_limit(
            org_id, project_id, user_id, requests_per_minute, tokens_per_minute,
            audit=audit.event(actor, "rate_limit.set", org_id=org_id, project_id=project_id, user_id=user_id,
                              requests_per_minute=requests_per_minute, tokens_per_minute=tokens_per_minute))

    def list(self, org_id: str = "") -> list[RateLimitState]:
        return self.states(self.store.list_rate_limits(org_ids=(org_id,) if org_id else ()))

    def delete(self, actor: str, rate_limit_id: str) -> None:
        self.store.delete_rate_limit(rate_limit_id, audit=audit.event(actor, "rate_limit.delete",
                                                                       rate_limit_id=rate_limit_id))
