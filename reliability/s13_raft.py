"""Scenario 13: OpenBao as a 3-node Raft cluster (integrated storage, real `bao` binaries on loopback), its active
node SIGKILLed under lease and create load. keyservice is given every node's address (BYOK_VAULT_ADDR, a
comma-separated list, active node first): it moves on from the dead node to a standby, which forwards requests to
whichever node the election makes active. Measured: the election (kill to a node answering active) and the window
in which calls failed; every failure must fall inside it and be UNAVAILABLE/DEADLINE_EXCEEDED (never INTERNAL),
every lease must carry its tenant's key, every acknowledged create must be readable afterwards, and keyservice
must recover without a restart. Full mode kills the active node again after the first victim has rejoined."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter
from dataclasses import dataclass, field

from byok.keys.v1 import key_service_pb2 as kpb
from byok.keys.v1 import key_service_pb2_grpc as kpb_grpc
from reliability.checks import Checks
from reliability.context import Context
from reliability.report import Row
from reliability.stack import Stack, add_key, bind, call, fake_key, lease_request
from reliability.stats import ms
from reliability.vault import RaftCluster

TITLE = "OpenBao Raft cluster: active node SIGKILLed under lease and create load"
EXPECTED = ("failures only inside the election window; 0 INTERNAL; 0 wrong keys; 0 lost acknowledged writes; "
            "keyservice recovers with no restart")
DEADLINE = 5.0      # the caller's deadline for every call
SETTLE = 6.0        # load kept running after a new active node, to see recovery
# A call may fail from the kill until the new active node serves plus the time a call started just before
# then takes to come back (keyservice's Vault timeout and one backoff step).
WINDOW_SLACK = 3.0


@dataclass
class Outcome:
    kind: str   # "lease" | "create"
    start: float
    end: float
    code: str


@dataclass
class Load:
    tenants: dict[str, str]                       # org -> its key
    outcomes: list[Outcome] = field(default_factory=list)
    acked: list[tuple[str, str, str]] = field(default_factory=list)  # (org, credential id, key) of OK creates
    wrong_keys: int = 0
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def leases(self, stub: kpb_grpc.KeyServiceStub) -> None:
        orgs = list(self.tenants)
        while not self.stop.is_set():
            org = random.choice(orgs)
            t0 = time.monotonic()
            code, _, reply = await call(stub.IssueKeyLease(lease_request(org), timeout=DEADLINE))
            self.outcomes.append(Outcome("lease", t0, time.monotonic(), code))
            if reply is not None and reply.api_key != self.tenants[org]:
                self.wrong_keys += 1
            await asyncio.sleep(0.01)

    async def creates(self, admin: kpb_grpc.KeyServiceStub, org: str, names: itertools.count[int]) -> None:
        while not self.stop.is_set():
            key = fake_key()
            t0 = time.monotonic()
            code, _, reply = await call(admin.CreateCredential(kpb.CreateCredentialRequest(
                provider="openai", scope=kpb.Scope(org_id=org), name=f"w{next(names)}", api_key=key),
                timeout=DEADLINE))
            self.outcomes.append(Outcome("create", t0, time.monotonic(), code))
            if reply is not None:
                self.acked.append((org, reply.credential.credential_id, key))
            await asyncio.sleep(0.02)


async def run(ctx: Context) -> list[Row]:
    c = Checks(13, TITLE, expected=EXPECTED)
    rounds = ctx.n(1, 3)
    cluster = RaftCluster(ctx.work, 3)
    t0 = time.monotonic()
    await asyncio.to_thread(cluster.start)
    await asyncio.to_thread(cluster.wait_writable, "secret/data/rel-raft-probe")
    formed = time.monotonic() - t0
    stack = await Stack.create(ctx.work, cluster)
    stack.kv_prefix = "rel-raft"
    try:
        ks = stack.start_keyservice(f"sqlite:///{ctx.work}/ks.db", vault_token=cluster.root_token,
                                    BYOK_VAULT_ADDR=",".join(cluster.addrs), BYOK_VAULT_TRANSIT_KEY="byok-rel-raft",
                                    BYOK_LEASE_TTL_SECONDS="60")
        admin, leases = stack.admin(ks), stack.as_proxy(ks)
        tenants: dict[str, str] = {}
        for i in range(ctx.n(6, 20)):
            org = f"rel-raft-{i}"
            await bind(admin, org)
            tenants[org] = fake_key("sk-proj-")
            await add_key(admin, org, tenants[org])
        load = Load(tenants)
        write_org = "rel-raft-writes"
        await bind(admin, write_org)
        names = itertools.count()
        tasks = [asyncio.create_task(load.leases(leases)) for _ in range(3)]
        tasks += [asyncio.create_task(load.creates(admin, write_org, names)) for _ in range(2)]

        elections: list[float] = []
        windows: list[tuple[float, float]] = []   # (kill, new active node serving)
        victims: list[str] = []
        await asyncio.sleep(2.0)
        for _ in range(rounds):
            leader = await asyncio.to_thread(cluster.wait_leader)
            victims.append(leader.name)
            killed_at = time.monotonic()
            leader.proc.kill()
            await asyncio.to_thread(cluster.wait_leader, 30, other_than=leader)
            active_at = time.monotonic()
            elections.append(active_at - killed_at)
            windows.append((killed_at, active_at))
            await asyncio.sleep(SETTLE)
            if len(victims) < rounds:  # the victim comes back and rejoins before the next kill
                await asyncio.to_thread(leader.proc.start)
                await asyncio.to_thread(cluster.unseal, leader)
                await asyncio.to_thread(cluster.wait_members, len(cluster.nodes))
                await asyncio.sleep(1.0)
        load.stop.set()
        await asyncio.gather(*tasks)

        # Every acknowledged create must still be there, with its key, on the cluster that survived.
        lost = 0
        for org, cid, key in load.acked:
            code, _, reply = await call(leases.IssueKeyLease(lease_request(org, credential_id=cid), timeout=10))
            lost += code != "OK" or reply.api_key != key
        after_last = [o for o in load.outcomes if o.start > windows[-1][1] + WINDOW_SLACK]

        def in_window(o: Outcome) -> bool:
            return any(kill <= o.end and o.start <= active + WINDOW_SLACK for kill, active in windows)

        failed = [o for o in load.outcomes if o.code != "OK"]
        outside = [o for o in failed if not in_window(o)]
        codes = Counter(f"{o.kind} {o.code}" for o in load.outcomes)
        internal = sum(1 for o in failed if o.code in ("INTERNAL", "UNKNOWN"))
        bad_codes = sum(1 for o in failed if o.code not in ("UNAVAILABLE", "DEADLINE_EXCEEDED"))
        spans = []
        for kill, active in windows:
            mine = [o for o in failed if kill <= o.end and o.start <= active + WINDOW_SLACK]
            spans.append((min((o.start for o in mine), default=kill) - kill,
                          max((o.end for o in mine), default=kill) - kill, len(mine)))
        c.done = (f"3 OpenBao nodes (Raft, retry_join, performance_multiplier 1, formed in {formed:.1f} s), "
                  "keyservice with BYOK_VAULT_ADDR listing all three (active first) in envelope mode; 3 closed-loop "
                  "IssueKeyLease and 2 CreateCredential workers; SIGKILL of the active node"
                  + (", restart and rejoin, repeated" if rounds > 1 else ""))
        c.count = (f"{rounds} kill(s) ({', '.join(victims)}), {len(load.outcomes)} calls, "
                   f"{len(load.acked)} acknowledged creates")
        c.check(not outside and bad_codes == 0 and internal == 0,
                "election (kill to a node active): " + ", ".join(ms(e) for e in elections)
                + "; failed calls per kill: " + ", ".join(
                    f"{n} from +{ms(a)} to +{ms(b)}" for a, b, n in spans)
                + f"; {len(outside)} failures outside the window, {internal} INTERNAL, {bad_codes} not UNAVAILABLE")
        c.check(load.wrong_keys == 0, f"{load.wrong_keys} leases with another tenant's key")
        c.check(lost == 0 and bool(load.acked), f"{lost} of {len(load.acked)} acknowledged creates lost")
        recovered = bool(after_last) and all(o.code == "OK" for o in after_last)
        c.check(recovered and ks.proc.starts == 1 and ks.proc.alive(),
                f"after the window: {sum(o.code == 'OK' for o in after_last)}/{len(after_last)} calls OK, "
                f"keyservice started {ks.proc.starts} time(s)")
        c.figures = {"elections_s": [round(e, 3) for e in elections], "formed_s": round(formed, 2),
                     "failure_spans_s": [[round(a, 3), round(b, 3), n] for a, b, n in spans],
                     "codes": dict(codes), "acked_creates": len(load.acked)}
        return [c.row()]
    finally:
        await stack.close()
        cluster.stop()
