"""job heartbeats, outputs and process groups

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 17:30:45.566823
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("heartbeat_time", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("outputs", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("runner_host", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("pid", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("pid")
        batch_op.drop_column("runner_host")
        batch_op.drop_column("outputs")
        batch_op.drop_column("heartbeat_time")
