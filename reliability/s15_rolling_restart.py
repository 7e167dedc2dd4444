"""Scenario 15: a rolling restart of the proxy, the way a Deployment rolls: two replicas behind one name, one at a time
SIGTERMed (the drain: NOT_SERVING on health while still serving, then a graceful stop that lets open streams finish)
and replaced by a new process on the same port, then the other. Callers are gRPC clients of both replicas
(`ipv4:` target, round robin, UNAVAILABLE retried by the client's retry policy — what a headless Service and a
standard gRPC client give). Under a steady population of open streams (each a few seconds long, reopened as it
ends) and steady new unary requests: 0 streams cut (every stream ends with its usage frame, none with an error)
and 0 failed requests."""

from __future__ import annotations

import asyncio
import functools
import json
import secrets
import time
from collections import Counter

import grpc

from byok.proxy.v1 import chat_service_pb2_grpc as pb_grpc
from byokcommon.tls import channel_credentials
from devstack.upstream import UpstreamConfig
from reliability.checks import Checks, wait_for
from reliability.context import Context
from reliability.report import Row
from reliability.stack import Service, Stack, add_key, bind, call, chat_request, fake_key, stream_request
from reliability.stats import ms, percentile

TITLE = "Proxy rolling restart (SIGTERM with the drain, then a new process) under open streams and new requests"
EXPECTED = "0 streams cut, 0 failed requests (callers balance over both replicas and retry UNAVAILABLE as gRPC does)"
STREAMS = 200
FRAMES, FRAME_DELAY = 12, 0.25   # each stream lasts about 3 s
DRAIN, GRACE = 1.0, 10.0         # BYOK_SHUTDOWN_DRAIN_SECONDS / _GRACE_SECONDS: grace covers a whole stream
CLIENT_CONFIG = json.dumps({
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [{"name": [{"service": "byok.proxy.v1.ChatService"}],
                      "retryPolicy": {"maxAttempts": 4, "initialBackoff": "0.1s", "maxBackoff": "1s",
                                      "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}}],
})


def served(proxy: Service) -> float:
    """Requests the proxy process has answered; 0 while its metrics port is not open yet."""
    try:
        return proxy.metric("byok_rpc_requests_total")
    except OSError:
        return 0.0


async def run(ctx: Context) -> list[Row]:
    c = Checks(15, TITLE, expected=EXPECTED)
    rolls = ctx.n(1, 3)  # full mode rolls the pair three times
    stack = await Stack.create(ctx.work, ctx.vault(), UpstreamConfig(frames=FRAMES, frame_delay=FRAME_DELAY))
    stack.kv_prefix = "rel-roll-" + secrets.token_hex(3)
    try:
        ks = stack.start_keyservice(f"sqlite:///{ctx.work}/ks.db", BYOK_LEASE_TTL_SECONDS="300")
        extra = {"BYOK_SHUTDOWN_DRAIN_SECONDS": str(DRAIN), "BYOK_SHUTDOWN_GRACE_SECONDS": str(GRACE),
                 "BYOK_DEV_LOOPBACK_HTTP": "1"}
        proxies: list[Service] = [stack.start_proxy(ks, **extra) for _ in range(2)]
        admin = stack.admin(ks)
        org = "rel-roll"
        await bind(admin, org)
        await add_key(admin, org, fake_key("sk-proj-"))
        target = "ipv4:" + ",".join(f"127.0.0.1:{p.port}" for p in proxies)
        channel = grpc.aio.secure_channel(target, channel_credentials(stack.tls["caller"]), options=[
            ("grpc.ssl_target_name_override", "localhost"), ("grpc.service_config", CLIENT_CONFIG),
            ("grpc.enable_retries", 1), ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 2000)])
        stack.channels.append(channel)
        chat = pb_grpc.ChatServiceStub(channel)
        for _ in range(4):  # warm the lease on both replicas
            code, _, _ = await call(chat.Chat(chat_request(org), timeout=20))

        stop = asyncio.Event()
        streams: Counter[str] = Counter()
        unary: Counter[str] = Counter()
        open_now = [0]
        peak = [0]

        async def stream_loop() -> None:
            while not stop.is_set():
                open_now[0] += 1
                peak[0] = max(peak[0], open_now[0])
                outcome = "cut: no usage frame"
                try:
                    async for frame in chat.StreamChat(stream_request(org, "gpt-4o-mini"), timeout=30):
                        if frame.HasField("usage"):
                            outcome = "complete"
                except grpc.aio.AioRpcError as exc:
                    outcome = f"cut: {exc.code().name}"
                finally:
                    open_now[0] -= 1
                streams[outcome] += 1

        latencies: list[float] = []

        async def unary_loop() -> None:
            while not stop.is_set():
                t0 = time.monotonic()
                code, _, _ = await call(chat.Chat(chat_request(org), timeout=30))
                unary[code] += 1
                latencies.append(time.monotonic() - t0)
                await asyncio.sleep(0.05)

        tasks = [asyncio.create_task(stream_loop()) for _ in range(STREAMS)]
        tasks += [asyncio.create_task(unary_loop()) for _ in range(2)]
        await wait_for(lambda: open_now[0] >= STREAMS, 30)
        await asyncio.sleep(1.0)
        roll_seconds: list[float] = []
        open_at_sigterm: list[int] = []
        for _ in range(rolls):
            for proxy in proxies:
                t0 = time.monotonic()
                open_at_sigterm.append(open_now[0])
                await asyncio.to_thread(proxy.proc.stop, DRAIN + GRACE + 5)  # SIGTERM, wait for the exit
                await asyncio.to_thread(proxy.proc.start)                     # the new process, same port
                roll_seconds.append(time.monotonic() - t0)
                # Like a Deployment's readiness gate: the next replica rolls once the new process serves callers.
                await wait_for(functools.partial(served, proxy), 30)
        await asyncio.sleep(FRAMES * FRAME_DELAY + 1)
        stop.set()
        await asyncio.gather(*tasks)

        cut = sum(n for k, n in streams.items() if k != "complete")
        failed = sum(n for k, n in unary.items() if k != "OK")
        c.done = (f"2 proxy replicas (drain {DRAIN:.0f} s, grace {GRACE:.0f} s), a caller channel over both "
                  f"(ipv4: target, round robin, UNAVAILABLE retried); {STREAMS} stream loops ({FRAMES} frames "
                  f"{FRAME_DELAY * 1000:.0f} ms apart) and 2 unary loops; each replica in turn SIGTERMed, waited "
                  "for, and started again on its port")
        c.count = (f"{rolls * len(proxies)} replica restarts, {sum(streams.values())} streams (peak {peak[0]} open, "
                   f"{min(open_at_sigterm)}-{max(open_at_sigterm)} open at each SIGTERM), {sum(unary.values())} "
                   "unary requests")
        c.check(cut == 0 and sum(streams.values()) > 0, f"streams: {dict(streams)}")
        c.check(failed == 0, f"unary requests: {dict(unary)}, p50 {ms(percentile(latencies, 50))}, "
                f"p99 {ms(percentile(latencies, 99))}")
        c.check(all(p.proc.alive() and p.proc.starts == 1 + rolls for p in proxies),
                "each replica restarted: " + ", ".join(f"{s:.1f} s" for s in roll_seconds)
                + " from SIGTERM to the new process listening")
        c.figures = {"streams": dict(streams), "unary": dict(unary), "roll_seconds": [round(s, 2) for s in
                     roll_seconds], "open_at_sigterm": open_at_sigterm, "peak_open": peak[0]}
        return [c.row()]
    finally:
        await stack.close()
