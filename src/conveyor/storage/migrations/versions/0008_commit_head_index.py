"""an index on the first 8 hex digits of each commit, for lookups by prefix

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 08:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_task_commits_commit_head",
        "task_commits",
        [sa.text("substr(commit_sha, 1, 8)"), "task_pk"],
    )


def downgrade() -> None:
    op.drop_index("ix_task_commits_commit_head", table_name="task_commits")
