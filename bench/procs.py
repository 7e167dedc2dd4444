"""Per-process measurement and CPU pinning for the benchmark.

CPU seconds and resident memory come from /proc (no psutil): /proc/PID/stat (utime + stime, all threads)
and /proc/PID/statm (resident pages). Pinning uses the calling thread's affinity, which children inherit:
`on_cores(...)` around a spawn puts that child (and every thread it creates) on those cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import time
from collections.abc import Iterator
from dataclasses import dataclass

_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class CoreSplit:
    """Which cores the load generator (+ local upstream) and the system under test run on."""

    driver: frozenset[int]
    sut: frozenset[int]
    pinned: bool

    def describe(self) -> str:
        if not self.pinned:
            return "not pinned (fewer than 2 usable cores): every process shares every core"
        return (f"load generator and local upstream on core {sorted(self.driver)}; proxy, floor, LiteLLM, "
                f"keyservice and OpenBao on core {sorted(self.sut)}")


def core_split() -> CoreSplit:
    usable = sorted(os.sched_getaffinity(0))
    if len(usable) < 2:
        return CoreSplit(frozenset(usable), frozenset(usable), pinned=False)
    return CoreSplit(frozenset(usable[:1]), frozenset(usable[1:2]), pinned=True)


@contextlib.contextmanager
def on_cores(cores: frozenset[int]) -> Iterator[None]:
    """Spawn children inside this block to pin them; the caller's own affinity is restored after."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def raise_fd_limit() -> int:
    """1,024 slow streams need thousands of sockets across the processes; children inherit the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


@dataclass(frozen=True)
class ProcSample:
    cpu_seconds: float
    rss_bytes: int


def sample(pid: int | str = "self") -> ProcSample:
    with open(f"/proc/{pid}/stat", "rb") as f:
        # The command name (field 2) may contain spaces: split after its closing parenthesis.
        fields = f.read().rsplit(b")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (fields 14 and 15 of the whole line)
    with open(f"/proc/{pid}/statm", "rb") as f:
        rss = int(f.read().split()[1]) * _PAGE
    return ProcSample(cpu, rss)


def peak_rss(pid: int) -> int:
    """VmHWM: the most resident memory the process ever had."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent on anything but idling, since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return (sum(values[:8]) - idle) / _TICK  # guest time is already inside user


class CpuMeter:
    """CPU seconds and CPU share of a set of processes over a window (`with meter:` … then `.cpu`/`.share`).

    With `everyone` (every process of the benchmark), it also reports "others": the CPU the rest of the
    machine used meanwhile, because on a shared machine other work steals cycles from the contenders.
    """

    def __init__(self, pids: dict[str, int | str], everyone: list[int] | None = None) -> None:
        self.pids = pids
        self.everyone = everyone or []
        self._start: dict[str, ProcSample] = {}
        self._mine0 = 0.0
        self._busy0 = 0.0
        self._t0 = 0.0
        self.cpu: dict[str, float] = {}
        self.share: dict[str, float] = {}
        self.elapsed = 0.0

    def _mine(self) -> float:
        return sum(sample(p).cpu_seconds for p in self.everyone) + sample("self").cpu_seconds

    def __enter__(self) -> CpuMeter:
        self._t0 = time.monotonic()
        self._start = {name: sample(pid) for name, pid in self.pids.items()}
        if self.everyone:
            self._mine0, self._busy0 = self._mine(), machine_busy_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = max(1e-9, time.monotonic() - self._t0)
        for name, pid in self.pids.items():
            self.cpu[name] = sample(pid).cpu_seconds - self._start[name].cpu_seconds
            self.share[name] = self.cpu[name] / self.elapsed
        if self.everyone:
            others = (machine_busy_seconds() - self._busy0) - (self._mine() - self._mine0)
            self.cpu["others"] = max(0.0, others)
            self.share["others"] = self.cpu["others"] / self.elapsed


class RssWatcher:
    """Samples a process's RSS every `interval` seconds while a workload runs; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self.first = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, sample(self.pid).rss_bytes)
            await asyncio.sleep(self.interval)

    async def __aenter__(self) -> RssWatcher:
        self.first = sample(self.pid).rss_bytes
        self.peak = self.first
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self.peak = max(self.peak, sample(self.pid).rss_bytes)
