"""The tables (SQLAlchemy Core metadata); the migrations create exactly these (a test compares)."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
import sqlalchemy.exc
from sqlalchemy.engine import Dialect


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
    # A cloud credential's non-secret settings (region, endpoint, deployments, …) as a JSON object of strings
    # (migration 0005); "{}" for a single-key provider.
    sa.Column("settings_json", sa.Text, nullable=False, server_default="{}"),
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
