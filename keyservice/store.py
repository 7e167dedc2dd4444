"""The key service's database: credential references, audit events, org policies, caller bindings and the
durable revocation log, on SQLite (embedded default) or PostgreSQL, with SQLAlchemy Core.

This is the only module that imports SQLAlchemy. It holds references and metadata only: never a key, never
ciphertext. Every call is synchronous (the gRPC service runs it in a thread pool) and every foreign
exception leaves here translated by `translate_foreign()`.

Revocations are written in the same transaction as the change that causes them. Writers that append one
serialise on a lock (PostgreSQL advisory lock, SQLite's database write lock) so that sequence numbers
become visible in commit order: a reader that has seen sequence N never later finds a new row below N.
On PostgreSQL the transaction also NOTIFYs `byok_revocations`, which `RevocationFeed` LISTENs to.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import sqlalchemy.exc
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.pool import StaticPool

from byokcommon.redaction import redact_text
from keyservice.errors import Aborted, AlreadyExists, InvalidArgument, NotFound, translate_foreign
from keyservice.validation import canonical_vault_path

HEALTH_VALUES = ("unverified", "active", "invalid", "rate_limited", "unreachable")
# Lower-case names of the proto's RevocationReason values (without the REVOCATION_REASON_ prefix).
REVOCATION_REASONS = frozenset(
    {"deactivated", "rotated", "deleted", "caller_unbound", "invalid", "scope_changed"}
)
NOTIFY_CHANNEL = "byok_revocations"
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

# PostgreSQL advisory-lock keys (classid, objid): one class for the whole service, objid per purpose.
_LOCK_CLASS = 0x62796F6B  # "byok"
_LOCK_REVOCATIONS = 1
_LOCK_MIGRATE = 2
_LOCK_PRIMARY_CLASS = _LOCK_CLASS + 1  # objid = hashtext(provider|scope)

_UPDATABLE = frozenset(
    {
        "name", "api_base", "default_model", "primary", "active", "health", "secret_version",
        "transit_key", "transit_key_version", "key_hint", "fingerprint", "last_verified_at", "last_rotated_at",
    }
)


def utcnow() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------------------------- rows


@dataclass(frozen=True, slots=True)
class CredentialRow:
    """A credential's reference and metadata (no secret)."""

    credential_id: str
    provider: str
    org_id: str
    project_id: str
    user_id: str
    name: str
    api_base: str
    default_model: str
    active: bool
    primary: bool
    health: str
    key_hint: str
    fingerprint: str
    vault_mount: str
    vault_path: str
    secret_version: int
    transit_key: str
    transit_key_version: int
    created_at: datetime
    updated_at: datetime
    last_verified_at: datetime | None = None
    last_rotated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One audit event. `details_json` is a JSON object as text; it must never hold key material."""

    event_id: str
    time: datetime
    actor: str
    action: str
    credential_id: str = ""
    org_id: str = ""
    outcome: str = "success"
    details_json: str = "{}"
    project_id: str = ""
    user_id: str = ""

    @classmethod
    def new(
        cls,
        actor: str,
        action: str,
        *,
        credential_id: str = "",
        org_id: str = "",
        project_id: str = "",
        user_id: str = "",
        outcome: str = "success",
        details: Mapping[str, Any] | None = None,
    ) -> AuditRow:
        """An event with a fresh id, stamped now."""
        return cls(
            event_id=uuid.uuid4().hex,
            time=utcnow(),
            actor=actor,
            action=action,
            credential_id=credential_id,
            org_id=org_id,
            project_id=project_id,
            user_id=user_id,
            outcome=outcome,
            details_json=json.dumps(dict(details or {}), sort_keys=True, separators=(",", ":")),
        )


@dataclass(frozen=True, slots=True)
class RevocationRow:
    """One entry of the durable revocation log."""

    sequence: int
    reason: str
    credential_id: str
    org_id: str
    caller_identity: str
    time: datetime


@dataclass(frozen=True, slots=True)
class NewRevocation:
    """A revocation to append along with a change. Empty ids are filled from the changed record."""

    reason: str
    credential_id: str = ""
    org_id: str = ""
    caller_identity: str = ""


RevocationArg = str | NewRevocation | None


@dataclass(frozen=True, slots=True)
class BindingRow:
    """A caller identity allowed to act for an org (project_id '' = the whole org) or one project."""

    caller_identity: str
    org_id: str
    project_id: str
    created_at: datetime


# ------------------------------------------------------------------------------------------ schema


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both dialects. SQLite has no time zones, so values are stored as
    naive UTC text (fixed width, so text order is time order) and come back tagged UTC."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        # Naive values are taken to be UTC already.
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# SQLite only auto-increments an INTEGER PRIMARY KEY, so BIGINT there is plain INTEGER (also 64-bit).
BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

metadata = sa.MetaData()

credentials = sa.Table(
    "credentials",
    metadata,
    sa.Column("credential_id", sa.Text, primary_key=True),
    sa.Column("provider", sa.Text, nullable=False),
    sa.Column("org_id", sa.Text, nullable=False),
    sa.Column("project_id", sa.Text, nullable=False, server_default=""),
    sa.Column("user_id", sa.Text, nullable=False, server_default=""),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("api_base", sa.Text, nullable=False, server_default=""),
    sa.Column("default_model", sa.Text, nullable=False, server_default=""),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("is_primary", sa.Boolean, nullable=False),
    sa.Column("health", sa.Text, nullable=False),
    sa.Column("key_hint", sa.Text, nullable=False, server_default=""),
    sa.Column("fingerprint", sa.Text, nullable=False, server_default=""),
    sa.Column("vault_mount", sa.Text, nullable=False),
    sa.Column("vault_path", sa.Text, nullable=False),
    sa.Column("secret_version", sa.Integer, nullable=False),
    sa.Column("transit_key", sa.Text, nullable=False, server_default=""),
    sa.Column("transit_key_version", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("last_verified_at", UTCDateTime, nullable=True),
    sa.Column("last_rotated_at", UTCDateTime, nullable=True),
    sa.UniqueConstraint("provider", "org_id", "project_id", "user_id", "name", name="uq_credentials_name"),
    sa.CheckConstraint(
        "health IN ('unverified', 'active', 'invalid', 'rate_limited', 'unreachable')",
        name="ck_credentials_health",
    ),
    sa.Index("ix_credentials_lease", "org_id", "provider", "active"),
    # One credential per Vault secret: two rows on one path would let one tenant lease another's key, and
    # deleting either would destroy the secret under the other (migration 0002).
    sa.Index("uq_credentials_vault_path", "vault_mount", "vault_path", unique=True),
    sa.Index("ix_credentials_created", "created_at", "credential_id"),
    # At most one primary per provider and scope, even if two writers race.
    sa.Index(
        "uq_credentials_primary",
        "provider", "org_id", "project_id", "user_id",
        unique=True,
        sqlite_where=sa.text("is_primary"),
        postgresql_where=sa.text("is_primary"),
    ),
)

audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.Text, nullable=False, unique=True),
    sa.Column("time", UTCDateTime, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("credential_id", sa.Text, nullable=False, server_default=""),
    sa.Column("org_id", sa.Text, nullable=False, server_default=""),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("details_json", sa.Text, nullable=False, server_default="{}"),
    sa.Column("project_id", sa.Text, nullable=False, server_default=""),
    sa.Column("user_id", sa.Text, nullable=False, server_default=""),
    sa.Index("ix_audit_events_time", "time", "id"),
    sa.Index("ix_audit_events_org", "org_id", "time"),
    sa.Index("ix_audit_events_scope", "org_id", "project_id", "user_id", "time"),
    sa.Index("ix_audit_events_credential", "credential_id", "time"),
    sqlite_autoincrement=True,
)

org_policies = sa.Table(
    "org_policies",
    metadata,
    sa.Column("org_id", sa.Text, primary_key=True),
    sa.Column("allow_platform_fallback", sa.Boolean, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

caller_bindings = sa.Table(
    "caller_bindings",
    metadata,
    sa.Column("caller_identity", sa.Text, primary_key=True),
    sa.Column("org_id", sa.Text, primary_key=True),
    sa.Column("project_id", sa.Text, primary_key=True, server_default=""),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_caller_bindings_org", "org_id"),
)

revocations = sa.Table(
    "revocations",
    metadata,
    sa.Column("sequence", BigIntPK, primary_key=True, autoincrement=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("credential_id", sa.Text, nullable=False, server_default=""),
    sa.Column("org_id", sa.Text, nullable=False, server_default=""),
    sa.Column("caller_identity", sa.Text, nullable=False, server_default=""),
    sa.Column("time", UTCDateTime, nullable=False),
    # Sequences are never reused, even after old rows are pruned.
    sqlite_autoincrement=True,
)

# A create's claim on its Vault path, held from before its Vault write until its row commits (migration 0003).
secret_reservations = sa.Table(
    "secret_reservations",
    metadata,
    sa.Column("vault_mount", sa.Text, primary_key=True),
    sa.Column("vault_path", sa.Text, primary_key=True),
    sa.Column("credential_id", sa.Text, nullable=False),
    sa.Column("reserved_at", UTCDateTime, nullable=False),
    sa.Index("ix_secret_reservations_time", "reserved_at"),
)


@dataclass(frozen=True)
class Reservation:
    vault_mount: str
    vault_path: str
    credential_id: str
    reserved_at: datetime


# ------------------------------------------------------------------------------------------ helpers


def normalize_url(url: str) -> sa.engine.URL:
    """Parse a database URL; plain `postgresql://` (and `postgres://`) become `postgresql+psycopg://`.
    The URL may hold a password, so it never appears in the errors raised here."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    try:
        parsed = sa.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise InvalidArgument("database_url", "not a valid database URL") from None
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername not in ("postgresql+psycopg", "sqlite", "sqlite+pysqlite"):
        raise InvalidArgument("database_url", "unsupported database; use sqlite:// or postgresql+psycopg://")
    return parsed


