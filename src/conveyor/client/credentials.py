"""Where a client finds its server and token: `--url`/`--token`, else `CONVEYOR_URL` and
`CONVEYOR_TOKEN`, else the file `conveyor login` wrote (mode 0600)."""

import json
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Credentials:
    url: str
    token: str


def credentials_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME", "")
    if not Path(base).is_absolute():  # the XDG spec: a relative path is to be ignored
        base = str(Path.home() / ".config")
    return Path(base) / "conveyor" / "credentials"


def save(found: Credentials, path: Path | None = None) -> Path:
    """Write the file readable by its owner alone, from its first byte: it is created with
    mode 0600 (never written first and narrowed after), and replaced atomically."""
    path = path or credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.parent.chmod(0o700)  # a directory made before, wider: ours alone now
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.unlink(missing_ok=True)  # a leftover keeps its mode: never reuse one
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"url": found.url, "token": found.token}, out)
        out.write("\n")
    partial.replace(path)
    return path


def load(path: Path | None = None) -> Credentials | None:
    path = path or credentials_path()
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("url"), str):
        return None
    token = raw.get("token")
    return Credentials(raw["url"], token if isinstance(token, str) else "")


def resolve(url: str | None, token: str | None) -> tuple[str | None, str | None]:
    """The server and token to use, each from the first place that names it. The token
    `login` saved goes only to the server it was saved for: a URL from a flag or the
    environment (a repository's CI settings, say) never receives it."""
    stored = load()
    url = (url or os.environ.get("CONVEYOR_URL") or (stored.url if stored else "")).rstrip("/")
    token = token or os.environ.get("CONVEYOR_TOKEN")
    if token is None and stored is not None and stored.url.rstrip("/") == url:
        token = stored.token
    return url or None, token.strip() if token else None
