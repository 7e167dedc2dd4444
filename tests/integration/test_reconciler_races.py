"""The reconciler against creates, registers and other reconcilers, each interleaving forced at a chosen step.

Each test stops one party at a step (a hook on the real Store / VaultClient method it is about to call) and runs
the other party to completion there, on a real OpenBao and on SQLite and PostgreSQL, with separate Store and
VaultClient instances standing for separate keyservice replicas. What must hold after every interleaving: no
row points at a missing secret version, and a secret a committed row references is never deleted. (The
interleaving of the flake in issue 10 — a start-up pass with grace 0 between a create's Vault write and its
row — is the first test.)
"""

from __future__ import annotations

import secrets
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from keyservice.credentials import CredentialManager, NewCredential
from keyservice.errors import Aborted, InvalidArgument, NotFound
from keyservice.reconciler import reconcile_once
from keyservice.store import Store
from keyservice.vault import MANAGED_BY, VaultClient, VaultSettings
from tests.support.bao import BaoDevServer

ACTOR = "spiffe://byok.local/test"
ORG = "race"
WAIT = 30.0  # seconds a barrier waits before the test fails (a deadlock, not a timing assumption)


def fake_openai_key() -> str:
    return "sk-proj-" + secrets.token_hex(24)


def new(name: str) -> NewCredential:
    return NewCredential(provider="openai", org_id=ORG, project_id="", user_id="", name=name, api_base="",
                         default_model="", primary=False)


class Replica:
    """One keyservice replica's view: its own Store (connection pool) and VaultClient."""

    def __init__(self, database_url: str, bao: BaoDevServer, prefix: str) -> None:
        self.store = Store(database_url)
        self.vault = VaultClient(VaultSettings(addr=bao.addr, token=bao.root_token, max_retries=1,
                                               kv_prefix=prefix))
        self.manager = CredentialManager(self.store, self.vault, create_deadline_seconds=3600)

    def reconcile(self, *, deadline: float = 3600) -> list[str]:
        return reconcile_once(self.store, self.vault, grace_seconds=0, create_deadline_seconds=deadline)

    def close(self) -> None:
        self.vault.close()
        self.store.close()


def hook(obj: Any, method: str, before: Callable[..., object]) -> None:
    """Make `obj.method(*args)` call `before(*args)` first (an instance attribute: only this replica)."""
    real = getattr(obj, method)

    def hooked(*args: Any, **kwargs: Any) -> Any:
        before(*args, **kwargs)
        return real(*args, **kwargs)
    setattr(obj, method, hooked)


@pytest.fixture
def replicas(bao: BaoDevServer, database_url: str) -> Iterator[tuple[Replica, Replica]]:
    prefix = "byok-race-" + uuid.uuid4().hex[:8]
    Store(database_url).migrate()
    a, b = Replica(database_url, bao, prefix), Replica(database_url, bao, prefix)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def dangling_rows(r: Replica) -> list[str]:
    bad = []
    for row in r.store.list_credentials(page_size=500)[0]:
        try:
            r.vault.read_secret(row.vault_path, row.secret_version, org_id=row.org_id)
        except NotFound:
            bad.append(row.credential_id)
    return bad


def orphans(r: Replica) -> set[str]:
    referenced = {row.vault_path for row in r.store.list_credentials(page_size=500)[0]}
    return {p for p in r.vault.list_credential_paths() if p not in referenced
            and r.vault.read_metadata(p)["custom_metadata"].get("managed_by") == MANAGED_BY}


def pause_before_commit(r: Replica) -> tuple[threading.Event, threading.Event]:
    """Stop `r`'s next create after its Vault write, before its commit: returns (paused, resume)."""
    paused, resume = threading.Event(), threading.Event()

    def pause(*_: Any, **__: Any) -> None:
        paused.set()
        assert resume.wait(WAIT)
    hook(r.store, "insert_credential", pause)
    return paused, resume


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out["error"] = exc
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def test_a_pass_between_a_creates_vault_write_and_its_commit_leaves_it_whole(
        replicas: tuple[Replica, Replica]) -> None:
    creator, reconciler = replicas
    passes: list[list[str]] = []
    # The create has reserved its path and written Vault; another replica's pass (grace 0) runs right here.
    hook(creator.store, "insert_credential", lambda *a, **k: passes.append(reconciler.reconcile()))
    key = fake_openai_key()
    row = creator.manager.create(ACTOR, new("in-flight"), key)
    assert passes == [[]]  # it ran, and removed nothing
    assert creator.vault.read_secret(row.vault_path, row.secret_version, org_id=ORG) == key
    rotated = creator.manager.rotate(ACTOR, row.credential_id, fake_openai_key())  # the flake's ABORTED
    assert rotated.secret_version == 2
    assert dangling_rows(creator) == [] and orphans(creator) == set()


