"""A real `conveyor serve` process for tests that need one (kill -9, memory)."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx
import pytest

from conveyor.config_file import load_config
from conveyor.wiring import build_container


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    def __init__(self, config: Path, port: int, log: Path, extra: tuple[str, ...] = ()) -> None:
        self.config, self.port, self.log, self.extra = config, port, log, extra
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "conveyor",
                    "serve",
                    "-c",
                    str(self.config),
                    "--port",
                    str(self.port),
                    *self.extra,
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{self.url}/healthz", timeout=1).raise_for_status()
                return
            except httpx.HTTPError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"server did not start:\n{self.log.read_text()}")
                time.sleep(0.05)

    def issue_token(self, user: str = "alice", *roles: str) -> str:
        """A token of the server's installation (roles default: admin), made as
        `conveyor token create` makes one: through its config and database."""
        container = build_container(load_config(self.config))
        try:
            token, _ = container.tokens.issue(user, list(roles or ["admin"]), None)
        finally:
            container.db.dispose()
        return token

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)

    def rss_kib(self) -> int:
        """Resident memory of the server process now."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")
