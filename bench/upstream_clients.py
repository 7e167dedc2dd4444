"""The proxy's upstream client candidates, each measured alone: CPU per stream, by frames and idle pooled connections.

`python -m bench.upstream_clients [--rounds 3] [--quick]` starts the local upstream (`devstack.upstream`, OpenAI
SSE) on the load generator's core, then runs each candidate in a fresh process of its own on the other core:
after a warm-up, with 0, then 256, then 1,024 idle connections left in its pool (that many slow streams held at
once, then finished), it reads streams of 1 and of 64 frames at concurrency 16 and reports the CPU time it spent
(`time.process_time`, the whole process) per stream. The 64 frames come as fast as the upstream makes them
("64": several frames per socket read, as under load) and 2 ms apart ("64p": each frame its own read and wake-up,
as a model's tokens arrive). Rounds interleave the candidates; the table shows
each cell's median over the rounds. Results also go to `bench/results-upstream-clients.json`.

Candidates (each reads every body chunk as it comes; none parses SSE, so only the client's cost differs):
- `httpx+httpcore`: httpx's own transport and pool (httpcore 1, h11, anyio).
- `httpx+lean-pool`: the same with the lean pool that replaced two private httpcore methods (only where
  `proxyservice/lean_pool.py` still exists: the commit that measured it, docs/benchmarks.md).
- `httpx+httpx-aiohttp`: httpx on the `httpx-aiohttp` transport (aiohttp's client under httpx), when installed.
- `httpx+http1`: httpx on the proxy's transport (`proxyservice/transport.py`), read through httpx's iteration.
- `aiohttp`: a bare aiohttp `ClientSession`, no httpx (the engine's own cost).
- `upstream`: the proxy's `Upstream` as the servicer calls it (`open`, egress pinning, `chunks`), on its transport.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.procs import core_split, on_cores, raise_fd_limit

CONCURRENCY = 16
IDLE_LEVELS = (0, 256, 1024)
KINDS = {"1": "gpt-4o?frames=1", "64": "gpt-4o?frames=64", "64p": "gpt-4o?frames=64&delay=0.002"}  # upstream models
STREAMS = {"1": 400, "64": 200, "64p": 128}
QUICK_STREAMS = {"1": 100, "64": 30, "64p": 16}
HEADERS = {"authorization": "Bearer sk-bench-" + "x" * 40, "content-type": "application/json",
           "accept": "text/event-stream"}
RESULTS = Path(__file__).resolve().parent / "results-upstream-clients.json"


def _body(model: str) -> bytes:
    return json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": True}).encode()


Stream = Callable[[bytes], Awaitable[int]]  # sends one request body, reads the answer's chunks, returns their count


async def _httpx(port: int, transport: Any) -> tuple[Stream, Callable[[], Awaitable[None]]]:
    import httpx  # noqa: PLC0415  (each candidate imports only what it uses)

    limits = httpx.Limits(max_connections=2048, max_keepalive_connections=2048, keepalive_expiry=60)
    client = httpx.AsyncClient(limits=limits, transport=transport, trust_env=False, timeout=60)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"

    async def stream(body: bytes) -> int:
        n = 0
        async with client.stream("POST", url, content=body, headers=HEADERS) as response:
            async for _ in response.aiter_bytes():
                n += 1
        return n
    return stream, client.aclose


async def httpx_httpcore(port: int) -> tuple[Stream, Callable[[], Awaitable[None]]]:
    return await _httpx(port, None)


async def httpx_lean_pool(port: int) -> tuple[Stream, Callable[[], Awaitable[None]]]:
    import httpx  # noqa: PLC0415

    lean_pool = importlib.import_module("proxyservice.lean_pool")  # gone after the choice: see `available`
    limits = httpx.Limits(max_connections=2048, max_keepalive_connections=2048, keepalive_expiry=60)
    return await _httpx(port, lean_pool.lean_transport(limits))


async def httpx_aiohttp(port: int) -> tuple[Stream, Callable[[], Awaitable[None]]]:
    import httpx  # noqa: PLC0415
    from httpx_aiohttp import AiohttpTransport  # noqa: PLC0415

    limits = httpx.Limits(max_connections=2048, max_keepalive_connections=2048, keepalive_expiry=60)
    return await _httpx(port, AiohttpTransport(limits=limits, trust_env=False))


async def httpx_http1(port: int) -> tuple[Stream, Callable[[], Awaitable[None]]]:
    from proxyservice.transport import Http1Transport  # noqa: PLC0415

    return await _httpx(port, Http1Transport(max_connections=2048, keepalive_expiry=60))


async def bare_aiohttp(port: int) -> tuple[Stream, Callable[[], Awaitable[None]]]:
    import aiohttp  # noqa: PLC0415

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=2048, keepalive_timeout=60),
                                    cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"

    async def stream(body: bytes) -> int:
        n = 0
        async with session.post(url, data=body, headers=HEADERS) as response:
            async for _ in response.content.iter_any():
                n += 1
        return n
    return stream, session.close


async def upstream_face(port: int) -> tuple[Stream, Callable[[], Awaitable[None]]]:
    from byokcommon.egress import EgressPolicy  # noqa: PLC0415
    from proxyservice.adapters.base import UpstreamRequest  # noqa: PLC0415
    from proxyservice.upstream import Upstream  # noqa: PLC0415

    upstream = Upstream(connect_timeout=30, read_timeout=60, max_connections=2048,
                        egress=EgressPolicy(dev_loopback_http=True))
    url = f"http://127.0.0.1:{port}/v1/chat/completions"

    async def stream(body: bytes) -> int:
        n = 0
        response = await upstream.open(UpstreamRequest("POST", url, HEADERS, body), "openai", "openai")
        try:
            async for _ in response.chunks():
                n += 1
        finally:
            await response.aclose()
        return n
    return stream, upstream.close


CANDIDATES: dict[str, Callable[[int], Awaitable[tuple[Stream, Callable[[], Awaitable[None]]]]]] = {
    "httpx+httpcore": httpx_httpcore, "httpx+lean-pool": httpx_lean_pool, "httpx+httpx-aiohttp": httpx_aiohttp,
    "httpx+http1": httpx_http1, "aiohttp": bare_aiohttp, "upstream": upstream_face,
}


def available() -> list[str]:
    """The candidates this tree can run (the lean pool is gone after the choice; httpx-aiohttp is optional)."""
    names = list(CANDIDATES)
    if importlib.util.find_spec("proxyservice.lean_pool") is None:
        names.remove("httpx+lean-pool")
    if importlib.util.find_spec("httpx_aiohttp") is None:
        names.remove("httpx+httpx-aiohttp")
    return names


async def _run(stream: Stream, body: bytes, count: int, concurrency: int) -> None:
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            if await stream(body) < 1:
                raise RuntimeError("an answer without a body")

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def measure(name: str, port: int, streams: dict[str, int]) -> dict[str, float]:
    """CPU ms per stream, keyed "idle/kind", for one candidate in this process."""
    stream, close = await CANDIDATES[name](port)
    bodies = {kind: _body(model) for kind, model in KINDS.items()}
    out: dict[str, float] = {}
    try:
        await _run(stream, bodies["1"], 200, CONCURRENCY)  # warm-up: imports, first connections, caches
        for idle in IDLE_LEVELS:
            if idle:  # hold idle + CONCURRENCY slow streams at once: the pool keeps that many connections
                await _run(stream, _body("gpt-4o?frames=2&delay=0.5"), idle + CONCURRENCY, idle + CONCURRENCY)
            for kind in KINDS:
                gc.collect()
                t0 = time.process_time()
                await _run(stream, bodies[kind], streams[kind], CONCURRENCY)
                out[f"{idle}/{kind}"] = round((time.process_time() - t0) / streams[kind] * 1000, 4)
    finally:
        await close()
    return out


def _child(name: str, port: int, quick: bool) -> None:
    import uvloop  # noqa: PLC0415  (the proxy's event loop)

    result = uvloop.run(measure(name, port, QUICK_STREAMS if quick else STREAMS))
    print(json.dumps(result), flush=True)


def _load() -> float:
    return os.getloadavg()[0]


def main(rounds: int, quick: bool) -> int:
    raise_fd_limit()
    split = core_split()
    py = sys.executable
    with on_cores(split.driver):
        upstream = subprocess.Popen([py, "-m", "devstack.upstream", "--print-port"], stdout=subprocess.PIPE)
    try:
        assert upstream.stdout is not None
        port = int(upstream.stdout.readline())
        names = available()
        runs: dict[str, list[dict[str, float]]] = {n: [] for n in names}
        loads = [_load()]
        print(f"cores: {split.describe()}; load average {loads[0]:.2f}", flush=True)
        for r in range(rounds):
            for name in names:
                argv = [py, "-m", "bench.upstream_clients", "--child", name, "--port", str(port)]
                with on_cores(split.sut):
                    done = subprocess.run(argv + (["--quick"] if quick else []), capture_output=True, text=True,
                                          timeout=900, check=False)
                if done.returncode != 0:
                    print(f"  {name}: failed\n{done.stderr[-2000:]}", flush=True)
                    continue
                runs[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(f"  round {r + 1} {name}: {runs[name][-1]}", flush=True)
            loads.append(_load())
        table = {n: {k: statistics.median(run[k] for run in rs) for k in rs[0]} for n, rs in runs.items() if rs}
        RESULTS.write_text(json.dumps({"rounds": runs, "medians": table, "load_averages": loads,
                                       "cores": split.describe(), "concurrency": CONCURRENCY,
                                       "streams": QUICK_STREAMS if quick else STREAMS}, indent=1))
        print(_markdown(table, loads))
    finally:
        upstream.terminate()
        upstream.wait(10)
    return 0


def _markdown(table: dict[str, dict[str, float]], loads: list[float]) -> str:
    cols = [f"{idle}/{kind}" for idle in IDLE_LEVELS for kind in KINDS]
    lines = ["| candidate | " + " | ".join(f"{c.split('/')[0]} idle, {c.split('/')[1]}" for c in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for name, row in table.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[c]:.3f}" for c in cols) + " |")
    lines.append(f"CPU ms per stream, medians; load average {min(loads):.2f}–{max(loads):.2f} over the run")
    return "\n".join(lines)


def cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.upstream_clients", description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        _child(args.child, args.port, args.quick)
        return 0
    return main(args.rounds, args.quick)


if __name__ == "__main__":
    sys.exit(cli())
