"""The tables (SQLAlchemy Core metadata); the migrations create exactly these (a test compares)."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
import sqlalchemy.exc
from sqlalchemy.engine import Dialect

from keyservice.store.rows import USAGE_COUNTS


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
    # The end of the last request the proxies reported it served (migration 0006); NULL if never used.
    sa.Column("last_used_at", UTCDateTime, nullable=True),
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

# Usage, spend and budgets (migration 0006; keyservice/usage/). Token and spend columns are sums over the requests
# of one bucket and key; spend in micro-dollars at the price in force when each request was made.

usage_rollups = sa.Table(
    "usage_rollups",
    metadata,
    sa.Column("granularity", sa.Text, primary_key=True),  # "hour" | "day"
    sa.Column("bucket_start", UTCDateTime, primary_key=True),
    sa.Column("org_id", sa.Text, primary_key=True),
    sa.Column("project_id", sa.Text, primary_key=True),
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("credential_id", sa.Text, primary_key=True),  # "" for a platform key
    sa.Column("provider", sa.Text, primary_key=True),
    sa.Column("model", sa.Text, primary_key=True),
    sa.Column("key_source", sa.Text, primary_key=True),  # "tenant" | "platform"
    *(sa.Column(name, sa.BigInteger, nullable=False, server_default="0") for name in USAGE_COUNTS),
    sa.CheckConstraint("granularity IN ('hour', 'day')", name="ck_usage_rollups_granularity"),
    # Queries and budgets read one granularity of one org over a time range; QueryUsage by credential too.
    sa.Index("ix_usage_rollups_org", "granularity", "org_id", "bucket_start"),
    sa.Index("ix_usage_rollups_credential", "granularity", "credential_id", "bucket_start"),
)

# Batches already counted: the id is inserted in the transaction that adds the batch to the rollups, so a retried
# batch finds it and is not counted again.
usage_batches = sa.Table(
    "usage_batches",
    metadata,
    sa.Column("batch_id", sa.Text, primary_key=True),
    sa.Column("reporter", sa.Text, nullable=False),
    sa.Column("records", sa.Integer, nullable=False),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Index("ix_usage_batches_received", "received_at"),
)

# Ops' price overrides (byokctl prices set); the shipped table and the mounted file are not in the database.
prices = sa.Table(
    "prices",
    metadata,
    sa.Column("provider", sa.Text, primary_key=True),
    sa.Column("model", sa.Text, primary_key=True),
    sa.Column("effective_from", UTCDateTime, primary_key=True),
    sa.Column("input_micros", sa.BigInteger, nullable=False),
    sa.Column("output_micros", sa.BigInteger, nullable=False),
    sa.Column("cached_input_micros", sa.BigInteger, nullable=True),
    sa.Column("cache_write_micros", sa.BigInteger, nullable=True),
    sa.Column("reasoning_micros", sa.BigInteger, nullable=True),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

budgets = sa.Table(
    "budgets",
    metadata,
    sa.Column("budget_id", sa.Text, primary_key=True),
    sa.Column("org_id", sa.Text, nullable=False),
    sa.Column("project_id", sa.Text, nullable=False, server_default=""),
    sa.Column("user_id", sa.Text, nullable=False, server_default=""),
    sa.Column("key_source", sa.Text, nullable=False, server_default=""),  # "" = every source
    sa.Column("period", sa.Text, nullable=False),
    sa.Column("limit_micros", sa.BigInteger, nullable=False),
    sa.Column("soft_limit_micros", sa.BigInteger, nullable=False, server_default="0"),
    # The period ("2026-05", "2026-05-17") whose soft threshold / hard limit was last announced (audit event,
    # metric, revocation): once per period across replicas, by a conditional update.
    sa.Column("soft_notified_period", sa.Text, nullable=False, server_default=""),
    sa.Column("hard_notified_period", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("org_id", "project_id", "user_id", "key_source", "period", name="uq_budgets_scope"),
    sa.CheckConstraint("period IN ('day', 'month')", name="ck_budgets_period"),
    sa.CheckConstraint("key_source IN ('', 'tenant', 'platform')", name="ck_budgets_key_source"),
)

# Rate limits (migration 0007; keyservice/usage/ratelimits.py): one per scope, and the per-minute counts of the
# limited scopes, added in the ReportUsage transaction so every replica answers with every proxy's reports.
rate_limits = sa.Table(
    "rate_limits",
    metadata,
    sa.Column("rate_limit_id", sa.Text, primary_key=True),
    sa.Column("org_id", sa.Text, nullable=False),
    sa.Column("project_id", sa.Text, nullable=False, server_default=""),
    sa.Column("user_id", sa.Text, nullable=False, server_default=""),
    sa.Column("requests_per_minute", sa.BigInteger, nullable=False, server_default="0"),  # 0: none
    sa.Column("tokens_per_minute", sa.BigInteger, nullable=False, server_default="0"),  # 0: none
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("org_id", "project_id", "user_id", name="uq_rate_limits_scope"),
)

rate_counts = sa.Table(
    "rate_counts",
    metadata,
    sa.Column("rate_limit_id", sa.Text, primary_key=True),
    sa.Column("minute_start", UTCDateTime, primary_key=True),
    sa.Column("requests", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("tokens", sa.BigInteger, nullable=False, server_default="0"),
)
