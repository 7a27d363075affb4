"""Scale-out deployments: a Redis Cluster, or a primary guarded by Sentinel.

Each is named by one URL, so that child processes (the scheduler child, programs a job
starts) reach the same deployment from a string::

    redis+cluster://[[user]:password@]host:port[,host:port...][/]
    redis+sentinel://[[user]:password@]host:port[,host:port...]/service_name[/db]
        [?sentinel_username=...&sentinel_password=...]

A cluster URL lists seed nodes (any reachable one is enough; the client learns the rest).
A sentinel URL lists sentinels, then the monitored service's name and the database number.
Its user and password are the primary's; ``sentinel_username`` and ``sentinel_password``
authenticate to the sentinels themselves, when they require it. Percent-encode reserved
characters in names and passwords. ``ClusterSettings`` and ``SentinelSettings`` hold the
same settings as objects (what ``configure(cluster=...)`` and ``configure(sentinel=...)``
take); ``parse`` reads a URL into one and ``url()`` writes one back.

Two small extensions of redis-py's clients keep long-lived processes on the right server:
``ClusterClient`` learns the slot layout again when a pub/sub connection fails, and
``PrimaryWatchingPool`` asks the sentinels which server is the primary once a second, so a
graceful failover is noticed within about a second rather than when the old primary is
demoted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode

import redis
from redis.cluster import ClusterNode, ClusterPubSub, RedisCluster
from redis.exceptions import RedisClusterException
from redis.sentinel import Sentinel, SentinelConnectionPool

CLUSTER_SCHEME = "redis+cluster"
SENTINEL_SCHEME = "redis+sentinel"
DEFAULT_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379
PRIMARY_CHECK_S = 1.0
"""How often a Sentinel client asks which server is the primary, at most."""

logger = logging.getLogger(__name__)


def _address(text: str, default_port: int, what: str) -> tuple[str, int]:
    """Return ``(host, port)`` from ``host[:port]`` or ``[v6-host][:port]``."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else rest
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    try:
        port = int(port_text) if port_text else default_port
    except ValueError:
        port = -1
    if not host or not 0 < port < 65536:
        raise ValueError(f"invalid {what} address {text!r}: use host:port")
    return host, port


