"""The store's plumbing: engines (SQLite, PostgreSQL), transactions with foreign errors translated, the
write transaction's helpers (audit, revocations, primary bookkeeping), row mapping and paging."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import sqlalchemy.exc
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from byokcommon.redaction import redact_text
from keyservice.errors import (
    AlreadyExists,
    DatabaseUnavailable,
    ForeignErrors,
    InvalidArgument,
    NotFound,
    translating,
)
from keyservice.store.rows import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    NOTIFY_CHANNEL,
    REVOCATION_REASONS,
    AuditRow,
    BindingRow,
    CredentialRow,
    NewRevocation,
    RevocationArg,
    RevocationRow,
    utcnow,
)
from keyservice.store.schema import audit_events, credentials, revocations

# PostgreSQL advisory-lock keys (classid, objid): one class for the whole service, objid per purpose.
_LOCK_CLASS = 0x62796F6B  # "byok"
_LOCK_REVOCATIONS = 1
_LOCK_MIGRATE = 2
_LOCK_PRIMARY_CLASS = _LOCK_CLASS + 1  # objid = hashtext(provider|scope)

# SQLAlchemy's exceptions and what they become where the store meets them (keyservice/errors.py): a unique-key
# violation is the caller's duplicate; anything else the database does is retryable.
DB_ERRORS: ForeignErrors = [
    (sqlalchemy.exc.IntegrityError, (AlreadyExists, "a record with the same key already exists")),
    (sqlalchemy.exc.OperationalError, (DatabaseUnavailable, None)),
    (sqlalchemy.exc.InterfaceError, (DatabaseUnavailable, None)),
    (sqlalchemy.exc.TimeoutError, (DatabaseUnavailable, "database connection pool exhausted")),
    (sqlalchemy.exc.DBAPIError, (DatabaseUnavailable, "database error")),
    (sqlalchemy.exc.SQLAlchemyError, (DatabaseUnavailable, "database error")),
]

_UPDATABLE = frozenset(
    {
        "name", "api_base", "default_model", "primary", "active", "health", "secret_version",
        "transit_key", "transit_key_version", "key_hint", "fingerprint", "last_verified_at", "last_rotated_at",
    }
)


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
        settings=json.loads(m["settings_json"] or "{}"), last_used_at=m.get("last_used_at"),
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
    values = {f.name: getattr(row, f.name) for f in dataclasses.fields(row)
              if f.name not in ("primary", "settings", "last_used_at")}
    values["is_primary"] = row.primary
    if row.last_used_at is not None:  # else NULL (and a new row fits any schema revision, as for settings)
        values["last_used_at"] = row.last_used_at
    if row.settings:  # else the column's default, "{}" (and a row without settings fits any schema revision)
        values["settings_json"] = settings_json(row.settings)
    return values


def settings_json(settings: Mapping[str, str]) -> str:
    """A credential's settings as stored: one JSON object, keys sorted (equal settings, equal text)."""
    return json.dumps(dict(settings), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass
class _Listeners:
    """Callbacks run after a transaction that appended revocations commits (e.g. RevocationFeed.poke)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    callbacks: list[Callable[[], None]] = field(default_factory=list)


class StoreBase:
    """Engine, transactions and lifecycle; the feature modules add the operations."""


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
        with translating(DB_ERRORS), self._engine.connect() as conn:
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

        from keyservice.store.migrations import alembic_config

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

    def _upsert(self, table: sa.Table) -> Any:
        insert = pg_dialect.insert if self.dialect == "postgresql" else sqlite_dialect.insert
        return insert(table)


class _WriteTx:
    """Helpers for one write transaction: audit, revocations, primary bookkeeping."""

    def __init__(self, store: StoreBase) -> None:
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
