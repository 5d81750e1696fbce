"""tenants on keys, datasets, jobs, predictions and model versions; key expiry and last use;
job dispatch times; model name owners and aliases; the audit log

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29

Rows that exist before this revision belong to the tenant 'default' (every key made so far
becomes one of its keys, so what a key created stays visible to it). The column default that
fills them is dropped afterwards: every new row must name its tenant.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_TS = sa.DateTime(timezone=True)
TENANT_TABLES = ("api_keys", "datasets", "jobs", "predictions", "model_versions")
INDEXES = {
    "api_keys": [("ix_api_keys_tenant", ["tenant"])],
    "datasets": [("ix_datasets_tenant_created_at", ["tenant", "created_at"])],
    "jobs": [
        ("ix_jobs_tenant_created_at", ["tenant", "created_at"]),
        ("ix_jobs_tenant_idempotency_key", ["tenant", "idempotency_key"]),
    ],
    "predictions": [("ix_predictions_tenant_created_at", ["tenant", "created_at"])],
}


def upgrade() -> None:
    for table in TENANT_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("tenant", sa.String(64), nullable=False, server_default="default")
            )
        with op.batch_alter_table(table) as batch:
            batch.alter_column("tenant", existing_type=sa.String(64), server_default=None)
        for name, columns in INDEXES.get(table, []):
            op.create_index(name, table, columns)
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("expires_at", UTC_TS, nullable=True))
        batch.add_column(sa.Column("last_used_at", UTC_TS, nullable=True))
        batch.add_column(sa.Column("rotated_from", sa.Uuid(), nullable=True))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("dispatched_at", UTC_TS, nullable=True))
    # jobs queued before this revision were handed to the executor when submitted
    op.execute("UPDATE jobs SET dispatched_at = created_at WHERE status = 'queued'")
    with op.batch_alter_table("model_versions") as batch:
        batch.create_unique_constraint("uq_model_versions_job_id", ["job_id"])
    op.create_table(
        "model_names",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("api_key_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", UTC_TS, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_model_names")),
    )
    op.create_table(
        "model_aliases",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("alias", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("api_key_id", sa.Uuid(), nullable=True),
        sa.Column("updated_at", UTC_TS, nullable=False),
        sa.PrimaryKeyConstraint("name", "alias", name=op.f("pk_model_aliases")),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", UTC_TS, nullable=False),
        sa.Column("tenant", sa.String(64), nullable=True),
        sa.Column("api_key_id", sa.Uuid(), nullable=True),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("resource_type", sa.String(16), nullable=False),
        sa.Column("resource_id", sa.String(128), nullable=False),
        sa.Column("resource_tenant", sa.String(64), nullable=True),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index(op.f("ix_audit_events_created_at"), "audit_events", ["created_at"])
    op.create_index(op.f("ix_audit_events_action"), "audit_events", ["action"])
    op.create_index("ix_audit_events_tenant_created_at", "audit_events", ["tenant", "created_at"])
    op.create_index("ix_audit_events_resource", "audit_events", ["resource_type", "resource_id"])


def downgrade() -> None:
    op.drop_index("ix_audit_events_resource", table_name="audit_events")
    op.drop_index("ix_audit_events_tenant_created_at", table_name="audit_events")
    op.drop_index(op.f("ix_audit_events_action"), table_name="audit_events")
    op.drop_index(op.f("ix_audit_events_created_at"), table_name="audit_events")
    op.drop_table("audit_events")
    op.drop_table("model_aliases")
    op.drop_table("model_names")
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_constraint("uq_model_versions_job_id", type_="unique")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("dispatched_at")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("rotated_from")
        batch.drop_column("last_used_at")
        batch.drop_column("expires_at")
    for table in reversed(TENANT_TABLES):
        for name, _ in reversed(INDEXES.get(table, [])):
            op.drop_index(name, table_name=table)
        with op.batch_alter_table(table) as batch:
            batch.drop_column("tenant")
