"""Reading usage back: which rollup rows answer a query, over which exact range, in how many groups.

Hourly grouping reads the hourly rows, daily grouping the daily ones, with the range widened to whole hours or
days (the rows are the finest record kept). A total over whole days reads the daily rows; over a range that
starts or ends inside a day, the hourly ones. The response says the range it covered.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from keyservice import audit
from keyservice.errors import InvalidArgument
from keyservice.store import USAGE_DIMENSIONS, Store, UsageFilter, UsageGroup
from keyservice.usage.rollup import bucket_end, bucket_start

GROUPINGS = ("hour", "day", "total")
MAX_GROUPS = 10_000


@dataclass(frozen=True, slots=True)
class UsageQuery:
    where: UsageFilter
    grouping: str  # "hour" | "day" | "total"
    start: dt.datetime | None
    end: dt.datetime | None
    dimensions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class UsageAnswer:
    groups: list[UsageGroup]
    start: dt.datetime | None
    end: dt.datetime


def run_query(store: Store, query: UsageQuery, *, clock: Callable[[], dt.datetime] = audit.now) -> UsageAnswer:
    if query.grouping not in GROUPINGS:
        raise InvalidArgument("grouping", "must be hour, day or total")
    if any(d not in USAGE_DIMENSIONS for d in query.dimensions):
        raise InvalidArgument("dimensions", f"must be among {', '.join(USAGE_DIMENSIONS)}")
    end = query.end or clock()
    if query.start is not None and query.start >= end:
        raise InvalidArgument("start_time", "must be before end_time")
    granularity = _granularity(query)
    start = bucket_start(granularity, query.start) if query.start is not None else None
    end = bucket_end(granularity, end)
    groups = store.usage_groups(query.where, granularity=granularity, start=start, end=end,
                                by_bucket=query.grouping != "total", dimensions=_unique(query.dimensions),
                                limit=MAX_GROUPS + 1)
    if len(groups) > MAX_GROUPS:
        raise InvalidArgument("grouping", f"more than {MAX_GROUPS} rows; narrow the range or group by day")
    return UsageAnswer(groups=groups, start=start, end=end)


def _granularity(query: UsageQuery) -> str:
    if query.grouping != "total":
        return query.grouping
    whole_days = all(t is None or bucket_start("day", t) == t for t in (query.start, query.end))
    return "day" if whole_days else "hour"


def _unique(dimensions: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(dimensions))
