"""One credential per Vault secret: a unique index on credentials (vault_mount, vault_path).

Before it, RegisterCredential accepted a path that another credential (even another org's) already used, so
two rows could share one secret: one tenant could lease the other's key, and deleting either credential
destroyed the secret under the other. If a database already holds such pairs, this revision refuses (naming
the credentials) rather than picking one: an operator decides which credential keeps the secret and gives the
others secrets of their own, then migrates again.

Revision ID: 0002
Revises: 0001
Create Date: 2025-06-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from keyservice.errors import FailedPrecondition

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    credentials = sa.table("credentials", sa.column("credential_id"), sa.column("vault_mount"),
                           sa.column("vault_path"))
    c = credentials.c
    shared = (
        sa.select(c.vault_mount, c.vault_path)
        .group_by(c.vault_mount, c.vault_path)
        .having(sa.func.count() > 1)
        .subquery()
    )
    clashing = op.get_bind().execute(
        sa.select(c.credential_id)
        .join(shared, sa.and_(c.vault_mount == shared.c.vault_mount, c.vault_path == shared.c.vault_path))
        .order_by(c.vault_mount, c.vault_path, c.credential_id)
    ).scalars().all()
    if clashing:
        # Credential ids only: an old path could hold anything, and this message reaches logs.
        raise FailedPrecondition(
            "migration 0002: these credentials share a Vault secret with another credential: "
            f"{', '.join(clashing)}; keep one credential per secret: register the others' keys from paths of "
            "their own, remove their old rows in the database (DeleteCredential would also delete the shared "
            "secret), then migrate again")
    op.create_index("uq_credentials_vault_path", "credentials", ["vault_mount", "vault_path"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_credentials_vault_path", table_name="credentials")
