"""hook deliveries, task trigger keys, notification outbox

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 00:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("tasks", recreate="never") as batch:
        batch.add_column(sa.Column("trigger_key", sa.String(length=600), nullable=True))
    op.create_index(
        op.f("ix_tasks_workflow_name_trigger_key"), "tasks", ["workflow_name", "trigger_key"]
    )
    op.create_table(
        "hook_deliveries",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("receive_time", sa.BigInteger(), nullable=False),
        sa.Column("tasks", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hook_deliveries")),
    )
    op.create_table(
        "outbox",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("coalesce", sa.Boolean(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("event", sa.String(length=40), nullable=False),
        sa.Column("delivery_id", sa.String(length=40), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("workflow_name", sa.String(length=200), nullable=False),
        sa.Column("task_id", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("create_time", sa.BigInteger(), nullable=False),
        sa.Column("next_time", sa.BigInteger(), nullable=False),
        sa.Column("end_time", sa.BigInteger(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
    )
    op.create_index(op.f("ix_outbox_state_id"), "outbox", ["state", "id"])
    op.create_index(op.f("ix_outbox_state_key_id"), "outbox", ["state", "key", "id"])
    op.create_index(op.f("ix_outbox_key_id"), "outbox", ["key", "id"])
    op.create_index(op.f("ix_outbox_end_time"), "outbox", ["end_time"])
    op.create_index(op.f("ix_task_commits_ref_task_pk"), "task_commits", ["ref", "task_pk"])


def downgrade() -> None:
    op.drop_index(op.f("ix_task_commits_ref_task_pk"), table_name="task_commits")
    op.drop_index(op.f("ix_outbox_end_time"), table_name="outbox")
    op.drop_index(op.f("ix_outbox_key_id"), table_name="outbox")
    op.drop_index(op.f("ix_outbox_state_key_id"), table_name="outbox")
    op.drop_index(op.f("ix_outbox_state_id"), table_name="outbox")
    op.drop_table("outbox")
    op.drop_table("hook_deliveries")
    # Never recreate `tasks` on SQLite: copying it with foreign keys on would cascade
    # the delete of the old table to every task's commits, attempts and jobs. SQLite
    # drops a column in place since 3.35.
    op.drop_index(op.f("ix_tasks_workflow_name_trigger_key"), table_name="tasks")
    with op.batch_alter_table("tasks", recreate="never") as batch:
        batch.drop_column("trigger_key")
