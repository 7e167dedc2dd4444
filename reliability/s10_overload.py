"""Scenario 10: overload. More concurrent RPCs than BYOK_MAX_CONCURRENT_RPCS on the proxy (slow streams, four
times the limit) and on keyservice (the limit held by open WatchRevocations streams, then bursts of leases):
the excess is refused at once with RESOURCE_EXHAUSTED, the work in progress never exceeds the limit (counted
by the upstream as concurrent provider streams, and exactly by holding the limit on keyservice), and the
admitted requests keep a bounded latency."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import grpc

from byok.keys.v1 import key_service_pb2 as kpb
from reliability.checks import Checks
from reliability.context import Context
from reliability.report import Row
from reliability.stack import Service, Stack, add_key, bind, call, lease_request, stream_request
from reliability.stats import ms, percentile

TITLE = "Overload: more concurrent RPCs than BYOK_MAX_CONCURRENT_RPCS"
PROXY_LIMIT, KS_LIMIT = 16, 8
OVERSUBSCRIBE = 4  # concurrent callers per admitted slot
FRAMES, FRAME_DELAY = 10, 0.05  # a 0.45 s provider stream: long enough for callers to pile up
REFUSE_BOUND = 0.25  # s: "prompt" = no queueing, far below one stream's duration
ADMITTED_SLACK = 1.0  # s over the unloaded median an admitted stream may take at p99 (2 shared cores)
KS_ADMITTED_BOUND = 0.5  # s: p99 of admitted IssueKeyLease in the bursts
EXPECTED = (f"excess refused with RESOURCE_EXHAUSTED, p99 time to refusal <= {REFUSE_BOUND * 1000:.0f} ms; active "
            f"work never above the limit; p99 of admitted proxy streams <= unloaded median + {ADMITTED_SLACK:.1f} s, "
            f"of admitted keyservice leases <= {KS_ADMITTED_BOUND * 1000:.0f} ms; 0 other errors")
ORG = "rel-overload"


async def _stream(stub: Any) -> int:
    n = 0
    async for _ in stub.StreamChat(stream_request(ORG, "gpt-4o-mini"), timeout=20):
        n += 1
    return n


async def _proxy_phase(c: Checks, stack: Stack, px: Service, seconds: float) -> dict[str, Any]:
    chat = stack.chat(px)
    up = stack.upstream
    # Unloaded reference: one stream at a time.
    unloaded: list[float] = []
    for _ in range(5):
        t0 = time.monotonic()
        await _stream(chat)
        unloaded.append(time.monotonic() - t0)
    reference = percentile(unloaded, 50)

    results: list[tuple[str, float]] = []
    stop = asyncio.Event()
    in_flight_peak = 0.0

    async def caller() -> None:
        while not stop.is_set():
            t0 = time.monotonic()
            code, _, _ = await call(_stream(chat))
            results.append((code, time.monotonic() - t0))
            if code != "OK":
                # A refused client backs off briefly (as a retrying client would); keeps the pressure on
                # without turning the scenario into a CPU spin on two shared cores.
                await asyncio.sleep(0.05)

    async def sample_metrics() -> None:
        nonlocal in_flight_peak
        while not stop.is_set():
            try:
                value = await asyncio.to_thread(px.metric, "byok_rpc_in_flight")
                in_flight_peak = max(in_flight_peak, value)
            except OSError:
                pass
            await asyncio.sleep(0.2)

    up.peak_open_streams = 0
    tasks = [asyncio.create_task(caller()) for _ in range(PROXY_LIMIT * OVERSUBSCRIBE)]
    sampler = asyncio.create_task(sample_metrics())
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*tasks, sampler)
    peak = up.peak_open_streams
    outcome = Counter(code for code, _ in results)
    admitted = [t for code, t in results if code == "OK"]
    refused = [t for code, t in results if code == "RESOURCE_EXHAUSTED"]
    others = {k: v for k, v in outcome.items() if k not in ("OK", "RESOURCE_EXHAUSTED")}
    p99_ok, p99_refused = percentile(admitted, 99), percentile(refused, 99)
    after = (await call(_stream(chat)))[0]
    c.check(bool(refused) and bool(admitted) and not others,
            f"proxy (limit {PROXY_LIMIT}, {PROXY_LIMIT * OVERSUBSCRIBE} concurrent callers, {seconds:.0f} s): "
            f"{dict(outcome)}")
    c.check(refused != [] and p99_refused <= REFUSE_BOUND,
            f"proxy: RESOURCE_EXHAUSTED after p50 {ms(percentile(refused, 50))}, p99 {ms(p99_refused)}")
    c.check(0 < peak <= PROXY_LIMIT and in_flight_peak <= PROXY_LIMIT,
            f"proxy: at most {peak} provider streams open at once (limit {PROXY_LIMIT}; upstream's count), "
            f"in-flight gauge peak {in_flight_peak:.0f} (sampled)")
    c.check(admitted != [] and p99_ok <= reference + ADMITTED_SLACK and after == "OK",
            f"proxy: admitted {FRAMES}-frame streams p50 {ms(percentile(admitted, 50))}, p99 {ms(p99_ok)} "
            f"(unloaded median {ms(reference)}, bound {ms(reference + ADMITTED_SLACK)}); next request after "
            f"the load: {after}")
    return {"proxy_outcomes": dict(outcome), "proxy_peak_streams": peak, "proxy_in_flight_peak": in_flight_peak,
            "proxy_unloaded_median_s": reference, "proxy_admitted_p99_s": p99_ok,
            "proxy_refused_p99_s": p99_refused}


async def _keyservice_phase(c: Checks, stack: Stack, ks: Service, rounds: int) -> dict[str, Any]:
    leases = stack.as_proxy(ks)
    # Hold the limit with open WatchRevocations streams (the proxy's own stream counts as one in flight).
    base = await asyncio.to_thread(ks.metric, "byok_rpc_in_flight")
    held: list[Any] = []
    for _ in range(KS_LIMIT - int(base)):
        stream = leases.WatchRevocations(kpb.WatchRevocationsRequest())
        first = await asyncio.wait_for(stream.read(), 10)
        assert first.ready, "WatchRevocations did not open"
        held.append(stream)
    full, n_held = await asyncio.to_thread(ks.metric, "byok_rpc_in_flight"), len(held)
    probes: Counter[str] = Counter()
    probe_times: list[float] = []
    extra = leases.WatchRevocations(kpb.WatchRevocationsRequest())
    try:
        await asyncio.wait_for(extra.read(), 5)
        probes["OK"] += 1
    except grpc.aio.AioRpcError as exc:
        probes[exc.code().name] += 1
    for _ in range(rounds * 4):
        t0 = time.monotonic()
        code, _, _ = await call(leases.IssueKeyLease(lease_request(ORG), timeout=5))
        probe_times.append(time.monotonic() - t0)
        probes[code] += 1
    held.pop().cancel()
    await asyncio.sleep(0.2)
    freed = (await call(leases.IssueKeyLease(lease_request(ORG), timeout=5)))[0]
    for stream in held:
        stream.cancel()
    await asyncio.sleep(0.3)

    # Bursts: OVERSUBSCRIBE x the limit leases at once, repeatedly.
    burst: Counter[str] = Counter()
    ok_times: list[float] = []
    refused_times: list[float] = []

    async def one() -> None:
        t0 = time.monotonic()
        code, _, _ = await call(leases.IssueKeyLease(lease_request(ORG), timeout=10))
        (ok_times if code == "OK" else refused_times).append(time.monotonic() - t0)
        burst[code] += 1

    for _ in range(rounds):
        await asyncio.gather(*(one() for _ in range(KS_LIMIT * OVERSUBSCRIBE)))
        await asyncio.sleep(0.05)
    all_refused = probes.get("RESOURCE_EXHAUSTED", 0) == sum(probes.values())
    c.check(full == KS_LIMIT and all_refused and freed == "OK",
            f"keyservice (limit {KS_LIMIT}) held full by {n_held} streams + the proxy's (in-flight gauge "
            f"{full:.0f}): {sum(probes.values())} further RPCs {dict(probes)}, refused after p99 "
            f"{ms(percentile(probe_times, 99))}; one stream closed: next lease {freed}")
    others = {k: v for k, v in burst.items() if k not in ("OK", "RESOURCE_EXHAUSTED")}
    p99_ok = percentile(ok_times, 99)
    c.check(not others and ok_times != [] and p99_ok <= KS_ADMITTED_BOUND
            and (not refused_times or percentile(refused_times, 99) <= REFUSE_BOUND),
            f"keyservice: {rounds} bursts of {KS_LIMIT * OVERSUBSCRIBE} concurrent IssueKeyLease: {dict(burst)}; "
            f"admitted p99 {ms(p99_ok)}, refused p99 {ms(percentile(refused_times, 99))}")
    return {"ks_probes": dict(probes), "ks_in_flight_when_full": full, "ks_bursts": dict(burst),
            "ks_admitted_p99_s": p99_ok, "ks_refused_p99_s": percentile(refused_times, 99)}


async def run(ctx: Context) -> list[Row]:
    c = Checks(10, TITLE, expected=EXPECTED)
    seconds, rounds = ctx.n(6, 25), ctx.n(5, 30)
    vault = ctx.vault()
    stack = await Stack.create(ctx.work, vault)
    stack.kv_prefix = "rel-overload"
    stack.upstream.config.frames, stack.upstream.config.frame_delay = FRAMES, FRAME_DELAY
    try:
        ks = stack.start_keyservice(f"sqlite:///{ctx.work}/ks.db", BYOK_MAX_CONCURRENT_RPCS=str(KS_LIMIT))
        px = stack.start_proxy(ks, BYOK_MAX_CONCURRENT_RPCS=str(PROXY_LIMIT))
        admin = stack.admin(ks)
        await add_key(admin, ORG, "sk-test-" + "2" * 40)
        await bind(admin, ORG)
        figures = await _proxy_phase(c, stack, px, seconds)
        figures.update(await _keyservice_phase(c, stack, ks, rounds))
        c.done = (f"proxy: {PROXY_LIMIT * OVERSUBSCRIBE} closed-loop StreamChat callers against a limit of "
                  f"{PROXY_LIMIT} ({FRAMES} frames x {FRAME_DELAY * 1000:.0f} ms); keyservice: limit {KS_LIMIT} "
                  "held by WatchRevocations streams, then bursts of concurrent IssueKeyLease")
        c.count = (f"{sum(figures['proxy_outcomes'].values())} proxy streams in {seconds:.0f} s; "
                   f"{sum(figures['ks_probes'].values()) + sum(figures['ks_bursts'].values())} keyservice RPCs")
        c.figures = figures
        return [c.row()]
    finally:
        await stack.close()
