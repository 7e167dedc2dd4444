"""secret_reservations: a create's claim on its Vault path, taken before it writes Vault.

A create reserves `<mount>/<path>` (committed) before it writes the secret, and its final transaction deletes
the reservation and inserts the credential row together, or aborts if the reservation is gone. The reconciler
reclaims (deletes) only reservations older than the create deadline, and only then deletes their secret. Both
delete the same row, so exactly one of them wins: a create that outlived its deadline aborts and cleans up
instead of committing a row whose secret the reconciler is removing.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "secret_reservations",
        sa.Column("vault_mount", sa.Text(), primary_key=True),
        sa.Column("vault_path", sa.Text(), primary_key=True),
        sa.Column("credential_id", sa.Text(), nullable=False),
        sa.Column("reserved_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_secret_reservations_time", "secret_reservations", ["reserved_at"])


def downgrade() -> None:
    op.drop_index("ix_secret_reservations_time", table_name="secret_reservations")
    op.drop_table("secret_reservations")
