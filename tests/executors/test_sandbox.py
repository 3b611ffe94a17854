"""The bubblewrap sandbox, on real bwrap: each thing a job cannot see or do, tried by a
job, and the job's log saying why it could not."""

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.domain.jobs import JobResult, JobSpec, Outcome
from conveyor.executors.paths import RunnerPaths
from conveyor.executors.sandbox import (
    Isolation,
    JobUser,
    reach_problem,
    sandbox_problem,
    user_problem,
)
from conveyor.scm.mirror import MirrorCache
from tests.conftest import GitRepo
from tests.executors.conftest import (
    CLEANS_UP_ON_TERM,
    RecordingReporter,
    cancel_when_ready,
    log_of,
    run_with_file_log,
    spec_for,
)


@pytest.fixture(autouse=True)
def _bubblewrap() -> None:
    why = sandbox_problem(Isolation())
    if why is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"the sandbox tests need bubblewrap in CI: {why}")
    pytest.skip(f"no sandbox here: {why}")


@pytest.fixture
def server_dir(tmp_path: Path) -> Path:
    """Where the server keeps its config and SQLite database."""
    home = tmp_path / "server"
    home.mkdir()
    (home / "conveyor.yaml").write_text("secrets: {TOKEN: in-the-config-file}\n")
    (home / "conveyor.db").write_text("rows of the database\n")
    return home


@pytest.fixture
def isolation(server_dir: Path) -> Isolation:
    return Isolation(hidden=(server_dir,))


def run_sandboxed(
    repo: GitRepo,
    paths: RunnerPaths,
    isolation: Isolation,
    script: str,
    network: bool = True,
    **overrides: object,
) -> tuple[JobResult, str]:
    spec = spec_for(repo, script, sandbox="bubblewrap", network=network, **overrides)
    reporter = RecordingReporter()
    result = run_claimed_isolated(spec, paths, reporter, isolation)
    return result, log_of(paths)


def run_claimed_isolated(
    spec: JobSpec, paths: RunnerPaths, reporter: RecordingReporter, isolation: Isolation
) -> JobResult:
    result = run_with_file_log(spec, paths, reporter, isolation=isolation)
    assert result is not None
    return result


def test_the_checkout_is_there_and_the_workspace_writable(
    repo: GitRepo, paths: RunnerPaths, isolation: Isolation
) -> None:
    script = (
        "git -C voting-app rev-parse HEAD\n"
        "echo built > voting-app/out.txt && cat voting-app/out.txt\n"
        'echo "IMAGE=reg/app:1" >> "$CONVEYOR_OUTPUT"'
    )
    result, log = run_sandboxed(repo, paths, isolation, script, outputs=("IMAGE",))
    assert result.outcome is Outcome.PASSED, log
    assert f"\n{repo.head('main')}\nbuilt\n" in log
    assert result.outputs == {"IMAGE": "reg/app:1"}


def test_a_job_cannot_read_the_config_or_the_database(
    repo: GitRepo, paths: RunnerPaths, isolation: Isolation, server_dir: Path
) -> None:
    script = f"cat {server_dir}/conveyor.yaml || true\ncat {server_dir}/conveyor.db || true"
    result, log = run_sandboxed(repo, paths, isolation, script)
    assert result.outcome is Outcome.PASSED
    assert "in-the-config-file" not in log and "rows of the database" not in log
    assert f"cat: {server_dir}/conveyor.yaml: No such file or directory" in log
    assert f"cat: {server_dir}/conveyor.db: No such file or directory" in log


def test_a_job_cannot_see_other_jobs_workspaces_or_logs(
    repo: GitRepo, paths: RunnerPaths, isolation: Isolation
) -> None:
    other = paths.workspaces / "99"
    other.mkdir(parents=True)
    (other / "secret.txt").write_text("another job's work\n")
    paths.log(99).parent.mkdir(parents=True, exist_ok=True)
    paths.log(99).write_text("another job's log\n")
    script = f"cat {other}/secret.txt || true\ncat {paths.log(99)} || true\nls {paths.workspaces}"
    result, log = run_sandboxed(repo, paths, isolation, script)
    assert result.outcome is Outcome.PASSED
    assert "another job's" not in log
    assert f"cat: {other}/secret.txt: No such file or directory" in log
    assert f"cat: {paths.log(99)}: No such file or directory" in log
    assert "\n7\n" in log  # its own workspace is all there is


