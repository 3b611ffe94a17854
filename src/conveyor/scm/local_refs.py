"""Read a local repository's refs from its files, without starting git.

`git ls-remote /path` starts three processes (git, a shell, upload-pack) to print what
`refs/` and `packed-refs` already say. For a repository on this machine in git's
"files" ref format (gitrepository-layout(5)), owned by this user, the answer is read
directly; anything this reader does not fully understand returns None and the caller
asks git instead: another owner (git's safe.directory check), extensions, linked
worktrees, hidden refs, symbolic refs, symlinks anywhere under the git directory.
"""

import os
import re
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

_OBJECT_ID = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")
# Stricter than git-check-ref-format: a name this rejects is simply left to git.
_PLAIN_REF = re.compile(r"refs/[A-Za-z0-9._\-/]{1,300}")


def local_git_dir(url: str) -> Path | None:
    """The git directory of a repository URL on this machine, or None if it is not
    one this reader can handle (remote, a linked worktree, reftable, ...)."""
    if url.startswith("file://"):
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
            return None
        url = unquote(parts.path)
    if not url.startswith("/"):
        return None
    root = Path(url)
    for git_dir in (root / ".git", root):
        try:
            if not (git_dir / "HEAD").is_file() or not (git_dir / "refs").is_dir():
                continue
            if (git_dir / "commondir").exists() or (git_dir / "reftable").exists():
                return None
            if git_dir.stat().st_uid != os.geteuid():
                return None
            config = (git_dir / "config").read_text(errors="replace").lower()
        except OSError:
            return None
        # Extensions (refStorage = reftable, ...) change what the files mean; hidden refs
        # are not what ls-remote would list.
        if "[extensions]" in config or "hiderefs" in config:
            return None
        return git_dir
    return None


def read_local_refs(url: str, refs: Sequence[str]) -> dict[str, str] | None:
    """ref -> object id for each of `refs` the repository has; None: ask git."""
    git_dir = local_git_dir(url)
    if git_dir is None or not all(_is_plain(ref) for ref in refs):
        return None
    real_dir = git_dir.resolve()
    found: dict[str, str] = {}
    missing = []
    for ref in refs:
        path = real_dir / ref
        if path.resolve() != path:
            return None  # a symlink on the way: where it leads is git's to say
        try:
            text = path.read_text(encoding="ascii").strip()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            missing.append(ref)
            continue
        except (OSError, UnicodeDecodeError):
            return None
        if not _OBJECT_ID.fullmatch(text):
            return None  # a symbolic ref, or something being written: git knows
        found[ref] = text
    if missing:
        packed_refs = real_dir / "packed-refs"
        if packed_refs.resolve() != packed_refs:
            return None
        packed = _packed_refs(packed_refs)
        if packed is None:
            return None
        found.update({ref: packed[ref] for ref in missing if ref in packed})
    return found


def _is_plain(ref: str) -> bool:
    if not _PLAIN_REF.fullmatch(ref):
        return False
    parts = ref.split("/")
    return all(p and not p.startswith(".") and not p.endswith(".lock") for p in parts)


def _packed_refs(path: Path) -> dict[str, str] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError):
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
