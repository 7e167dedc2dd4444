"""Scenario 4: concurrent rotations of one credential with check-and-set (exactly one winner per version, no lost
update), and transit key rotation + RewrapSecrets + raising min_decryption_version while rotations continue (no
secret left undecryptable)."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter

from byok.keys.v1 import key_service_pb2 as kpb
from reliability.checks import Checks
from reliability.context import Context
from reliability.report import Row
from reliability.stack import Stack, add_key, bind, call, fake_key, lease_request

TITLE = "Concurrent rotations (CAS) and transit rotate/rewrap/min_decryption_version"
EXPECTED = ("exactly one winner per version, 0 lost updates; after each transit rotation + rewrap + raised "
            "min_decryption_version: 0 undecryptable secrets")
RACERS = 5


async def run(ctx: Context) -> list[Row]:
    c = Checks(4, TITLE, expected=EXPECTED)
    rounds, free_rounds, creds, cycles = ctx.n(15, 100), ctx.n(10, 50), ctx.n(8, 30), ctx.n(3, 10)
    vault = ctx.vault()
    stack = await Stack.create(ctx.work, vault)
    stack.kv_prefix = "rel-rot-" + secrets.token_hex(3)
    transit_key = "rel-" + secrets.token_hex(3)
    try:
        ks = stack.start_keyservice(f"sqlite:///{ctx.work}/ks.db", BYOK_VAULT_TRANSIT_KEY=transit_key)
        admin, proxy = stack.admin(ks), stack.as_proxy(ks)
        org = "rel-rot"
        await bind(admin, org)
        cid = await add_key(admin, org, fake_key())
        version = 1

        async def rotate(key: str, expected: int) -> tuple[str, int]:
            code, _, reply = await call(admin.RotateCredentialSecret(kpb.RotateCredentialSecretRequest(
                credential_id=cid, api_key=key, expected_version=expected), timeout=20))
            return code, (reply.credential.secret_ref.version if reply else 0)

        async def leased_key(credential_id: str, org_id: str) -> str:
            code, _, reply = await call(proxy.IssueKeyLease(lease_request(org_id, credential_id=credential_id),
                                                            timeout=10))
            return reply.api_key if reply else f"<{code}>"

        # A: expected_version races: exactly one winner per round.
        outcomes: Counter[str] = Counter()
        bad_rounds, last_key = 0, ""
        bad_examples: list[tuple[int, list[tuple[str, int]]]] = []
        for _ in range(rounds):
            keys = [fake_key() for _ in range(RACERS)]
            results = await asyncio.gather(*(rotate(k, version) for k in keys))
            outcomes.update(code for code, _ in results)
            winners = [(k, v) for k, (code, v) in zip(keys, results, strict=True) if code == "OK"]
            losers_ok = all(code == "ABORTED" for code, _ in results if code != "OK")
            if len(winners) != 1 or winners[0][1] != version + 1 or not losers_ok:
                bad_rounds += 1
                bad_examples.append((version, [(code, v) for code, v in results]))
            if winners:
                last_key, version = winners[-1][0], max(v for _, v in winners)
        final = await leased_key(cid, org)
        c.check(bad_rounds == 0 and final == last_key,
                f"CAS: {rounds} rounds x {RACERS} racers: {dict(outcomes)}; {bad_rounds} rounds without exactly one "
                f"winner at version+1; final key {'is' if final == last_key else 'is NOT'} the last winner's")
        # B: no expected_version: all may win, but each acknowledged rotation must be its own version.
        acked: dict[int, str] = {}
        free: Counter[str] = Counter()
        duplicates = 0
        for _ in range(free_rounds):
            keys = [fake_key() for _ in range(RACERS)]
            results = await asyncio.gather(*(rotate(k, 0) for k in keys))
            free.update(code for code, _ in results)
            for k, (code, v) in zip(keys, results, strict=True):
                if code == "OK":
                    duplicates += v in acked
                    acked[v] = k
        final = await leased_key(cid, org)
        newest = acked[max(acked)] if acked else ""
        unexpected = {k: n for k, n in free.items() if k not in ("OK", "ABORTED")}
        c.check(duplicates == 0 and final == newest and not unexpected,
                f"unconditional: {dict(free)}; {duplicates} versions acknowledged twice; final key "
                f"{'is' if final == newest else 'is NOT'} the newest acknowledged (0 lost updates)")

        # C: transit rotate + rewrap + raise min_decryption_version, with rotations going on.
        expected: dict[str, tuple[str, str]] = {}
        for i in range(creds):
            o = f"rel-rot-{i % 3}"
            if i < 3:
                await bind(admin, o)
            key = fake_key()
            expected[await add_key(admin, o, key, name=f"t{i}")] = (o, key)
        stop = asyncio.Event()
        churn: Counter[str] = Counter()

        async def rotator() -> None:
            ids = list(expected)
            n = 0
            while not stop.is_set():
                target = ids[n % len(ids)]
                n += 1
                key = fake_key()
                code, _, _ = await call(admin.RotateCredentialSecret(kpb.RotateCredentialSecretRequest(
                    credential_id=target, api_key=key), timeout=20))
                churn[code] += 1
                if code == "OK":
                    expected[target] = (expected[target][0], key)
                await asyncio.sleep(0.02)

        task = asyncio.create_task(rotator())
        undecryptable, wrong, rewrap_failures, rewrapped = 0, 0, 0, 0
        for _ in range(cycles):
            vault.api("POST", f"transit/keys/{transit_key}/rotate").raise_for_status()
            reply = None
            for _attempt in range(5):  # an operator retries a rewrap that lost a race with a rotation
                code, _, reply = await call(admin.RewrapSecrets(kpb.RewrapSecretsRequest(), timeout=60))
                if code == "OK":
                    break
                rewrap_failures += 1
            if reply is None:
                continue
            rewrapped += reply.rewrapped_count
            # The documented procedure: raise min_decryption_version to what the rewrap reports as the lowest.
            vault.api("POST", f"transit/keys/{transit_key}/config",
                      json={"min_decryption_version": reply.min_transit_key_version}).raise_for_status()
        stop.set()
        await task
        for credential_id, (o, key) in expected.items():
            got = await leased_key(credential_id, o)
            undecryptable += got.startswith("<")
            wrong += not got.startswith("<") and got != key
        info = vault.api("GET", f"transit/keys/{transit_key}").json()["data"]
        c.check(undecryptable == 0 and wrong == 0,
                f"transit: {cycles} rotate/rewrap/raise cycles (key now v{info['latest_version']}, "
                f"min_decryption_version {info['min_decryption_version']}), {rewrapped} rewrapped, "
                f"{rewrap_failures} rewrap retries, concurrent rotations {dict(churn)}: {undecryptable} "
                f"undecryptable and {wrong} wrong of {len(expected)}")
        c.done = (f"{RACERS} concurrent RotateCredentialSecret per round with and without expected_version; "
                  "envelope mode, then transit rotate + RewrapSecrets + min_decryption_version while a loop rotates")
        c.count = (f"{rounds} CAS rounds, {free_rounds} unconditional rounds, {creds} credentials x {cycles} "
                   "transit cycles")
        c.figures = {"cas": dict(outcomes), "cas_bad_rounds": bad_examples[:5], "unconditional": dict(free),
                     "churn": dict(churn), "rewrap_retries": rewrap_failures,
                     "min_decryption_version": info["min_decryption_version"]}
        return [c.row()]
    finally:
        await stack.close()
