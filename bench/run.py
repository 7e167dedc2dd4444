"""The benchmark run: start the processes, seed tenants, run the scenarios, write results, stop everything.

Order: (1) TTFB, (2) paced, (3) slow, (4) non-streaming, (6) cost — all the proxy traffic on the warm key,
bracketed by reads of keyservice's IssueKeyLease counter — then (7) the load generator's ceiling (floor only)
and (5) leases, which calls keyservice directly. The HTTP contenders (the proxy's HTTP front, the HTTP floor,
direct and LiteLLM, all through one httpx client) run in scenarios 1-4 and 6 beside the gRPC ones; with
`--only http` (`http_only`), scenarios 1-4 run for them alone, plus the gRPC floor in (2) as its reference.
The whole run is bounded in time; each scenario's loops are bounded in count and time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import ceiling, cost, latency, leases, load, plots, report
from bench.clients import GrpcTarget, HttpTarget, Target
from bench.config import FULL, QUICK, BenchConfig
from bench.contenders import HTTP, Contenders
from bench.procs import CoreSplit, core_split, raise_fd_limit
from bench.stack import LEASE_TTL_SECONDS, BenchStack, seed, start

SCENARIOS = ("1", "2", "3", "4", "5", "6", "7")
HTTP_SCENARIOS = ("1", "2", "3", "4")
REFRESH_FRACTION = 0.75  # proxyservice's default lease_refresh_fraction
EXPIRY_MARGIN = 1.0  # proxyservice.leasecache.EXPIRY_MARGIN_SECONDS


def _machine() -> dict[str, Any]:
    import grpc
    import httpx

    try:
        import uvloop

        uv = uvloop.__version__
    except ImportError:
        uv = "absent"
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    return {"cores": os.cpu_count(), "usable_cores": sorted(os.sched_getaffinity(0)), "cpu_model": model,
            "memory_gb": round(mem_kb / 2**20, 1), "python": platform.python_version(), "grpcio": grpc.__version__,
            "httpx": httpx.__version__, "uvloop": uv, "kernel": platform.release(),
            "loadavg_start": _loadavg()}


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


async def _scenarios(stack: BenchStack, cfg: BenchConfig, only: set[str], litellm: tuple[int, str] | None,
                     http_only: bool = False) -> dict[str, Any]:
    # Cold tenants serve scenario 1's proxy_cold (gRPC) and scenario 5: none for the HTTP rows alone.
    cold_orgs = [] if http_only else [f"bench-cold-{i:04d}" for i in range(cfg.cold_orgs)]
    t0 = time.monotonic()
    await seed(stack, cold_orgs)
    print(f"seeded {len(cold_orgs) + 1} tenants in {time.monotonic() - t0:.1f} s", flush=True)
    targets: dict[str, Target] = {
        "direct": HttpTarget("direct", f"{stack.upstream_base}/v1", stack.upstream_key),
        "floor": GrpcTarget("floor", stack.ports["floor"], stack.certs.caller, cfg.grpc_connections),
        "proxy": GrpcTarget("proxy", stack.ports["proxy"], stack.certs.caller, cfg.grpc_connections),
        "floor_http": HttpTarget("floor_http", f"https://localhost:{stack.ports['floor_http']}/openai", "unused",
                                 tls=stack.certs.caller),
        "proxy_http": HttpTarget("proxy_http", f"https://localhost:{stack.ports['proxy_http']}/openai", "unused",
                                 tls=stack.certs.caller, tenant=True),
    }
    pids = {"floor": stack.pids["floor"], "proxy": stack.pids["proxy"], "direct": stack.pids["upstream"],
            "floor_http": stack.pids["floor_http"], "proxy_http": stack.pids["proxy"]}
    if litellm:
        port, master_key = litellm  # callers authenticate to LiteLLM with its master key
        targets["litellm"] = HttpTarget("litellm", f"http://127.0.0.1:{port}/v1", master_key)
        pids["litellm"] = stack.pids["litellm"]
    c = Contenders(targets=targets, server_pids=pids, upstream_pid=stack.pids["upstream"], cold_orgs=cold_orgs,
                    everyone=list(stack.pids.values()), selected=HTTP if http_only else None)
    for t in targets.values():
        if isinstance(t, GrpcTarget):
            await t.wait_ready()
    out: dict[str, Any] = {}
    try:
        calls_before = await leases.issue_lease_calls(stack)
        span_start = time.monotonic()
        cold_requests = 0
        if "1" in only:
            print("(1) TTFB at concurrency 1 …", flush=True)
            out["1_ttfb"] = await latency.run(c, cfg)
            cold_requests = out["1_ttfb"]["contenders"].get("proxy_cold", {}).get("requests", 0)
        if "2" in only:
            print("(2) paced streams at rising concurrency …", flush=True)
            out["2_paced"] = await load.paced(c.including("floor"), cfg)
        if "3" in only:
            print(f"(3) {cfg.slow_streams} slow streams …", flush=True)
            out["3_slow"] = await load.slow(c, cfg)
        if "4" in only:
            print("(4) non-streaming requests …", flush=True)
            out["4_unary"] = await load.unary(c, cfg)
        if "6" in only:
            print("(6) CPU and memory per relayed frames …", flush=True)
            out["6_cost"] = await cost.run(c, cfg)
        span = time.monotonic() - span_start
        calls = await leases.issue_lease_calls(stack) - calls_before - cold_requests
        period = (LEASE_TTL_SECONDS - EXPIRY_MARGIN) * REFRESH_FRACTION
        calls_per_key = {"calls": int(calls), "span_s": round(span, 1), "ttl_s": LEASE_TTL_SECONDS,
                         "refresh_period_s": round(period, 1),
                         "per_ttl": round(calls / max(1.0, span / LEASE_TTL_SECONDS), 3),
                         "per_refresh_period": round(calls / max(1.0, span / period), 3)}
        if "7" in only:
            print("(7) the load generator's ceiling: Python and k6 against the floor …", flush=True)
            out["7_ceiling"] = await ceiling.run(c, stack, cfg)
        if "5" in only:
            print("(5) leases: keyservice cold, lease cache hit …", flush=True)
            out["5_leases"] = {"keyservice": await leases.keyservice_cold(stack, cold_orgs or ["bench-warm"], cfg),
                               "cache": await leases.cache_hit_cost(cfg.cache_hits)}
        out.setdefault("5_leases", {})["calls_per_key"] = calls_per_key
    finally:
        await c.close()
    return out


def _notes(r: dict[str, Any], split: CoreSplit) -> list[str]:
    notes = [f"Processes: {split.describe()}. One load-generator process (Python asyncio on uvloop, grpc.aio and "
             "httpx) drives every contender; its ceiling is the 'direct' row (httpx → upstream) and the 'floor' "
             "row (grpc.aio → a server that makes frames itself)."]
    paced = r["scenarios"].get("2_paced", {}).get("contenders", {})
    others = [st["cpu_share"].get("others", 0.0) for c in paced.values() for st in c["steps"]]
    if others and sum(others) / len(others) > 0.25:
        notes.append(f"The machine was shared: other processes used {sum(others) / len(others):.2f} cores on "
                     f"average (up to {max(others):.2f}) during the paced steps, so stalls and tail latencies "
                     "here include waiting for a CPU. Rerun on a quiet machine before reading them as the "
                     "contenders' own limits.")
    ceil = r["scenarios"].get("7_ceiling", {}).get("rows", [])
    py = [row for row in ceil if row["generator"] == "python"]
    k6 = {row["concurrency"]: row for row in ceil if row["generator"] == "k6" and "error" not in row}
    if py:
        top = max(py, key=lambda row: row["frames_per_s"])
        text = (f"Load generator ceiling (scenario 7): at {top['concurrency']} paced streams against the floor the "
                f"Python load generator received {top['frames_per_s']:,.0f} frames/s using "
                f"{top['loadgen_cpu_share']:.0%} of its core ({top['loadgen_cpu_s_per_10k_frames']} CPU s per 10k "
                "frames)")
        if top["concurrency"] in k6:
            k = k6[top["concurrency"]]
            text += (f"; k6 at the same level: {k['frames_per_s']:,.0f} frames/s using {k['loadgen_cpu_share']:.0%} "
                     f"({k['loadgen_cpu_s_per_10k_frames']} s per 10k), stalled streams {k['stalled_streams']} vs "
                     f"Python's {top['stalled_streams']}")
        notes.append(text + ".")
    for name, c in paced.items():
        last = c["steps"][-1] if c["steps"] else None
        if last and (last["stalled_streams"] or last["errors"]):
            cpu = last["cpu_share"]
            busiest = max(cpu, key=lambda k: cpu[k])
            shares = ", ".join(f"{k} {v:.0%}" for k, v in cpu.items())
            notes.append(f"{name} first stalled at concurrency {last['concurrency']}; busiest process then: "
                         f"{busiest} at {cpu[busiest]:.0%} of a core ({shares}).")
    return notes


def _server_errors(logs: Path, limit: int = 20) -> list[str]:
    """The warning and error lines of the system's own processes (JSON logs of keyservice and the proxy), so a
    failed request in a load step can be explained after the run's logs are gone. Keys are redacted there."""
    lines: list[str] = []
    for name in ("proxy", "keyservice"):
        path = logs / f"{name}.log"
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            if '"level": "warning"' in line or '"level": "error"' in line or "Traceback" in line:
                lines.append(f"{name}: {line[:400]}")
    return lines[:limit] + ([f"… and {len(lines) - limit} more"] if len(lines) > limit else [])


