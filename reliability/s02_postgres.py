"""Scenario 2: PostgreSQL stopped and restarted mid-load (a throwaway cluster, never the shared server): the
same expectations as scenario 1, plus 0 lost acknowledged writes (every CreateCredential that answered OK is
still there afterwards)."""

from __future__ import annotations

import secrets

from reliability.checks import Checks
from reliability.context import Context
from reliability.outage import TTL, run_outage
from reliability.report import Row
from reliability.stack import Stack

TITLE = "PostgreSQL stopped and restarted mid-load"
EXPECTED = ("keyservice: UNAVAILABLE within deadline, 0 INTERNAL; proxy serves on live leases, none after expiry; "
            "recovery with no restart; 0 wrong keys; 0 lost acknowledged writes")


async def run(ctx: Context) -> list[Row]:
    c = Checks(2, TITLE, expected=EXPECTED)
    c.done = ("IssueKeyLease, proxy Chat and CreateCredential loops, lease TTL 5 s, keyservice on a throwaway "
              "PostgreSQL cluster; `pg_ctl stop -m fast`, wait TTL+3 s, `pg_ctl start`")
    pg = ctx.pg()
    url = pg.new_database()
    stack = await Stack.create(ctx.work, ctx.vault())
    stack.kv_prefix = "rel-pg-" + secrets.token_hex(3)
    try:
        ks = stack.start_keyservice(url, BYOK_LEASE_TTL_SECONDS=str(int(TTL)))
        px = stack.start_proxy(ks)
        await run_outage(c, stack, ks, px, "rel-pg", breaks=[("stopped", pg.stop, TTL + 3.0)], repair=pg.start,
                         writes=True)
        return [c.row()]
    finally:
        await stack.close()
        if not pg.started:
            pg.start()
