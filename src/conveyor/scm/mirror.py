"""Bare mirrors per repository, and fresh checkouts from them at pinned commits."""

import fcntl
import hashlib
import subprocess
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from conveyor.scm.git import git_env, mask_url

GIT_TIMEOUT_S = 600
_IDENTITY = ("-c", "user.name=Conveyor", "-c", "user.email=conveyor@localhost")
_NO_REFLOG = ("-c", "core.logAllRefUpdates=false")


# Commits this process has seen in a mirror, so they need not be looked up again. Only a
# gc of a force-pushed-away commit could remove one; the checkout then fails clearly.
_PRESENT: set[tuple[Path, str]] = set()
_PRESENT_LOCK = threading.Lock()


class CheckoutError(Exception):
    """A checkout that cannot be made; the message is one clear line for the job log."""


def _git(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        env=git_env(),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=GIT_TIMEOUT_S,
        check=False,
    )


def _why(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
    fatal = [ln for ln in lines if ln.startswith(("fatal:", "error:"))] or lines
    return mask_url(fatal[0]) if fatal else f"exit code {proc.returncode}"


def _new_repository(git_dir: Path, objects: Path, head: str) -> None:
    """A repository at `git_dir` whose HEAD is `head`, borrowing `objects` (`alternates`).

    Only what git needs to see a repository: HEAD, objects/ and refs/. No config (its
    defaults are a non-bare repository's) and no reflog: each file made is an inode
    created, and on a file system under workspace churn inodes are the dearest part of
    a small checkout (docs/benchmarks.md).
    """
    try:
        (git_dir / "objects" / "info").mkdir(parents=True)
        (git_dir / "refs").mkdir()
        (git_dir / "HEAD").write_text(f"{head}\n")
        (git_dir / "objects" / "info" / "alternates").write_text(f"{objects}\n")
    except OSError as exc:
        raise CheckoutError(f"cannot create the workspace repository: {exc.strerror}") from exc


class MirrorCache:
    """One bare mirror per repository URL under `root`, fetched only when needed."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, url: str) -> Path:
        return self.root / (hashlib.sha256(url.encode()).hexdigest()[:24] + ".git")

    @contextmanager
    def _locked(self, mirror: Path) -> Iterator[None]:
        # Jobs on one machine share mirrors; one fetch at a time per mirror.
        self.root.mkdir(parents=True, exist_ok=True)
        with mirror.with_suffix(".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _missing(self, mirror: Path, commits: Sequence[str]) -> list[str]:
        proc = subprocess.run(
            ["git", "cat-file", "--batch-check"],
            cwd=mirror,
            input="".join(f"{c}^{{commit}}\n" for c in commits),
            capture_output=True,
            text=True,
            env=git_env(),
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
        lines = proc.stdout.splitlines()
        return [c for c, line in zip(commits, lines, strict=False) if line.endswith("missing")]

    def ensure(self, url: str, commits: Sequence[str]) -> Path:
        """The mirror of `url`, holding every commit in `commits`."""
        mirror = self.path(url)
        with _PRESENT_LOCK:
            if all((mirror, c) in _PRESENT for c in commits):
                return mirror
        with self._locked(mirror):
            if not (mirror / "HEAD").exists():
                proc = _git("clone", "--mirror", "--quiet", "--", url, str(mirror))
                if proc.returncode != 0:
                    raise CheckoutError(f"cannot clone {mask_url(url)}: {_why(proc)}")
            elif self._missing(mirror, commits):
                proc = _git("fetch", "--prune", "--quiet", "origin", cwd=mirror)
                if proc.returncode != 0:
                    raise CheckoutError(f"cannot fetch {mask_url(url)}: {_why(proc)}")
            missing = self._missing(mirror, commits)
            if missing:
                raise CheckoutError(
                    f"commit {missing[0]} is no longer in {mask_url(url)} (force-pushed away?)"
                )
        with _PRESENT_LOCK:
            _PRESENT.update((mirror, c) for c in commits)
        return mirror

    @staticmethod
    def checkout(mirror: Path, dest: Path, commit: str, merge: str | None = None) -> None:
        """Check `commit` out into `dest`; with `merge`, merge that commit onto it.

        The workspace borrows the mirror's objects through `alternates`, as
        `git clone --shared` would, without clone's transport round (measured: about
        half the cost of a checkout on a small repository; docs/benchmarks.md).
        """
        _new_repository(dest / ".git", mirror / "objects", commit)
        # HEAD already names the commit: `read-tree -u` fills the index and the files
        # (with the checkout's attributes and filters) and, unlike `checkout`, does not
        # write HEAD again.
        proc = _git("read-tree", "--reset", "-u", commit, cwd=dest)
        if proc.returncode != 0:
            raise CheckoutError(f"cannot check out {commit}: {_why(proc)}")
        if merge is not None:
            merging = ("merge", "--no-edit", "--no-ff", "--quiet", merge)
            proc = _git(*_NO_REFLOG, *_IDENTITY, *merging, cwd=dest)
            if proc.returncode != 0:
                conflicts = _git("diff", "--name-only", "--diff-filter=U", cwd=dest).stdout.split()
                shown = ", ".join(conflicts) if conflicts else _why(proc)
                raise CheckoutError(f"merge conflict: {merge[:12]} onto {commit[:12]}: {shown}")
