"""Confining a job: who it runs as, and with `sandbox: bubblewrap`, what it can see.

In the bubblewrap sandbox a job sees the host read-only; its own workspace writable; a
private /tmp, /dev/shm, /run and home; the git mirrors its checkout borrows objects
from, read-only; and nothing of the config's directory, the database's directory or
the data directory (other jobs' workspaces and logs). It runs in PID, IPC and UTS
namespaces of its own, so it cannot see or signal the server or other jobs, and when
its script ends the kernel ends every process left in its namespace. Root in the
sandbox has no capabilities. With
`network: false` it has only a loopback interface of its own. See
docs/adr/0011-sandbox.md and docs/security.md.
"""

import os
import pwd
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

BWRAP = "bwrap"
_PROBE_TIMEOUT_S = 10


@dataclass(frozen=True, slots=True)
class JobUser:
    name: str
    uid: int
    gid: int
    home: str

    @classmethod
    def named(cls, name: str) -> "JobUser":
        """The account `name` on this machine; KeyError if there is none."""
        entry = pwd.getpwnam(name)
        return cls(name, entry.pw_uid, entry.pw_gid, entry.pw_dir)


class PopenUser(TypedDict):
    user: int | None
    group: int | None
    extra_groups: list[int] | None


@dataclass(frozen=True, slots=True)
class Isolation:
    """What one runner does for every job: who runs it, what a sandbox hides."""

    user: JobUser | None = None
    # Directories a sandboxed job must not see: the config's, the SQLite database's.
    hidden: tuple[Path, ...] = ()

    def popen_args(self) -> "PopenUser":
        """Arguments for Popen that start the job as `user`, with no other groups."""
        if self.user is None:
            return PopenUser(user=None, group=None, extra_groups=None)
        return PopenUser(user=self.user.uid, group=self.user.gid, extra_groups=[])

    def environment(self) -> dict[str, str]:
        """Variables that differ from the runner's own for a job."""
        if self.user is None:
            return {}
        return {"HOME": self.user.home, "USER": self.user.name, "LOGNAME": self.user.name}

    @property
    def home(self) -> Path:
        return Path(self.user.home if self.user else os.environ.get("HOME", "/"))

    def hand_over(self, workspace: Path) -> None:
        """Give the checked-out workspace to the job's user."""
        if self.user is None:
            return
        for top, dirs, files in os.walk(workspace):
            root = Path(top)
            for path in (root, *(root / n for n in dirs + files)):
                os.chown(path, self.user.uid, self.user.gid, follow_symlinks=False)


def bubblewrap_argv(
    command: Sequence[str],
    workspace: Path,
    objects: Sequence[Path],
    data_dir: Path,
    isolation: Isolation,
    network: bool,
) -> list[str]:
    """`command` run in a sandbox that shows the host read-only, `workspace` writable,
    and of the data directory only the git `objects` its checkouts borrow from."""
    argv = [
        BWRAP,
        "--die-with-parent",
        "--new-session",
        # Root in the sandbox is root without capabilities: it cannot mount, remount,
        # enter another namespace or pass file permissions; bwrap sets no_new_privs too.
        "--cap-drop",
        "ALL",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        *([] if network else ["--unshare-net"]),
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        # Private, empty and writable: nothing of the host's or another job's files.
        "--tmpfs",
        "/tmp",  # noqa: S108
        "--tmpfs",
        "/dev/shm",  # noqa: S108
        # Sockets live there (a database's, a container engine's); name resolution on
        # systemd hosts needs only its resolver's directory back.
        "--tmpfs",
        "/run",
        "--ro-bind-try",
        "/run/systemd/resolve",
        "/run/systemd/resolve",
    ]
    argv += ["--setenv", "TMPDIR", "/tmp"]  # noqa: S108 - the sandbox's own
    # The home directory: private, empty and writable, so tools keep caches and nothing
    # of the user's own files (ssh keys, credentials) shows. A user without one gets one.
    home = isolation.home
    if home == Path("/") or not home.is_dir():
        home = Path("/tmp/home")  # noqa: S108 - inside the private /tmp
        argv += ["--dir", str(home), "--setenv", "HOME", str(home)]
    # Mounts apply in order: the home and the hidden directories first; the mirrors and
    # the workspace, which may lie under them, are bound back on top.
    for directory in (home, *isolation.hidden, data_dir):
        if directory != Path("/"):
            argv += ["--tmpfs", str(directory)]
    for directory in dict.fromkeys(objects):
        argv += ["--ro-bind", str(directory), str(directory)]
    argv += ["--bind", str(workspace), str(workspace)]
    argv += ["--chdir", str(workspace), "--", *command]
    return argv


def sandbox_problem(isolation: Isolation) -> str | None:
    """Why a sandboxed job could not run here, or None: tried, not guessed."""
    if shutil.which(BWRAP) is None:
        return "bubblewrap is not installed (Debian and Ubuntu: apt-get install bubblewrap)"
    probe = [BWRAP, "--ro-bind", "/", "/", "--unshare-pid", "--die-with-parent", "--", "true"]
    try:
        proc = subprocess.run(
            probe,
            capture_output=True,
            text=True,
            timeout=_PROBE_TIMEOUT_S,
            check=False,
            **isolation.popen_args(),
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"bwrap cannot start: {exc}"
    if proc.returncode != 0:
        why = proc.stderr.strip().splitlines()
        return f"bwrap cannot make a sandbox here: {why[-1] if why else proc.returncode}"
    return None


def user_problem(name: str) -> str | None:
    """Why jobs could not run as `name` here, or None."""
    try:
        user = JobUser.named(name)
    except KeyError:
        return f"no user {name!r} on this machine"
    if os.geteuid() != 0 and user.uid != os.geteuid():
        return f"only a runner started as root can run jobs as {name!r}"
    if user.uid == 0:
        return "run_as must name an unprivileged user, not root"
    return None


def reach_problem(isolation: Isolation, directory: Path) -> str | None:
    """Why the job's user could not reach `directory` (the data directory, where its
    workspace and the mirrors are), or None. Tried as that user."""
    if isolation.user is None:
        return None
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    probe = subprocess.run(
        ["test", "-x", str(existing)],
        check=False,
        timeout=_PROBE_TIMEOUT_S,
        **isolation.popen_args(),
    )
    if probe.returncode != 0:
        return (
            f"user {isolation.user.name!r} cannot reach {directory}: every directory on the "
            "way must be searchable by that user"
        )
    return None
