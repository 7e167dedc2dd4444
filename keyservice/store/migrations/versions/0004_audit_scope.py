"""audit_events.project_id and user_id: every event carries the full scope of what it touched.

Before it, an event had only an org id, and some had none (a credential's delete), so `byokctl audit --org`
missed them and nothing could be found by project or user. Existing events keep '' in the new columns.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("project_id", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("user_id", sa.Text(), nullable=False, server_default=""))
    op.create_index("ix_audit_events_scope", "audit_events", ["org_id", "project_id", "user_id", "time"])


def downgrade() -> None:
    op.drop_index("ix_audit_events_scope", table_name="audit_events")
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("user_id")
        batch.drop_column("project_id")