def main(*, quick: bool, peers: bool, out_dir: Path, only: set[str] | None = None, http_only: bool = False) -> int:
    cfg = QUICK if quick else FULL
    only = only or set(SCENARIOS)
    out_dir.mkdir(parents=True, exist_ok=True)
    split = core_split()
    raise_fd_limit()
    os.sched_setaffinity(0, split.driver)  # the load generator; children are pinned where they start
    started = time.monotonic()
    machine = _machine()
    state = Path(tempfile.mkdtemp(prefix="byok-bench-"))
    stack = start(state, split)
    ok = False
    try:
        litellm = None
        if peers:
            from bench.peers import LITELLM_PIN, start_litellm

            models = [f"gpt-4o?frames={cfg.ttfb_frames}", f"gpt-4o?frames={cfg.paced_frames}&delay={cfg.paced_delay}",
                      f"gpt-4o?frames={cfg.slow_frames}&delay={cfg.slow_delay}", f"gpt-4o?frames={cfg.unary_frames}",
                      f"gpt-4o?frames={cfg.cost_frames}"]
            litellm = start_litellm(stack, sorted(set(models)))
            machine["litellm"] = LITELLM_PIN
        budget = (120 if quick else 1800) + (600 if peers else 0)

        async def bounded() -> dict[str, Any]:
            async with asyncio.timeout(budget):
                return await _scenarios(stack, cfg, only, litellm, http_only)

        try:
            import uvloop

            scenarios = uvloop.run(bounded())
        except ImportError:
            scenarios = asyncio.run(bounded())
        ok = True
    finally:
        stack.stop()
        server_errors = _server_errors(state / "logs")
        if ok:
            shutil.rmtree(state, ignore_errors=True)
        else:
            print(f"benchmark failed; process logs kept in {state}/logs", file=sys.stderr)
    machine["loadavg_end"] = _loadavg()
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "quick": quick, "peers": peers,
        "http_only": http_only, "scenarios_run": sorted(only),
        "machine": machine, "core_split": split.describe(), "config": cfg.__dict__,
        "elapsed_s": round(time.monotonic() - started, 1), "scenarios": scenarios,
        "server_errors": server_errors,
    }
    goals = report.http_goals(results) if http_only else report.goals(results) + report.http_goals(results)
    results["goals"] = [g.row() for g in goals]
    results["notes"] = _notes(results, split)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, default=str))
    text = report.markdown(results)
    (out_dir / "results.md").write_text(text)
    written = plots.write(results, out_dir)
    print("\n" + text)
    print(f"wrote {out_dir / 'results.json'}, {out_dir / 'results.md'}"
          + "".join(f", {p}" for p in written), flush=True)
    return 0
