"""Which branch names Conveyor accepts, and which commit ids it looks up.

A branch must be a name `git check-ref-format refs/heads/<name>` accepts, and on top
of that must not start with '-' (it could become an option), be '@', or hold shell
metacharacters: branch names reach build scripts as environment variables, where a
careless unquoted `$REPO_BRANCH` would run them (docs/adr/0003-branch-names.md).
"""

import re

_GIT_FORBIDDEN = frozenset(" ~^:?*[\\\x7f")
_SHELL_FORBIDDEN = frozenset(";&|$`<>()'\"")
# Control characters (C0, DEL, C1) and Unicode's line and paragraph separators: a branch
# name reaches logs and a job's environment, where they would forge lines or escapes.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
MAX_BRANCH = 255
MAX_PR = 2**31 - 1
_COMMIT_PREFIX = re.compile(r"[0-9a-fA-F]{8,40}")
_FULL_COMMIT = re.compile(r"[0-9a-f]{40}")


def branch_name_problem(name: str) -> str | None:
    """Why `name` is not an acceptable branch name, or None if it is."""
    if not name:
        return "is empty"
    if name.startswith("-"):
        return "must not start with '-'"
    if name == "@":
        return "must not be '@'"
    bad = sorted(
        {c for c in name if c in _GIT_FORBIDDEN or c in _SHELL_FORBIDDEN or _CONTROL.match(c)}
    )
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        return f"must not contain {shown}"
    if name.startswith("/") or name.endswith("/") or "//" in name:
        return "must not start or end with '/' or contain '//'"
    if ".." in name or "@{" in name:
        return "must not contain '..' or '@{'"
    if name.endswith("."):
        return "must not end with '.'"
    for part in name.split("/"):
        if part.startswith(".") or part.endswith(".lock"):
            return "no part may start with '.' or end with '.lock'"
    return None


def is_commit_prefix(value: str) -> bool:
    """A full commit id or a prefix of at least 8 hex digits (either case)."""
    return _COMMIT_PREFIX.fullmatch(value) is not None


def is_full_commit(value: str) -> bool:
    return _FULL_COMMIT.fullmatch(value) is not None
