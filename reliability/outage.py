"""The shared shape of scenarios 1 and 2: load through keyservice and the proxy, break a dependency, repair
it, and judge what callers saw (codes, deadlines, live-lease serving, recovery, wrong keys, lost writes)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from byok.keys.v1 import key_service_pb2 as kpb
from reliability.certs import CALLER
from reliability.checks import Checks, Load, codes, wait_for
from reliability.stack import (
    Service,
    Stack,
    add_key,
    audit_events,
    bind,
    call,
    chat_request,
    fake_key,
    lease_request,
)
from reliability.stats import ms

TTL = 5.0
DEADLINE = 5.0


async def run_outage(c: Checks, stack: Stack, ks: Service, px: Service, org: str, *,
                     breaks: list[tuple[str, Callable[[], Any], float]], repair: Callable[[], Any],
                     finish: Callable[[], Any] | None = None, writes: bool = False) -> None:
    """`breaks`: (label, action, seconds to wait after it) run in order; `repair` starts the recovery (its
    start is t_up), `finish` completes it (e.g. unseal). Fills `c`."""
    key = fake_key()
    stack.upstream.config.keys["openai"] = {key}
    admin = stack.admin(ks)
    await add_key(admin, org, key)
    await bind(admin, org)
    direct = CALLER + "-direct"  # our own lease worker, told apart from the proxy's leases in the audit
    await bind(admin, org, direct)
    leases, chat = stack.as_proxy(ks), stack.chat(px)
    load = Load()
    load.add("lease", lambda: leases.IssueKeyLease(lease_request(org, caller=direct), timeout=DEADLINE), pause=0.05)
    load.add("chat", lambda: chat.Chat(chat_request(org), timeout=DEADLINE), pause=0.01, workers=2)
    acked: list[str] = []
    if writes:
        counter = iter(range(1_000_000))

        async def write() -> Any:
            reply = await admin.CreateCredential(kpb.CreateCredentialRequest(
                provider="openai", scope=kpb.Scope(org_id=org + "-w"), name=f"w{next(counter)}",
                api_key=fake_key()), timeout=DEADLINE)
            acked.append(reply.credential.credential_id)
            return reply
        load.add("write", write, pause=0.05)
    await asyncio.sleep(2.0)
    marks: dict[str, float] = {}
    t_break = 0.0
    for i, (label, action, wait) in enumerate(breaks):
        await asyncio.to_thread(action)
        marks[label] = time.monotonic()
        if i == 0:
            t_break = marks[label]  # after the call returned: every request from now on meets the fault
        await asyncio.sleep(wait)
    # The outage ends when the repair begins; recovery is counted from here. (Taken before the call: `pg_ctl
    # start -w` returns only after it has polled the server up, and requests served by the restarted server
    # in between are recovery, not answers during the outage.)
    t_up = time.monotonic()
    await asyncio.to_thread(repair)
    if finish is not None:
        await asyncio.to_thread(finish)
    await wait_for(lambda: any(e.code == "OK" for e in load.select("lease", after=t_up))
                   and any(e.code == "OK" for e in load.select("chat", after=t_up))
                   and (not writes or any(e.code == "OK" for e in load.select("write", after=t_up))), 40)
    await asyncio.sleep(1.0)
    await load.stop()

    kinds = ["lease", "write"] if writes else ["lease"]
    # Requests that ended before the repair began (one that started in the outage may succeed by retrying
    # into the recovery, which is fine).
    outage = [e for k in kinds for e in load.select(k, after=t_break) if e.end < t_up]
    ks_codes = codes(outage)
    slowest = max((e.end - e.start for e in outage), default=0.0)
    c.count = (", ".join(f"{len(load.select(k))} {k}s" for k in ["lease", "chat", *kinds[1:]])
               + f"; outage {t_up - t_break:.1f} s")
    c.check(bool(outage) and set(ks_codes) == {"UNAVAILABLE"} and slowest < DEADLINE,
            f"keyservice during outage: {ks_codes}, slowest answer {ms(slowest)} (deadline {DEADLINE:.0f} s)")
    internal = sum(1 for e in load.events if e.code in ("INTERNAL", "UNKNOWN"))
    c.check(internal == 0, f"{internal} INTERNAL/UNKNOWN of {len(load.events)}")
    # The proxy's last lease before the fault (from the audit trail) says until when it may serve.
    issued = [e.time.ToMicroseconds() / 1e6 for e in await audit_events(admin, org_id=org, action="lease.issue")
              if json.loads(e.details_json or "{}").get("caller") == CALLER]
    wall_to_mono = time.monotonic() - time.time()
    last_issue = max((t + wall_to_mono for t in issued if t + wall_to_mono < t_break), default=t_break)
    usable_until = last_issue + TTL - 1.0  # the proxy stops 1 s before expiry (EXPIRY_MARGIN_SECONDS)
    live = load.select("chat", after=t_break, before=usable_until - 0.1)
    c.check(all(e.code == "OK" for e in live),
            f"proxy on its live lease (usable {usable_until - t_break:.2f} s after the fault): {codes(live)}")
    after_expiry = [e for e in load.select("chat", after=last_issue + TTL + 0.1) if e.end < t_up]
    served_after = [e for e in after_expiry if e.code == "OK"]
    c.check(not served_after and bool(after_expiry),
            f"proxy served {len(served_after)} after its lease expired; then {codes(after_expiry)}")
    rec_ks = min((e.end - t_up for e in load.select("lease", after=t_up) if e.code == "OK"), default=float("nan"))
    rec_px = min((e.end - t_up for e in load.select("chat", after=t_up) if e.code == "OK"), default=float("nan"))
    restarted = [s.proc.name for s in (ks, px) if s.proc.starts != 1 or not s.proc.alive()]
    c.check(rec_ks == rec_ks and rec_px == rec_px and not restarted,
            f"recovered: keyservice in {ms(rec_ks)}, proxy in {ms(rec_px)} after repair began, "
            f"processes restarted: {restarted or 'none'}")
    wrong = sum(1 for _, k in stack.upstream.seen if k != key)
    c.check(wrong == 0 and stack.upstream.unauthorized() == 0,
            f"{wrong} wrong keys of {len(stack.upstream.seen)} upstream requests")
    c.figures |= {"keyservice_outage_codes": ks_codes, "slowest_outage_answer_s": slowest,
                  "recovery_keyservice_s": rec_ks, "recovery_proxy_s": rec_px,
                  "lease_usable_after_fault_s": usable_until - t_break,
                  "marks_s": {k: round(v - t_break, 2) for k, v in marks.items()},
                  **{f"{k}_codes": codes(load.select(k)) for k in ["lease", "chat", *kinds[1:]]}}
    if writes:
        lost = []
        for cid in acked:
            code, _, _ = await call(admin.GetCredential(kpb.GetCredentialRequest(credential_id=cid), timeout=10))
            if code != "OK":
                lost.append(cid)
        c.check(not lost, f"{len(lost)} lost of {len(acked)} acknowledged writes")
        c.figures["acknowledged_writes"] = len(acked)


Break = tuple[str, Callable[[], Any], float]
Awaitables = Awaitable[Any]
