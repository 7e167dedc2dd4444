"""Scenarios 2-4: load at concurrency, per contender.

(2) paced streams (64 frames, 20 ms apart) at a rising concurrency ladder; each step runs closed-loop
    workers for a fixed time. A stall is a gap between two text frames > 2 × pace; the stall-free
    concurrency is the highest step reached with no stalled stream at it or below; the ladder stops once a
    step errs or more than 10 % of its streams stall. Each step records the CPU share of the load generator,
    the upstream, the contender and the rest of the machine, so that a step limited by the harness or by
    other work on the machine can be told from one limited by the contender.
(3) 1,024 concurrent slow streams (30 frames, 1 s apart): errors, stalls (gap > 2 s), the server's RSS.
(4) non-streaming requests at a rising concurrency ladder: the best requests/s whose p99 meets a bound.
Worker starts are spread over one pace so that frames do not all fall on the same instants.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

from bench.clients import StreamResult, Target
from bench.config import BenchConfig
from bench.contenders import Contenders
from bench.procs import CpuMeter, RssWatcher
from bench.stack import WARM_ORG
from bench.stats import percentile, summary_ms

# The ladder goes on past a step with a few stalled streams (on a shared machine one descheduling is enough)
# and stops once more than SATURATED of a step's streams stall, or any errs. "Stall-free" stays strict.
SATURATED = 0.10
RARE = 0.01


def _meter(c: Contenders, name: str) -> CpuMeter:
    pids: dict[str, int | str] = {"loadgen": "self", "upstream": c.upstream_pid}
    if name != "direct":
        pids[name] = c.server_pids[name]
    return CpuMeter(pids, c.everyone)


def _stream_stats(results: list[StreamResult], elapsed: float, stall_gap: float) -> dict[str, Any]:
    ok = [r for r in results if r.ok]
    errors = collections.Counter(r.error for r in results if not r.ok)
    gaps = [g for r in ok for g in r.gaps()]
    stalled_streams = sum(1 for r in ok if any(g > stall_gap for g in r.gaps()))
    frames = sum(r.frames for r in results)
    return {
        "streams": len(results), "errors": sum(errors.values()), "error_kinds": dict(errors),
        "stalled_streams": stalled_streams, "stalled_gaps": sum(1 for g in gaps if g > stall_gap),
        "streams_per_s": round(len(ok) / elapsed, 2), "frames_per_s": round(frames / elapsed, 1),
        "gap_ms": {"p50": round(percentile(gaps, 50) * 1000, 3) if gaps else None,
                   "p99": round(percentile(gaps, 99) * 1000, 3) if gaps else None,
                   "max": round(max(gaps) * 1000, 3) if gaps else None},
        "ttfb_ms": summary_ms([r.ttfb for r in ok]), "elapsed_s": round(elapsed, 3),
    }


async def paced_step(target: Target, model: str, concurrency: int, seconds: float, pace: float,
                     timeout: float) -> tuple[list[StreamResult], float]:
    deadline = time.monotonic() + seconds
    results: list[StreamResult] = []

    async def worker(k: int) -> None:
        await asyncio.sleep(pace * k / concurrency)
        while time.monotonic() < deadline:
            results.append(await target.stream(model, WARM_ORG, timeout))

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return results, time.perf_counter() - t0


async def paced(c: Contenders, cfg: BenchConfig) -> dict[str, Any]:
    model = f"gpt-4o?frames={cfg.paced_frames}&delay={cfg.paced_delay}"
    stall_gap = 2 * cfg.paced_delay
    timeout = cfg.paced_frames * cfg.paced_delay * 20 + 10
    out: dict[str, Any] = {"frames": cfg.paced_frames, "pace_ms": cfg.paced_delay * 1000,
                           "stall_gap_ms": stall_gap * 1000, "contenders": {}}
    for name in c.names():
        steps = []
        stall_free = 0
        clean_so_far = True
        for level in cfg.paced_levels:
            with _meter(c, name) as meter:
                results, elapsed = await paced_step(c.targets[name], model, level, cfg.paced_step_seconds,
                                                    cfg.paced_delay, timeout)
            row = {"concurrency": level, **_stream_stats(results, elapsed, stall_gap),
                   "cpu_share": {k: round(v, 3) for k, v in meter.share.items()}}
            steps.append(row)
            print(f"  paced {name:8s} c={level:4d} streams/s={row['streams_per_s']:8.1f} "
                  f"frames/s={row['frames_per_s']:9.1f} stalled={row['stalled_streams']} errors={row['errors']} "
                  f"gap p99={row['gap_ms']['p99']} ms cpu={row['cpu_share']}", flush=True)
            clean_so_far = clean_so_far and not row["stalled_streams"] and not row["errors"]
            if clean_so_far:
                stall_free = level
            if row["errors"] or row["stalled_streams"] > SATURATED * row["streams"]:
                break  # saturated: higher steps would only pile up
        rare = [s["concurrency"] for s in steps if not s["errors"] and s["stalled_streams"] <= RARE * s["streams"]]
        out["contenders"][name] = {"steps": steps, "stall_free_concurrency": stall_free,
                                   "max_concurrency_under_1pct_stalled": max(rare, default=0)}
    return out


async def slow(c: Contenders, cfg: BenchConfig) -> dict[str, Any]:
    model = f"gpt-4o?frames={cfg.slow_frames}&delay={cfg.slow_delay}"
    stall_gap = 2 * cfg.slow_delay
    timeout = cfg.slow_frames * cfg.slow_delay * 3 + 30
    out: dict[str, Any] = {"streams": cfg.slow_streams, "frames": cfg.slow_frames, "pace_s": cfg.slow_delay,
                           "contenders": {}}
    for name in c.names():
        target = c.targets[name]
        pid = c.server_pids.get(name, c.upstream_pid)

        async def one(k: int, target: Target = target) -> StreamResult:
            await asyncio.sleep(cfg.slow_delay * k / cfg.slow_streams)
            return await target.stream(model, WARM_ORG, timeout)

        with _meter(c, name) as meter:
            async with RssWatcher(pid) as rss:
                t0 = time.perf_counter()
                results = list(await asyncio.gather(*(one(k) for k in range(cfg.slow_streams))))
                elapsed = time.perf_counter() - t0
        row = _stream_stats(results, elapsed, stall_gap)
        row.update(server_rss_mb_before=round(rss.first / 2**20, 1), server_rss_mb_peak=round(rss.peak / 2**20, 1),
                   cpu_share={k: round(v, 3) for k, v in meter.share.items()})
        out["contenders"][name] = row
        print(f"  slow   {name:8s} streams={row['streams']} errors={row['errors']} "
              f"stalled={row['stalled_streams']} rss peak={row['server_rss_mb_peak']} MB", flush=True)
    return out


async def unary_step(target: Target, model: str, concurrency: int, seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    latencies: list[float] = []
    errors = 0

    async def worker() -> None:
        nonlocal errors
        while time.monotonic() < deadline:
            try:
                latencies.append(await target.unary(model, WARM_ORG, 30.0))
            except Exception:  # noqa: BLE001 - counted: a load step must finish to report what failed
                errors += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    return {"concurrency": concurrency, "requests": len(latencies), "errors": errors,
            "requests_per_s": round(len(latencies) / elapsed, 1), "latency_ms": summary_ms(latencies)}


async def unary(c: Contenders, cfg: BenchConfig) -> dict[str, Any]:
    model = f"gpt-4o?frames={cfg.unary_frames}"
    out: dict[str, Any] = {"p99_bound_ms": cfg.unary_p99_bound_ms, "contenders": {}}
    for name in c.names():
        steps = []
        for level in cfg.unary_levels:
            with _meter(c, name) as meter:
                row = await unary_step(c.targets[name], model, level, cfg.unary_step_seconds)
            row["cpu_share"] = {k: round(v, 3) for k, v in meter.share.items()}
            steps.append(row)
            print(f"  unary  {name:8s} c={level:3d} req/s={row['requests_per_s']:8.1f} "
                  f"p99={row['latency_ms'].get('p99')} ms errors={row['errors']} cpu={row['cpu_share']}", flush=True)
        within = [s for s in steps if not s["errors"] and s["latency_ms"].get("n")
                  and s["latency_ms"]["p99"] <= cfg.unary_p99_bound_ms]
        best = max(within, key=lambda s: s["requests_per_s"], default=None)
        out["contenders"][name] = {"steps": steps,
                                   "best_requests_per_s": best["requests_per_s"] if best else 0.0,
                                   "best_at_concurrency": best["concurrency"] if best else None}
    return out
