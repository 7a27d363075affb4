"""The Lua scripts that make each move of a job one atomic step.

Each script lives in ``lua/<name>.lua`` (shipped as package data), headed by its KEYS, ARGV
and return contract. Called directly, a script goes through redis-py's ``Script`` (EVALSHA,
loading it again if the server lost its cache). Queued on a pipeline with ``queue_call``,
it is sent as a bare EVALSHA; ``run_pipeline`` reloads the scripts and runs again the calls
a server without them refused, so a batch costs one round trip.
"""

from __future__ import annotations

import os
import threading
from functools import cache
from importlib import resources
from typing import Any

import redis
from redis.commands.core import Script

NAMES = (
    "enqueue",
    "promote",
    "claim",
    "renew",
    "finish",
    "release",
    "cancel",
    "recover",
    "delete",
    "lock",
    "requeue",
    "purge",
)


@cache
def source(name: str) -> str:
    """Return the Lua source of script ``name``."""
    return (resources.files("tasks_rq") / "lua" / f"{name}.lua").read_text(encoding="utf-8")


class Scripts:
    """The scripts registered on one Redis client, as callables."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.enqueue: Script = client.register_script(source("enqueue"))
        self.promote: Script = client.register_script(source("promote"))
        self.claim: Script = client.register_script(source("claim"))
        self.renew: Script = client.register_script(source("renew"))
        self.finish: Script = client.register_script(source("finish"))
        self.release: Script = client.register_script(source("release"))
        self.cancel: Script = client.register_script(source("cancel"))
        self.recover: Script = client.register_script(source("recover"))
        self.delete: Script = client.register_script(source("delete"))
        self.lock: Script = client.register_script(source("lock"))
        self.requeue: Script = client.register_script(source("requeue"))
        self.purge: Script = client.register_script(source("purge"))

    def load_all(self) -> None:
        """Load every script into the server's cache."""
        for name in NAMES:
            script: Script = getattr(self, name)
            script.sha = str(self.client.script_load(script.script))


class DirectLine(threading.local):
    """A connection a thread keeps from a client's pool, for single hot-path commands.

    Sending a command on it skips redis-py's per-call dispatch (pool checkout, retry
    wrapper, metrics), which costs more than the round trip itself on a local server. It is
    dropped after a fork and reconnects after an error; nothing is ever retried here. An
    idle connection that the server closed (a restart, CLIENT KILL) is noticed before it is
    used, so the first command after an outage does not fail for nothing.
    """

    connection: Any = None
    pid: int = 0

    def call(self, client: redis.Redis, *command: Any) -> Any:
        """Send ``command`` and return its reply (an error reply is raised)."""
        conn = self.connection
        if conn is None or self.pid != os.getpid():
            conn = self.connection = client.connection_pool.make_connection()
            self.pid = os.getpid()
        elif getattr(conn, "_sock", None) is not None and _is_stale(conn):
            conn.disconnect()  # closed by the server while idle (no reply is ever pending)
        try:
            conn.send_command(*command)
            return conn.read_response()
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            conn.disconnect()
            raise


def _is_stale(conn: Any) -> bool:
    try:
        return bool(conn.can_read(timeout=0))
    except (redis.ConnectionError, OSError):
        return True


def run_script(script: Script, keys: list[str], args: list[Any]) -> Any:
    """Run ``script`` with one EVALSHA, loading it first if the server lacks it."""
    client = script.registered_client
    # Cluster, Sentinel and other clients take the ordinary path: a Sentinel pool's
    # connection asks for the current primary when it connects, a bare one would not.
    if type(client) is not redis.Redis or type(client.connection_pool) is not redis.ConnectionPool:
        try:
            return client.evalsha(script.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            script.sha = str(client.script_load(script.script))
            return client.evalsha(script.sha, len(keys), *keys, *args)
    line: DirectLine | None = getattr(client, "_tasks_rq_line", None)
    if line is None:  # kept on the client itself: an id() could be reused by a later client
        line = DirectLine()
        client._tasks_rq_line = line  # type: ignore[attr-defined]
    try:
        return line.call(client, "EVALSHA", script.sha, len(keys), *keys, *args)
    except redis.exceptions.NoScriptError:
        script.sha = str(client.script_load(script.script))
        return line.call(client, "EVALSHA", script.sha, len(keys), *keys, *args)


def queue_call(pipe: Any, script: Script, keys: list[str], args: list[Any]) -> None:
    """Queue one EVALSHA of ``script`` on ``pipe``."""
    # A cluster pipeline refuses its evalsha() method but routes the bare command by its
    # keys, which all share one hash tag.
    pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)


def run_pipeline(scripts: Scripts, calls: list[tuple[Script, list[str], list[Any]]]) -> list[Any]:
    """Run script ``calls`` in one round trip; return their results in order.

    Errors other than a missing script are returned in place of a result.
    """
    results = _send(scripts.client, calls)
    missing = [i for i, r in enumerate(results) if isinstance(r, redis.exceptions.NoScriptError)]
    if missing:
        scripts.load_all()
        again = _send(scripts.client, [calls[i] for i in missing])
        for index, result in zip(missing, again, strict=True):
            results[index] = result
    return results


def _send(client: Any, calls: list[tuple[Script, list[str], list[Any]]]) -> list[Any]:
    pipe = client.pipeline(transaction=False)
    for script, keys, args in calls:
        queue_call(pipe, script, keys, args)
    return list(pipe.execute(raise_on_error=False))
