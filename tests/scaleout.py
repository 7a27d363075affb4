"""Scale-out deployments for the tests: a 3-master Redis Cluster and a Sentinel set.

Both run real ``redis-server`` processes on free loopback ports, in a temporary folder, and
are torn down by ``stop()``. The cluster is built by hand (``CLUSTER ADDSLOTSRANGE`` and
``CLUSTER MEET``), which is faster than ``redis-cli --cluster create`` and its one-second
waits. The Sentinel set is one primary, one replica and three sentinels with short timeouts,
so that a failover completes in a second or two.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import wait_for

SLOTS = 16384
CLUSTER_SIZE = 3
SENTINEL_COUNT = 3
SERVICE_NAME = "trq-primary"
DOWN_AFTER_MS = 1000
"""How long the sentinels wait for a silent primary before they call it down."""


def _binary() -> str:
    found = shutil.which("redis-server") or shutil.which("valkey-server")
    if found is None:
        pytest.exit("redis-server is not installed (apt-get install redis-server)", 2)
    return found


def _is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int, *, with_bus: bool = False) -> list[int]:
    """Return ``count`` free loopback ports (and, ``with_bus``, each one's port + 10000)."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port in ports or (with_bus and (port > 55535 or not _is_free(port + 10000))):
            continue
        ports.append(port)
    return ports


def _ping(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_timeout=0.5).ping())
    except (redis.RedisError, OSError):
        return False


