"""Finished workspaces leave the job's path at once and are deleted in the background.

Deleting a workspace file by file from the runner's process costs a few system calls per
file, and in the server each is a turn at the GIL given away while creates and other
jobs wait for it back. Measured with 300 trivial tasks back to back, skipping the
deletion altogether made the server 10-14% faster (docs/benchmarks.md). So a workspace
is renamed into `.trash/` beside it, one system call, and a thread of the process
empties the trash a moment later with one `rm -rf` for all that is in it: the deletion
runs in a process of its own, off the GIL, and one such process serves all the
workspaces that a quarter of a second brings.

Whatever a crash leaves in the trash is deleted with the next workspace discarded.
The trash is under the data directory, which a sandboxed job never sees.
"""

import logging
import os
import shutil
import stat
import subprocess
import threading
import time
import uuid
from pathlib import Path

logger = logging.getLogger("conveyor.runner")

TRASH = ".trash"
# Paths given to one `rm`: far below the system's limit on a command line's length.
BATCH = 500
# How long the thread gathers discards before it deletes them: under load, one `rm` a
# quarter of a second, whatever the number of jobs.
GATHER_S = 0.25
# How long a clean stop waits for the finished workspaces to be deleted.
DRAIN_S = 30.0


class WorkspaceTrash:
    def __init__(self) -> None:
        self._reset()
        # A forked worker inherits none of the threads, and maybe a lock held by one.
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)  # the thread waits for work
        self._idle = threading.Condition(self._lock)  # drain waits for the thread
        self._pending: set[Path] = set()  # trash directories with something to delete
        self._busy = False
        self._hurry = 0  # callers of drain(): no gathering while they wait
        self._thread: threading.Thread | None = None
        # What `rm` could not delete (a read-only tree, for a runner that is not root):
        # not walked again by every later `rm`; a restarted process tries once more.
        self._stuck: set[str] = set()

    def discard(self, workspace: Path) -> None:
        """Take `workspace` off its path now; its files are deleted soon after. A
        workspace that does not exist is fine; one that cannot be moved is deleted here."""
        trash = workspace.parent / TRASH
        target = trash / f"{workspace.name}.{uuid.uuid4().hex[:12]}"
        try:
            try:
                workspace.rename(target)
            except FileNotFoundError:
                if not os.path.lexists(workspace):
                    return  # nothing to discard
                trash.mkdir(exist_ok=True)  # the first discard here
                workspace.rename(target)
        except OSError:
            shutil.rmtree(workspace, ignore_errors=True)
            return
        self._ask(trash)

    def drain(self, timeout_s: float = DRAIN_S) -> bool:
        """Wait until everything discarded so far has been deleted, or found impossible
        to delete (logged): True, or False at the timeout. For a clean stop, and tests."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            self._hurry += 1
            self._wakeup.notify()
            try:
                while self._pending or self._busy:
                    left = deadline - time.monotonic()
                    if left <= 0 or self._thread is None or not self._thread.is_alive():
                        return False
                    self._idle.wait(left)
            finally:
                self._hurry -= 1
        return True

    def _ask(self, trash: Path) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="conveyor-workspace-trash", daemon=True
                )
                self._thread.start()
            if not self._pending:  # else the thread is awake, or gathering
                self._wakeup.notify()
            self._pending.add(trash)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._pending:
                    self._busy = False
                    self._idle.notify_all()
                    self._wakeup.wait()
                self._busy = True
                # Gather a moment's discards: one `rm` then deletes them all.
                until = time.monotonic() + GATHER_S
                while not self._hurry and (left := until - time.monotonic()) > 0:
                    self._wakeup.wait(left)
                trashes, self._pending = self._pending, set()
            for trash in trashes:
                try:
                    self._empty(trash)
                except Exception:  # the trash keeps it; the next discard tries again
                    logger.warning("could not empty %s", trash, exc_info=True)

    def _empty(self, trash: Path) -> None:
        try:
            st = trash.lstat()
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            # Only a directory of the runner's own, never where a symlink leads.
            logger.warning("not emptying %s: not a directory of this user's", trash)
            return
        found = [str(path) for path in trash.iterdir()]
        found = [path for path in found if path not in self._stuck]
        for start in range(0, len(found), BATCH):
            paths = found[start : start + BATCH]
            try:
                done = subprocess.run(
                    ["rm", "-rf", "--", *paths],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    check=False,
                )
            except OSError:  # no `rm` to start: delete them here, slower
                for path in paths:
                    shutil.rmtree(path, ignore_errors=True)
                continue
            if done.returncode != 0:
                left = [path for path in paths if os.path.lexists(path)]
                self._stuck.update(left)
                why = done.stderr.decode(errors="replace").strip().splitlines()
                logger.warning(
                    "could not delete %d finished workspace(s) in %s: %s",
                    len(left),
                    trash,
                    why[0] if why else f"rm exited with {done.returncode}",
                )
