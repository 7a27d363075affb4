"""Where the Redis connection comes from: one setting, resolved once per process.

Resolution order: ``configure(url=...)`` (the CLI's ``--url`` calls it), then the
``TASKS_RQ_URL`` environment variable, then the embedded server of the current folder.
URLs are redis-py's: ``redis://[[user]:password@]host:port/db``, ``rediss://`` for TLS,
``unix:///path/to.sock?db=0``. Passwords are never logged: use ``redact(url)`` to show one.

Scale-out deployments (see ``tasks_rq.topology`` and docs/scale-out.md):

- Redis Cluster: ``redis+cluster://[[user]:password@]host:port[,host:port...]/`` (seed
  nodes), or ``configure(cluster=ClusterSettings(["10.0.0.1:6379", ...], password=...))``.
  Every key of a queue carries the queue's hash tag, so each script touches one slot.
- Sentinel: ``redis+sentinel://[[user]:password@]host:port[,host:port...]/service/db``
  (sentinel addresses; ``?sentinel_password=...`` if the sentinels need one), or
  ``configure(sentinel=SentinelSettings([...], "service", db=0, password=...))``. Each new
  connection asks the sentinels for the current primary; a connection to a primary that
  was demoted or died fails, and the caller's backoff reconnects to the new one.

Both keep this module's settings: decoded replies, the timeouts below, no automatic retry.
A configured deployment is kept as its URL, which ``url_of`` hands to child processes.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any, cast
from urllib.parse import quote, urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tasks_rq import server, topology
from tasks_rq.errors import ConnectionUnavailableError

logger = logging.getLogger(__name__)

SOCKET_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 2.0
HEALTH_CHECK_S = 30

# Errors after which the same call may well succeed later: the server is unreachable,
# stalled, still loading its data, out of memory, or was demoted to a replica. Long-lived
# loops (worker, scheduler, waker, Job.result) back off and retry on these.
TRANSIENT_ERRORS: tuple[type[redis.RedisError], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
)
MIN_VERSION = (6, 2)

_lock = threading.Lock()
_state: dict[str, Any] = {"url": None, "client": None, "pid": None}


def configure(
    url: str | None = None,
    *,
    client: redis.Redis | None = None,
    cluster: topology.ClusterSettings | None = None,
    sentinel: topology.SentinelSettings | None = None,
) -> None:
    """Set the Redis server (or scale-out deployment) this process uses.

    Args:
        url: a Redis URL (``redis://``, ``rediss://``, ``unix://``, ``redis+cluster://``,
            ``redis+sentinel://``).
        client: a ready redis-py client instead of a URL (``decode_responses=True``).
        cluster: the seed nodes and credentials of a Redis Cluster, instead of a URL.
        sentinel: the sentinels, service name, db and credentials of a Sentinel-guarded
            primary, instead of a URL.

    Raises:
        ValueError: more than one of ``url``, ``cluster`` and ``sentinel`` was given.
    """
    given = [setting for setting in (url, cluster, sentinel) if setting is not None]
    if len(given) > 1:
        raise ValueError("give at most one of url, cluster and sentinel")
    for settings in (cluster, sentinel):
        if settings is not None:
            url = settings.url()
    with _lock:
        _state.update(url=url, client=client, pid=os.getpid())


def redact(url: str) -> str:
    """Return ``url`` with its password replaced by ``***``."""
    if topology.is_scale_out(url):
        return topology.redact(url)
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def resolve_url(start_embedded: bool = True) -> str:
    """Return the URL this process should use, starting the embedded server if needed.

    Args:
        start_embedded: with nothing configured, start this folder's embedded server if it
            is not running (else only use one that runs).

    Raises:
        ConnectionUnavailableError: nothing configured, none running, and not asked to start.
    """
    url = _state["url"] or os.environ.get("TASKS_RQ_URL")
    if url:
        return str(url)
    if not start_embedded:
        running = server.running(server.state_folder())
        if running is None:
            raise ConnectionUnavailableError(
                "no Redis configured (set TASKS_RQ_URL or pass --url) and no embedded server "
                "runs in this folder, so there is nothing to look at here"
            )
        return running.url
    return server.ensure_running().url


def connect(url: str) -> redis.Redis:
    """Return a new client for ``url`` with the library's settings.

    The client never retries a command by itself: a command whose reply was lost may have
    run (a claim would then have taken jobs), so each caller decides what is safe to send
    again. Replies wait at most ``SOCKET_TIMEOUT_S``, so a stalled or vanished server is
    noticed in seconds; TCP keepalive probes find a dead peer on idle connections.

    A ``redis+cluster://`` URL gets a ``RedisCluster`` (typed as ``redis.Redis``: it
    answers every command the library sends), a ``redis+sentinel://`` URL a client whose
    connections go to the primary the sentinels name when they connect.

    Raises:
        ValueError: the URL is not a Redis URL.
    """
    options: dict[str, Any] = {
        "decode_responses": True,
        # Bytes that are not UTF-8 (written by hand, or by another program) must fail the
        # one job that holds them, not every reply they are part of.
        "encoding_errors": "replace",
        "socket_timeout": SOCKET_TIMEOUT_S,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "retry": Retry(NoBackoff(), 0),
        "health_check_interval": HEALTH_CHECK_S,
    }
    if not url.startswith("unix:"):  # unix sockets take no keepalive settings
        options.update(socket_keepalive=True, socket_keepalive_options=_keepalive_options())
    try:
        if topology.is_scale_out(url):
            return cast(redis.Redis, topology.connect(topology.parse(url), options))
        return redis.Redis.from_url(url, **options)
    except ValueError as exc:
        raise ValueError(f"invalid Redis URL {redact(url)!r}: {exc}") from None


def _keepalive_options() -> dict[int, int]:
    # First probe after 10 s idle, then every 5 s; 3 unanswered probes close the socket.
    wanted = {"TCP_KEEPIDLE": 10, "TCP_KEEPINTVL": 5, "TCP_KEEPCNT": 3}
    return {getattr(socket, name): value for name, value in wanted.items() if hasattr(socket, name)}


def get_client(start_embedded: bool = True) -> redis.Redis:
    """Return this process's shared client (created on first use, again after a fork).

    Args:
        start_embedded: see ``resolve_url``.
    """
    client = _state["client"]
    if client is not None and _state["pid"] == os.getpid():
        return client  # type: ignore[no-any-return]
    with _lock:
        if _state["client"] is None or _state["pid"] != os.getpid():
            url = resolve_url(start_embedded)
            _state.update(client=connect(url), url=url, pid=os.getpid())
        return _state["client"]  # type: ignore[no-any-return]


def current_url() -> str:
    """Return the URL of this process's client (resolving it if needed)."""
    get_client()
    return str(_state["url"])