def test_a_job_sees_the_host_read_only_and_of_its_mirrors_only_their_objects(
    repo: GitRepo, paths: RunnerPaths, isolation: Isolation
) -> None:
    mirror = MirrorCache(paths.mirrors).path(repo.url)
    outside = Path("/var/tmp") / f"conveyor-outside-{uuid.uuid4().hex}"
    script = (
        f"touch /usr/conveyor-probe || true\n"
        f"touch {outside} || true\n"
        f"touch {mirror}/objects/planted || true\n"
        f"cat {mirror}/config || true"
    )
    result, log = run_sandboxed(repo, paths, isolation, script)
    assert result.outcome is Outcome.PASSED
    assert "touch: cannot touch '/usr/conveyor-probe': Read-only file system" in log
    assert f"touch: cannot touch '{outside}': Read-only file system" in log
    assert f"touch: cannot touch '{mirror}/objects/planted': Read-only file system" in log
    # A mirror's config holds its URL, and the URL may hold credentials.
    assert f"cat: {mirror}/config: No such file or directory" in log
    assert not outside.exists() and not (mirror / "objects" / "planted").exists()


def test_a_job_has_a_private_tmp_and_home(
    repo: GitRepo, paths: RunnerPaths, isolation: Isolation
) -> None:
    host_file = Path("/tmp") / f"conveyor-host-{uuid.uuid4().hex}"
    host_file.write_text("the host's\n")
    job_file = Path("/tmp") / f"conveyor-job-{uuid.uuid4().hex}"
    try:
        script = (
            f"cat {host_file} || true\necho mine > {job_file} && cat {job_file}\n"
            'touch "$HOME/.cache-probe" && ls -A "$HOME"'
        )
        result, log = run_sandboxed(repo, paths, isolation, script)
        assert result.outcome is Outcome.PASSED, log
        assert f"cat: {host_file}: No such file or directory" in log
        assert "\nmine\n.cache-probe\n" in log
        assert not job_file.exists()
        assert not (Path.home() / ".cache-probe").exists()
    finally:
        host_file.unlink()


def test_a_job_cannot_signal_the_server(
    repo: GitRepo, paths: RunnerPaths, isolation: Isolation
) -> None:
    script = f"kill -0 {os.getpid()} || true\nkill -TERM {os.getppid()} || true\nps -e -o comm="
    result, log = run_sandboxed(repo, paths, isolation, script)
    assert result.outcome is Outcome.PASSED
    assert f"kill: ({os.getpid()}) - No such process" in log
    # It sees only its own processes: bwrap's init, its shell, ps.
    assert "pytest" not in log and "python" not in log


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


@pytest.mark.parametrize("network", [True, False])
def test_a_service_without_network_cannot_connect(
    repo: GitRepo, paths: RunnerPaths, isolation: Isolation, listener: int, network: bool
) -> None:
    script = f"(exec 3<>/dev/tcp/127.0.0.1/{listener}) && echo connected || echo refused"
    result, log = run_sandboxed(repo, paths, isolation, script, network=network)
    assert result.outcome is Outcome.PASSED
    assert ("\nconnected\n" in log) is network
    assert ("Connection refused" in log) is not network


def test_nothing_escapes_the_namespace_not_even_a_process_hiding_its_marks(
    repo: GitRepo, paths: RunnerPaths, isolation: Isolation
) -> None:
    tag = f"{3000 + uuid.uuid4().int % 1000}.5"
    script = f"setsid env -i sleep {tag} < /dev/null > /dev/null 2>&1 &\nsleep 0.2"
    result, _ = run_sandboxed(repo, paths, isolation, script)
    assert result.outcome is Outcome.PASSED
    ps = subprocess.run(["ps", "-eo", "args="], capture_output=True, text=True, check=True)
    assert f"sleep {tag}" not in ps.stdout


@pytest.fixture
def reachable_paths() -> Iterator[RunnerPaths]:
    """A data directory another user can reach (pytest's own temp dirs are root's only)."""
    top = Path(tempfile.mkdtemp(prefix="conveyor-run-as-"))
    top.chmod(0o755)
    yield RunnerPaths(top / "data")
    shutil.rmtree(top)


