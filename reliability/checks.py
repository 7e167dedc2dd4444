"""Building a scenario's row from several named checks, and the load loops most scenarios share."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from reliability.report import Row
from reliability.stack import call


@dataclass
class Checks:
    scenario: int
    title: str
    done: str = ""
    count: str = ""
    expected: str = ""
    items: list[tuple[str, bool]] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def check(self, ok: bool, seen: str) -> bool:
        self.items.append((seen, bool(ok)))
        return bool(ok)

    def row(self) -> Row:
        seen = "; ".join(s if ok else f"MISSED: {s}" for s, ok in self.items)
        return Row(self.scenario, self.title, self.done, self.count, self.expected, seen,
                   bool(self.items) and all(ok for _, ok in self.items), self.figures)


@dataclass
class Event:
    kind: str
    start: float
    end: float
    code: str
    detail: str = ""


@dataclass
class Load:
    """Closed-loop workers, each repeating one RPC until stopped; every outcome kept as an Event."""

    events: list[Event] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def add(self, kind: str, make: Callable[[], Awaitable[Any]], *, pause: float = 0.02, workers: int = 1) -> None:
        async def worker() -> None:
            while not self._stop.is_set():
                t0 = time.monotonic()
                code, detail, _ = await call(make())
                self.events.append(Event(kind, t0, time.monotonic(), code, detail[:200]))
                try:
                    await asyncio.wait_for(self._stop.wait(), pause)
                except TimeoutError:
                    pass
        for _ in range(workers):
            self._tasks.append(asyncio.create_task(worker()))

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def select(self, kind: str, after: float = float("-inf"), before: float = float("inf")) -> list[Event]:
        return [e for e in self.events if e.kind == kind and after <= e.start < before]


def codes(events: list[Event]) -> dict[str, int]:
    return dict(Counter(e.code for e in events))


async def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.05) -> bool:
    """Poll an (async or sync) predicate until true or the deadline; returns whether it became true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return True
        await asyncio.sleep(interval)
    return False