def unavailable(exc: Exception) -> ConnectionUnavailableError:
    """Return the error to raise when Redis cannot be reached, naming the URL safely."""
    url = _state["url"] or os.environ.get("TASKS_RQ_URL") or "(embedded)"
    return ConnectionUnavailableError(f"cannot reach Redis at {redact(str(url))}: {exc}")


def check_version(client: redis.Redis) -> None:
    """Raise ``ConnectionUnavailableError`` if the server is older than Redis 6.2."""
    version = str(client.info("server").get("redis_version", "0"))
    numbers = tuple(int(part) for part in version.split(".")[:2] if part.isdigit())
    if numbers < MIN_VERSION:
        raise ConnectionUnavailableError(f"Redis {version} is too old; tasks_rq needs 6.2 or newer")


def url_of(client: redis.Redis) -> str:
    """Return a URL that reaches the same server as ``client`` (for child processes)."""
    if _state["client"] is client and _state["url"]:
        return str(_state["url"])
    settings = topology.settings_of(client)
    if settings is not None:
        return settings.url()
    params = client.connection_pool.connection_kwargs
    db = params.get("db", 0)
    if params.get("path"):
        return f"unix://{params['path']}?db={db}"
    auth = ""
    if params.get("password"):
        user = params.get("username") or ""
        auth = f"{quote(user)}:{quote(str(params['password']))}@"
    is_tls = "SSL" in client.connection_pool.connection_class.__name__
    scheme = "rediss" if is_tls else "redis"
    return f"{scheme}://{auth}{params.get('host', 'localhost')}:{params.get('port', 6379)}/{db}"
