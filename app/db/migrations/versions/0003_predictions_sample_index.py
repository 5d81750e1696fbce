"""predictions: a GIN index on sample_ids (as jsonb) for searches by sample id, PostgreSQL only

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24

SQLite (the single-lab embedded default) has no such index; its search scans with json_each.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_predictions_sample_ids_gin"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_index(
            INDEX, "predictions", [sa.text("(sample_ids::jsonb)")], postgresql_using="gin"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index(INDEX, table_name="predictions")
