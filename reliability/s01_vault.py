"""Scenario 1: Vault sealed, then killed, mid-load. keyservice must answer UNAVAILABLE within the caller's
deadline (never INTERNAL), the proxy must keep serving on live leases and stop once they expire, both must
recover after unseal/restart without being restarted, and the upstream must only ever see the tenant's key."""

from __future__ import annotations

import asyncio

from reliability.checks import Checks
from reliability.context import Context
from reliability.outage import TTL, run_outage
from reliability.report import Row
from reliability.stack import Stack
from reliability.vault import Vault

TITLE = "Vault sealed, then killed, mid-load"
EXPECTED = ("keyservice: UNAVAILABLE within deadline, 0 INTERNAL; proxy serves on live leases, 0 served after "
            "lease expiry; both recover with no restart; 0 wrong keys")


async def run(ctx: Context) -> list[Row]:
    c = Checks(1, TITLE, expected=EXPECTED)
    c.done = ("closed-loop IssueKeyLease (1 worker) and proxy Chat (2 workers), lease TTL 5 s; seal Vault, wait "
              "TTL+2 s, SIGKILL it, wait 3 s, restart on the same raft storage and unseal")
    vault = Vault(ctx.work)
    await asyncio.to_thread(vault.start)
    stack = await Stack.create(ctx.work, vault)
    try:
        ks = stack.start_keyservice(f"sqlite:///{ctx.work}/ks.db", BYOK_LEASE_TTL_SECONDS=str(int(TTL)))
        px = stack.start_proxy(ks)
        await run_outage(c, stack, ks, px, "rel-vault",
                         breaks=[("sealed", vault.seal, TTL + 2.0), ("killed", vault.kill, 3.0)],
                         repair=lambda: vault.start(unseal=False), finish=vault.unseal)
        return [c.row()]
    finally:
        await stack.close()
        vault.stop()
