"""Scenario 5: keyservice on an AppRole Vault token with a TTL of a few seconds and a max TTL of ~10 s, under load
for ten max TTLs. The token must be renewed before it expires and replaced by a fresh login once the max TTL is
reached (keyservice/vault/auth.py), so that no caller ever sees a permission error from Vault."""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time

from byok.keys.v1 import key_service_pb2 as kpb
from reliability.checks import Checks, Load, codes
from reliability.context import Context
from reliability.report import Row
from reliability.stack import Stack, add_key, bind, chat_request, fake_key, lease_request

TITLE = "Short-lived Vault token (AppRole TTL/max TTL) under load"
EXPECTED = "0 permission errors reach callers over ten max TTLs; the token is renewed and re-obtained"
DEADLINE = 10.0
# Codes that mean "Vault said no to keyservice's token" as a caller would see them.
PERMISSION_CODES = ("PERMISSION_DENIED", "UNAUTHENTICATED")


async def run(ctx: Context) -> list[Row]:
    c = Checks(5, TITLE, expected=EXPECTED)
    # Quick mode keeps the shape (renewals, then a cap, then a login) on a shorter clock.
    ttl, max_ttl = ctx.n(2, 4), ctx.n(3, 10)
    periods = 10
    duration = periods * max_ttl
    vault = ctx.vault()
    prefix = "rel-tok-" + secrets.token_hex(3)
    # The shipped policy names the transit key "byok"; make sure it exists (derived, as keyservice wants).
    vault.api("POST", "transit/keys/byok", json={"derived": True, "type": "aes256-gcm96"}).raise_for_status()
    role_id, secret_id = await asyncio.to_thread(vault.approle, prefix, ttl=f"{ttl}s", max_ttl=f"{max_ttl}s")
    stack = await Stack.create(ctx.work, vault)
    stack.kv_prefix = prefix
    try:
        # Envelope mode: every lease is a KV read plus a transit decrypt, two token uses per call.
        ks = stack.start_keyservice(
            f"sqlite:///{ctx.work}/ks.db", BYOK_VAULT_AUTH="approle", BYOK_VAULT_ROLE_ID=role_id,
            BYOK_VAULT_SECRET_ID=secret_id, BYOK_VAULT_TRANSIT_KEY="byok", BYOK_LEASE_TTL_SECONDS="5")
        px = stack.start_proxy(ks)
        admin, leases, chat = stack.admin(ks), stack.as_proxy(ks), stack.chat(px)
        org = "rel-tok"
        key = fake_key()
        stack.upstream.config.keys["openai"] = set()  # any key: the rotations below change it
        cid = await add_key(admin, org, key)
        await bind(admin, org)
        counter = itertools.count()

        async def create() -> object:
            return await admin.CreateCredential(kpb.CreateCredentialRequest(
                provider="openai", scope=kpb.Scope(org_id=org + "-w"), name=f"w{next(counter)}",
                api_key=fake_key()), timeout=DEADLINE)

        async def rotate() -> object:
            return await admin.RotateCredentialSecret(kpb.RotateCredentialSecretRequest(
                credential_id=cid, api_key=fake_key()), timeout=DEADLINE)

        load = Load()
        load.add("lease", lambda: leases.IssueKeyLease(lease_request(org), timeout=DEADLINE), pause=0.02, workers=2)
        load.add("chat", lambda: chat.Chat(chat_request(org), timeout=DEADLINE), pause=0.02, workers=2)
        load.add("create", create, pause=0.2)
        load.add("rotate", rotate, pause=0.3)
        load.add("verify", lambda: admin.VerifyCredential(kpb.VerifyCredentialRequest(credential_id=cid),
                                                          timeout=DEADLINE), pause=0.5)
        started = time.monotonic()
        await asyncio.sleep(duration)
        await load.stop()
        elapsed = time.monotonic() - started

        log = ks.proc.log.read_text(errors="replace")
        logins = log.count('"vault_login"')
        renewals = log.count('"vault_token_renewed"')
        capped = log.count('"capped": true')
        rejected = log.count('"vault_token_rejected_relogin"')
        renew_failed = log.count('"vault_token_renew_failed"')
        by_kind = {k: codes(load.select(k)) for k in ("lease", "chat", "create", "rotate", "verify")}
        total = len(load.events)
        denied = [e for e in load.events if e.code in PERMISSION_CODES]
        other = [e for e in load.events if e.code not in ("OK", *PERMISSION_CODES)]
        c.done = (f"AppRole login (token_ttl {ttl} s, token_max_ttl {max_ttl} s, shipped keyservice policy), envelope "
                  "mode; closed loops of IssueKeyLease (2), proxy Chat (2, lease TTL 5 s), CreateCredential, "
                  "RotateCredentialSecret and VerifyCredential")
        c.count = f"{total} calls over {elapsed:.0f} s = {elapsed / max_ttl:.1f} max TTLs"
        c.check(not denied, f"{len(denied)} permission errors of {total} calls"
                + (f" (e.g. {denied[0].kind}: {denied[0].detail})" if denied else ""))
        c.check(not other, f"other failures: {len(other)}" + (f" {codes(other)}, e.g. {other[0].kind}: "
                                                               f"{other[0].detail}" if other else ""))
        # Ten max TTLs need at least ten logins (one at start, one per max TTL), and renewals in between.
        c.check(logins >= periods and renewals >= periods,
                f"{logins} logins, {renewals} renewals ({capped} cut short by the max TTL), {renew_failed} failed "
                f"renewals, {rejected} re-logins after a refused call")
        c.check(ks.proc.alive() and px.proc.alive() and ks.proc.starts == 1, "keyservice and proxy never restarted")
        c.figures = {"ttl_s": ttl, "max_ttl_s": max_ttl, "seconds": round(elapsed, 1), "calls": total,
                     "codes": by_kind, "logins": logins, "renewals": renewals, "capped_renewals": capped,
                     "failed_renewals": renew_failed, "relogins_after_refusal": rejected}
        return [c.row()]
    finally:
        await stack.close()
