"""Scenario 14: one of two keyservice replicas (one PostgreSQL database, the shared OpenBao) SIGKILLed under load.
Two proxies reach both replicas through one gRPC target (`ipv4:127.0.0.1:A,127.0.0.1:B`, what a headless Service's
`dns:///` name resolves to), balanced round robin. Measured: requests whose lease is warm in the proxy (0 may fail),
requests for tenants never seen before ("cold": the proxy must fetch a lease, and succeed on the surviving replica
within its lease-fetch deadline), sent in a burst at the moment of the kill and afterwards; and the revocation watch:
each proxy's stream must reopen on the survivor, shown by a deactivation there being refused by every proxy."""

from __future__ import annotations

import asyncio
import functools
import random
import secrets
import time
from collections import Counter

from byok.keys.v1 import key_service_pb2 as kpb
from byok.proxy.v1 import chat_service_pb2_grpc as pb_grpc
from reliability.checks import Checks, wait_for
from reliability.context import Context
from reliability.report import Row
from reliability.stack import Service, Stack, add_key, bind, call, chat_request, fake_key
from reliability.stats import ms, percentile

TITLE = "keyservice replica SIGKILLed behind two proxies (round robin over both replicas)"
EXPECTED = ("warm-lease requests: 0 failures; cold requests: all succeed on the surviving replica within the "
            "lease-fetch deadline; every proxy's revocation watch reopens on the survivor")
LEASE_FETCH_DEADLINE = 2.0   # BYOK_KEYSERVICE_TIMEOUT_SECONDS given to the proxies
CALL_TIMEOUT = 10.0


def connections(proxy: Service) -> int:
    return proxy.proc.log.read_text(errors="replace").count('"revocations.connected"')


