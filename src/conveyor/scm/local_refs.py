"""Read a local repository's refs from its files, without starting git.

`git ls-remote /path` starts three processes (git, a shell, upload-pack) to print what
`refs/` and `packed-refs` already say. For a repository on this machine in git's
"files" ref format (gitrepository-layout(5)), owned by this user, the answer is read
directly; anything this reader does not fully understand returns None and the caller
asks git instead: another owner (git's safe.directory check), extensions, linked
worktrees, hidden refs, symbolic refs (a ref file that is a symlink, or says `ref:`).

Every system call here is a turn at the GIL given away while the server is busy, and a
create waits for each turn back, so a repository's layout, once checked, is remembered
while its git directory and its config stay as they were (two `stat`s tell), and a ref
costs one open, one read and one close.
"""

import errno
import os
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

_OBJECT_ID = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")
# Stricter than git-check-ref-format: a name this rejects is simply left to git.
_PLAIN_REF = re.compile(r"refs/[A-Za-z0-9._\-/]{1,300}")
# A loose ref is one object id and a newline: anything longer is not one this reads.
_REF_FILE_MAX = 100
# A layout checked less than this after its files last changed is checked again next
# time: a change in the same tick of the file system's clock leaves the times as they
# were ("racy git").
_SETTLED_S = 2.0
_LAYOUTS_MAX = 256
_CHUNK = 1 << 16
# Larger than any packed-refs this reads; a longer one is left to git.
_PACKED_REFS_MAX = 1 << 30


@dataclass(frozen=True)
class _Layout:
    """A git directory found readable, and what must stay the same for that to hold.
    Reads go through `git_dir` as the URL names it, the path the stats check: a
    repository moved and its symlink repointed is read where it is now."""

    git_dir: Path
    dir_stat: tuple[int, int, int, int]
    config_stat: tuple[int, int, int, int]


_LAYOUTS: dict[str, _Layout] = {}
_LAYOUTS_LOCK = threading.Lock()


def _local_path(url: str) -> str | None:
    if url.startswith("file://"):
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
            return None
        url = unquote(parts.path)
    return url if url.startswith("/") else None


def _dir_stat(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_uid)


def _file_stat(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def _still(layout: _Layout) -> bool:
    try:
        dir_stat = _dir_stat(layout.git_dir.stat())
        config_stat = _file_stat((layout.git_dir / "config").stat())
    except OSError:
        return False
    return dir_stat == layout.dir_stat and config_stat == layout.config_stat


def _check(root: Path) -> _Layout | None:
    """The layout of the repository at `root`, read from scratch."""
    for git_dir in (root / ".git", root):
        try:
            if not (git_dir / "HEAD").is_file() or not (git_dir / "refs").is_dir():
                continue
            if (git_dir / "commondir").exists() or (git_dir / "reftable").exists():
                return None
            dir_st = git_dir.stat()
            if dir_st.st_uid != os.geteuid():
                return None
            config_st = (git_dir / "config").stat()
            config = (git_dir / "config").read_text(errors="replace").lower()
        except OSError:
            return None
        # Extensions (refStorage = reftable, ...) change what the files mean; hidden refs
        # are not what ls-remote would list.
        if "[extensions]" in config or "hiderefs" in config:
            return None
        return _Layout(git_dir, _dir_stat(dir_st), _file_stat(config_st))
    return None


def _layout(url: str) -> _Layout | None:
    path = _local_path(url)
    if path is None:
        return None
    known = _LAYOUTS.get(path)
    if known is not None and _still(known):
        return known
    checked_at = time.time()
    layout = _check(Path(path))
    with _LAYOUTS_LOCK:
        _LAYOUTS.pop(path, None)
        settled = checked_at - _SETTLED_S
        if (
            layout is not None
            and layout.dir_stat[2] < settled * 1e9
            and layout.config_stat[2] < settled * 1e9
        ):
            if len(_LAYOUTS) >= _LAYOUTS_MAX:
                _LAYOUTS.clear()
            _LAYOUTS[path] = layout
    return layout


def local_git_dir(url: str) -> Path | None:
    """The git directory of a repository URL on this machine, or None if it is not
    one this reader can handle (remote, a linked worktree, reftable, ...)."""
    layout = _layout(url)
    return layout.git_dir if layout is not None else None


class _Missing(Exception):
    """The ref has no file of its own (it may be packed)."""


class _LeaveToGit(Exception):
    """What the file holds is git's to interpret."""


def _read_nofollow(path: Path, limit: int) -> bytes:
    """What `path` holds, refusing a symlink as its last part (git reads a symlinked ref
    as a symbolic ref) and a file longer than `limit`; directories on the way are
    followed, as git follows them. A read that comes back short has met the file's end
    (a regular file's), so a small file costs one read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise _Missing from exc
    except OSError as exc:
        raise _LeaveToGit from exc  # ELOOP: a symlink; or no right to read it
    try:
        chunks: list[bytes] = []
        size = 0
        while True:
            wanted = min(limit + 1 - size, _CHUNK)
            data = os.read(fd, wanted)
            chunks.append(data)
            size += len(data)
            if size > limit:
                raise _LeaveToGit
            if len(data) < wanted:
                return b"".join(chunks)
    except OSError as exc:
        if exc.errno == errno.EISDIR:
            raise _Missing from exc
        raise _LeaveToGit from exc
    finally:
        os.close(fd)


def read_local_refs(url: str, refs: Sequence[str]) -> dict[str, str] | None:
    """ref -> object id for each of `refs` the repository has; None: ask git."""
    if not all(_is_plain(ref) for ref in refs):
        return None
    layout = _layout(url)
    if layout is None:
        return None
    found: dict[str, str] = {}
    missing = []
    try:
        for ref in refs:
            try:
                data = _read_nofollow(layout.git_dir / ref, _REF_FILE_MAX)
            except _Missing:
                missing.append(ref)
                continue
            text = data.decode("ascii").strip()
            if not _OBJECT_ID.fullmatch(text):
                return None  # a symbolic ref, or something being written: git knows
            found[ref] = text
        if missing:
            packed = _packed_refs(layout.git_dir / "packed-refs")
            if packed is None:
                return None
            found.update({ref: packed[ref] for ref in missing if ref in packed})
    except (_LeaveToGit, UnicodeDecodeError):
        return None
    return found


def _is_plain(ref: str) -> bool:
    if not _PLAIN_REF.fullmatch(ref):
        return False
    parts = ref.split("/")
    return all(p and not p.startswith(".") and not p.endswith(".lock") for p in parts)


def _packed_refs(path: Path) -> dict[str, str] | None:
    try:
        text = _read_nofollow(path, _PACKED_REFS_MAX).decode("utf-8")
    except _Missing:
        return {}
    except (_LeaveToGit, UnicodeDecodeError):
        return None
    packed = {}
    for line in text.split("\n"):
        if not line or line[0] in "#^":
            continue
        oid, _, name = line.partition(" ")
        if not _OBJECT_ID.fullmatch(oid):
            return None
        packed[name] = oid
    return packed