def test_a_create_that_outlived_its_deadline_aborts_and_leaves_nothing(
        replicas: tuple[Replica, Replica]) -> None:
    creator, reconciler = replicas
    passes: list[list[str]] = []
    # The same step, but the create is past its deadline: the pass reclaims it and deletes what it wrote.
    hook(creator.store, "insert_credential", lambda *a, **k: passes.append(reconciler.reconcile(deadline=0)))
    with pytest.raises(Aborted, match="outlived its deadline"):
        creator.manager.create(ACTOR, new("stalled"), fake_openai_key())
    (removed,) = passes
    assert len(removed) == 1
    assert creator.store.list_credentials(page_size=10) == ([], "")
    assert creator.vault.list_credential_paths() == []
    assert creator.store.claimed_vault_paths("secret") == set()  # the reservation is gone too


def test_a_reclaim_racing_a_commit_has_one_winner(replicas: tuple[Replica, Replica]) -> None:
    """The reconciler reclaims the reservation while the create is committing: whichever transaction commits
    first decides, and the other side sees it."""
    creator, reconciler = replicas
    at_commit, reclaimed = pause_before_commit(creator)
    create, out = in_thread(lambda: creator.manager.create(ACTOR, new("contested"), fake_openai_key()))
    assert at_commit.wait(WAIT)
    removed = reconciler.reconcile(deadline=0)
    reclaimed.set()
    create.join(WAIT)
    assert len(removed) == 1 and isinstance(out.get("error"), Aborted)
    assert dangling_rows(creator) == [] and orphans(creator) == set()


def test_a_pass_that_listed_before_a_commit_does_not_delete_after_it(replicas: tuple[Replica, Replica]) -> None:
    """The pass lists Vault while the create is mid-way (reserved, written), and the create commits before the
    pass reads the database: the reservation and the row swap in one transaction, so the pass sees the row."""
    creator, reconciler = replicas
    at_commit, go_commit = pause_before_commit(creator)
    key = fake_openai_key()
    create, out = in_thread(lambda: creator.manager.create(ACTOR, new("listed"), key))
    assert at_commit.wait(WAIT)

    def commit_first(*_: Any) -> None:
        if not go_commit.is_set():
            go_commit.set()
            create.join(WAIT)
    hook(reconciler.store, "claimed_vault_paths", commit_first)
    assert reconciler.reconcile() == []
    row = out["value"]
    assert creator.vault.read_secret(row.vault_path, row.secret_version, org_id=ORG) == key


def test_a_register_that_commits_while_a_pass_looks_at_the_secret_keeps_it(
        replicas: tuple[Replica, Replica], bao: BaoDevServer) -> None:
    """Register's row and tag land between the pass's listing (and its snapshot of the DB) and its read of the
    tag: the tag the pass sees is ours, and its decision must find the row that came before the tag."""
    registrar, reconciler = replicas
    path = f"{registrar.vault.settings.kv_prefix}/imports/ops-openai"
    key = fake_openai_key()
    bao.cli("kv", "put", f"secret/{path}", "api_key=-", input=key)
    registered: list[Any] = []

    def register_first(p: str) -> None:
        if p == path and not registered:
            registered.append(registrar.manager.register(ACTOR, new("imported"), path))
    hook(reconciler.vault, "read_metadata", register_first)
    assert reconciler.reconcile() == []
    (row,) = registered
    assert reconciler.vault.read_metadata(path)["custom_metadata"]["managed_by"] == MANAGED_BY
    assert registrar.vault.read_secret(row.vault_path, row.secret_version, org_id=ORG) == key


def test_two_reconcilers_at_once_reclaim_each_stalled_create_once(replicas: tuple[Replica, Replica]) -> None:
    """Two passes reach the reclaim together, while a create is stalled before its commit and another create
    (in time) is as well: the stalled create's reservation goes to exactly one pass, the in-time create keeps its
    secret, and neither pass deletes anything a row references."""
    a, b = replicas
    both_reclaim = threading.Barrier(2, timeout=WAIT)
    for r in (a, b):
        hook(r.store, "reclaim_reservations", lambda *_: both_reclaim.wait())
    at_commit, go_commit = pause_before_commit(a)
    create, out = in_thread(lambda: a.manager.create(ACTOR, new("stalled"), fake_openai_key()))
    assert at_commit.wait(WAIT)
    kept = b.manager.create(ACTOR, new("committed"), fake_openai_key())

    pass_a, out_a = in_thread(lambda: a.reconcile(deadline=0))
    pass_b, out_b = in_thread(lambda: b.reconcile(deadline=0))
    pass_a.join(WAIT)
    pass_b.join(WAIT)
    go_commit.set()
    create.join(WAIT)
    assert "error" not in out_a and "error" not in out_b
    removed_a, removed_b = out_a["value"], out_b["value"]
    assert len(removed_a) + len(removed_b) == 1  # one reclaim, by one pass
    assert isinstance(out.get("error"), Aborted)
    assert kept.vault_path not in removed_a + removed_b
    assert dangling_rows(a) == [] and orphans(a) == set()
    assert [r.credential_id for r in a.store.list_credentials(page_size=10)[0]] == [kept.credential_id]


