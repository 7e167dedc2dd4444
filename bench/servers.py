"""`python -m bench.servers`: the measurement behind the HTTP front's choice of server (docs/benchmarks.md,
"HTTP server choice").

Each candidate serves the same floor answer (OpenAI SSE or JSON frames it makes itself, `bench/sse_frames.py`)
over HTTPS with the front's TLS rule — a client certificate is required and checked against the CA — on the
system-under-test core, one process, uvloop: aiohttp's web server (`bench/floor.py --http`, the front's stack) and,
with the bare ASGI app `bench/asgi_floor.py`, uvicorn (httptools), Granian (its Rust HTTP/1 on the ASGI interface)
and Hypercorn. The same client drives all of them (`bench.clients.HttpTarget`, the caller's certificate): TTFB at
concurrency 1, 64-frame streams at concurrency 32 (streams/s and the server's CPU per stream), and non-streaming
requests at concurrency 16 (req/s, p99 and CPU per request), each over `--rounds` rounds in turn, medians
reported. It also records whether the application can see the caller's certificate (`x-peer-certificate`): the
front derives the caller's identity from it, so a server that hides it cannot serve the front at all.

The ASGI servers live in their own virtualenv (`.bench-venv-servers/`, exact pins, created once): none of them is
a dependency of byok.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench.clients import HttpTarget, mtls_context
from bench.procs import core_split, on_cores, raise_fd_limit, sample
from bench.stack import Certs
from bench.stats import percentile
from byokcommon.tls import TlsFiles
from devstack.ports import free_port
from devstack.processes import ProcessGroup, clean_env

PINS = ("uvicorn[standard]==0.54.0", "granian==2.8.7", "hypercorn==0.18.0")
VENV = Path(".bench-venv-servers")
ROOT = Path(__file__).resolve().parent.parent
PATH = "/openai/chat/completions"


def ensure_servers(venv: Path = VENV) -> Path:
    """The virtualenv's bin directory, installing the pinned servers first when needed."""
    stamp = venv / ".bench-pin"
    if not (stamp.exists() and stamp.read_text() == " ".join(PINS)):
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *PINS], check=True)
        stamp.write_text(" ".join(PINS))
    return venv / "bin"


def _argv(name: str, port: int, tls: TlsFiles, bin_dir: Path) -> list[str]:
    app = "bench.asgi_floor:app"
    if name == "aiohttp":
        return [sys.executable, "-m", "bench.floor", "--http", "--port", str(port), "--cert", tls.cert,
                "--key", tls.key, "--ca", tls.ca]
    if name == "uvicorn":
        return [str(bin_dir / "uvicorn"), app, "--host", "127.0.0.1", "--port", str(port), "--http", "httptools",
                "--loop", "uvloop", "--no-access-log", "--log-level", "warning", "--ssl-certfile", tls.cert,
                "--ssl-keyfile", tls.key, "--ssl-ca-certs", tls.ca, "--ssl-cert-reqs", "2", "--backlog", "4096"]
    if name == "granian":
        return [str(bin_dir / "granian"), "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port),
                "--workers", "1", "--loop", "uvloop", "--log-level", "warning", "--ssl-certificate", tls.cert,
                "--ssl-keyfile", tls.key, "--ssl-ca", tls.ca, "--ssl-client-verify", "--backlog", "4096", app]
    if name == "hypercorn":
        return [str(bin_dir / "hypercorn"), app, "--bind", f"127.0.0.1:{port}", "--workers", "1",
                "--worker-class", "uvloop", "--certfile", tls.cert, "--keyfile", tls.key, "--ca-certs", tls.ca,
                "--verify-mode", "CERT_REQUIRED", "--backlog", "4096", "--log-level", "warning"]
    raise ValueError(name)


CANDIDATES = ("aiohttp", "uvicorn", "granian", "hypercorn")


