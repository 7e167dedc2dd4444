"""Rate limits: one per scope (org, project, user; requests and tokens per minute), and the per-minute counts of
the limited scopes, which ReportUsage adds to in the transaction that counts a batch (docs/usage.md).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rate_limits",
        sa.Column("rate_limit_id", sa.Text(), primary_key=True),
        sa.Column("org_id", sa.Text(), nullable=False),
        sa.Column("project_id", sa.Text(), nullable=False, server_default=""),
        sa.Column("user_id", sa.Text(), nullable=False, server_default=""),
        sa.Column("requests_per_minute", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("tokens_per_minute", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("org_id", "project_id", "user_id", name="uq_rate_limits_scope"),
    )
    op.create_table(
        "rate_counts",
        sa.Column("rate_limit_id", sa.Text(), primary_key=True),
        sa.Column("minute_start", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("requests", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("tokens", sa.BigInteger(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("rate_counts")
    op.drop_table("rate_limits")
