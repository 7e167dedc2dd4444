"""Crash consistency of keyservice's Vault + DB writes, with real process deaths.

A child process (tests/support/crash_child.py) runs create, rotate, delete or register on the same database and
Vault prefix as the test and `os._exit(137)`s between the Vault and DB steps, or after both (and, for create,
between tagging the Vault path and writing its data). Then, in this
process: no DB row points at a missing secret, one reconciler pass removes every orphaned managed Vault entry
and nothing referenced, credentials hit mid-rotation can still be rotated, and the reconciler leaves alone an
entry younger than the grace period and ops' own imports (no managed_by metadata). SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from keyservice.credentials import CredentialManager, NewCredential
from keyservice.errors import Aborted, NotFound
from keyservice.reconciler import reconcile_once
from keyservice.store import Store
from keyservice.vault import MANAGED_BY, VaultClient, VaultSettings
from tests.support.bao import BaoDevServer
from tests.support.crash_child import CRASH_EXIT

REPO = Path(__file__).resolve().parents[2]
ACTOR = "spiffe://byok.local/test"


def fake_openai_key() -> str:
    return "sk-proj-" + secrets.token_hex(24)


def new(name: str, org: str = "crash") -> NewCredential:
    return NewCredential(provider="openai", org_id=org, project_id="", user_id="", name=name, api_base="",
                         default_model="", primary=False)



@pytest.fixture
def world(bao: BaoDevServer, database_url: str) -> Iterator[tuple[Store, VaultClient, CredentialManager]]:
    store = Store(database_url)
    store.migrate()
    vault = VaultClient(VaultSettings(addr=bao.addr, token=bao.root_token, max_retries=1,
                                      kv_prefix="byok-crash-" + uuid.uuid4().hex[:8]))
    try:
        yield store, vault, CredentialManager(store, vault, keep_secret_versions=2)
    finally:
        vault.close()
        store.close()


class Crasher:
    """Drives a crash_child zygote: each `crash()` runs one operation in a freshly forked process that dies
    at the chosen step (the zygote imports keyservice once, which keeps the test fast)."""

    def __init__(self, bao: BaoDevServer, db: str, prefix: str) -> None:
        self.base = ["--db", db, "--vault-addr", bao.addr, "--kv-prefix", prefix]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.crash_child", "--zygote"], cwd=REPO,
            env={**bao.env(), "PYTHONPATH": str(REPO)}, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def crash(self, op: str, at: str, api_key: str = "", **extra: str) -> dict[str, str]:
        argv = [*self.base, "--op", op, "--at", at]
        for name, value in extra.items():
            argv += [f"--{name.replace('_', '-')}", value]
        assert self.process.stdin is not None and self.process.stdout is not None
        # The key goes through the pipe, never argv.
        self.process.stdin.write(json.dumps({"argv": argv, "api_key": api_key}) + "\n")
        self.process.stdin.flush()
        answer = json.loads(self.process.stdout.readline())
        assert answer["rc"] == CRASH_EXIT, f"{op}/{at} did not crash as planned: {answer}"
        return dict(answer["note"])

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


def dangling_rows(store: Store, vault: VaultClient) -> list[str]:
    """Credential ids whose row points at a secret (at its version) that cannot be read."""
    bad = []
    rows, _ = store.list_credentials(page_size=500)
    for row in rows:
        try:
            vault.read_secret(row.vault_path, row.secret_version, org_id=row.org_id)
        except NotFound:
            bad.append(row.credential_id)
    return bad


def managed_paths(vault: VaultClient) -> set[str]:
    return {p for p in vault.list_credential_paths()
            if vault.read_metadata(p)["custom_metadata"].get("managed_by") == MANAGED_BY}


def test_a_crash_at_any_step_leaves_no_dangling_row_and_the_reconciler_cleans_up(
        world: tuple[Store, VaultClient, CredentialManager], bao: BaoDevServer, database_url: str) -> None:
    store, vault, manager = world
    prefix = vault.settings.kv_prefix
    keys = {name: fake_openai_key() for name in ("rot_mid", "rot_after", "del_mid", "del_after", "create_mid",
                                                  "create_after", "rot_mid_new", "rot_after_new", "import",
                                                  "create_tagged")}
    rot_mid = manager.create(ACTOR, new("rot-mid"), keys["rot_mid"])
    rot_after = manager.create(ACTOR, new("rot-after"), keys["rot_after"])
    del_mid = manager.create(ACTOR, new("del-mid"), keys["del_mid"])
    del_after = manager.create(ACTOR, new("del-after"), keys["del_after"])
    # Ops' import, written with the real CLI, key on stdin: register-between must not get it deleted.
    import_path = f"{prefix}/imports/ops-openai"
    bao.cli("kv", "put", f"secret/{import_path}", "api_key=-", input=keys["import"])

    crasher = Crasher(bao, database_url, prefix)
    try:
        notes = [
            crasher.crash("create", "between", keys["create_mid"], name="create-mid"),
            crasher.crash("create", "after", keys["create_after"], name="create-after"),
            crasher.crash("rotate", "between", keys["rot_mid_new"], credential_id=rot_mid.credential_id),
            crasher.crash("rotate", "after", keys["rot_after_new"], credential_id=rot_after.credential_id),
            crasher.crash("delete", "between", credential_id=del_mid.credential_id),
            crasher.crash("delete", "after", credential_id=del_after.credential_id),
            crasher.crash("register", "between", name="imported", vault_path=import_path),
            crasher.crash("create", "tagged", keys["create_tagged"], name="create-tagged"),
        ]
    finally:
        crasher.close()
    create_mid_path = notes[0]["vault_path"]
    create_after_id = notes[1]["credential_id"]
    registered_id = notes[6]["credential_id"] if "credential_id" in notes[6] and notes[6]["credential_id"] else ""
    create_tagged_path = notes[7]["vault_path"]
    # A crash between the tag and the data leaves a metadata-only entry that carries managed_by (the other
    # order would leave untagged data that no reconciler pass could tell from ops' own).
    tagged = vault.read_metadata(create_tagged_path)
    assert tagged["current_version"] == 0 and tagged["versions"] == {}
    assert tagged["custom_metadata"]["managed_by"] == MANAGED_BY

    # 1. No row points at a missing secret, whatever step the crashes hit.
    assert dangling_rows(store, vault) == []
    rows = {r.credential_id: r for r in store.list_credentials(page_size=500)[0]}
    assert create_after_id in rows and rows[create_after_id].secret_version == 1
    assert rows[rot_mid.credential_id].secret_version == 1  # the row never moved: it serves the old key
    assert vault.read_secret(rot_mid.vault_path, 1, org_id="crash") == keys["rot_mid"]
    assert rows[rot_after.credential_id].secret_version == 2
    assert vault.read_secret(rot_after.vault_path, 2, org_id="crash") == keys["rot_after_new"]
    assert del_mid.credential_id not in rows and del_after.credential_id not in rows
    imported = [r for r in rows.values() if r.name == "imported"]
    assert len(imported) == 1 and imported[0].vault_path == import_path  # register's row was committed
    assert not registered_id or registered_id == imported[0].credential_id

    # 2. One reconciler pass: the orphans go, nothing referenced does, ops' import stays.
    referenced = {r.vault_path for r in store.list_credentials(page_size=500)[0]}
    before = set(vault.list_credential_paths())
    removed = set(reconcile_once(store, vault, grace_seconds=0, create_deadline_seconds=0))
    assert removed == {create_mid_path, del_mid.vault_path, create_tagged_path}
    assert not removed & referenced
    after = set(vault.list_credential_paths())
    assert after == before - removed
    assert managed_paths(vault) <= referenced  # 0 orphaned managed entries remain
    assert referenced <= after  # and every referenced one is still there
    assert vault.read_secret(import_path, org_id="crash") == keys["import"]
    assert dangling_rows(store, vault) == []

    # 3. A rotation interrupted after its Vault write does not wedge the credential: a compare-and-set
    #    rotation cannot tell it from one in flight and loses (its winner must be exactly version + 1), and the
    #    next unconditional one succeeds on top of the never-served version.
    with pytest.raises(Aborted, match="another rotation wrote version 2"):
        manager.rotate(ACTOR, rot_mid.credential_id, fake_openai_key(), expected_version=1)
    newest = fake_openai_key()
    rotated = manager.rotate(ACTOR, rot_mid.credential_id, newest)
    assert rotated.secret_version == 3  # on top of the never-served version 2
    assert vault.read_secret(rot_mid.vault_path, rotated.secret_version, org_id="crash") == newest


def test_reconciler_spares_young_entries_and_ops_imports(
        world: tuple[Store, VaultClient, CredentialManager], bao: BaoDevServer) -> None:
    store, vault, _ = world
    prefix = vault.settings.kv_prefix
    young = vault.credential_path("crash", "cred_" + "a" * 24)
    vault.write_secret(young, fake_openai_key(), org_id="crash", cas=0, metadata={"org_id": "crash"})
    ops_path = f"{prefix}/crash/ops-written"
    bao.cli("kv", "put", f"secret/{ops_path}", "api_key=-", input=fake_openai_key())

    # In flight: a create may be mid-way.
    assert reconcile_once(store, vault, grace_seconds=3600, create_deadline_seconds=3600) == []
    assert young in vault.list_credential_paths()
    assert reconcile_once(store, vault, grace_seconds=0, create_deadline_seconds=0) == [young]  # an orphan now
    assert vault.list_credential_paths() == [ops_path]  # never managed by us: never touched
