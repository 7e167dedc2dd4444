"""Scenario 6: revocation latency. Three proxies follow two keyservice replicas that share a PostgreSQL database (the
throwaway cluster); each proxy holds a warm lease (TTL 300 s, so expiry plays no part). DeactivateCredential goes
to one replica, alternately; every proxy is probed in closed loops, by route (provider) and by explicit
credential id, until it refuses the key. Measured: from just before the DeactivateCredential call to the end of
the first refused probe of the slowest proxy stream, with no probe served with the key afterwards; and every
refused attempt must leave a lease.refuse audit event, or be counted by its proxy as answered from its negative
cache."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field

from byok.keys.v1 import key_service_pb2 as kpb
from byok.proxy.v1 import chat_service_pb2_grpc as pb_grpc
from reliability.certs import CALLER
from reliability.checks import Checks, wait_for
from reliability.context import Context
from reliability.report import Row
from reliability.stack import Service, Stack, add_key, audit_events, bind, call, chat_request, fake_key
from reliability.stats import ms, percentile

TITLE = "Revocation: DeactivateCredential to the last proxy refusing the key"
EXPECTED = ("p99 ≤ 1 s over all trials (3 proxies, 2 keyservice replicas on PostgreSQL); every later attempt audited "
            "or counted by its proxy")
P99_LIMIT = 1.0
PROBE_PAUSE = 0.01
STREAM_TIMEOUT = 8.0     # a stream still served after this is recorded as not refused
AFTER_REFUSAL = 3        # probes each stream keeps sending after its first refusal (none may be served)


@dataclass
class Probe:
    start: float
    end: float
    code: str
    credential_id: str


@dataclass
class Stream:
    proxy: str
    mode: str  # "route" | "explicit"
    probes: list[Probe] = field(default_factory=list)

    def refused_at(self) -> float | None:
        """End of the first refused probe after which nothing was served; None if never refused."""
        refused = None
        for p in self.probes:
            if p.code == "OK":
                refused = None
            elif refused is None:
                refused = p.end
        return refused


async def probe_stream(stream: Stream, chat: pb_grpc.ChatServiceStub, org: str, cid: str) -> None:
    extra = {"credential_id": cid} if stream.mode == "explicit" else {}
    deadline = time.monotonic() + STREAM_TIMEOUT
    after = 0
    while time.monotonic() < deadline and after < AFTER_REFUSAL:
        t0 = time.monotonic()
        code, _, reply = await call(chat.Chat(chat_request(org, **extra), timeout=5))
        stream.probes.append(Probe(t0, time.monotonic(), code, reply.credential_id if reply else ""))
        if code != "OK":
            after += 1
        await asyncio.sleep(PROBE_PAUSE)


async def run(ctx: Context) -> list[Row]:
    c = Checks(6, TITLE, expected=EXPECTED)
    trials = ctx.n(8, 100)
    pg = ctx.pg()
    url = pg.new_database()
    stack = await Stack.create(ctx.work, ctx.vault())
    stack.kv_prefix = "rel-rev-" + secrets.token_hex(3)
    try:
        ttl = {"BYOK_LEASE_TTL_SECONDS": "300"}
        ks = [stack.start_keyservice(url, **ttl), stack.start_keyservice(url, **ttl)]
        proxies: list[Service] = [stack.start_proxy(ks[0]), stack.start_proxy(ks[1]), stack.start_proxy(ks[0])]
        # Trials start once every proxy follows its replica's revocation stream.
        for p in proxies:
            await wait_for(lambda p=p: '"revocations.connected"' in p.proc.log.read_text(errors="replace"), 20)
        admins = [stack.admin(k) for k in ks]
        chats = [stack.chat(p) for p in proxies]
        latencies: list[float] = []
        not_refused = 0
        served_after = 0
        upstream_after = 0
        refused_attempts: Counter[str] = Counter()
        warm_failures = 0
        codes: Counter[str] = Counter()
        for i in range(trials):
            org = f"rel-rev-{i}"
            admin = admins[i % 2]
            await bind(admin, org)
            key = fake_key("sk-proj-")
            cid = await add_key(admin, org, key)
            # Warm every proxy's lease for both routes (a live cached key is what revocation must kill).
            for chat in chats:
                for extra in ({}, {"credential_id": cid}):
                    code, _, _ = await call(chat.Chat(chat_request(org, **extra), timeout=10))
                    warm_failures += code != "OK"
            streams = [Stream(p.proc.name, mode) for p in proxies for mode in ("route", "explicit")]
            t0 = time.monotonic()
            tasks = [asyncio.create_task(probe_stream(s, chats[j // 2], org, cid)) for j, s in enumerate(streams)]
            code, _, _ = await call(admin.DeactivateCredential(kpb.DeactivateCredentialRequest(credential_id=cid),
                                                               timeout=10))
            codes[f"deactivate {code}"] += 1
            await asyncio.gather(*tasks)
            ends = [s.refused_at() for s in streams]
            if any(e is None for e in ends):
                not_refused += 1
                continue
            last = max(e for e in ends if e is not None)
            latencies.append(last - t0)
            for s, refused in zip(streams, ends, strict=True):
                assert refused is not None
                served_after += sum(1 for p in s.probes if p.start > refused and p.code == "OK")
                for p in s.probes:
                    codes[f"{s.mode} {p.code}"] += 1
                    if p.code != "OK":
                        refused_attempts[org] += 1
            upstream_after += sum(1 for t, k in stack.upstream.seen if k == key and t > last)

        # Every refused attempt is one IssueKeyLease that keyservice must have audited as lease.refuse. Lease
        # audits are batched per replica and ListAuditEvents flushes only the answering replica's batch: ask
        # replica 2 first so that its batch is written too.
        await audit_events(admins[1], org_id="rel-rev-0")
        refusals = [e for e in await audit_events(admins[0], action="lease.refuse")
                    if e.org_id.startswith("rel-rev-") and json.loads(e.details_json or "{}").get("caller") == CALLER]
        # A proxy answers a repeated refusal from its negative cache (issue 11) or refuses a caller past its budget
        # of keyservice calls without asking keyservice; those attempts are counted by the proxies' metrics, and
        # every other refused attempt must be a lease.refuse event.
        in_proxy = sum(p.metric("byok_proxy_lease_cache_lookups_total", result=r)
                       for p in proxies for r in ("negative", "limited"))
        refused_total = sum(refused_attempts.values())
        unaudited = refused_total - int(in_proxy) - len(refusals)
        outcomes = Counter(e.outcome for e in refusals)

        p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
        worst = max(latencies, default=float("nan"))
        c.done = ("2 keyservice replicas on one PostgreSQL database (LISTEN/NOTIFY), 3 proxies (2 on replica 1, 1 on "
                  "replica 2), lease TTL 300 s; per trial a fresh credential warmed on every proxy, then "
                  "DeactivateCredential on alternating replicas while 6 probe loops (each proxy by route and by "
                  f"explicit credential id, {PROBE_PAUSE * 1000:.0f} ms apart) run until refused")
        c.count = f"{trials} trials, {sum(refused_attempts.values())} refused attempts"
        c.check(len(latencies) == trials and not not_refused and p99 <= P99_LIMIT,
                f"last proxy refusing: p50 {ms(p50)}, p99 {ms(p99)}, max {ms(worst)}; {not_refused} trials with a "
                f"proxy still serving after {STREAM_TIMEOUT:.0f} s")
        c.check(served_after == 0 and upstream_after == 0 and warm_failures == 0,
                f"{served_after} probes served after their proxy refused, {upstream_after} upstream requests with the "
                f"key after the last refusal; {warm_failures} warm-up failures")
        c.check(unaudited == 0 and refused_total > 0,
                f"{len(refusals)} lease.refuse audit events {dict(outcomes)} and {int(in_proxy)} refusals from the "
                f"proxies' negative caches (metric) for {refused_total} refused attempts: {unaudited} unaccounted")
        c.figures = {"latencies_s": [round(x, 4) for x in latencies], "p50_s": p50, "p99_s": p99, "max_s": worst,
                     "codes": dict(codes), "audit_outcomes": dict(outcomes)}
        return [c.row()]
    finally:
        await stack.close()


