"""What every benchmark does to run Conveyor: a free port, a process, wait until it answers."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_conveyor(args: list[str], log: Path | None = None) -> subprocess.Popen[bytes]:
    """`conveyor <args>` in a process of its own, without this shell's CONVEYOR_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    argv = [sys.executable, "-m", "conveyor", *args]
    if log is None:
        return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            httpx.get(f"{url}/healthz", timeout=1).raise_for_status()
            return
        except httpx.HTTPError:
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit("the server did not start")
            time.sleep(0.05)


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def serve_with_token(
    config: Path, port: int, log: Path, access_log: bool = True
) -> tuple[subprocess.Popen[bytes], str, str]:
    """Migrate the config's database, issue an admin token (role `admin`), start `conveyor
    serve` on `port` and wait until it answers: (process, base URL, token)."""
    from conveyor.config_file import load_config
    from conveyor.storage import migrate
    from conveyor.wiring import build_container

    container = build_container(load_config(config))
    migrate.upgrade(container.db)
    token, _ = container.tokens.issue("bench", ["admin"], None)
    container.db.dispose()
    args = ["serve", "-c", str(config), "--port", str(port)]
    proc = start_conveyor(args + ([] if access_log else ["--no-access-log"]), log)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc)
    return proc, url, token


def start_workers(config: Path, n: int, logs: Path) -> list[subprocess.Popen[bytes]]:
    """`n` celery workers (`--concurrency 4`) for `config`, once each says it is ready;
    their logs are `logs`/w<i>.log."""
    procs = []
    for i in range(n):
        log = logs / f"w{i}.log"
        procs.append(start_conveyor(["worker", "-c", str(config), "--concurrency", "4"], log))
        while " ready." not in log.read_text():
            if procs[-1].poll() is not None:
                sys.exit(f"a worker did not start: {log}")
            time.sleep(0.05)
    return procs


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """A process's resident memory now (VmRSS) or at its peak (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pct(values: list[float], q: float) -> float:
    """The `q`th percentile (0-100) of `values`, by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]