def _show(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _userinfo(username: str | None, password: str | None) -> str:
    if password is None:
        return f"{quote(username, safe='')}@" if username else ""
    return f"{quote(username or '', safe='')}:{quote(password, safe='')}@"


def _addresses(given: Sequence[str], default_port: int, what: str) -> tuple[str, ...]:
    if isinstance(given, str):
        given = given.split(",")
    found = tuple(_show(_address(text, default_port, what)) for text in given if text.strip())
    if not found:
        raise ValueError(f"at least one {what} address is needed, got {given!r}")
    return found


@dataclass(frozen=True)
class ClusterSettings:
    """How to reach a Redis Cluster.

    Attributes:
        nodes: ``host:port`` of some of its nodes (one reachable seed is enough; list more
            so that the client still starts while one is down).
        username: the ACL user for every node (``None``: the default user).
        password: the password for every node.
    """

    nodes: Sequence[str]
    username: str | None = None
    password: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", _addresses(self.nodes, DEFAULT_PORT, "cluster node"))

    def url(self) -> str:
        """Return the ``redis+cluster://`` URL of these settings."""
        userinfo = _userinfo(self.username, self.password)
        return f"{CLUSTER_SCHEME}://{userinfo}{','.join(self.nodes)}/"


@dataclass(frozen=True)
class SentinelSettings:
    """How to reach the primary that a set of sentinels watches.

    Attributes:
        sentinels: ``host:port`` of the sentinels (port 26379 if left out).
        service_name: the name the sentinels monitor the primary under.
        db: the database number on the primary.
        username: the ACL user on the primary and its replicas.
        password: the password of the primary and its replicas.
        sentinel_username: the ACL user on the sentinels, if they require one.
        sentinel_password: the password of the sentinels, if they require one.
    """

    sentinels: Sequence[str]
    service_name: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None

    def __post_init__(self) -> None:
        found = _addresses(self.sentinels, DEFAULT_SENTINEL_PORT, "sentinel")
        object.__setattr__(self, "sentinels", found)
        if not isinstance(self.service_name, str) or not self.service_name:
            raise ValueError(f"service_name must be a non-empty str, got {self.service_name!r}")
        if isinstance(self.db, bool) or not isinstance(self.db, int) or self.db < 0:
            raise ValueError(f"db must be an int >= 0, got {self.db!r}")

    def url(self) -> str:
        """Return the ``redis+sentinel://`` URL of these settings."""
        userinfo = _userinfo(self.username, self.password)
        query = {
            name: value
            for name, value in (
                ("sentinel_username", self.sentinel_username),
                ("sentinel_password", self.sentinel_password),
            )
            if value is not None
        }
        tail = f"?{urlencode(query)}" if query else ""
        service = quote(self.service_name, safe="")
        return f"{SENTINEL_SCHEME}://{userinfo}{','.join(self.sentinels)}/{service}/{self.db}{tail}"


Settings = ClusterSettings | SentinelSettings


def is_scale_out(url: str) -> bool:
    """Return whether ``url`` names a cluster or a sentinel set (not a single server)."""
    scheme = url.partition("://")[0].lower()
    return scheme in (CLUSTER_SCHEME, SENTINEL_SCHEME)


def _split(url: str) -> tuple[str, str | None, str | None, str, str, dict[str, list[str]]]:
    """Return scheme, username, password, hosts, path and query of a multi-host URL."""
    scheme, _, rest = url.partition("://")
    rest, _, query = rest.partition("?")
    netloc, slash, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    username: str | None = None
    password: str | None = None
    if at:
        user_text, colon, password_text = userinfo.partition(":")
        username = unquote(user_text) or None
        password = unquote(password_text) if colon else None
    return scheme.lower(), username, password, hosts, path if slash else "", parse_qs(query)


def parse(url: str) -> Settings:
    """Return the settings a ``redis+cluster://`` or ``redis+sentinel://`` URL names.

    Raises:
        ValueError: the URL is malformed (the message never shows the password).
    """
    scheme, username, password, hosts, path, query = _split(url)
    if scheme == CLUSTER_SCHEME:
        if path.strip("/") not in ("", "0"):
            raise ValueError("a cluster has only database 0; leave the path empty")
        return ClusterSettings(hosts.split(","), username, password)
    if scheme != SENTINEL_SCHEME:
        raise ValueError(f"not a {CLUSTER_SCHEME}:// or {SENTINEL_SCHEME}:// URL")
    parts = [unquote(part) for part in path.strip("/").split("/") if part]
    if not parts or len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
        raise ValueError("the path must be /service_name or /service_name/db")
    return SentinelSettings(
        hosts.split(","),
        parts[0],
        int(parts[1]) if len(parts) == 2 else 0,
        username,
        password,
        query.get("sentinel_username", [None])[-1],
        query.get("sentinel_password", [None])[-1],
    )


def redact(url: str) -> str:
    """Return a multi-host ``url`` with its password (and any sentinel password) hidden."""
    scheme, username, password, hosts, path, query = _split(url)
    shown = _userinfo(username, None)
    if password is not None:
        shown = f"{quote(username or '', safe='')}:***@"
    if "sentinel_password" in query:
        query["sentinel_password"] = ["***"]
    tail = f"?{urlencode(query, doseq=True, safe='*')}" if query else ""
    return f"{scheme}://{shown}{hosts}/{path}{tail}"


def connect(settings: Settings, options: dict[str, Any]) -> Any:
    """Return a client for ``settings``, built with the single-server ``options``.

    A cluster gets a ``ClusterClient`` (a ``RedisCluster``), which reads the slot layout
    from a seed node at once; a sentinel set gets a ``redis.Redis`` on a
    ``PrimaryWatchingPool``, which connects to the primary the sentinels name.

    Raises:
        redis.ConnectionError: no seed node of the cluster answered.
    """
    if isinstance(settings, ClusterSettings):
        return _connect_cluster(settings, options)
    return _connect_sentinel(settings, options)


def _learn_layout_again(cluster: RedisCluster) -> None:
    try:
        cluster.nodes_manager.initialize()
    except (RedisClusterException, redis.RedisError) as exc:
        logger.debug("cluster layout not refreshed: %s", exc)


class _RefreshingPubSub(ClusterPubSub):
    """Cluster pub/sub whose connection errors make the client learn the slot layout again.

    Commands refresh it by themselves after a connection error; pub/sub does not, so a
    subscriber whose node died would dial that node again and again, even after a replica
    took its slots over.
    """

    def execute_command(self, *args: Any) -> Any:
        try:
            return super().execute_command(*args)  # type: ignore[no-untyped-call]
        except (redis.ConnectionError, redis.TimeoutError):
            _learn_layout_again(self.cluster)
            raise

    def get_message(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().get_message(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError):
            _learn_layout_again(self.cluster)
            raise


class ClusterClient(RedisCluster):
    """A ``RedisCluster`` whose pub/sub objects recover from the loss of their node."""

    def pubsub(self, node: Any = None, host: Any = None, port: Any = None, **kwargs: Any) -> Any:
        """Return a pub/sub object on the node that serves the first channel's slot."""
        return _RefreshingPubSub(self, node=node, host=host, port=port, **kwargs)


def _connect_cluster(settings: ClusterSettings, options: dict[str, Any]) -> RedisCluster:
    addresses = [_address(text, DEFAULT_PORT, "cluster node") for text in settings.nodes]
    nodes = [ClusterNode(host, port) for host, port in addresses]  # type: ignore[no-untyped-call]
    given = {name: value for name, value in options.items() if name != "health_check_interval"}
    try:
        return ClusterClient(
            startup_nodes=nodes,
            username=settings.username,
            password=settings.password,
            **given,
        )
    except RedisClusterException as exc:  # no seed answered: the same as a server down
        raise redis.ConnectionError(str(exc)) from exc


class PrimaryWatchingPool(SentinelConnectionPool):
    """A Sentinel connection pool that notices a failover within ``PRIMARY_CHECK_S``.

    A plain Sentinel pool asks which server is the primary only when it opens a
    connection, and long-lived connections stay on a primary the sentinels have replaced.
    After a graceful failover the old primary keeps accepting writes until the sentinels
    demote it (about 10 s later), and every write it took in between is lost. This pool asks
    again when a connection is taken, at most once per ``PRIMARY_CHECK_S``, and closes its
    idle connections to a former primary (in-use ones are closed as they come back). An
    unreachable set of sentinels is not an error here: the connections keep their server.
    """

    def __init__(self, service_name: str, sentinel_manager: Sentinel, **kwargs: Any) -> None:
        super().__init__(service_name, sentinel_manager, **kwargs)  # type: ignore[no-untyped-call]
        self._next_check = 0.0

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        """Return a connection to the primary the sentinels name now."""
        now = time.monotonic()
        if now >= self._next_check and self.master_address is not None:
            self._next_check = now + PRIMARY_CHECK_S
            try:
                self.get_master_address()  # type: ignore[no-untyped-call]
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                logger.debug("sentinels of %s unreachable: %s", self.service_name, exc)
        return super().get_connection(*args, **kwargs)


def _connect_sentinel(settings: SentinelSettings, options: dict[str, Any]) -> redis.Redis:
    timeout_s = options.get("socket_connect_timeout")
    asking = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "username": settings.sentinel_username,
        "password": settings.sentinel_password,
        "retry": options.get("retry"),
        "decode_responses": True,
    }
    addresses = [_address(text, DEFAULT_SENTINEL_PORT, "sentinel") for text in settings.sentinels]
    sentinel = Sentinel(addresses, sentinel_kwargs=asking)  # type: ignore[no-untyped-call]
    primary: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        settings.service_name,
        connection_pool_class=PrimaryWatchingPool,
        db=settings.db,
        username=settings.username,
        password=settings.password,
        **options,
    )
    return primary


def settings_of(client: Any) -> Settings | None:
    """Return the settings that reach the same deployment as ``client``.

    ``None`` for a client of a single server (neither a cluster nor sentinel-managed).
    """
    if isinstance(client, RedisCluster):
        found = client.nodes_manager.connection_kwargs
        known = client.get_nodes()  # type: ignore[no-untyped-call]
        nodes = [_show((node.host, int(node.port))) for node in known]
        return ClusterSettings(nodes, found.get("username"), found.get("password"))
    pool = getattr(client, "connection_pool", None)
    if not isinstance(pool, SentinelConnectionPool):
        return None
    manager = pool.sentinel_manager
    asking = manager.sentinel_kwargs
    own = pool.connection_kwargs
    return SentinelSettings(
        [_sentinel_address(each) for each in manager.sentinels],
        pool.service_name,
        int(own.get("db") or 0),
        own.get("username"),
        own.get("password"),
        asking.get("username"),
        asking.get("password"),
    )


def _sentinel_address(client: redis.Redis) -> str:
    params = client.connection_pool.connection_kwargs
    return _show((str(params.get("host", "localhost")), int(params.get("port", 26379))))