def test_a_delete_racing_a_pass_leaves_no_secret_behind(replicas: tuple[Replica, Replica]) -> None:
    """A delete whose row is gone but whose Vault delete has not run yet, with a pass in between: the pass
    takes the orphan, and the delete's own Vault step finds nothing to do."""
    deleter, reconciler = replicas
    row = deleter.manager.create(ACTOR, new("doomed"), fake_openai_key())
    passes: list[list[str]] = []
    hook(deleter.manager, "_forget_secret", lambda *_: passes.append(reconciler.reconcile()))
    deleter.manager.delete(ACTOR, row.credential_id)
    assert passes == [[row.vault_path]]
    assert deleter.vault.list_credential_paths() == []


def test_a_rotation_during_a_pass_keeps_both_versions(replicas: tuple[Replica, Replica]) -> None:
    rotator, reconciler = replicas
    row = rotator.manager.create(ACTOR, new("rotating"), fake_openai_key())
    passes: list[list[str]] = []
    hook(rotator.store, "update_credential", lambda *a, **k: passes.append(reconciler.reconcile(deadline=0)))
    newest = fake_openai_key()
    rotated = rotator.manager.rotate(ACTOR, row.credential_id, newest)
    assert passes == [[]]
    assert rotator.vault.read_secret(row.vault_path, rotated.secret_version, org_id=ORG) == newest
    assert dangling_rows(rotator) == []


@pytest.mark.parametrize("path", ["{prefix}/imports/./ops", "{prefix}/imports//ops", "{prefix}/x/../imports/ops",
                                  "./{prefix}/imports/ops", "{prefix}/imports/ops/"])
def test_a_non_canonical_vault_path_is_refused_and_ops_secret_survives(
        replicas: tuple[Replica, Replica], bao: BaoDevServer, path: str) -> None:
    """`byok/imports/./x` names ops' `byok/imports/x` to Vault; it used to register, after which the row's
    spelling never matched Vault's listing and the reconciler deleted ops' own secret."""
    registrar, reconciler = replicas
    prefix = registrar.vault.settings.kv_prefix
    real = f"{prefix}/imports/ops"
    key = fake_openai_key()
    bao.cli("kv", "put", f"secret/{real}", "api_key=-", input=key)
    with pytest.raises(InvalidArgument, match="vault_path: must be canonical") as err:
        registrar.manager.register(ACTOR, new("dotted"), path.format(prefix=prefix))
    assert real in err.value.message  # says which spelling to use
    assert registrar.store.list_credentials(page_size=10) == ([], "")
    assert reconciler.reconcile() == []
    assert registrar.vault.read_secret(real, org_id=ORG) == key


def test_a_row_with_a_legacy_spelling_still_protects_its_secret(replicas: tuple[Replica, Replica]) -> None:
    """A row written before paths had to be canonical (`a/./b`) keeps Vault's `a/b` from being taken for an
    orphan, and the store no longer accepts such a spelling."""
    owner, reconciler = replicas
    row = owner.manager.create(ACTOR, new("legacy"), fake_openai_key())
    head, _, tail = row.vault_path.rpartition("/")
    legacy = f"{head}/./{tail}"
    import sqlalchemy as sa

    from keyservice.store.schema import credentials
    with owner.store._engine.begin() as conn:  # noqa: SLF001 - a row as an older release stored it
        conn.execute(credentials.update().where(credentials.c.credential_id == row.credential_id)
                     .values(vault_path=legacy))
        assert conn.execute(sa.select(credentials.c.vault_path)).scalar() == legacy
    assert reconciler.reconcile() == []
    assert row.vault_path in owner.vault.list_credential_paths()
    import dataclasses
    with pytest.raises(InvalidArgument, match="vault_path"):
        owner.store.insert_credential(dataclasses.replace(row, credential_id="cred_" + "b" * 24, name="dotted",
                                                          vault_path=legacy))