def _encode_token(payload: dict[str, Any]) -> str:
    raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str, kind: str) -> dict[str, Any]:
    """The keyset position in a page token; InvalidArgument if it is not one of ours for this listing."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw)
        if not isinstance(payload, dict) or payload.get("k") != kind:
            raise ValueError
        payload["t"] = datetime.fromisoformat(payload["t"])
        if payload["t"].tzinfo is None or not isinstance(payload["i"], str | int):
            raise ValueError
        return payload
    except (ValueError, TypeError, KeyError, binascii.Error, UnicodeDecodeError):
        raise InvalidArgument("page_token", "malformed or foreign page token") from None


def _page_size(page_size: int) -> int:
    if page_size < 0:
        raise InvalidArgument("page_size", "must not be negative")
    return min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def _credential(m: Mapping[Any, Any]) -> CredentialRow:
    return CredentialRow(
        credential_id=m["credential_id"], provider=m["provider"], org_id=m["org_id"],
        project_id=m["project_id"], user_id=m["user_id"], name=m["name"], api_base=m["api_base"],
        default_model=m["default_model"], active=bool(m["active"]), primary=bool(m["is_primary"]),
        health=m["health"], key_hint=m["key_hint"], fingerprint=m["fingerprint"],
        vault_mount=m["vault_mount"], vault_path=m["vault_path"], secret_version=m["secret_version"],
        transit_key=m["transit_key"], transit_key_version=m["transit_key_version"],
        created_at=m["created_at"], updated_at=m["updated_at"],
        last_verified_at=m["last_verified_at"], last_rotated_at=m["last_rotated_at"],
    )


def _audit(m: Mapping[Any, Any]) -> AuditRow:
    return AuditRow(
        event_id=m["event_id"], time=m["time"], actor=m["actor"], action=m["action"],
        credential_id=m["credential_id"], org_id=m["org_id"], project_id=m["project_id"], user_id=m["user_id"],
        outcome=m["outcome"], details_json=m["details_json"],
    )


def _revocation(m: Mapping[Any, Any]) -> RevocationRow:
    return RevocationRow(
        sequence=int(m["sequence"]), reason=m["reason"], credential_id=m["credential_id"],
        org_id=m["org_id"], caller_identity=m["caller_identity"], time=m["time"],
    )


def _binding(m: Mapping[Any, Any]) -> BindingRow:
    return BindingRow(
        caller_identity=m["caller_identity"], org_id=m["org_id"], project_id=m["project_id"],
        created_at=m["created_at"],
    )


def _credential_values(row: CredentialRow) -> dict[str, Any]:
    values = {f.name: getattr(row, f.name) for f in dataclasses.fields(row) if f.name != "primary"}
    values["is_primary"] = row.primary
    return values


# -------------------------------------------------------------------------------------------- store


@dataclass
class _Listeners:
    """Callbacks run after a transaction that appended revocations commits (e.g. RevocationFeed.poke)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    callbacks: list[Callable[[], None]] = field(default_factory=list)


