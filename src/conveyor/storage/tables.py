"""The database schema. Alembic's migrations must produce exactly this."""

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)

# SQLite only auto-increments an `INTEGER PRIMARY KEY`, not a BIGINT one.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# Commit ids compare byte-wise so a prefix is an index range scan on PostgreSQL too.
CommitSha = sa.String(40).with_variant(sa.String(40, collation="C"), "postgresql")
Name = sa.String(200)

workflow_sequences = sa.Table(
    "workflow_sequences",
    metadata,
    sa.Column("workflow_name", Name, primary_key=True),
    sa.Column("last_task_id", sa.BigInteger, nullable=False),
)

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("workflow_name", Name, nullable=False),
    sa.Column("task_id", sa.BigInteger, nullable=False),
    sa.Column("env_name", Name, nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("create_time", sa.BigInteger, nullable=False),
    sa.Column("start_time", sa.BigInteger, nullable=True),
    sa.Column("end_time", sa.BigInteger, nullable=True),
    sa.Column("created_by", Name, nullable=False),
    # The inputs captured at create time: resolved commits and step definitions.
    sa.Column("spec", sa.JSON, nullable=False),
    # A hook's task: its branch or merge request ("push:repo:main", "merge_request:repo:!7"),
    # which a newer one cancels with the workflow's auto_cancel.
    sa.Column("trigger_key", sa.String(600), nullable=True),
    sa.UniqueConstraint("workflow_name", "task_id"),
    sa.Index(None, "state", "id"),
    sa.Index(None, "workflow_name", "trigger_key"),
)

task_commits = sa.Table(
    "task_commits",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("task_pk", BigId, sa.ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False),
    sa.Column("service", Name, nullable=False),
    sa.Column("repo_name", Name, nullable=False),
    # "branch": the head of `ref`; "merge_request": the head of MR `pr`.
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("ref", sa.String(500), nullable=False),
    sa.Column("pr", sa.Integer, nullable=False),
    sa.Column("commit_sha", CommitSha, nullable=False),
    # (commit_sha, task_pk): a lookup reads task ids from the index alone.
    sa.Index(None, "commit_sha", "task_pk"),
    sa.Index(None, "task_pk"),
    # A workflow's tasks filtered by branch.
    sa.Index(None, "ref", "task_pk"),
)
# A lookup by prefix (8 hex digits at least) asks for its first 8 as an equality: a
# PostgreSQL plan made once for any prefix still probes this index, where one made for
# a range of unknown bounds expects thousands of rows and scans (docs/adr/0004).
COMMIT_HEAD = 8