async def run(ctx: Context) -> list[Row]:
    c = Checks(14, TITLE, expected=EXPECTED)
    warm_n, cold_n = ctx.n(6, 30), ctx.n(12, 60)
    url = ctx.pg().new_database()
    stack = await Stack.create(ctx.work, ctx.vault())
    stack.kv_prefix = "rel-replica-" + secrets.token_hex(3)
    try:
        ttl = {"BYOK_LEASE_TTL_SECONDS": "300"}
        ks = [stack.start_keyservice(url, **ttl), stack.start_keyservice(url, **ttl)]
        target = "ipv4:" + ",".join(f"127.0.0.1:{k.port}" for k in ks)
        proxies = [stack.start_proxy(ks[0], BYOK_KEYSERVICE_ADDR=target, BYOK_KEYSERVICE_SERVER_NAME="localhost",
                                     BYOK_KEYSERVICE_TIMEOUT_SECONDS=str(LEASE_FETCH_DEADLINE),
                                     BYOK_DEV_LOOPBACK_HTTP="1") for _ in range(2)]
        for p in proxies:
            await wait_for(functools.partial(connections, p), 20)
        admin = stack.admin(ks[1])
        chats: list[pb_grpc.ChatServiceStub] = [stack.chat(p) for p in proxies]
        warm, cold = [f"rel-rk-warm-{i}" for i in range(warm_n)], [f"rel-rk-cold-{i}" for i in range(cold_n)]
        warm_cids: dict[str, str] = {}
        for org in warm + cold:
            await bind(admin, org)
            warm_cids[org] = await add_key(admin, org, fake_key("sk-proj-"))
        warm_fail = 0
        for org in warm:  # a warm lease for every warm tenant on every proxy
            for chat in chats:
                code, _, _ = await call(chat.Chat(chat_request(org), timeout=CALL_TIMEOUT))
                warm_fail += code != "OK"
        c.check(warm_fail == 0, f"{warm_fail} warm-up failures")

        stop = asyncio.Event()
        warm_codes: Counter[str] = Counter()

        async def warm_loop(chat: pb_grpc.ChatServiceStub) -> None:
            while not stop.is_set():
                code, _, _ = await call(chat.Chat(chat_request(random.choice(warm[1:])), timeout=CALL_TIMEOUT))
                warm_codes[code] += 1
                await asyncio.sleep(0.01)

        cold_results: list[tuple[str, float]] = []

        async def cold_call(org: str, chat: pb_grpc.ChatServiceStub) -> None:
            t0 = time.monotonic()
            code, _, _ = await call(chat.Chat(chat_request(org), timeout=CALL_TIMEOUT))
            cold_results.append((code, time.monotonic() - t0))

        loops = [asyncio.create_task(warm_loop(chat)) for chat in chats for _ in range(2)]
        await asyncio.sleep(1.0)
        before = [connections(p) for p in proxies]
        # The victim: the replica carrying the most revocation watches (the warm loops cause no keyservice calls,
        # so what is in flight on a replica now is its open WatchRevocations streams), so that a watch must move.
        victim_ks = max(ks, key=lambda k: k.metric("byok_rpc_in_flight"))
        survivor = next(k for k in ks if k is not victim_ks)
        watches = [int(k.metric("byok_rpc_in_flight")) for k in ks]
        # The kill, with half the cold tenants asked for at that very moment (their lease fetches are in flight
        # on either replica), the other half once the replica is gone.
        burst = [asyncio.create_task(cold_call(org, chats[i % 2])) for i, org in enumerate(cold[: cold_n // 2])]
        victim_ks.proc.kill()
        await asyncio.gather(*burst)
        for i, org in enumerate(cold[cold_n // 2:]):
            await cold_call(org, chats[i % 2])
        # Each proxy's watch: reopened on the survivor if it was on the dead replica; either way it must follow
        # the survivor now. A deactivation there must reach both proxies.
        reopened = [connections(p) - b for p, b in zip(proxies, before, strict=True)]
        victim = warm[0]  # left out of the warm loops
        admin = stack.admin(survivor)
        await call(admin.DeactivateCredential(kpb.DeactivateCredentialRequest(credential_id=warm_cids[victim]),
                                              timeout=10))
        t_revoke = time.monotonic()

        async def refused(chat: pb_grpc.ChatServiceStub) -> bool:
            code, _, _ = await call(chat.Chat(chat_request(victim), timeout=CALL_TIMEOUT))
            return code != "OK"

        refusals = [await wait_for(functools.partial(refused, chat), 10) for chat in chats]
        revoke_latency = time.monotonic() - t_revoke
        stop.set()
        await asyncio.gather(*loops)
        warm_failures = sum(n for code, n in warm_codes.items() if code != "OK")
        cold_codes = Counter(code for code, _ in cold_results)
        cold_latencies = [t for code, t in cold_results if code == "OK"]
        slowest = max(cold_latencies, default=float("nan"))
        c.done = ("2 keyservice replicas on one PostgreSQL database, 2 proxies with BYOK_KEYSERVICE_ADDR="
                  "ipv4:<both replicas> (round robin, UNAVAILABLE retried), lease TTL 300 s; 4 closed-loop Chat "
                  "workers on warm tenants; SIGKILL of the replica carrying the most revocation watches, with a "
                  "burst of cold tenants in flight, then more cold tenants one by one; then DeactivateCredential on "
                  "the survivor")
        c.count = (f"{sum(warm_codes.values())} warm requests over {warm_n} tenants, {len(cold_results)} cold "
                   f"tenants")
        c.check(warm_failures == 0, f"warm-lease requests: {dict(warm_codes)}")
        c.check(cold_codes.get("OK", 0) == cold_n and slowest <= LEASE_FETCH_DEADLINE,
                f"cold requests: {dict(cold_codes)}, p50 {ms(percentile(cold_latencies, 50))}, slowest "
                f"{ms(slowest)} (lease-fetch deadline {LEASE_FETCH_DEADLINE:.0f} s)")
        c.check(all(refusals) and sum(reopened) >= 1 and survivor.proc.alive() and not victim_ks.proc.alive(),
                f"watches per replica at the kill {watches}, reopened per proxy: {reopened}; a deactivation on the "
                "survivor refused by "
                f"{sum(refusals)}/{len(proxies)} proxies within {ms(revoke_latency)}")
        c.figures = {"warm_codes": dict(warm_codes), "cold_codes": dict(cold_codes),
                     "cold_latencies_s": [round(t, 3) for t in cold_latencies], "reopened": reopened,
                     "revoke_latency_s": round(revoke_latency, 3)}
        return [c.row()]
    finally:
        await stack.close()