@pytest.mark.skipif(os.geteuid() != 0, reason="running jobs as another user needs root")
def test_run_as_runs_the_job_as_an_unprivileged_user(
    repo: GitRepo, reachable_paths: RunnerPaths, server_dir: Path
) -> None:
    paths = reachable_paths
    assert user_problem("nobody") is None
    isolation = Isolation(user=JobUser.named("nobody"), hidden=(server_dir,))
    script = "id -un\ntouch voting-app/made-by-the-job && echo wrote\nls /root || true"
    result, log = run_sandboxed(repo, paths, isolation, script)
    assert result.outcome is Outcome.PASSED, log
    assert "\nnobody\nwrote\n" in log
    assert "ls: cannot open directory '/root': Permission denied" in log


@pytest.mark.skipif(os.geteuid() != 0, reason="running jobs as another user needs root")
def test_run_as_without_a_sandbox_still_drops_privileges(
    repo: GitRepo, reachable_paths: RunnerPaths
) -> None:
    paths = reachable_paths
    spec = spec_for(repo, "id -un\ncat /etc/shadow || true")
    isolation = Isolation(user=JobUser.named("nobody"))
    result = run_claimed_isolated(spec, paths, RecordingReporter(), isolation)
    assert result.outcome is Outcome.PASSED
    assert "\nnobody\ncat: /etc/shadow: Permission denied" in log_of(paths)


def test_a_sandbox_that_cannot_start_is_a_clear_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert shutil.which("bwrap") is None
    assert sandbox_problem(Isolation()) == (
        "bubblewrap is not installed (Debian and Ubuntu: apt-get install bubblewrap)"
    )
    assert user_problem("no-such-user-here") == "no user 'no-such-user-here' on this machine"
    assert user_problem("root") == "run_as must name an unprivileged user, not root"


@pytest.mark.skipif(os.geteuid() != 0, reason="running jobs as another user needs root")
def test_a_data_dir_the_job_user_cannot_reach_is_a_clear_problem(
    tmp_path: Path, reachable_paths: RunnerPaths
) -> None:
    nobody = Isolation(user=JobUser.named("nobody"))
    assert reach_problem(nobody, reachable_paths.data_dir) is None
    # pytest's temp dirs are root's alone.
    assert reach_problem(nobody, tmp_path / "data") == (
        f"user 'nobody' cannot reach {tmp_path / 'data'}: every directory on the way "
        "must be searchable by that user"
    )


def test_a_cancelled_sandboxed_job_gets_its_grace_to_clean_up(
    repo: GitRepo, paths: RunnerPaths, isolation: Isolation
) -> None:
    """bwrap itself gets no SIGTERM: dying of it, it would take the namespace down at
    once, and the script's cleanup with it."""
    spec = spec_for(repo, CLEANS_UP_ON_TERM, sandbox="bubblewrap", cancel_grace_s=5)
    reporter = cancel_when_ready(spec, paths, isolation)
    assert [r.outcome for r in reporter.results] == [Outcome.CANCELLED]
    assert "cleaning up\ncleaned\n" in log_of(paths)


@pytest.mark.skipif(os.geteuid() != 0, reason="about a runner started as root")
def test_root_in_the_sandbox_has_no_capabilities(
    repo: GitRepo, paths: RunnerPaths, isolation: Isolation, server_dir: Path
) -> None:
    """Without run_as the job is uid 0, but it cannot mount its way back to the host,
    remount it writable or enter the server's namespaces."""
    script = (
        "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status\n"
        "mkdir -p /tmp/h && mount --bind / /tmp/h || true\n"
        "mount -o remount,rw,bind / || true\n"
        f"ls /tmp/h{server_dir} || true"
    )
    result, log = run_sandboxed(repo, paths, isolation, script)
    assert result.outcome is Outcome.PASSED
    assert "CapEff:\t0000000000000000\nNoNewPrivs:\t1\n" in log
    assert "conveyor.yaml" not in log
    assert "mount: /tmp/h: permission denied." in log
    assert "mount: /: permission denied." in log
