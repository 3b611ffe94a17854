"""Decide whether `make test` runs the suite again on PostgreSQL.

Prints `run` when the server in CONVEYOR_TEST_DATABASE_URL answers. When it does not,
prints `skip` with the reason on stderr, or fails (exit 1) when CI=true: CI always has
PostgreSQL, so a silent skip there would hide a broken database layer.
"""

import os
import sys

import sqlalchemy as sa


def main() -> int:
    url = os.environ["CONVEYOR_TEST_DATABASE_URL"]
    try:
        engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # any failure to connect means "not reachable" here
        reason = f"PostgreSQL at {sa.make_url(url).render_as_string(hide_password=True)}"
        reason += f" is unreachable: {exc.__class__.__name__}: {str(exc).splitlines()[0]}"
        if os.environ.get("CI") == "true":
            print(f"FAILED: {reason} (CI=true needs it)", file=sys.stderr)
            return 1
        print(f"SKIPPED the PostgreSQL run: {reason}", file=sys.stderr)
        print("skip")
        return 0
    print("run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
