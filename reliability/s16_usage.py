"""Scenario 16: usage counted exactly once across a fleet that loses a proxy and restarts keyservice, and a budget
tripped by three proxies at once.

Three proxies and two keyservice replicas (one PostgreSQL database) serve closed-loop Chat load over tenants that
each have their own key, so the local upstream's record of which key arrived is the ground truth per tenant. A third
of the way in, one proxy is SIGKILLed (its tenants get no more traffic: what it had not reported is lost, and only
that); two thirds in, both keyservice replicas are stopped and started again while the proxies serve from their
cached leases and hold the usage. A batch is delivered, the replicas restarted, and the same batch delivered again to
each: it must count once. Then three fresh proxies reporting every record at once (`BYOK_USAGE_BATCH_RECORDS=1`) trip
a budget together: each proxy may have at most one request in flight when the trip's revocation reaches it, and
start none after it."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import math
import random
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import timestamp_pb2

from byok.keys.v1 import key_service_pb2 as kpb
from byok.keys.v1 import key_service_pb2_grpc as kpb_grpc
from byok.proxy.v1 import chat_service_pb2_grpc as pb_grpc
from reliability.certs import CALLER
from reliability.checks import Checks, wait_for
from reliability.context import Context
from reliability.report import Row
from reliability.s14_replica_kill import connections
from reliability.stack import Service, Stack, add_key, bind, call, chat_request, fake_key, stream_request

TITLE = "usage across 3 proxies and 2 keyservice replicas: a proxy SIGKILLed, keyservice restarted, a budget tripped"
EXPECTED = ("every tenant's counted requests equal the upstream's count, except the killed proxy's tenants, which "
            "lose at most what it had not reported (2 report intervals of its request rate plus its requests in "
            "flight); no tenant counted above the upstream, a batch resent across a restart counted once; a budget "
            "tripped by 3 proxies: each had at most one request in flight when the trip reached it and started none "
            "after, so at most 2 x 3 - 1 requests past the crossing one")
REPORT_INTERVAL = 1.0          # BYOK_USAGE_REPORT_INTERVAL_SECONDS: the default
WORKERS_PER_PROXY = 4
CALL_TIMEOUT = 10.0
# The budget's requests: streams of 8 frames 5 ms apart (~40 ms, far shorter than a real completion), so that a
# worker's next request is in flight, not finished, by the time the trip's revocation reaches its proxy.
BUDGET_FRAMES, BUDGET_FRAME_DELAY = 8, 0.005


async def totals_by_org(admin: kpb_grpc.KeyServiceStub) -> dict[str, kpb.UsageRow]:
    reply = await admin.QueryUsage(kpb.QueryUsageRequest(grouping=kpb.USAGE_GROUPING_TOTAL,
                                                         dimensions=[kpb.USAGE_DIMENSION_ORG]), timeout=20)
    return {row.org_id: row for row in reply.rows}


def probe_batch(org: str, credential_id: str) -> kpb.ReportUsageRequest:
    """One record, as a proxy would send it, under a fixed batch id."""
    now = timestamp_pb2.Timestamp()
    now.GetCurrentTime()
    return kpb.ReportUsageRequest(batch_id=str(uuid.uuid4()), records=[kpb.UsageRecord(
        time=now, scope=kpb.Scope(org_id=org), caller_identity=CALLER, provider="openai", model="gpt-4o-mini",
        credential_id=credential_id, key_source=kpb.KEY_SOURCE_TENANT, input_tokens=7, output_tokens=3,
        status="OK", duration_ms=5, surface="chat")])


async def run(ctx: Context) -> list[Row]:
    c = Checks(16, TITLE, expected=EXPECTED)
    total_requests, orgs_per_proxy = ctx.n(2_400, 20_000), ctx.n(3, 5)
    url = ctx.pg().new_database()
    stack = await Stack.create(ctx.work, ctx.vault())
    stack.kv_prefix = "rel-usage-" + secrets.token_hex(3)
    try:
        ttl = {"BYOK_LEASE_TTL_SECONDS": "300"}
        ks = [stack.start_keyservice(url, **ttl), stack.start_keyservice(url, **ttl)]
        target = "ipv4:" + ",".join(f"127.0.0.1:{k.port}" for k in ks)
        fleet = {"BYOK_KEYSERVICE_ADDR": target, "BYOK_KEYSERVICE_SERVER_NAME": "localhost",
                 "BYOK_USAGE_REPORT_INTERVAL_SECONDS": str(REPORT_INTERVAL)}
        proxies = [stack.start_proxy(ks[0], **fleet) for _ in range(3)]
        for proxy in proxies:
            await wait_for(functools.partial(connections, proxy), 20)
        admin = stack.admin(ks[1])
        chats: list[pb_grpc.ChatServiceStub] = [stack.chat(p) for p in proxies]
        # Each proxy has its own tenants, each tenant its own key: the upstream's keys say whose request it was.
        orgs = [[f"rel-u{p}-{i}" for i in range(orgs_per_proxy)] for p in range(3)]
        org_of_key: dict[str, str] = {}
        credentials: dict[str, str] = {}
        for org in [o for group in orgs for o in group] + ["rel-u-probe", "rel-u-budget"]:
            await bind(admin, org)
            key = fake_key("sk-proj-")
            credentials[org] = await add_key(admin, org, key)
            org_of_key[key] = org

        def upstream_counts(after: float = float("-inf"), before: float = float("inf")) -> Counter[str]:
            return Counter(org_of_key[k] for t, k in stack.upstream.seen if k in org_of_key and after <= t < before)

        warm_fail = 0
        for p, chat in enumerate(chats):  # every tenant's lease warm on its proxy
            for org in orgs[p]:
                code, _, _ = await call(chat.Chat(chat_request(org), timeout=CALL_TIMEOUT))
                warm_fail += code != "OK"
        c.check(warm_fail == 0, f"{warm_fail} warm-up failures")

        victim = 2
        killed = asyncio.Event()
        issued = [0]
        # The conductor lets the load run up to `cap` requests at a time, so each event happens where it should
        # (the load is fast enough to finish while a replica is still shutting down otherwise).
        cap = [total_requests // 3]
        raised = asyncio.Condition()
        in_flight = Counter[int]()
        codes: Counter[str] = Counter()

        async def worker(w: int) -> None:
            while issued[0] < total_requests:
                if issued[0] >= cap[0]:
                    async with raised:
                        await raised.wait_for(lambda: issued[0] < cap[0])
                    continue
                issued[0] += 1
                p = w % 3
                if p == victim and killed.is_set():
                    p = w % 2  # the victim's workers move to the survivors (and their tenants)
                in_flight[p] += 1
                try:
                    code, _, _ = await call(chats[p].Chat(chat_request(random.choice(orgs[p])), timeout=CALL_TIMEOUT))
                finally:
                    in_flight[p] -= 1
                codes[code] += 1

        async def let_run(to: int) -> None:
            async with raised:
                cap[0] = to
                raised.notify_all()

        def held(proxy: Service) -> int:
            return int(proxy.metric("byok_proxy_usage_records_held"))

        kill: dict[str, float] = {}
        restart: dict[str, float] = {}
        probe = probe_batch("rel-u-probe", credentials["rel-u-probe"])
        probe_answers: list[tuple[str, int, bool]] = []

        async def deliver(to: Service) -> None:
            reply = await stack.as_proxy(to).ReportUsage(probe, timeout=20, wait_for_ready=True)
            probe_answers.append((to.proc.name, reply.accepted_count, reply.duplicate))

        async def conductor() -> None:
            await wait_for(lambda: issued[0] >= cap[0], 600)  # a third in
            await let_run(2 * total_requests // 3)
            await wait_for(lambda: in_flight[victim] >= WORKERS_PER_PROXY, 10)  # the kill comes under load
            t = time.monotonic()
            kill["held_before"] = held(proxies[victim])
            kill["in_flight"] = in_flight[victim]
            kill["rate"] = sum(n for org, n in upstream_counts(t - 1.0, t).items() if org in orgs[victim])
            proxies[victim].proc.kill()
            killed.set()
            await wait_for(lambda: issued[0] >= cap[0], 600)
            await deliver(ks[0])  # counted once here...
            t0 = time.monotonic()
            await let_run(issued[0] + total_requests // 20)  # load goes on while the replicas shut down
            await asyncio.gather(*(asyncio.to_thread(k.proc.stop, 15) for k in ks))
            down = issued[0]
            await let_run(down + total_requests // 20)  # served from cached leases, usage held
            await wait_for(lambda: issued[0] >= cap[0], 120)
            restart["down_requests"] = issued[0] - down
            restart["held_while_down"] = sum(held(p) for i, p in enumerate(proxies) if i != victim)
            await asyncio.gather(*(asyncio.to_thread(k.proc.start) for k in ks))
            restart["seconds"] = time.monotonic() - t0
            await let_run(total_requests)
            await deliver(ks[0])  # ...and not again, on the restarted replica nor on the other
            await deliver(ks[1])

        started = time.monotonic()
        tasks = [asyncio.create_task(worker(w)) for w in range(3 * WORKERS_PER_PROXY)]
        await asyncio.gather(conductor(), *tasks)
        load_seconds = time.monotonic() - started
        survivors = [p for i, p in enumerate(proxies) if i != victim]
        retries = sum(p.metric("byok_proxy_usage_batches_total", outcome="retry") for p in survivors)
        # Caught up: each survivor has sent what it held during the outage (its retry backoff and the channel's
        # reconnect decide how soon), so the SIGTERM's flush below has only its last interval to send.
        t0 = time.monotonic()
        caught_up = all([await wait_for(lambda p=p: held(p) == 0, 60) for p in survivors])
        catch_up_seconds = time.monotonic() - t0
        await asyncio.gather(*(asyncio.to_thread(p.proc.stop, 15) for p in survivors))  # SIGTERM: they flush
        admin = stack.admin(ks[0])
        counted = await totals_by_org(admin)
        truth = upstream_counts()
        over = {org: (counted[org].requests if org in counted else 0, truth[org]) for org in org_of_key.values()
                if org in counted and counted[org].requests > truth[org] and org != "rel-u-probe"}
        exact = [org for p in (0, 1) for org in orgs[p]]
        mismatched = {org: (counted[org].requests if org in counted else 0, truth[org]) for org in exact
                      if (counted[org].requests if org in counted else 0) != truth[org]}
        lost = sum(truth[org] - (counted[org].requests if org in counted else 0) for org in orgs[victim])
        bound = 2 * math.ceil(kill["rate"] * REPORT_INTERVAL) + WORKERS_PER_PROXY
        served = sum(truth[org] for group in orgs for org in group)
        duplicates = sum(k.metric("byok_usage_records_total", outcome="duplicate") for k in ks)
        probe_counted = counted["rel-u-probe"].requests if "rel-u-probe" in counted else 0

        c.check(not mismatched and not over,
                f"{served} requests reached the upstream in {load_seconds:.0f} s; the surviving proxies' "
                f"{len(exact)} tenants: counted = upstream for every one"
                + (f" except {mismatched}" if mismatched else "") + "; no tenant counted above the upstream"
                + (f" except {over}" if over else ""))
        c.check(0 <= lost <= bound,
                f"killed proxy ({kill['rate']} requests in its last second, {kill['in_flight']} in flight, "
                f"{kill['held_before']} records held just before the SIGKILL): {lost} requests lost, bound "
                f"2 x {REPORT_INTERVAL:.0f} s x rate + in flight = {bound}")
        all_ok = codes.get("OK", 0) >= total_requests - kill["in_flight"]  # only the killed proxy's may fail
        c.check(caught_up and restart["held_while_down"] > 0 and all_ok,
                f"both keyservice replicas stopped and started again ({restart['seconds']:.1f} s), "
                f"{restart['down_requests']} requests served meanwhile from cached leases, "
                f"{restart['held_while_down']} records held by the proxies then, all sent "
                f"{catch_up_seconds:.1f} s after the load ended ({retries:.0f} batch retries); "
                f"caller outcomes {dict(codes)}")
        c.check([(a, d) for _, a, d in probe_answers] == [(1, False), (0, True), (0, True)] and probe_counted == 1,
                "one batch delivered before the restart and again to each restarted replica: answers "
                + ", ".join(f"{name} accepted {a} duplicate {d}" for name, a, d in probe_answers)
                + f"; counted {probe_counted} time(s)")

        budget = await budget_trip(ctx, stack, ks, fleet, upstream_counts)
        # Past the crossing request: those in flight on the other proxies as it crossed, and those each proxy
        # started before the trip's revocation reached it: with one request per proxy at a time, 2 x 3 - 1.
        c.check(budget["refused"] == 3 and budget["in_flight_at_revocation"] == [1, 1, 1]
                and budget["started_after_revocation"] == [0, 0, 0] and budget["beyond"] <= 5,
                f"budget of {budget['limit']} micro-dollars ({budget['allowed']} requests' worth): "
                f"{budget['requests']} requests served, {budget['beyond']} beyond the one that crossed it, "
                f"overshoot {budget['overshoot']} micro-dollars ({budget['overshoot'] / budget['one']:.1f} "
                f"requests); requests in flight on each proxy when the revocation reached it "
                f"{budget['in_flight_at_revocation']} (bound: 1 each), started after it "
                f"{budget['started_after_revocation']}; refusals {budget['refusals']}")
        c.done = (f"2 keyservice replicas (one PostgreSQL database), 3 proxies over both (report interval "
                  f"{REPORT_INTERVAL:.0f} s), {3 * WORKERS_PER_PROXY} closed-loop Chat workers over "
                  f"{3 * orgs_per_proxy} tenants with a key each; proxy 3 SIGKILLed at 1/3, both replicas "
                  "SIGTERMed and started again at 2/3 with a batch delivered before and after; survivors SIGTERMed "
                  "(flush); then 3 fresh proxies with BYOK_USAGE_BATCH_RECORDS=1, one stream worker each, against "
                  "a day budget")
        c.count = (f"{served} requests; {budget['requests']} budget requests; {duplicates:.0f} duplicate records "
                   "refused by the restarted replicas")
        c.figures = {"served": served, "load_seconds": round(load_seconds, 1), "lost": lost, "loss_bound": bound,
                     "kill": kill, "restart": {k: round(v, 2) for k, v in restart.items()},
                     "batch_retries": retries, "catch_up_seconds": round(catch_up_seconds, 2), "codes": dict(codes),
                     "probe": probe_answers, "budget": budget}
        return [c.row()]
    finally:
        await stack.close()


async def budget_trip(ctx: Context, stack: Stack, ks: list[Service], fleet: dict[str, str],
                      upstream_counts: Callable[[], Counter[str]]) -> dict[str, Any]:
    """Three proxies reporting each record as it ends, one closed-loop stream worker each, against a day budget of
    `allowed` requests less half of one: every worker must be refused, and at most one request per proxy counted
    past the crossing one."""
    org = "rel-u-budget"
    allowed = ctx.n(20, 60)
    stack.upstream.config.frames, stack.upstream.config.frame_delay = BUDGET_FRAMES, BUDGET_FRAME_DELAY
    proxies = [stack.start_proxy(ks[0], BYOK_USAGE_BATCH_RECORDS="1", **fleet) for _ in range(3)]
    for p in proxies:
        await wait_for(functools.partial(connections, p), 20)
    admin = stack.admin(ks[1])
    chats = [stack.chat(p) for p in proxies]

    async def stream(chat: pb_grpc.ChatServiceStub) -> tuple[str, str]:
        code, detail = "OK", ""
        try:
            async for _ in chat.StreamChat(stream_request(org, "gpt-4o-mini"), timeout=CALL_TIMEOUT):
                pass
        except grpc.aio.AioRpcError as exc:
            code, detail = exc.code().name, exc.details() or ""
        return code, detail

    async def counted() -> kpb.UsageRow:
        return (await totals_by_org(admin)).get(org, kpb.UsageRow())

    async def counted_is(n: int) -> bool:
        return (await counted()).requests == n

    warm = [await stream(chat) for chat in chats]  # a warm lease on each proxy, and the price of one request
    await wait_for(functools.partial(counted_is, 3), 20)
    row = await counted()
    one = row.spend_micros // 3
    if one <= 0:
        raise RuntimeError(f"the budget's tenant: warm-up {warm}, counted {row}")
    limit = allowed * one - one // 2
    await admin.SetBudget(kpb.SetBudgetRequest(budget=kpb.Budget(
        scope=kpb.Scope(org_id=org), period=kpb.BUDGET_PERIOD_DAY, limit_micros=limit)), timeout=10)
    refusals: Counter[str] = Counter()

    async def worker(chat: pb_grpc.ChatServiceStub) -> None:
        for _ in range(4 * allowed):  # bounded: the budget must stop it long before
            code, detail = await stream(chat)
            if code != "OK":
                refusals[f"{code}: {detail[:detail.find(')') + 1] if 'budget' in detail else detail[:80]}"] += 1
                return

    await asyncio.gather(*(worker(chat) for chat in chats))
    upstream = upstream_counts()[org]
    await wait_for(functools.partial(counted_is, upstream), 20)
    row = await counted()
    for p in proxies:
        await asyncio.to_thread(p.proc.stop, 15)
    refused = sum(n for reason, n in refusals.items() if reason.startswith("RESOURCE_EXHAUSTED: budget bud_"))
    at_revocation = [timeline(p, org) for p in proxies]
    return {"limit": limit, "one": one, "allowed": allowed, "requests": row.requests, "upstream": upstream,
            "beyond": row.requests - allowed, "overshoot": row.spend_micros - limit, "refused": refused,
            "refusals": dict(refusals), "in_flight_at_revocation": [n for n, _ in at_revocation],
            "started_after_revocation": [n for _, n in at_revocation]}


def timeline(proxy: Service, org: str) -> tuple[int, int]:
    """From a stopped proxy's log: of the org's requests it served, how many were in flight when it applied the
    org's budget revocation, and how many started after it (-1, -1 if it never applied one)."""
    applied: float | None = None
    served: list[tuple[float, float]] = []
    for line in proxy.proc.log.read_text(errors="replace").splitlines():
        if not line.startswith("{") or f'"org_id": "{org}"' not in line:
            continue
        entry = json.loads(line)
        at = dt.datetime.fromisoformat(entry["timestamp"]).timestamp()
        if entry["event"] == "revocations.applied" and applied is None:
            applied = at
        elif entry["event"] == "chat" and entry["status"] == "OK":
            served.append((at - entry["duration_ms"] / 1000, at))
    if applied is None:
        return -1, -1
    return (sum(1 for start, end in served if start <= applied < end),
            sum(1 for start, _ in served if start > applied))

