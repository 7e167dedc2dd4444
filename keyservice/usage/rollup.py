"""A batch of usage events as the sums its rollup rows gain: per UTC hour and per UTC day, per org, project, user,
credential, provider, model and key source, with each event's spend at the price in force at its time.

An event lands in the hour and the day of its own time, however late it arrives (a proxy that was cut off from
keyservice for an hour reports into the hour the requests were made in).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from keyservice.store import USAGE_COUNTS, RollupKey, UsageCounts
from keyservice.usage.pricing import PriceBook, Tokens, cost_picos, picos_to_micros

GRANULARITIES = ("hour", "day")
_SPEND = USAGE_COUNTS.index("spend_micros")  # filled in from the exact pico-dollar sum, once per key


@dataclass(frozen=True, slots=True)
class UsageEvent:
    """One proxy request's usage, checked (keyservice/usage/ingest.py)."""

    time: dt.datetime
    org_id: str
    project_id: str
    user_id: str
    provider: str
    model: str
    credential_id: str
    key_source: str  # "tenant" | "platform"
    tokens: Tokens
    failed: bool
    duration_ms: int


def bucket_start(granularity: str, at: dt.datetime) -> dt.datetime:
    """The start of the UTC hour or day holding `at`."""
    at = at.astimezone(dt.UTC)
    if granularity == "hour":
        return at.replace(minute=0, second=0, microsecond=0)
    return at.replace(hour=0, minute=0, second=0, microsecond=0)


def bucket_end(granularity: str, at: dt.datetime) -> dt.datetime:
    """The end of the bucket holding `at` (`at` itself when it starts one)."""
    start = bucket_start(granularity, at)
    if start == at:
        return start
    return start + (dt.timedelta(hours=1) if granularity == "hour" else dt.timedelta(days=1))


def roll_up(events: Iterable[UsageEvent], book: PriceBook, family_of: Callable[[str], str]
            ) -> tuple[dict[RollupKey, UsageCounts], dict[str, dt.datetime]]:
    """The batch's sums per rollup key, and the time each credential was last used in it."""
    sums: dict[RollupKey, list[int]] = {}
    picos: dict[RollupKey, int] = {}
    last_used: dict[str, dt.datetime] = {}
    for event in events:
        tokens = event.tokens
        price = book.price(event.provider, event.model, event.time) if tokens.any() else None
        cost = cost_picos(family_of(event.provider), tokens, price) if price is not None else 0
        # In USAGE_COUNTS order.
        row = (1, int(event.failed), int(tokens.any() and price is None), tokens.input, tokens.output,
               tokens.cached_input, tokens.cache_write, tokens.reasoning, 0, event.duration_ms)
        for granularity in GRANULARITIES:
            key = RollupKey(granularity, bucket_start(granularity, event.time), event.org_id, event.project_id,
                            event.user_id, event.credential_id, event.provider, event.model, event.key_source)
            acc = sums.get(key)
            if acc is None:
                sums[key] = list(row)
            else:
                for i, value in enumerate(row):
                    acc[i] += value
            picos[key] = picos.get(key, 0) + cost
        used = event.credential_id
        if used and (used not in last_used or last_used[used] < event.time):
            last_used[used] = event.time
    counts = {}
    for key, acc in sums.items():
        acc[_SPEND] = picos_to_micros(picos[key])
        counts[key] = UsageCounts(*acc)
    return counts, last_used
