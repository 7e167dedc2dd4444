"""credentials.settings_json: a cloud credential's non-secret settings (region, endpoint, deployments, location, …).

Amazon Bedrock, Azure OpenAI and Google Vertex AI credentials are more than a key: where they are served from and
how keyservice derives their short-lived credentials are settings, kept here as routing data (never in Vault,
never secret). Existing credentials get "{}": a single-key provider has no settings.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("credentials") as batch:
        batch.add_column(sa.Column("settings_json", sa.Text(), nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("credentials") as batch:
        batch.drop_column("settings_json")
