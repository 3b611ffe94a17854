"""Outbound git: resolve refs to commits, with `git ls-remote` where the files cannot tell."""

import os
import re
import subprocess
from collections.abc import Sequence

from conveyor.domain.errors import UpstreamError
from conveyor.scm.local_refs import read_local_refs

# `ext::` and friends run commands; only plain transports are allowed.
_ALLOWED_PROTOCOLS = "file:git:http:https:ssh"
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def mask_url(url: str) -> str:
    """https://user:token@host/x.git -> https://***@host/x.git"""
    return _USERINFO.sub("***@", url)


def git_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_ALLOW_PROTOCOL=_ALLOWED_PROTOCOLS,
        GIT_SSH_COMMAND="ssh -o BatchMode=yes",
        LC_ALL="C",
    )
    return env


class GitCli:
    """Talks to remotes through the `git` command line."""

    def __init__(self, timeout_s: float = 30.0) -> None:
        self.timeout_s = timeout_s

    def resolve(self, url: str, refs: Sequence[str]) -> dict[str, str]:
        local = read_local_refs(url, refs)
        if local is not None:
            return local
        # ls-remote patterns match ref-name tails, so only exact names are kept below.
        argv = ["git", "ls-remote", "--", url, *refs]
        try:
            proc = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=self.timeout_s,
                env=git_env(),
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise UpstreamError(
                f"git ls-remote {mask_url(url)} did not answer in {self.timeout_s:g}s"
            ) from exc
        except OSError as exc:  # git missing, or arguments past the system's limit
            raise UpstreamError(
                f"git ls-remote {mask_url(url)} could not start: {exc.strerror}"
            ) from exc
        if proc.returncode != 0:
            lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
            # git's first "fatal:" line says what went wrong; the rest is boilerplate advice.
            fatal = [ln for ln in lines if ln.startswith("fatal:")] or lines
            why = mask_url(fatal[0]) if fatal else f"exit code {proc.returncode}"
            raise UpstreamError(f"git ls-remote {mask_url(url)} failed: {why}")
        wanted = set(refs)
        found: dict[str, str] = {}
        # "\n" only: splitlines() would also split a ref name at U+0085 or U+2028.
        for line in proc.stdout.split("\n"):
            sha, _, name = line.partition("\t")
            if name in wanted:
                found[name] = sha.lower()
        return found