def commit_head(sha: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
    """The first COMMIT_HEAD digits, with the numbers in the SQL text: an index on an
    expression serves only a query with the very same expression, not placeholders."""
    return sa.func.substr(sha, sa.literal_column("1"), sa.literal_column(str(COMMIT_HEAD)))


sa.Index(
    "ix_task_commits_commit_head", commit_head(task_commits.c.commit_sha), task_commits.c.task_pk
)

attempts = sa.Table(
    "attempts",
    metadata,
    sa.Column(
        "task_pk",
        BigId,
        sa.ForeignKey("tasks.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("number", sa.Integer, primary_key=True),
    sa.Column("requested_by", Name, nullable=False),
    sa.Column("create_time", sa.BigInteger, nullable=False),
    sa.Column("start_time", sa.BigInteger, nullable=True),
    sa.Column("end_time", sa.BigInteger, nullable=True),
    sa.Column("state", sa.String(20), nullable=True),
)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("task_pk", BigId, sa.ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("stage", sa.String(10), nullable=False),
    sa.Column("service", Name, nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("start_time", sa.BigInteger, nullable=True),
    sa.Column("end_time", sa.BigInteger, nullable=True),
    sa.Column("exit_code", sa.Integer, nullable=True),
    sa.Column("detail", sa.Text, nullable=True),
    # Set by the runner while the job runs; a stale one means the runner is gone.
    sa.Column("heartbeat_time", sa.BigInteger, nullable=True),
    # When it was last handed to the executor: one no runner takes in time fails.
    sa.Column("queue_time", sa.BigInteger, nullable=True),
    # KEY=value lines a build wrote to $CONVEYOR_OUTPUT, handed to its deploy.
    sa.Column("outputs", sa.JSON, nullable=True),
    # Where the job's process group runs, so a restarted server can stop orphans.
    sa.Column("runner_host", Name, nullable=True),
    sa.Column("pid", sa.Integer, nullable=True),
    sa.UniqueConstraint("task_pk", "attempt", "stage", "service"),
    sa.Index(None, "state"),
)

# A job's log in chunks, for runners on other machines (the celery executor).
job_log_chunks = sa.Table(
    "job_log_chunks",
    metadata,
    sa.Column("job_id", BigId, sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("start_offset", sa.BigInteger, primary_key=True),
    sa.Column("end_offset", sa.BigInteger, nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    # sha256 of the token; the token itself is never stored.
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("user_name", Name, nullable=False),
    sa.Column("roles", sa.JSON, nullable=False),
    sa.Column("create_time", sa.BigInteger, nullable=False),
    sa.Column("expire_time", sa.BigInteger, nullable=True),
    sa.Column("revoke_time", sa.BigInteger, nullable=True),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("time", sa.BigInteger, nullable=False),
    sa.Column("actor", Name, nullable=False),
    sa.Column("token_id", sa.BigInteger, nullable=True),
    sa.Column("action", sa.String(50), nullable=False),
    sa.Column("workflow_name", Name, nullable=True),
    sa.Column("task_id", sa.BigInteger, nullable=True),
    sa.Column("detail", sa.JSON, nullable=False),
    sa.Index(None, "time"),
)

# One row: this installation's id. Runners mark the processes of their jobs with it, so
# a server or worker never stops the processes of another installation on its host.
installation = sa.Table(
    "installation",
    metadata,
    sa.Column("singleton", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("id", sa.String(32), nullable=False),
    sa.CheckConstraint("singleton = 1", name="one_row"),
)

# Hook deliveries received (X-Gitlab-Event-UUID): a redelivery creates nothing new.
hook_deliveries = sa.Table(
    "hook_deliveries",
    metadata,
    sa.Column("id", sa.String(100), primary_key=True),
    sa.Column("receive_time", sa.BigInteger, nullable=False),
    # [[workflow_name, task_id], ...]: the answer to a redelivery.
    sa.Column("tasks", sa.JSON, nullable=True),
)

# Notifications of task state changes, written in the transaction of the change and
# delivered by the server's sender (docs/adr/0013).
outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    # "gitlab" (a commit status) or "webhook" (a task event to a notification URL).
    sa.Column("channel", sa.String(20), nullable=False),
    # Messages with one key are delivered in order; a GitLab status only at its latest.
    # A sha256 of (project, sha, name) or (URL, task): bounded, whatever they hold.
    sa.Column("key", sa.String(64), nullable=False),
    sa.Column("coalesce", sa.Boolean, nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("event", sa.String(40), nullable=False),
    sa.Column("delivery_id", sa.String(40), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("workflow_name", Name, nullable=False),
    sa.Column("task_id", sa.BigInteger, nullable=False),
    # waiting, delivered, superseded (a later state of its key was sent instead), dropped.
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("create_time", sa.BigInteger, nullable=False),
    sa.Column("next_time", sa.BigInteger, nullable=False),
    sa.Column("end_time", sa.BigInteger, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Index(None, "state", "id"),
    sa.Index(None, "state", "key", "id"),
    sa.Index(None, "key", "id"),
    sa.Index(None, "end_time"),
)

# Browser sessions: a person's token exchanged for a cookie (only its sha256 is kept).
# A session lives no longer than its token, and ends with it when it is revoked.
sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),
    sa.Column(
        "token_id", BigId, sa.ForeignKey("api_tokens.id", ondelete="CASCADE"), nullable=False
    ),
    # Pages send it back in X-CSRF-Token on every request that changes something.
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("create_time", sa.BigInteger, nullable=False),
    sa.Column("expire_time", sa.BigInteger, nullable=False),
    sa.Index(None, "token_id"),
)
