"""Initial schema: credentials, audit_events, org_policies, caller_bindings, revocations.

Written out in full rather than generated from keyservice.store.metadata, so that later changes to the
store cannot silently change what this revision creates.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# BIGINT auto-increment; SQLite only auto-increments INTEGER PRIMARY KEY (which is 64-bit there).
BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(name: str, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _text(name: str, *, default: str | None = None) -> sa.Column:
    return sa.Column(name, sa.Text(), nullable=False, server_default=default)


def upgrade() -> None:
    op.create_table(
        "credentials",
        sa.Column("credential_id", sa.Text(), primary_key=True),
        _text("provider"),
        _text("org_id"),
        _text("project_id", default=""),
        _text("user_id", default=""),
        _text("name"),
        _text("api_base", default=""),
        _text("default_model", default=""),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("is_primary", sa.Boolean(), nullable=False),
        _text("health"),
        _text("key_hint", default=""),
        _text("fingerprint", default=""),
        _text("vault_mount"),
        _text("vault_path"),
        sa.Column("secret_version", sa.Integer(), nullable=False),
        _text("transit_key", default=""),
        sa.Column("transit_key_version", sa.Integer(), nullable=False, server_default="0"),
        _ts("created_at"),
        _ts("updated_at"),
        _ts("last_verified_at", nullable=True),
        _ts("last_rotated_at", nullable=True),
        sa.UniqueConstraint("provider", "org_id", "project_id", "user_id", "name", name="uq_credentials_name"),
        sa.CheckConstraint(
            "health IN ('unverified', 'active', 'invalid', 'rate_limited', 'unreachable')",
            name="ck_credentials_health",
        ),
    )
    op.create_index("ix_credentials_lease", "credentials", ["org_id", "provider", "active"])
    op.create_index("ix_credentials_created", "credentials", ["created_at", "credential_id"])
    op.create_index(
        "uq_credentials_primary",
        "credentials",
        ["provider", "org_id", "project_id", "user_id"],
        unique=True,
        sqlite_where=sa.text("is_primary"),
        postgresql_where=sa.text("is_primary"),
    )

    op.create_table(
        "audit_events",
        sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.Text(), nullable=False, unique=True),
        _ts("time"),
        _text("actor"),
        _text("action"),
        _text("credential_id", default=""),
        _text("org_id", default=""),
        _text("outcome"),
        _text("details_json", default="{}"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_audit_events_time", "audit_events", ["time", "id"])
    op.create_index("ix_audit_events_org", "audit_events", ["org_id", "time"])
    op.create_index("ix_audit_events_credential", "audit_events", ["credential_id", "time"])

    op.create_table(
        "org_policies",
        sa.Column("org_id", sa.Text(), primary_key=True),
        sa.Column("allow_platform_fallback", sa.Boolean(), nullable=False),
        _ts("updated_at"),
    )

    op.create_table(
        "caller_bindings",
        sa.Column("caller_identity", sa.Text(), primary_key=True),
        sa.Column("org_id", sa.Text(), primary_key=True),
        sa.Column("project_id", sa.Text(), primary_key=True, server_default=""),
        _ts("created_at"),
    )
    op.create_index("ix_caller_bindings_org", "caller_bindings", ["org_id"])

    op.create_table(
        "revocations",
        sa.Column("sequence", BigIntPK, primary_key=True, autoincrement=True),
        _text("reason"),
        _text("credential_id", default=""),
        _text("org_id", default=""),
        _text("caller_identity", default=""),
        _ts("time"),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("revocations")
    op.drop_table("caller_bindings")
    op.drop_table("org_policies")
    op.drop_table("audit_events")
    op.drop_table("credentials")
