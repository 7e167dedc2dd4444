"""Usage, spend and budgets: hourly and daily rollups, the batch ids already counted, ops' price overrides,
budgets, and credentials.last_used_at.

Proxies report each request's usage in batches (ReportUsage); keyservice adds a batch to `usage_rollups` in the
transaction that records its id in `usage_batches`, so a retried batch is never counted twice. Spend is stored
with the rollup, in micro-dollars, at the price in force when the request was made. Existing credentials get a
NULL last_used_at (never reported).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-10
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Timestamps as migration 0001 declares them (the store's UTCDateTime maps onto this type on both dialects).
_COUNTS = ("requests", "failed_requests", "unpriced_requests", "input_tokens", "output_tokens",
           "cached_input_tokens", "cache_write_tokens", "reasoning_tokens", "spend_micros", "duration_ms")


def upgrade() -> None:
    with op.batch_alter_table("credentials") as batch:
        batch.add_column(sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "usage_rollups",
        sa.Column("granularity", sa.Text(), primary_key=True),
        sa.Column("bucket_start", sa.DateTime(timezone=True), primary_key=True),
        *(sa.Column(name, sa.Text(), primary_key=True)
          for name in ("org_id", "project_id", "user_id", "credential_id", "provider", "model", "key_source")),
        *(sa.Column(name, sa.BigInteger(), nullable=False, server_default="0") for name in _COUNTS),
        sa.CheckConstraint("granularity IN ('hour', 'day')", name="ck_usage_rollups_granularity"),
    )
    op.create_index("ix_usage_rollups_org", "usage_rollups", ["granularity", "org_id", "bucket_start"])
    op.create_index("ix_usage_rollups_credential", "usage_rollups", ["granularity", "credential_id", "bucket_start"])
    op.create_table(
        "usage_batches",
        sa.Column("batch_id", sa.Text(), primary_key=True),
        sa.Column("reporter", sa.Text(), nullable=False),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_usage_batches_received", "usage_batches", ["received_at"])
    op.create_table(
        "prices",
        sa.Column("provider", sa.Text(), primary_key=True),
        sa.Column("model", sa.Text(), primary_key=True),
        sa.Column("effective_from", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("input_micros", sa.BigInteger(), nullable=False),
        sa.Column("output_micros", sa.BigInteger(), nullable=False),
        sa.Column("cached_input_micros", sa.BigInteger(), nullable=True),
        sa.Column("cache_write_micros", sa.BigInteger(), nullable=True),
        sa.Column("reasoning_micros", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "budgets",
        sa.Column("budget_id", sa.Text(), primary_key=True),
        sa.Column("org_id", sa.Text(), nullable=False),
        sa.Column("project_id", sa.Text(), nullable=False, server_default=""),
        sa.Column("user_id", sa.Text(), nullable=False, server_default=""),
        sa.Column("key_source", sa.Text(), nullable=False, server_default=""),
        sa.Column("period", sa.Text(), nullable=False),
        sa.Column("limit_micros", sa.BigInteger(), nullable=False),
        sa.Column("soft_limit_micros", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("soft_notified_period", sa.Text(), nullable=False, server_default=""),
        sa.Column("hard_notified_period", sa.Text(), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("org_id", "project_id", "user_id", "key_source", "period", name="uq_budgets_scope"),
        sa.CheckConstraint("period IN ('day', 'month')", name="ck_budgets_period"),
        sa.CheckConstraint("key_source IN ('', 'tenant', 'platform')", name="ck_budgets_key_source"),
    )


def downgrade() -> None:
    op.drop_table("budgets")
    op.drop_table("prices")
    op.drop_index("ix_usage_batches_received", table_name="usage_batches")
    op.drop_table("usage_batches")
    op.drop_index("ix_usage_rollups_credential", table_name="usage_rollups")
    op.drop_index("ix_usage_rollups_org", table_name="usage_rollups")
    op.drop_table("usage_rollups")
    with op.batch_alter_table("credentials") as batch:
        batch.drop_column("last_used_at")