def _tree_cpu(pid: int) -> float:
    """CPU seconds of `pid` and every descendant (Granian runs its worker as a child process)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            total += sample(current).cpu_seconds
        except OSError:
            continue
        todo.extend(children.get(current, []))
    return total


async def _timed(pid: int, work: Callable[[], Any]) -> tuple[Any, float, float]:
    cpu0, t0 = _tree_cpu(pid), time.perf_counter()
    result = await work()
    return result, time.perf_counter() - t0, _tree_cpu(pid) - cpu0


async def _measure(target: HttpTarget, pid: int, counts: dict[str, int]) -> dict[str, Any]:
    for _ in range(20):  # warm: connections open, code paths hot
        await target.stream("gpt-4o?frames=16", "bench", 30)
        await target.unary("gpt-4o?frames=16", "bench", 30)
    ttfb = [(await target.stream("gpt-4o?frames=16", "bench", 30)).ttfb for _ in range(counts["ttfb"])]

    async def streams() -> list[bool]:
        queue = iter(range(counts["streams"]))
        results: list[bool] = []

        async def worker() -> None:
            for _ in queue:
                result = await target.stream("gpt-4o?frames=64", "bench", 60)
                results.append(result.ok and result.frames == 64)
        await asyncio.gather(*(worker() for _ in range(32)))
        return results

    async def unary() -> list[float]:
        queue = iter(range(counts["unary"]))
        latencies: list[float] = []

        async def worker() -> None:
            for _ in queue:
                latencies.append(await target.unary("gpt-4o?frames=16", "bench", 60))
        await asyncio.gather(*(worker() for _ in range(16)))
        return latencies

    ok, s_elapsed, s_cpu = await _timed(pid, streams)
    latencies, u_elapsed, u_cpu = await _timed(pid, unary)
    return {"ttfb_p50_ms": percentile(ttfb, 50) * 1e3, "ttfb_p99_ms": percentile(ttfb, 99) * 1e3,
            "streams_per_s": len(ok) / s_elapsed, "stream_errors": ok.count(False),
            "cpu_ms_per_stream": s_cpu / len(ok) * 1e3,
            "unary_per_s": len(latencies) / u_elapsed, "unary_p99_ms": percentile(latencies, 99) * 1e3,
            "cpu_ms_per_unary": u_cpu / len(latencies) * 1e3}


async def _peer_certificate(port: int, tls: TlsFiles) -> str:
    async with httpx.AsyncClient(verify=mtls_context(tls)) as client:
        reply = await client.post(f"https://localhost:{port}{PATH}", json={"model": "gpt-4o?frames=1"})
        return reply.headers.get("x-peer-certificate", "no")


async def _refuses_no_certificate(port: int, tls: TlsFiles) -> bool:
    try:
        async with httpx.AsyncClient(verify=tls.ca) as client:
            await client.post(f"https://localhost:{port}{PATH}", json={"model": "gpt-4o?frames=1"})
    except httpx.HTTPError:
        return True
    return False


def _median(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    return {k: round(statistics.median(r[k] for r in rounds), 3) for k in rounds[0]}


async def _run(candidates: list[str], rounds: int, counts: dict[str, int], tls: Certs, bin_dir: Path,
               group: ProcessGroup) -> dict[str, Any]:
    split = core_split()
    ports, pids = {}, {}
    env = clean_env(PYTHONPATH=str(ROOT))
    for name in candidates:
        ports[name] = free_port()
        with on_cores(split.sut):
            pids[name] = group.start(name, _argv(name, ports[name], tls.proxyservice, bin_dir), env,
                                     port=ports[name]).pid
    os.sched_setaffinity(0, split.driver)
    out: dict[str, Any] = {name: {"rounds": []} for name in candidates}
    for name in candidates:
        out[name]["peer_certificate_visible"] = await _peer_certificate(ports[name], tls.caller)
        out[name]["refuses_no_client_certificate"] = await _refuses_no_certificate(ports[name], tls.caller)
    for r in range(rounds):
        for name in candidates:
            target = HttpTarget(name, f"https://localhost:{ports[name]}/openai", "unused", 64, tls=tls.caller)
            try:
                out[name]["rounds"].append(await _measure(target, pids[name], counts))
            finally:
                await target.close()
            print(f"round {r + 1} {name}: {json.dumps(out[name]['rounds'][-1])}", flush=True)
    for name in candidates:
        out[name]["median"] = _median(out[name]["rounds"])
    return out


def markdown(results: dict[str, Any]) -> str:
    header = ["server", "refuses no client cert", "app sees client cert", "TTFB p50 / p99 ms",
              "64-frame streams/s (c=32)", "CPU ms per stream", "non-streaming req/s (c=16)", "p99 ms",
              "CPU ms per request"]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, r in results["servers"].items():
        m = r["median"]
        cells = [name, "yes" if r["refuses_no_client_certificate"] else "NO", r["peer_certificate_visible"],
                 f"{m['ttfb_p50_ms']:.2f} / {m['ttfb_p99_ms']:.2f}", f"{m['streams_per_s']:.0f}",
                 f"{m['cpu_ms_per_stream']:.2f}", f"{m['unary_per_s']:.0f}", f"{m['unary_p99_ms']:.1f}",
                 f"{m['cpu_ms_per_unary']:.3f}"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.servers", description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="a tenth of the counts, one round")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "servers-results.json")
    args = ap.parse_args(argv)
    counts = {"ttfb": 400, "streams": 1600, "unary": 4000}
    rounds = args.rounds
    if args.quick:
        counts, rounds = {k: v // 10 for k, v in counts.items()}, 1
    bin_dir = ensure_servers()
    raise_fd_limit()
    with tempfile.TemporaryDirectory(prefix="byok-servers-") as state:
        certs = Certs.create(Path(state) / "certs")
        group = ProcessGroup(Path(state))
        try:
            servers = asyncio.run(_run(list(CANDIDATES), rounds, counts, certs, bin_dir, group))
        finally:
            group.stop()
    results = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "pins": PINS, "counts": counts,
               "rounds": rounds, "servers": servers}
    args.out.write_text(json.dumps(results, indent=2))
    print(markdown(results))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