class Store:
    """Synchronous access to the key service's tables. Thread-safe; one per process."""

    def __init__(self, url: str, *, pool_size: int = 5, connect_timeout: float = 5.0) -> None:
        parsed = normalize_url(url)
        self.dialect: str = "postgresql" if parsed.drivername.startswith("postgresql") else "sqlite"
        self._listeners = _Listeners()
        if self.dialect == "postgresql":
            connect_args: dict[str, Any] = {}
            if "connect_timeout" not in parsed.query:
                connect_args["connect_timeout"] = max(1, int(connect_timeout))
            self._engine: Engine = sa.create_engine(
                parsed,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_timeout=10,
                # A replica outlives database restarts: check a pooled connection before using it.
                pool_pre_ping=True,
                connect_args=connect_args,
            )
        else:
            self._engine = self._sqlite_engine(parsed, pool_size, connect_timeout)

    @staticmethod
    def _sqlite_engine(parsed: sa.engine.URL, pool_size: int, connect_timeout: float) -> Engine:
        database = parsed.database or ""
        in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
        if in_memory:
            # One shared connection, or every pooled connection would see its own empty database.
            engine = sa.create_engine(
                parsed, poolclass=StaticPool, connect_args={"check_same_thread": False}
            )
        else:
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(
                parsed,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_timeout=10,
                connect_args={"check_same_thread": False, "timeout": connect_timeout},
            )
        busy_ms = int(max(connect_timeout, 1.0) * 1000)

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Take transactions away from pysqlite (it would BEGIN lazily, too late for writers) and
            # emit them ourselves in _on_begin.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
            cur.execute(f"PRAGMA busy_timeout={busy_ms}")  # wait for the write lock instead of failing
            cur.execute("PRAGMA foreign_keys=ON")
            # FULL, not NORMAL: under WAL, NORMAL skips the fsync at each commit, so a power loss can undo
            # transactions that already reported success. A delete removes the row (committed), then the
            # Vault secret: if the row came back after a power cut it would point at a destroyed secret,
            # exactly what the write ordering in credentials.py exists to prevent. One fsync per commit.
            cur.execute("PRAGMA synchronous=FULL")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # Writers take the write lock up front: a deferred transaction that reads and then writes
            # can fail with SQLITE_BUSY at once (no busy wait) when another writer got in between.
            conn.exec_driver_sql(conn.get_execution_options().get("byok_begin", "BEGIN"))

        return engine

    # ------------------------------------------------------------------ plumbing

    @contextmanager
    def _tx(self, *, write: bool = False) -> Iterator[Connection]:
        """One transaction, foreign exceptions translated."""
        with translate_foreign(), self._engine.connect() as conn:
            if write and self.dialect == "sqlite":
                conn.execution_options(byok_begin="BEGIN IMMEDIATE")
            with conn.begin():
                yield conn

    @contextmanager
    def _write(self) -> Iterator[_WriteTx]:
        """A write transaction that may append revocations; listeners run after it commits."""
        tx = _WriteTx(self)
        with self._tx(write=True) as conn:
            tx.conn = conn
            yield tx
        if tx.revoked:
            self._notify_listeners()

    def add_revocation_listener(self, callback: Callable[[], None]) -> None:
        """Call `callback()` (from the writing thread) after each local commit that appended revocations."""
        with self._listeners.lock:
            self._listeners.callbacks.append(callback)

    def remove_revocation_listener(self, callback: Callable[[], None]) -> None:
        with self._listeners.lock:
            if callback in self._listeners.callbacks:
                self._listeners.callbacks.remove(callback)

    def _notify_listeners(self) -> None:
        with self._listeners.lock:
            callbacks = list(self._listeners.callbacks)
        for callback in callbacks:
            callback()

    # ------------------------------------------------------------------ lifecycle

    def migrate(self) -> None:
        """Bring the schema to the newest revision (alembic upgrade head). Idempotent, and safe when
        several replicas start at once (PostgreSQL advisory lock / SQLite write lock)."""
        from alembic import command

        from keyservice.migrations import alembic_config

        with self._tx(write=True) as conn:
            if self.dialect == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_LOCK_CLASS, _LOCK_MIGRATE)))
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def schema_revision(self) -> str:
        """The alembic revision the database is at ('' if never migrated)."""
        from alembic.runtime.migration import MigrationContext

        with self._tx() as conn:
            return MigrationContext.configure(conn).get_current_revision() or ""

    def ping(self) -> bool:
        """True if the database answers. Never raises."""
        try:
            with self._engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return True
        except Exception:  # noqa: BLE001 - a health probe reports, it does not raise
            return False

    def close(self) -> None:
        self._engine.dispose()

    # ------------------------------------------------------------------ credentials

    def reserve_secret(self, vault_mount: str, vault_path: str, credential_id: str) -> None:
        """Claim a Vault path for a create before it writes the secret (see `insert_credential`'s
        `reserved`). AlreadyExists if the path is reserved or referenced already."""
        c = credentials.c
        with self._write() as tx:
            owner = tx.conn.execute(sa.select(c.credential_id).where(
                c.vault_mount == vault_mount, c.vault_path == vault_path)).scalar()
            if owner is not None:
                raise _path_conflict(vault_mount, vault_path, owner)
            try:
                tx.conn.execute(secret_reservations.insert().values(
                    vault_mount=vault_mount, vault_path=vault_path, credential_id=credential_id,
                    reserved_at=utcnow()))
            except sqlalchemy.exc.IntegrityError:
                raise _path_conflict(vault_mount, vault_path, "") from None

    def release_reservation(self, vault_mount: str, vault_path: str, credential_id: str) -> None:
        """Drop a create's reservation (the create gave up); nothing if it is gone."""
        r = secret_reservations.c
        with self._write() as tx:
            tx.conn.execute(secret_reservations.delete().where(
                r.vault_mount == vault_mount, r.vault_path == vault_path, r.credential_id == credential_id))

    def reclaim_reservations(self, older_than: datetime) -> list[Reservation]:
        """Delete and return the reservations taken before `older_than`: their creates outlived the deadline,
        and from this commit on they can no longer commit (their `insert_credential(reserved=True)` finds the
        reservation gone and aborts). Of two reconcilers reclaiming at once, each reservation goes to one."""
        r = secret_reservations.c
        with self._write() as tx:
            gone = tx.conn.execute(
                secret_reservations.delete().where(r.reserved_at < older_than)
                .returning(r.vault_mount, r.vault_path, r.credential_id, r.reserved_at)).all()
        return [Reservation(m, p, cid, at if at.tzinfo else at.replace(tzinfo=UTC)) for m, p, cid, at in gone]

    def claimed_vault_paths(self, vault_mount: str) -> set[str]:
        """Every path in `vault_mount` that a credential references or a create has reserved, read in one
        statement (one snapshot): a create's reservation and its row are swapped in one transaction, so a path
        is never in neither while its create is in flight."""
        c, r = credentials.c, secret_reservations.c
        q = sa.union(sa.select(c.vault_path).where(c.vault_mount == vault_mount),
                     sa.select(r.vault_path).where(r.vault_mount == vault_mount))
        with self._tx() as conn:
            return set(conn.execute(q).scalars())

    def insert_credential(
        self, row: CredentialRow, *, audit: AuditRow | None = None, revocation: RevocationArg = None,
        reserved: bool = False,
    ) -> CredentialRow:
        """Insert a credential; if it is primary, its siblings (same provider and scope) stop being.

        `reserved`: the row's path was reserved with `reserve_secret`; the reservation is consumed in this
        transaction, and if the reconciler reclaimed it meanwhile (the create outlived its deadline), nothing
        is inserted and Aborted is raised: the reconciler is deleting, or has deleted, the secret."""
        if canonical_vault_path(row.vault_path) != row.vault_path:
            # The uniqueness index compares spellings: only Vault's own spelling of a path may get in.
            raise InvalidArgument("vault_path", "must be canonical: no '.', '..' or empty segments")
        with self._write() as tx:
            if reserved:
                r = secret_reservations.c
                consumed = tx.conn.execute(secret_reservations.delete().where(
                    r.vault_mount == row.vault_mount, r.vault_path == row.vault_path,
                    r.credential_id == row.credential_id)).rowcount
                if not consumed:
                    raise Aborted("the create outlived its deadline (BYOK_CREATE_DEADLINE_SECONDS) and the "
                                  "reconciler reclaimed its secret; nothing was stored, retry")
            if row.health not in HEALTH_VALUES:
                raise InvalidArgument("health", f"must be one of {', '.join(HEALTH_VALUES)}")
            c = credentials.c
            clash = tx.conn.execute(sa.select(c.credential_id).where(
                sa.or_(c.credential_id == row.credential_id,
                       sa.and_(c.provider == row.provider, c.org_id == row.org_id,
                               c.project_id == row.project_id, c.user_id == row.user_id,
                               c.name == row.name)))).scalar()
            if clash == row.credential_id:
                raise AlreadyExists(f"credential {row.credential_id!r} already exists")
            if clash is not None:
                raise _name_conflict(row.name, row.provider)
            owner = tx.conn.execute(sa.select(c.credential_id).where(
                c.vault_mount == row.vault_mount, c.vault_path == row.vault_path)).scalar()
            if owner is not None:
                raise _path_conflict(row.vault_mount, row.vault_path, owner)
            if row.primary:
                tx.clear_primary(row)
            try:
                tx.conn.execute(credentials.insert().values(**_credential_values(row)))
            except sqlalchemy.exc.IntegrityError as exc:
                # A concurrent insert won the race (PostgreSQL); which constraint tells which conflict.
                # The driver's text is only inspected, never kept: it can quote the row's values.
                if "vault_path" in str(exc.orig):
                    raise _path_conflict(row.vault_mount, row.vault_path, "") from None
                raise _name_conflict(row.name, row.provider) from None
            tx.audit(audit)
            tx.revoke(revocation, credential_id=row.credential_id, org_id=row.org_id)
            return _credential(tx.get(row.credential_id))

    def get_credential(self, credential_id: str) -> CredentialRow:
        with self._tx() as conn:
            m = conn.execute(
                credentials.select().where(credentials.c.credential_id == credential_id)
            ).mappings().first()
        if m is None:
            raise NotFound(f"credential {credential_id!r} not found")
        return _credential(m)

    def list_credentials(
        self,
        *,
        org_id: str = "",
        project_id: str = "",
        user_id: str = "",
        provider: str = "",
        active: bool | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        page_token: str = "",
    ) -> tuple[list[CredentialRow], str]:
        """Credentials matching the filters (empty = any), oldest first, a page at a time."""
        size = _page_size(page_size)
        c = credentials.c
        q = credentials.select()
        for column, value in ((c.org_id, org_id), (c.project_id, project_id), (c.user_id, user_id),
                              (c.provider, provider)):
            if value:
                q = q.where(column == value)
        if active is not None:
            q = q.where(c.active == active)
        if page_token:
            pos = _decode_token(page_token, "c")
            q = q.where(sa.or_(c.created_at > pos["t"],
                               sa.and_(c.created_at == pos["t"], c.credential_id > pos["i"])))
        q = q.order_by(c.created_at, c.credential_id).limit(size + 1)
        with self._tx() as conn:
            rows = [_credential(m) for m in conn.execute(q).mappings()]
        if len(rows) <= size:
            return rows, ""
        last = rows[size - 1]
        return rows[:size], _encode_token({"k": "c", "t": last.created_at.isoformat(),
                                           "i": last.credential_id})

    def update_credential(
        self,
        credential_id: str,
        *,
        audit: AuditRow | None = None,
        revocation: RevocationArg = None,
        expected_version: int | None = None,
        **changes: Any,
    ) -> CredentialRow:
        """Change some of a credential's fields (see _UPDATABLE); updated_at is set. `expected_version`
        makes it a compare-and-set on secret_version (Aborted if another writer got there first).
        The audit event and revocation, if given, are written in the same transaction."""
        unknown = set(changes) - _UPDATABLE
        if unknown:
            raise TypeError(f"not updatable: {', '.join(sorted(unknown))}")
        if "health" in changes and changes["health"] not in HEALTH_VALUES:
            raise InvalidArgument("health", f"must be one of {', '.join(HEALTH_VALUES)}")
        with self._write() as tx:
            current = _credential(tx.get(credential_id, lock=True))
            if expected_version is not None and current.secret_version != expected_version:
                raise Aborted(
                    f"credential {credential_id!r} is at secret version {current.secret_version}, "
                    f"not {expected_version}"
                )
            values = {("is_primary" if k == "primary" else k): v for k, v in changes.items()}
            values["updated_at"] = utcnow()
            if changes.get("primary"):
                tx.clear_primary(current)
            try:
                tx.conn.execute(
                    credentials.update().where(credentials.c.credential_id == credential_id).values(values)
                )
            except sqlalchemy.exc.IntegrityError:
                raise _name_conflict(changes.get("name", current.name), current.provider) from None
            tx.audit(audit)
            tx.revoke(revocation, credential_id=credential_id, org_id=current.org_id)
            return _credential(tx.get(credential_id))

    def delete_credential(
        self, credential_id: str, *, audit: AuditRow | None = None, revocation: RevocationArg = None
    ) -> CredentialRow:
        """Delete a credential's row and return it (NotFound if absent)."""
        with self._write() as tx:
            current = _credential(tx.get(credential_id, lock=True))
            tx.conn.execute(credentials.delete().where(credentials.c.credential_id == credential_id))
            tx.audit(audit)
            tx.revoke(revocation, credential_id=credential_id, org_id=current.org_id)
            return current

    def lease_candidates(
        self, *, org_id: str, project_id: str, user_id: str, provider: str
    ) -> list[CredentialRow]:
        """Active, not-invalid credentials that may serve (org, project, user, provider), best first.

        Levels, most specific first: the user in this project; the user anywhere in the org (project
        ''); the project (user ''); the org ('', ''). Levels whose id is empty are skipped. Within a
        level: primary first, then oldest. An empty provider matches any provider (routing by model is
        the caller's business)."""
        c = credentials.c
        levels: list[tuple[Any, int]] = []
        if user_id and project_id:
            levels.append((sa.and_(c.project_id == project_id, c.user_id == user_id), 0))
        if user_id:
            levels.append((sa.and_(c.project_id == "", c.user_id == user_id), 1))
        if project_id:
            levels.append((sa.and_(c.project_id == project_id, c.user_id == ""), 2))
        levels.append((sa.and_(c.project_id == "", c.user_id == ""), 3))
        level = sa.case(*levels, else_=9)
        q = (
            credentials.select()
            .where(c.org_id == org_id, c.active.is_(True), c.health != "invalid")
            .where(sa.or_(*(cond for cond, _ in levels)))
            .order_by(level, c.is_primary.desc(), c.created_at, c.credential_id)
        )
        if provider:
            q = q.where(c.provider == provider)
        with self._tx() as conn:
            return [_credential(m) for m in conn.execute(q).mappings()]

    def all_vault_refs(self) -> set[tuple[str, str]]:
        """Every (vault_mount, vault_path) referenced."""
        with self._tx() as conn:
            rows = conn.execute(sa.select(credentials.c.vault_mount, credentials.c.vault_path))
            return {(m, p) for m, p in rows}

    def deactivate_org(self, org_id: str, *, audit: AuditRow | None = None) -> list[CredentialRow]:
        """Cut an org off: deactivate every active credential (one 'deactivated' revocation each), turn its
        platform fallback off, and append one org-wide 'scope_changed' revocation (no credential id), on
        which proxies drop every cached lease of the org, platform leases included (they name no
        credential, so no per-credential event reaches them). Returns the credentials as they are now."""
        with self._write() as tx:
            ids = list(tx.conn.execute(
                sa.select(credentials.c.credential_id)
                .where(credentials.c.org_id == org_id, credentials.c.active.is_(True))
                .order_by(credentials.c.created_at, credentials.c.credential_id)
            ).scalars())
            if ids:
                tx.conn.execute(
                    credentials.update().where(credentials.c.credential_id.in_(ids))
                    .values(active=False, updated_at=utcnow())
                )
            now = utcnow()
            tx.conn.execute(self._upsert(org_policies)
                            .values(org_id=org_id, allow_platform_fallback=False, updated_at=now)
                            .on_conflict_do_update(index_elements=["org_id"],
                                                   set_={"allow_platform_fallback": False, "updated_at": now}))
            tx.audit(audit)
            for credential_id in ids:
                tx.revoke(NewRevocation("deactivated", credential_id=credential_id, org_id=org_id))
            tx.revoke(NewRevocation("scope_changed", org_id=org_id))
            return [_credential(tx.get(i)) for i in ids]

    # ------------------------------------------------------------------ audit

    def append_audit(self, row: AuditRow) -> None:
        with self._write() as tx:
            tx.audit(row)

    def append_audits(self, rows: list[AuditRow]) -> None:
        """Several events in one transaction (the lease path's batched audit)."""
        if not rows:
            return
        with self._write() as tx:
            for row in rows:
                tx.audit(row)

    def lease_was_issued(self, lease_id: str, *, credential_id: str, caller: str, since: datetime) -> bool:
        """Whether the audit log shows `lease_id` issued for `credential_id` to `caller` since `since` (the
        credential and time indexes keep this to a handful of rows)."""
        a = audit_events.c
        q = (sa.select(a.id).where(a.credential_id == credential_id, a.action == "lease.issue", a.actor == caller,
                                   a.time >= since, a.details_json.contains(f'"{lease_id}"', autoescape=True))
             .limit(1))
        with self._tx() as conn:
            return conn.execute(q).first() is not None

    def list_audit(
        self,
        *,
        org_id: str = "",
        project_id: str = "",
        user_id: str = "",
        credential_id: str = "",
        action: str = "",
        actor: str = "",
        since: datetime | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        page_token: str = "",
    ) -> tuple[list[AuditRow], str]:
        """Audit events matching the filters (empty = any; `since` inclusive), newest first, paged."""
        size = _page_size(page_size)
        a = audit_events.c
        q = audit_events.select()
        for column, value in ((a.org_id, org_id), (a.project_id, project_id), (a.user_id, user_id),
                              (a.credential_id, credential_id), (a.action, action), (a.actor, actor)):
            if value:
                q = q.where(column == value)
        if since is not None:
            q = q.where(a.time >= since)
        if page_token:
            pos = _decode_token(page_token, "a")
            if not isinstance(pos["i"], int):
                raise InvalidArgument("page_token", "malformed or foreign page token")
            q = q.where(sa.or_(a.time < pos["t"], sa.and_(a.time == pos["t"], a.id < pos["i"])))
        q = q.order_by(a.time.desc(), a.id.desc()).limit(size + 1)
        with self._tx() as conn:
            found = list(conn.execute(q).mappings())
        rows = [_audit(m) for m in found[:size]]
        if len(found) <= size:
            return rows, ""
        last = found[size - 1]
        return rows, _encode_token({"k": "a", "t": last["time"].isoformat(), "i": int(last["id"])})

    # ------------------------------------------------------------------ policies and bindings

    def get_org_policy(self, org_id: str) -> bool:
        """allow_platform_fallback for the org (False when never set)."""
        with self._tx() as conn:
            value = conn.execute(
                sa.select(org_policies.c.allow_platform_fallback).where(org_policies.c.org_id == org_id)
            ).scalar()
        return bool(value)

    def set_org_policy(
        self,
        org_id: str,
        allow_platform_fallback: bool,
        *,
        audit: AuditRow | None = None,
        revocation: RevocationArg = None,
    ) -> None:
        with self._write() as tx:
            values = {"org_id": org_id, "allow_platform_fallback": allow_platform_fallback,
                      "updated_at": utcnow()}
            stmt = self._upsert(org_policies).values(**values)
            tx.conn.execute(stmt.on_conflict_do_update(
                index_elements=["org_id"],
                set_={"allow_platform_fallback": allow_platform_fallback, "updated_at": values["updated_at"]},
            ))
            tx.audit(audit)
            tx.revoke(revocation, org_id=org_id)

    def create_binding(
        self, caller_identity: str, org_id: str, project_id: str = "", *, audit: AuditRow | None = None
    ) -> BindingRow:
        """Bind a caller to an org ('' project) or a project. Idempotent: returns the existing binding."""
        with self._write() as tx:
            tx.conn.execute(
                self._upsert(caller_bindings)
                .values(caller_identity=caller_identity, org_id=org_id, project_id=project_id,
                        created_at=utcnow())
                .on_conflict_do_nothing(index_elements=["caller_identity", "org_id", "project_id"])
            )
            tx.audit(audit)
            m = tx.conn.execute(caller_bindings.select().where(*self._binding_key(
                caller_identity, org_id, project_id))).mappings().one()
            return _binding(m)

    def delete_binding(
        self,
        caller_identity: str,
        org_id: str,
        project_id: str = "",
        *,
        audit: AuditRow | None = None,
        revocation: RevocationArg = None,
    ) -> None:
        """Remove a binding (NotFound if absent)."""
        with self._write() as tx:
            deleted = tx.conn.execute(
                caller_bindings.delete().where(*self._binding_key(caller_identity, org_id, project_id))
            ).rowcount
            if not deleted:
                raise NotFound("binding not found")
            tx.audit(audit)
            tx.revoke(revocation, org_id=org_id, caller_identity=caller_identity)

    def list_bindings(self, *, caller_identity: str = "", org_id: str = "") -> list[BindingRow]:
        b = caller_bindings.c
        q = caller_bindings.select().order_by(b.caller_identity, b.org_id, b.project_id)
        if caller_identity:
            q = q.where(b.caller_identity == caller_identity)
        if org_id:
            q = q.where(b.org_id == org_id)
        with self._tx() as conn:
            return [_binding(m) for m in conn.execute(q).mappings()]

    def is_bound(self, caller_identity: str, org_id: str, project_id: str) -> bool:
        """True if the caller is bound to the whole org or to this project of it."""
        b = caller_bindings.c
        projects = ["", project_id] if project_id else [""]
        q = sa.select(sa.literal(1)).where(
            b.caller_identity == caller_identity, b.org_id == org_id, b.project_id.in_(projects)
        ).limit(1)
        with self._tx() as conn:
            return conn.execute(q).first() is not None

    @staticmethod
    def _binding_key(caller_identity: str, org_id: str, project_id: str) -> tuple[Any, ...]:
        b = caller_bindings.c
        return (b.caller_identity == caller_identity, b.org_id == org_id, b.project_id == project_id)

    def _upsert(self, table: sa.Table) -> Any:
        insert = pg_dialect.insert if self.dialect == "postgresql" else sqlite_dialect.insert
        return insert(table)

    # ------------------------------------------------------------------ revocations

    def append_revocation(
        self, reason: str, *, credential_id: str = "", org_id: str = "", caller_identity: str = ""
    ) -> int:
        """Append one revocation on its own; returns its sequence."""
        with self._write() as tx:
            return tx.revoke(NewRevocation(reason, credential_id, org_id, caller_identity))

    def revocations_since(self, sequence: int, limit: int = 1000) -> list[RevocationRow]:
        """Revocations after `sequence`, in sequence order, at most `limit`."""
        r = revocations.c
        q = revocations.select().where(r.sequence > sequence).order_by(r.sequence).limit(max(1, limit))
        with self._tx() as conn:
            return [_revocation(m) for m in conn.execute(q).mappings()]

    def last_revocation_sequence(self) -> int:
        with self._tx() as conn:
            return int(conn.execute(sa.select(sa.func.max(revocations.c.sequence))).scalar() or 0)

    def listen_revocations(
        self, on_notify: Callable[[], None], stop: threading.Event, *, max_backoff: float = 5.0
    ) -> None:
        """Block until `stop` is set, calling `on_notify()` whenever another process (or this one)
        commits revocations. PostgreSQL only: LISTENs on a dedicated connection and reconnects with
        backoff when it drops; on_notify() also runs after each (re)connect, since notifications sent
        while disconnected are lost. Run it in a thread."""
        if self.dialect != "postgresql":
            raise RuntimeError("listen_revocations needs PostgreSQL")
        backoff = 0.1
        while not stop.is_set():
            try:
                conn = self._listen_connection()
            except Exception:  # noqa: BLE001 - database down: wait and retry
                stop.wait(backoff)
                backoff = min(backoff * 2, max_backoff)
                continue
            try:
                backoff = 0.1
                on_notify()
                while not stop.is_set():
                    # Wakes at least twice a second to notice `stop`.
                    for _ in conn.notifies(timeout=0.5):
                        on_notify()
            except Exception:  # noqa: BLE001 - connection lost: reconnect
                stop.wait(backoff)
                backoff = min(backoff * 2, max_backoff)
            finally:
                try:
                    conn.close()
                except Exception:  # noqa: BLE001, S110 - already broken
                    pass

    def _listen_connection(self) -> Any:
        """A psycopg connection of its own (detached from the pool), autocommit, LISTENing."""
        raw = self._engine.raw_connection()
        conn = raw.driver_connection  # read before detach(), which forgets it
        raw.detach()
        if conn is None:  # pragma: no cover - the pool always hands out a live connection
            raise RuntimeError("no driver connection")
        conn.rollback()
        conn.autocommit = True
        conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        return conn


