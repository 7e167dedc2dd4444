"""Scenario 6: CPU seconds and memory per 10,000 relayed frames, per contender.

A fixed workload (zero-delay streams at a fixed concurrency) runs through each contender while /proc
counts the CPU time of the contender's server process. For "direct" the server process is the upstream
itself, which shows what producing the frames costs; the proxy also makes the upstream work, the floor
does not (it makes its own frames), so the proxy/floor ratio is a fair "relay overhead" figure only
together with the upstream's own row.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.clients import StreamResult, Target
from bench.config import BenchConfig
from bench.contenders import Contenders
from bench.procs import CpuMeter, peak_rss, sample
from bench.stack import WARM_ORG


async def _workload(target: Target, model: str, streams: int, concurrency: int) -> list[StreamResult]:
    results: list[StreamResult] = []
    remaining = streams

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            results.append(await target.stream(model, WARM_ORG, 60.0))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


async def run(c: Contenders, cfg: BenchConfig) -> dict[str, Any]:
    model = f"gpt-4o?frames={cfg.cost_frames}"
    out: dict[str, Any] = {"streams": cfg.cost_streams, "frames_per_stream": cfg.cost_frames,
                           "concurrency": cfg.cost_concurrency, "contenders": {}}
    for name in c.names():
        pid = c.server_pids.get(name, c.upstream_pid)
        pids: dict[str, int | str] = {"server": pid, "upstream": c.upstream_pid, "loadgen": "self"}
        with CpuMeter(pids, c.everyone) as meter:
            t0 = time.perf_counter()
            results = await _workload(c.targets[name], model, cfg.cost_streams, cfg.cost_concurrency)
            elapsed = time.perf_counter() - t0
        frames = sum(r.frames for r in results)
        per10k = {k: round(v / frames * 10_000, 4) if frames else None for k, v in meter.cpu.items()}
        out["contenders"][name] = {
            "frames": frames, "errors": sum(1 for r in results if not r.ok), "elapsed_s": round(elapsed, 3),
            "frames_per_s": round(frames / elapsed, 1), "cpu_s_per_10k_frames": per10k,
            "server_rss_mb": round(sample(pid).rss_bytes / 2**20, 1),
            "server_peak_rss_mb": round(peak_rss(pid) / 2**20, 1),
        }
        print(f"  cost   {name:8s} frames={frames} cpu/10k frames={per10k} "
              f"rss={out['contenders'][name]['server_rss_mb']} MB", flush=True)
    return out