class Node:
    """One ``redis-server`` process (a data node or a sentinel)."""

    def __init__(self, folder: Path, port: int, args: list[str]) -> None:
        self.folder = folder
        self.port = port
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [_binary(), *self.args],
            cwd=self.folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def client(self, **options: object) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5, decode_responses=True, **options)  # type: ignore[arg-type]

    def kill(self) -> None:
        """SIGKILL the server (no shutdown, no goodbye to anyone)."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def _data_args(port: int) -> list[str]:
    return [
        "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--daemonize", "no", "--dir", ".", "--repl-diskless-sync", "yes",
        "--repl-diskless-sync-delay", "0",
    ]  # fmt: skip


def _cluster_args(port: int) -> list[str]:
    cluster = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
    return [*_data_args(port), *cluster, "--cluster-node-timeout", "2000"]


class Cluster:
    """A Redis Cluster of three masters on loopback, each with a replica if asked.

    Attributes:
        nodes: the masters, each serving a third of the slots.
        replicas: one replica per master (in the same order), or none.
        url: the ``redis+cluster://`` URL that names the masters as seed nodes.
        startup_s: how long ``start()`` took, until every node reported ``cluster_state:ok``
            (and, with replicas, until each replica had synced).
    """

    def __init__(self, folder: Path, *, with_replicas: bool = False) -> None:
        ports = free_ports(CLUSTER_SIZE * (2 if with_replicas else 1), with_bus=True)
        made = [Node(folder / f"node-{port}", port, _cluster_args(port)) for port in ports]
        self.nodes, self.replicas = made[:CLUSTER_SIZE], made[CLUSTER_SIZE:]
        seeds = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)
        self.url = f"redis+cluster://{seeds}/"
        self.startup_s = 0.0

    def start(self) -> None:
        began = time.monotonic()
        every = [*self.nodes, *self.replicas]
        for node in every:
            node.start()
        for node in every:
            wait_for(lambda node=node: _ping(node.port), 10, f"cluster node {node.port}")
        share = SLOTS // len(self.nodes)
        for index, node in enumerate(self.nodes):
            last = SLOTS - 1 if index == len(self.nodes) - 1 else (index + 1) * share - 1
            node.client().execute_command("CLUSTER ADDSLOTSRANGE", index * share, last)
        first = self.nodes[0].client()
        for node in every[1:]:
            first.execute_command("CLUSTER MEET", "127.0.0.1", node.port)
        for master, replica in zip(self.nodes, self.replicas, strict=False):  # none, or one each
            self._replicate(master, replica)
        wait_for(self.is_ok, 20, "cluster_state:ok on every node", interval=0.05)
        self.startup_s = time.monotonic() - began

    @staticmethod
    def _replicate(master: Node, replica: Node) -> None:
        master_id = master.client().execute_command("CLUSTER MYID")
        wait_for(
            lambda: master_id in str(replica.client().execute_command("CLUSTER NODES")),
            10,
            f"node {replica.port} to learn of its master",
        )
        replica.client().execute_command("CLUSTER REPLICATE", master_id)

    def is_ok(self) -> bool:
        every = [*self.nodes, *self.replicas]
        try:
            for node in every:
                info = node.client().cluster("INFO")
                if info.get("cluster_state") != "ok":
                    return False
                if int(info.get("cluster_known_nodes", 0)) != len(every):
                    return False
            for node in self.replicas:
                if node.client().info("replication").get("master_link_status") != "up":
                    return False
        except redis.RedisError:
            return False
        return True

    def master_of(self, key: str) -> Node:
        """Return the master node that serves ``key`` now."""
        slot = redis.cluster.key_slot(key.encode())
        every = [*self.nodes, *self.replicas]
        alive = next(node for node in every if node.process and node.process.poll() is None)
        for start, end, primary, *_ in alive.client().cluster("SLOTS"):
            if start <= slot <= end:
                return next(node for node in every if node.port == int(primary[1]))
        raise LookupError(f"no node serves {key!r}")

    def flush(self) -> None:
        """Delete every key on every master and forget every loaded script."""
        for node in self.nodes:
            client = node.client()
            client.flushall()
            client.script_flush()

    def stop(self) -> None:
        for node in [*self.nodes, *self.replicas]:
            node.stop()


class SentinelSet:
    """One primary, one replica and three sentinels watching them, on loopback.

    Attributes:
        data: the two data nodes; ``data[0]`` starts as the primary.
        sentinels: the sentinel processes.
        url: the ``redis+sentinel://`` URL naming the sentinels and the service.
    """

    def __init__(self, folder: Path) -> None:
        data_ports = free_ports(2)
        primary = data_ports[0]
        self.data = [
            Node(folder / "primary", primary, _data_args(primary)),
            Node(
                folder / "replica",
                data_ports[1],
                [*_data_args(data_ports[1]), "--replicaof", "127.0.0.1", str(primary)],
            ),
        ]
        sentinel_ports = free_ports(SENTINEL_COUNT)
        self.sentinels = [
            Node(folder / f"sentinel-{port}", port, ["sentinel.conf", "--sentinel"])
            for port in sentinel_ports
        ]
        addresses = ",".join(f"127.0.0.1:{port}" for port in sentinel_ports)
        self.url = f"redis+sentinel://{addresses}/{SERVICE_NAME}/0"
        self.startup_s = 0.0

    def _write_sentinel_config(self, node: Node) -> None:
        primary = self.data[0].port
        node.folder.mkdir(parents=True, exist_ok=True)
        (node.folder / "sentinel.conf").write_text(
            f"port {node.port}\n"
            "bind 127.0.0.1\n"
            "daemonize no\n"
            f"dir {node.folder}\n"
            f"sentinel monitor {SERVICE_NAME} 127.0.0.1 {primary} 2\n"
            f"sentinel down-after-milliseconds {SERVICE_NAME} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {SERVICE_NAME} 10000\n"
            f"sentinel parallel-syncs {SERVICE_NAME} 1\n"
        )

    def start(self) -> None:
        began = time.monotonic()
        for node in self.data:
            node.start()
        wait_for(self._is_synced, 10, "the replica to sync", interval=0.01)
        # Sentinels learn of replicas from the primary's INFO, read every 10 s: start them
        # once the replica is connected, so that the first reading already names it.
        for node in self.sentinels:
            self._write_sentinel_config(node)
            node.start()
        wait_for(
            self._is_ready, 15, "the sentinels to see the replica and each other", interval=0.05
        )
        self.startup_s = time.monotonic() - began

    def _is_synced(self) -> bool:
        try:
            return self.data[1].client().info("replication").get("master_link_status") == "up"
        except redis.RedisError:
            return False

    def _is_ready(self) -> bool:
        try:
            for node in self.sentinels:
                seen = node.client().sentinel_master(SERVICE_NAME)
                if int(seen["num-slaves"]) < 1 or int(seen["num-other-sentinels"]) < 2:
                    return False
        except redis.RedisError:
            return False
        return True

    def primary_port(self) -> int:
        """Return the port of the primary the sentinels name now."""
        _, port = self.sentinels[0].client().sentinel_get_master_addr_by_name(SERVICE_NAME)
        return int(port)

    def node_on(self, port: int) -> Node:
        return next(node for node in self.data if node.port == port)

    def stop(self) -> None:
        for node in [*self.sentinels, *self.data]:
            with contextlib.suppress(Exception):
                node.stop()


def running(deployment: Any) -> Iterator[Any]:
    """Start ``deployment`` (a Cluster or a SentinelSet), yield it, and stop it."""
    deployment.start()
    try:
        yield deployment
    finally:
        deployment.stop()


def configured_client(redis_url: str) -> Iterator[redis.Redis]:
    """Yield a client of ``redis_url``, configured as the library's connection."""
    from tasks_rq import connection
    from tasks_rq import queue as queue_module

    made = connection.connect(redis_url)
    connection.configure(url=redis_url)
    queue_module._known_queues.clear()
    yield made
    made.close()
