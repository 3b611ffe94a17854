"""A build's outputs: the `KEY=value` lines it wrote to `$CONVEYOR_OUTPUT`.

The file is the job's: it may have replaced it with a symlink to a host file, a named
pipe, or a file of many gigabytes. The runner therefore opens it through a handle on
its directory taken before the job started, never following a symlink, never waiting
on a pipe, only if it is a regular file, and reads at most MAX_OUTPUT_BYTES. Only the
names the service declares (`services.<s>.build.outputs`) are handed on, with the value
rules of build variables; a line that is ignored is never echoed (it may hold a secret).
"""

import contextlib
import os
import re
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

from conveyor.domain.variables import variable_value_problem

MAX_OUTPUT_BYTES = 64 * 1024
OUTPUT_NAME = "output"
_LINE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)")


class OutputFile:
    """`$CONVEYOR_OUTPUT` of one job, in a control directory the runner made."""

    def __init__(self, control_dir: Path) -> None:
        self.path = control_dir / OUTPUT_NAME
        self._dir = os.open(control_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)

    def read(self) -> tuple[bytes | None, str]:
        """The file's bytes, or None and why it was not read."""
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
        try:
            fd = os.open(OUTPUT_NAME, flags, dir_fd=self._dir)
        except FileNotFoundError:
            return b"", ""
        except OSError as exc:  # ELOOP: a symlink
            return None, f"cannot be opened safely ({exc.strerror})"
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                return None, "is not a regular file"
            if info.st_size > MAX_OUTPUT_BYTES:
                return None, f"holds more than {MAX_OUTPUT_BYTES} bytes"
            with os.fdopen(os.dup(fd), "rb") as f:
                data = f.read(MAX_OUTPUT_BYTES + 1)
            if len(data) > MAX_OUTPUT_BYTES:
                return None, f"holds more than {MAX_OUTPUT_BYTES} bytes"
            return data, ""
        finally:
            os.close(fd)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._dir)


def parse_outputs(
    data: bytes, declared: Iterable[str], say: Callable[[str], None]
) -> dict[str, str]:
    """The declared outputs among `data`'s lines; `say` explains each line ignored,
    naming it by number and, when it is one, by its name, never by its value."""
    wanted = set(declared)
    outputs: dict[str, str] = {}
    for n, line in enumerate(data.decode(errors="replace").split("\n"), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _LINE.fullmatch(line)
        if m is None:
            say(f"ignored line {n} of $CONVEYOR_OUTPUT: not KEY=value")
            continue
        name, value = m.groups()
        if name not in wanted:
            shown = sorted(wanted) if wanted else "none"
            say(
                f"ignored line {n} of $CONVEYOR_OUTPUT: {name} is not a declared output "
                f"(declared: {shown})"
            )
            continue
        problem = variable_value_problem(value)
        if problem:
            say(f"ignored line {n} of $CONVEYOR_OUTPUT: the value of {name} {problem}")
            continue
        outputs[name] = value
    return outputs