class _WriteTx:
    """Helpers for one write transaction: audit, revocations, primary bookkeeping."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.conn: Connection = None  # type: ignore[assignment]  # set by Store._write
        self.revoked = False

    def get(self, credential_id: str, *, lock: bool = False) -> Mapping[Any, Any]:
        q = credentials.select().where(credentials.c.credential_id == credential_id)
        if lock:
            q = q.with_for_update()  # PostgreSQL row lock; SQLite already holds the write lock
        m = self.conn.execute(q).mappings().first()
        if m is None:
            raise NotFound(f"credential {credential_id!r} not found")
        return m

    def clear_primary(self, row: CredentialRow) -> None:
        """Unset is_primary on the row's siblings (same provider and scope)."""
        c = credentials.c
        if self.store.dialect == "postgresql":
            # Serialise primary changes per provider+scope so racing writers queue instead of one
            # failing on uq_credentials_primary.
            key = "\x1f".join((row.provider, row.org_id, row.project_id, row.user_id))
            self.conn.execute(sa.select(sa.func.pg_advisory_xact_lock(
                _LOCK_PRIMARY_CLASS, sa.func.hashtext(key))))
        self.conn.execute(
            credentials.update()
            .where(c.provider == row.provider, c.org_id == row.org_id, c.project_id == row.project_id,
                   c.user_id == row.user_id, c.credential_id != row.credential_id, c.is_primary.is_(True))
            .values(is_primary=False, updated_at=utcnow())
        )

    def audit(self, row: AuditRow | None) -> None:
        if row is None:
            return
        values = {f.name: getattr(row, f.name) for f in dataclasses.fields(row)}
        try:
            self.conn.execute(audit_events.insert().values(**values))
        except sqlalchemy.exc.IntegrityError:
            raise AlreadyExists(f"audit event {row.event_id!r} already recorded") from None

    def revoke(self, revocation: RevocationArg, **defaults: str) -> int:
        """Append a revocation (a reason, or a NewRevocation whose empty ids take `defaults`)."""
        if revocation is None:
            return 0
        if isinstance(revocation, str):
            revocation = NewRevocation(revocation)
        if revocation.reason not in REVOCATION_REASONS:
            raise InvalidArgument("reason", f"must be one of {', '.join(sorted(REVOCATION_REASONS))}")
        values = {
            "reason": revocation.reason,
            "credential_id": revocation.credential_id or defaults.get("credential_id", ""),
            "org_id": revocation.org_id or defaults.get("org_id", ""),
            "caller_identity": revocation.caller_identity or defaults.get("caller_identity", ""),
            "time": utcnow(),
        }
        if self.store.dialect == "postgresql":
            # Held until commit: sequences are drawn and committed one writer at a time, so they
            # become visible in order and a reader's high-water mark never skips a late commit.
            self.conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_LOCK_CLASS, _LOCK_REVOCATIONS)))
        inserted = self.conn.execute(revocations.insert().values(**values)).inserted_primary_key
        assert inserted is not None  # a single-row INSERT always reports its key
        sequence = int(inserted[0])
        if self.store.dialect == "postgresql":
            # Delivered to listeners when (and only if) the transaction commits.
            self.conn.execute(sa.select(sa.func.pg_notify(NOTIFY_CHANNEL, str(sequence))))
        self.revoked = True
        return sequence


def _name_conflict(name: str, provider: str) -> AlreadyExists:
    return AlreadyExists(f"a {provider} credential named {name!r} already exists in this scope")


def _path_conflict(mount: str, path: str, owner: str) -> AlreadyExists:
    # Masked in case a key was pasted into the path (the RPC layer refuses those, but this is the store).
    return AlreadyExists(f"vault_path: {redact_text(mount)}/{redact_text(path)} is already referenced by "
                         f"{f'credential {owner}' if owner else 'another credential'}; each Vault secret "
                         "serves one credential")

