"""A PostgreSQL and a Redis of the test's own, on ports of their own, that a test may
stop and start again: the shared services are never touched."""

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.server import free_port


def _require(tool: str, found: str | None) -> str:
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail(f"the fault tests need {tool} in CI")
    pytest.skip(f"{tool} is not installed here")


def _as_postgres(argv: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root.
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


class PrivatePostgres:
    def __init__(self, home: Path) -> None:
        bindirs = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
        found = str(bindirs[-1]) if bindirs else None
        bindir = found or (str(Path(p).parent) if (p := shutil.which("pg_ctl")) else None)
        self.bin = Path(_require("PostgreSQL (pg_ctl, initdb)", bindir))
        self.home = home
        self.data = home / "data"
        self.port = free_port()
        home.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(home, "postgres")
        initdb = [str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust"]
        subprocess.run(
            _as_postgres([*initdb, "-U", "postgres", "--no-sync", "-E", "UTF8"]),
            check=True,
            capture_output=True,
        )

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.home} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            _as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options,
                          "-l", str(self.home / "log"), "-w", "start"]),
            check=True,
            capture_output=True,
        )  # fmt: skip

    def stop(self) -> None:
        subprocess.run(
            _as_postgres(
                [str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"]
            ),
            check=False,
            capture_output=True,
        )


class PrivateRedis:
    def __init__(self, home: Path) -> None:
        self.binary = _require("redis-server", shutil.which("redis-server"))
        self.home = home
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        home.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.home)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while (
            subprocess.run(
                ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, check=False
            ).stdout.strip()
            != b"PONG"
        ):
            assert time.monotonic() < deadline, "the private Redis did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None
