"""keyservice.store and keyservice.revocation_feed against real databases: every store test runs on
SQLite (a file under tmp_path) and on PostgreSQL (a scratch database)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import sqlalchemy

from keyservice.errors import Aborted, AlreadyExists, DatabaseUnavailable, InvalidArgument, NotFound
from keyservice.revocation_feed import RevocationFeed
from keyservice.store import AuditRow, CredentialRow, NewRevocation, RevocationRow, Store

REPO = Path(__file__).resolve().parents[2]
# The newest migration's revision ("0005" from 0005_credential_settings.py): what migrate() must reach.
HEAD_REVISION = max(p.name[:4] for p in (REPO / "keyservice/store/migrations/versions").glob("[0-9]*_*.py"))
T0 = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/keyservice.db"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    s.migrate()
    try:
        yield s
    finally:
        s.close()


_counter = iter(range(1_000_000))


def cred(**overrides: object) -> CredentialRow:
    """A credential row; created_at increases with each call so ordering is deterministic."""
    n = next(_counter)
    created = T0 + timedelta(seconds=n)
    cid = uuid.uuid4().hex
    row = CredentialRow(
        credential_id=cid, provider="openai", org_id="org-1", project_id="", user_id="",
        name=f"key-{n}", api_base="", default_model="gpt-4o-mini", active=True, primary=False,
        health="unverified", key_hint="…abcd", fingerprint="sha256:" + cid[:16], vault_mount="byok-kv",
        vault_path=f"tenants/org-1/{cid}", secret_version=1, transit_key="", transit_key_version=0,
        created_at=created, updated_at=created,
    )
    return replace(row, **overrides)  # type: ignore[arg-type]


def audit(action: str, *, time: datetime | None = None, **kw: str) -> AuditRow:
    row = AuditRow.new("spiffe://test/admin", action, **kw)  # type: ignore[arg-type]
    return replace(row, time=time) if time else row


# ------------------------------------------------------------------------------------ credentials


def test_crud_round_trip(store: Store) -> None:
    row = cred(project_id="p1", user_id="u1", api_base="https://api.example.test/v1", primary=True,
               last_verified_at=T0)
    inserted = store.insert_credential(row, audit=audit("credential.create", credential_id=row.credential_id))
    assert inserted == row
    assert store.get_credential(row.credential_id) == row
    assert inserted.created_at.tzinfo is not None and inserted.last_rotated_at is None

    updated = store.update_credential(row.credential_id, name="renamed", default_model="gpt-4o",
                                      health="active", last_rotated_at=T0 + timedelta(hours=1))
    assert (updated.name, updated.default_model, updated.health) == ("renamed", "gpt-4o", "active")
    assert updated.last_rotated_at == T0 + timedelta(hours=1)
    assert updated.updated_at > row.updated_at
    assert store.get_credential(row.credential_id) == updated

    deleted = store.delete_credential(row.credential_id, audit=audit("credential.delete"),
                                      revocation="deleted")
    assert deleted == updated
    with pytest.raises(NotFound):
        store.get_credential(row.credential_id)
    with pytest.raises(NotFound):
        store.delete_credential(row.credential_id)
    with pytest.raises(NotFound):
        store.update_credential("missing", name="x")
    events, _ = store.list_audit(credential_id=row.credential_id)
    assert [e.action for e in events] == ["credential.create"]
    (rev,) = store.revocations_since(0)
    assert (rev.reason, rev.credential_id, rev.org_id) == ("deleted", row.credential_id, "org-1")
    assert store.claimed_vault_paths("byok-kv") == set()


def test_unique_name_conflict(store: Store) -> None:
    first = store.insert_credential(cred(name="prod"))
    with pytest.raises(AlreadyExists, match="prod"):
        store.insert_credential(cred(name="prod"), audit=audit("credential.create"))
    with pytest.raises(AlreadyExists):
        store.insert_credential(replace(cred(), credential_id=first.credential_id))
    # The failed insert's audit event was rolled back with it.
    assert store.list_audit() == ([], "")
    # Same name in another scope or for another provider is fine.
    store.insert_credential(cred(name="prod", project_id="p1"))
    store.insert_credential(cred(name="prod", provider="anthropic"))
    other = store.insert_credential(cred(name="staging"))
    with pytest.raises(AlreadyExists, match="prod"):
        store.update_credential(other.credential_id, name="prod")
    assert store.get_credential(other.credential_id).name == "staging"
    assert len(store.claimed_vault_paths("byok-kv")) == 4


def test_one_credential_per_vault_secret(store: Store) -> None:
    first = store.insert_credential(cred())
    twin = cred(org_id="org-2", vault_path=first.vault_path)
    with pytest.raises(AlreadyExists) as err:
        store.insert_credential(twin)
    assert err.value.message.startswith("vault_path: ") and first.credential_id in err.value.message
    store.insert_credential(cred(org_id="org-2", vault_path=first.vault_path, vault_mount="other-kv"))
    # The unique index holds even for a writer that skips the store's check (a concurrent insert).
    from keyservice.store.schema import credentials

    with pytest.raises(Exception, match="vault_path|UNIQUE|unique"), store._engine.begin() as conn:  # noqa: SLF001
        conn.execute(credentials.insert().values(**_values(twin)))
    assert store.list_credentials(org_id="org-2")[0][0].vault_mount == "other-kv"


def _values(row: CredentialRow) -> dict[str, object]:
    from keyservice.store._base import _credential_values

    return _credential_values(row)


def test_primary_is_exclusive_per_provider_and_scope(store: Store) -> None:
    a = store.insert_credential(cred(primary=True))
    b = store.insert_credential(cred(primary=True))
    elsewhere = store.insert_credential(cred(primary=True, project_id="p1"))
    other_provider = store.insert_credential(cred(primary=True, provider="anthropic"))
    assert not store.get_credential(a.credential_id).primary
    assert store.get_credential(b.credential_id).primary
    store.update_credential(a.credential_id, primary=True)
    assert store.get_credential(a.credential_id).primary
    assert not store.get_credential(b.credential_id).primary
    assert store.get_credential(elsewhere.credential_id).primary
    assert store.get_credential(other_provider.credential_id).primary
    store.update_credential(a.credential_id, primary=False)
    assert not any(r.primary for r in store.list_credentials(project_id="", provider="openai")[0]
                   if r.project_id == "")


def test_list_pagination_and_filters(store: Store) -> None:
    rows = [store.insert_credential(cred()) for _ in range(7)]
    store.insert_credential(cred(org_id="org-2"))
    inactive = store.insert_credential(cred(active=False))

    page1, token1 = store.list_credentials(org_id="org-1", active=True, page_size=3)
    # A row created while paging, at the end of the order, shows up on the last page; none repeat.
    late = store.insert_credential(cred())
    page2, token2 = store.list_credentials(org_id="org-1", active=True, page_size=3, page_token=token1)
    page3, token3 = store.list_credentials(org_id="org-1", active=True, page_size=3, page_token=token2)
    assert token1 and token2 and token3 == ""
    seen = [r.credential_id for r in page1 + page2 + page3]
    assert seen == [r.credential_id for r in rows + [late]]
    # The same token gives the same page again.
    assert store.list_credentials(org_id="org-1", active=True, page_size=3, page_token=token1)[0] == page2

    assert store.list_credentials(active=False)[0] == [inactive]
    assert [r.org_id for r in store.list_credentials(org_id="org-2")[0]] == ["org-2"]
    assert len(store.list_credentials()[0]) == 10
    for bad in ("not-a-token!", "e30", token1[:-3]):
        with pytest.raises(InvalidArgument) as err:
            store.list_credentials(page_token=bad)
        assert err.value.field == "page_token"
    _, audit_token = _audit_token(store)
    with pytest.raises(InvalidArgument):
        store.list_credentials(page_token=audit_token)
    with pytest.raises(InvalidArgument):
        store.list_credentials(page_size=-1)


def _audit_token(store: Store) -> tuple[list[AuditRow], str]:
    for _ in range(2):
        store.append_audit(audit("x"))
    return store.list_audit(page_size=1)


def test_lease_candidates_order(store: Store) -> None:
    def add(**kw: object) -> str:
        return store.insert_credential(cred(**kw)).credential_id

    org_old = add()
    org_primary = add(primary=True)
    add(active=False)  # inactive: skipped
    add(health="invalid")  # rejected by the provider: skipped
    org_rate_limited = add(health="rate_limited")  # still a candidate
    proj = add(project_id="p1")
    add(project_id="p2")  # another project
    user_anywhere = add(user_id="u1")
    user_in_proj = add(project_id="p1", user_id="u1")
    add(project_id="p2", user_id="u1")  # the user's credential for another project
    add(project_id="p1", user_id="u2")  # another user
    add(provider="anthropic")  # another provider
    add(org_id="org-2")  # another org

    got = store.lease_candidates(org_id="org-1", project_id="p1", user_id="u1", provider="openai")
    assert [r.credential_id for r in got] == [
        user_in_proj, user_anywhere, proj, org_primary, org_old, org_rate_limited]
    got = store.lease_candidates(org_id="org-1", project_id="p1", user_id="", provider="openai")
    assert [r.credential_id for r in got] == [proj, org_primary, org_old, org_rate_limited]
    got = store.lease_candidates(org_id="org-1", project_id="", user_id="u1", provider="openai")
    assert [r.credential_id for r in got] == [user_anywhere, org_primary, org_old, org_rate_limited]
    got = store.lease_candidates(org_id="org-1", project_id="", user_id="", provider="openai")
    assert [r.credential_id for r in got] == [org_primary, org_old, org_rate_limited]
    assert store.lease_candidates(org_id="org-3", project_id="", user_id="", provider="openai") == []


def test_compare_and_set_on_secret_version(store: Store) -> None:
    row = store.insert_credential(cred())
    v2 = store.update_credential(row.credential_id, expected_version=1, secret_version=2,
                                 revocation="rotated")
    assert v2.secret_version == 2
    with pytest.raises(Aborted):
        store.update_credential(row.credential_id, expected_version=1, secret_version=3)
    assert store.get_credential(row.credential_id).secret_version == 2

    # Racing writers with the same expectation: exactly one wins.
    results: list[str] = []

    def rotate() -> None:
        try:
            store.update_credential(row.credential_id, expected_version=2, secret_version=3)
            results.append("ok")
        except Aborted:
            results.append("aborted")

    threads = [threading.Thread(target=rotate) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["aborted"] * 3 + ["ok"]
    assert store.get_credential(row.credential_id).secret_version == 3
    assert [r.reason for r in store.revocations_since(0)] == ["rotated"]


def test_change_audit_and_revocation_share_one_transaction(store: Store) -> None:
    row = store.insert_credential(cred())
    with pytest.raises(InvalidArgument):
        store.update_credential(row.credential_id, active=False, audit=audit("credential.deactivate"),
                                revocation="no-such-reason")
    assert store.get_credential(row.credential_id).active
    assert store.list_audit() == ([], "")
    store.update_credential(row.credential_id, active=False, audit=audit("credential.deactivate"),
                            revocation=NewRevocation("deactivated"))
    assert not store.get_credential(row.credential_id).active
    assert [e.action for e in store.list_audit()[0]] == ["credential.deactivate"]
    assert [(r.reason, r.credential_id) for r in store.revocations_since(0)] == [
        ("deactivated", row.credential_id)]


def test_audit_listing(store: Store) -> None:
    for i in range(5):
        store.append_audit(audit("lease.issue", time=T0 + timedelta(minutes=i), org_id="org-1",
                                 credential_id="c1"))
    store.append_audit(audit("credential.create", time=T0 + timedelta(minutes=2), org_id="org-2"))
    same_time = [audit("lease.issue", time=T0 + timedelta(minutes=9), org_id="org-1") for _ in range(2)]
    for e in same_time:
        store.append_audit(e)
    with pytest.raises(AlreadyExists):
        store.append_audit(same_time[0])

    everything, token = store.list_audit(page_size=100)
    assert token == ""
    assert [e.time for e in everything] == sorted((e.time for e in everything), reverse=True)
    assert len(everything) == 8
    pages: list[AuditRow] = []
    token = ""
    for _ in range(3):
        page, token = store.list_audit(page_size=3, page_token=token)
        pages += page
    assert token == "" and pages == everything

    assert {e.org_id for e in store.list_audit(org_id="org-2")[0]} == {"org-2"}
    assert len(store.list_audit(credential_id="c1")[0]) == 5
    assert len(store.list_audit(action="lease.issue", org_id="org-1")[0]) == 7
    assert store.list_audit(actor="someone-else")[0] == []
    since = store.list_audit(since=T0 + timedelta(minutes=3))[0]
    assert len(since) == 4 and all(e.time >= T0 + timedelta(minutes=3) for e in since)
    details = json.loads(everything[0].details_json)
    assert details == {}
    with pytest.raises(InvalidArgument):
        store.list_audit(page_token="garbage")


def test_bindings(store: Store) -> None:
    b = store.create_binding("spiffe://svc/chat", "org-1", "", audit=audit("binding.create"))
    again = store.create_binding("spiffe://svc/chat", "org-1", "")
    assert b == again
    store.create_binding("spiffe://svc/batch", "org-1", "p1")
    store.create_binding("spiffe://svc/batch", "org-2", "")

    assert store.is_bound("spiffe://svc/chat", "org-1", "p7")
    assert store.is_bound("spiffe://svc/chat", "org-1", "")
    assert store.is_bound("spiffe://svc/batch", "org-1", "p1")
    assert not store.is_bound("spiffe://svc/batch", "org-1", "p2")
    assert not store.is_bound("spiffe://svc/batch", "org-1", "")
    assert not store.is_bound("spiffe://svc/chat", "org-2", "")

    assert [(x.caller_identity, x.org_id, x.project_id) for x in store.list_bindings(org_id="org-1")] == [
        ("spiffe://svc/batch", "org-1", "p1"), ("spiffe://svc/chat", "org-1", "")]
    assert len(store.list_bindings(caller_identity="spiffe://svc/batch")) == 2
    assert len(store.list_bindings()) == 3

    store.delete_binding("spiffe://svc/batch", "org-1", "p1", revocation="caller_unbound")
    assert not store.is_bound("spiffe://svc/batch", "org-1", "p1")
    with pytest.raises(NotFound):
        store.delete_binding("spiffe://svc/batch", "org-1", "p1")
    (rev,) = store.revocations_since(0)
    assert (rev.reason, rev.org_id, rev.caller_identity) == ("caller_unbound", "org-1", "spiffe://svc/batch")


def test_org_policy(store: Store) -> None:
    assert store.get_org_policy("org-1") is False
    store.set_org_policy("org-1", True, audit=audit("policy.set"))
    assert store.get_org_policy("org-1") is True
    assert store.get_org_policy("org-2") is False
    store.set_org_policy("org-1", False, revocation="scope_changed")
    assert store.get_org_policy("org-1") is False
    assert [(r.reason, r.org_id) for r in store.revocations_since(0)] == [("scope_changed", "org-1")]


def test_deactivate_org(store: Store) -> None:
    store.set_org_policy("org-1", True)
    store.set_org_policy("org-2", True)
    a = store.insert_credential(cred())
    b = store.insert_credential(cred(project_id="p1"))
    store.insert_credential(cred(active=False))
    other = store.insert_credential(cred(org_id="org-2"))
    done = store.deactivate_org("org-1", audit=audit("org.deactivate", org_id="org-1"))
    assert [r.credential_id for r in done] == [a.credential_id, b.credential_id]
    assert not any(r.active for r in done)
    assert store.list_credentials(org_id="org-1", active=True)[0] == []
    assert store.get_credential(other.credential_id).active
    revs = store.revocations_since(0)
    # The org-wide event (no credential id) is what drops cached platform leases in the proxies.
    assert [(r.reason, r.credential_id, r.org_id) for r in revs] == [
        ("deactivated", a.credential_id, "org-1"), ("deactivated", b.credential_id, "org-1"),
        ("scope_changed", "", "org-1")]
    assert store.last_revocation_sequence() == revs[-1].sequence
    assert store.get_org_policy("org-1") is False  # no platform fallback for a revoked org
    assert store.get_org_policy("org-2") is True
    assert store.deactivate_org("org-1") == []
    assert store.deactivate_org("never-seen") == [] and store.get_org_policy("never-seen") is False


def test_revocation_log(store: Store) -> None:
    assert store.last_revocation_sequence() == 0
    seqs = [store.append_revocation("scope_changed", org_id=f"org-{i}") for i in range(5)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    assert [r.sequence for r in store.revocations_since(seqs[1])] == seqs[2:]
    assert [r.sequence for r in store.revocations_since(0, limit=2)] == seqs[:2]
    assert store.last_revocation_sequence() == seqs[-1]
    with pytest.raises(InvalidArgument):
        store.append_revocation("bogus")


def test_sqlite_commits_are_durable(tmp_path: Path) -> None:
    """WAL with synchronous=NORMAL can lose committed transactions on power loss (a deleted row could come
    back after its Vault secret was destroyed); every pooled connection must run with FULL (2)."""
    s = Store(f"sqlite:///{tmp_path}/durable.db")
    try:
        s.migrate()
        with s._engine.connect() as a, s._engine.connect() as b:  # noqa: SLF001 - inspects the pragmas
            for conn in (a, b):
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
                assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    finally:
        s.close()


def test_migrate_is_idempotent_and_matches_the_store(store: Store) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from keyservice.store import metadata

    store.migrate()
    store.migrate()
    assert store.schema_revision() == HEAD_REVISION
    assert store.ping()
    # The hand-written migration creates exactly what the store's table definitions describe.
    with store._engine.connect() as conn:  # noqa: SLF001 - test reaches in to compare schemas
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diff == []


def test_migration_0002_adds_the_vault_path_index_and_refuses_shared_secrets(db_url: str) -> None:
    from alembic import command

    from keyservice.errors import FailedPrecondition
    from keyservice.store.migrations import alembic_config
    from keyservice.store.schema import credentials

    s = Store(db_url)
    try:
        with s._engine.begin() as conn:  # noqa: SLF001 - a database left at the previous revision
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0001")
        assert s.schema_revision() == "0001"
        a, b, alone = cred(), cred(org_id="org-2"), cred()
        b = replace(b, vault_path=a.vault_path)  # two credentials on one secret, as 0001 allowed
        with s._engine.begin() as conn:  # noqa: SLF001
            # The table as revision 0001 made it: columns later migrations add are not there yet.
            at_0001 = sqlalchemy.Table("credentials", sqlalchemy.MetaData(), autoload_with=conn)
            for row in (a, b, alone):
                conn.execute(at_0001.insert().values(
                    **{k: v for k, v in _values(row).items() if k in at_0001.c}))
        with pytest.raises(FailedPrecondition) as err:
            s.migrate()
        assert a.credential_id in err.value.message and b.credential_id in err.value.message
        assert alone.credential_id not in err.value.message and a.vault_path not in err.value.message
        assert s.schema_revision() == "0001"  # nothing half-done

        with s._engine.begin() as conn:  # noqa: SLF001 - the operator gives b a secret of its own
            conn.execute(credentials.update().where(credentials.c.credential_id == b.credential_id)
                         .values(vault_path=b.vault_path + "-own"))
        s.migrate()
        assert s.schema_revision() == HEAD_REVISION
        assert {r.credential_id for r in s.list_credentials(page_size=10)[0]} == \
            {a.credential_id, b.credential_id, alone.credential_id}
        with pytest.raises(AlreadyExists):
            s.insert_credential(cred(vault_path=alone.vault_path))
    finally:
        s.close()


def test_migrate_cli_on_a_fresh_sqlite_file(tmp_path: Path) -> None:
    db = tmp_path / "nested" / "ks.db"
    env = {**os.environ, "BYOK_DATABASE_URL": f"sqlite:///{db}"}
    for _ in range(2):
        done = subprocess.run([sys.executable, "-m", "keyservice.migrate"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert f"revision {HEAD_REVISION}" in done.stdout
    s = Store(f"sqlite:///{db}")
    try:
        assert s.schema_revision() == HEAD_REVISION
        assert s.list_credentials() == ([], "")
    finally:
        s.close()


def test_migrate_cli_failure_does_not_print_the_url() -> None:
    env = {**os.environ, "BYOK_DATABASE_URL": "postgresql://byok:pw-Zx81q@127.0.0.1:1/x?connect_timeout=2"}
    done = subprocess.run([sys.executable, "-m", "keyservice.migrate"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "DatabaseUnavailable" in done.stderr
    assert "pw-Zx81q" not in done.stdout + done.stderr


def test_database_down() -> None:
    s = Store("postgresql+psycopg://127.0.0.1:1/x", connect_timeout=2)
    try:
        assert s.ping() is False
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable):
            s.get_credential("x")
        with pytest.raises(DatabaseUnavailable):
            s.migrate()
        assert time.monotonic() - started < 10
    finally:
        s.close()


def test_bad_urls_are_rejected_without_echoing_them() -> None:
    with pytest.raises(InvalidArgument) as err:
        Store("mysql://root:pw-Zx81q@localhost/db")
    assert "pw-Zx81q" not in str(err.value)
    assert Store("postgresql://u@127.0.0.1:1/x").dialect == "postgresql"
    assert Store("postgres://u@127.0.0.1:1/x").dialect == "postgresql"


# ---------------------------------------------------------------------------------- revocation feed


async def _next(q: asyncio.Queue[RevocationRow], within: float = 5.0) -> RevocationRow:
    return await asyncio.wait_for(q.get(), within)


async def _two_replicas(url: str, **feed_kw: float) -> tuple[Store, Store, RevocationFeed, RevocationFeed]:
    a, b = Store(url), Store(url)
    await asyncio.to_thread(a.migrate)
    fa, fb = RevocationFeed(a, **feed_kw), RevocationFeed(b, **feed_kw)
    await fa.start()
    await fb.start()
    return a, b, fa, fb


async def _close(*things: Store | RevocationFeed) -> None:
    for t in things:
        if isinstance(t, RevocationFeed):
            await t.stop()
        else:
            t.close()


async def test_feed_reaches_another_replica_within_a_second(db_url: str) -> None:
    a = Store(db_url)
    await asyncio.to_thread(a.migrate)
    old = await asyncio.to_thread(a.append_revocation, "scope_changed", org_id="before-start")
    a.close()
    a, b, fa, fb = await _two_replicas(db_url)
    try:
        assert fb.last_sequence == old
        sub_b, sub_a = fb.subscribe(), fa.subscribe()
        started = time.monotonic()
        seq = await asyncio.to_thread(a.append_revocation, "deactivated", credential_id="c1", org_id="org-1")
        got = await _next(sub_b)
        elapsed = time.monotonic() - started
        assert (got.sequence, got.reason, got.credential_id, got.org_id) == (seq, "deactivated", "c1", "org-1")
        assert elapsed < 1.0, f"revocation took {elapsed:.3f}s to reach the other replica"
        # The writer's own replica hears it at once through the store's local hook; no replay of `old`.
        assert (await _next(sub_a, 1.0)).sequence == seq

        # Several, from both replicas: every subscriber gets each once, in sequence order.
        written = []
        for i in range(6):
            writer = a if i % 2 else b
            written.append(await asyncio.to_thread(writer.append_revocation, "rotated", credential_id=f"c{i}"))
        for q in (sub_a, sub_b):
            assert [(await _next(q)).sequence for _ in written] == written
        fb.unsubscribe(sub_b)
        last = await asyncio.to_thread(a.append_revocation, "deleted", credential_id="z")
        assert (await _next(sub_a)).sequence == last
        assert sub_b.empty()
    finally:
        await _close(fa, fb, a, b)


@pytest.mark.postgres
async def test_feed_listens_and_survives_a_dropped_connection(postgres_url: str) -> None:
    # The safety-net poll is pushed out of the way: delivery here can only come from LISTEN/NOTIFY.
    a, b, fa, fb = await _two_replicas(postgres_url, safety_poll_interval=60.0)
    try:
        sub = fb.subscribe()
        started = time.monotonic()
        seq = await asyncio.to_thread(a.append_revocation, "invalid", credential_id="c1")
        assert (await _next(sub)).sequence == seq
        assert time.monotonic() - started < 1.0

        # Kill every listener's backend; the feeds must reconnect and catch up on what they missed.
        def kill_listeners() -> int:
            with psycopg.connect(postgres_url.replace("+psycopg", ""), autocommit=True) as conn:
                return len(conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND query = 'LISTEN byok_revocations'"
                ).fetchall())

        assert await asyncio.to_thread(kill_listeners) == 2
        seq = await asyncio.to_thread(a.append_revocation, "invalid", credential_id="c2")
        assert (await _next(sub, 10.0)).sequence == seq
        seq = await asyncio.to_thread(a.append_revocation, "invalid", credential_id="c3")
        assert (await _next(sub, 2.0)).sequence == seq
    finally:
        await _close(fa, fb, a, b)


@pytest.mark.postgres
async def test_feed_never_skips_concurrent_commits(postgres_url: str) -> None:
    a, b, fa, fb = await _two_replicas(postgres_url)
    try:
        sub = fb.subscribe()

        def burst(writer: Store, n: int) -> list[int]:
            return [writer.append_revocation("rotated", credential_id=f"c{i}") for i in range(n)]

        results = await asyncio.gather(*(asyncio.to_thread(burst, s, 15) for s in (a, b, a, b)))
        written = sorted(seq for r in results for seq in r)
        got = [(await _next(sub)).sequence for _ in written]
        assert got == written
    finally:
        await _close(fa, fb, a, b)
