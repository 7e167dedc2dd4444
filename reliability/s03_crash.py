"""Scenario 3: keyservice SIGKILLed at random moments during create, rotate, deactivate and delete loops, many
times. After a restart and reconciler passes (grace 0, create deadline 1 s), no DB row may point at a missing
secret and no Vault entry may be orphaned. And no change may have committed without its revocation event (they
share one transaction): every rotated row has its `rotated` event, every inactive row its `deactivated`, every
acknowledged delete its `deleted` — a kill between a change and its event would leave proxies serving the old
key until their leases ran out."""

from __future__ import annotations

import asyncio
import random
import secrets
import sqlite3
from collections import Counter

from byok.keys.v1 import key_service_pb2 as kpb
from byok.keys.v1 import key_service_pb2_grpc as kpb_grpc
from reliability.checks import Checks, wait_for
from reliability.context import Context
from reliability.report import Row
from reliability.stack import Stack, call, fake_key

TITLE = "keyservice SIGKILLed during create/rotate/delete"
EXPECTED = ("after restart + reconciler passes: 0 DB rows pointing at missing secrets, 0 orphaned Vault entries; "
            "0 committed changes without their revocation event")
SEED = 20261123


async def run(ctx: Context) -> list[Row]:
    rounds = ctx.n(6, 30)
    rng = random.Random(SEED)
    c = Checks(3, TITLE, expected=EXPECTED)
    c.done = ("3 workers loop create→rotate→delete (or deactivate) through the real RPCs; keyservice SIGKILLed "
              f"after a random 0.3-1.5 s (seed {SEED}), restarted; finally restarted with grace 0 and a 1 s create "
              "deadline, two reconciler passes")
    vault = ctx.vault()
    stack = await Stack.create(ctx.work, vault)
    stack.kv_prefix = "rel-crash-" + secrets.token_hex(3)
    db = ctx.work / "ks.db"
    url = f"sqlite:///{db}"
    ops: Counter[str] = Counter()
    deleted: list[str] = []  # acknowledged deletes
    try:
        for r in range(rounds):
            ks = stack.start_keyservice(url, name="keyservice")
            stack.keyservices.clear()
            channel = stack.channel(ks.port, "admin")
            admin = kpb_grpc.KeyServiceStub(channel)
            stop = asyncio.Event()

            async def worker(w: int, r: int = r, admin: kpb_grpc.KeyServiceStub = admin,
                             stop: asyncio.Event = stop) -> None:
                n = 0
                while not stop.is_set():
                    n += 1
                    code, _, reply = await call(admin.CreateCredential(kpb.CreateCredentialRequest(
                        provider="openai", scope=kpb.Scope(org_id=f"crash{w}"), name=f"r{r}w{w}n{n}",
                        api_key=fake_key()), timeout=5))
                    ops[f"create {code}"] += 1
                    if code != "OK":
                        continue
                    cid = reply.credential.credential_id
                    code, _, _ = await call(admin.RotateCredentialSecret(kpb.RotateCredentialSecretRequest(
                        credential_id=cid, api_key=fake_key()), timeout=5))
                    ops[f"rotate {code}"] += 1
                    if rng.random() < 0.7:  # keep some rows alive so later rounds rotate over old versions too
                        code, _, _ = await call(admin.DeleteCredential(kpb.DeleteCredentialRequest(
                            credential_id=cid), timeout=5))
                        ops[f"delete {code}"] += 1
                        if code == "OK":
                            deleted.append(cid)
                    elif rng.random() < 0.5:
                        code, _, _ = await call(admin.DeactivateCredential(kpb.DeactivateCredentialRequest(
                            credential_id=cid), timeout=5))
                        ops[f"deactivate {code}"] += 1

            tasks = [asyncio.create_task(worker(w)) for w in range(3)]
            await asyncio.sleep(rng.uniform(0.3, 1.5))
            ks.proc.kill()
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            await channel.close()
        # The second pass comes at least 1 s after the start, so after the last kill by more than the create
        # deadline: it reclaims every create the kills left reserved.
        ks = stack.start_keyservice(url, name="keyservice", BYOK_RECONCILE_GRACE_SECONDS="0",
                                    BYOK_CREATE_DEADLINE_SECONDS="1", BYOK_RECONCILE_INTERVAL_SECONDS="1")
        before = ks.proc.log.read_text().count('"reconciler.pass"')  # the log holds earlier rounds' too
        passed = await wait_for(lambda: ks.proc.log.read_text().count('"reconciler.pass"') >= before + 2, 30)
        ks.proc.stop()
        database = sqlite3.connect(db)
        rows = database.execute("SELECT vault_path, secret_version FROM credentials").fetchall()
        events = set(database.execute("SELECT reason, credential_id FROM revocations").fetchall())
        unannounced = (
            [cid for (cid,) in database.execute("SELECT credential_id FROM credentials WHERE secret_version > 1")
             if ("rotated", cid) not in events]
            + [cid for (cid,) in database.execute("SELECT credential_id FROM credentials WHERE NOT active")
               if ("deactivated", cid) not in events]
            + [cid for cid in deleted if ("deleted", cid) not in events])
        database.close()
        dangling = 0
        for path, version in rows:
            r = vault.api("GET", f"secret/data/{path}", params={"version": version})
            if r.status_code != 200 or not (r.json().get("data") or {}).get("data"):
                dangling += 1
        referenced = {p for p, _ in rows}
        in_vault = vault.list_paths(stack.kv_prefix)
        orphans = [p for p in in_vault if p not in referenced]
        c.count = (f"{rounds} kills; ops answered: " + ", ".join(f"{k}={v}" for k, v in sorted(ops.items())))
        c.check(passed, "reconciler pass ran after restart" if passed else "reconciler pass not seen in 30 s")
        c.check(dangling == 0, f"{dangling} of {len(rows)} DB rows point at a missing secret version")
        untagged = [p for p in orphans if "managed_by" not in (
            vault.api("GET", f"secret/metadata/{p}").json().get("data", {}).get("custom_metadata") or {})]
        c.check(not orphans, f"{len(orphans)} orphaned Vault entries of {len(in_vault)} "
                f"({len(untagged)} without managed_by custom_metadata)")
        c.check(not unannounced, f"{len(unannounced)} committed rotations, deactivations or deletes without their "
                f"revocation event ({len(events)} events)")
        c.figures = {"ops": dict(ops), "rows": len(rows), "unannounced": unannounced[:20],
                     "vault_entries": len(in_vault), "orphans": orphans[:20],
                     "orphans_untagged": len(untagged)}
        return [c.row()]
    finally:
        await stack.close()
