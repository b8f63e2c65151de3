"""Real Redis servers for the satchel-redis tests.

``redis_url`` is, in this order: ``SATCHEL_TEST_REDIS_URL``, else a
``redis-server`` started on a free loopback port for the run, else a skip (a
failure when ``SATCHEL_REQUIRE_SERVICES`` names ``redis``). The Cluster,
Sentinel and outage tests always start their own ``redis-server`` processes,
so they can stop them; nothing here ever flushes a server, and every test run
uses its own key prefix.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
import redis

from satchel.testing import free_port, service_missing, start_server_process
from satchel.testing.services import port_open

URL_ENV = "SATCHEL_TEST_REDIS_URL"
CLUSTER_BUS_OFFSET = 10000  # Redis Cluster's node-to-node port is the client port + 10000
ServerStarter = Callable[..., AbstractContextManager[subprocess.Popen[bytes]]]


def _need_redis_server() -> None:
    if shutil.which("redis-server") is None:
        service_missing("redis", "'redis-server' is not on PATH")


@pytest.fixture(scope="session")
def redis_server_argv(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., list[str]]:
    """argv for a throwaway ``redis-server`` on ``port``: loopback only, nothing saved."""

    def argv(port: int, *extra: str) -> list[str]:
        folder = tmp_path_factory.mktemp(f"redis-{port}")
        return [
            "redis-server",
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(folder),
            *extra,
        ]  # fmt: skip

    return argv


@pytest.fixture(scope="session")
def redis_url(redis_server_argv: Callable[..., list[str]]) -> Iterator[str]:
    """The URL of the Redis the conformance suite runs on."""
    url = os.environ.get(URL_ENV)
    if url:
        try:
            redis.Redis.from_url(url, socket_connect_timeout=3).ping()
        except redis.RedisError as exc:
            service_missing("redis", f"{URL_ENV}={url!r} does not answer: {exc}")
        yield url
        return
    _need_redis_server()
    port = free_port()
    with start_server_process(redis_server_argv(port), port=port, name="redis"):
        yield f"redis://127.0.0.1:{port}/0"


@pytest.fixture(scope="session")
def run_prefix() -> str:
    """A key prefix of this test run, so it never meets other data on a shared server."""
    return f"satchel-test:{secrets.token_hex(6)}:"


@pytest.fixture
def unique_prefix(run_prefix: str) -> str:
    """A prefix of one test, inside the run's."""
    return f"{run_prefix}{secrets.token_hex(4)}:"


def cluster_port() -> int:
    """A free port whose cluster-bus port (port + 10000) is free too."""
    for _ in range(200):
        port = free_port()
        if port + CLUSTER_BUS_OFFSET < 65536 and not port_open(port + CLUSTER_BUS_OFFSET):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            service_missing("redis", f"{what} did not happen within {timeout:g} seconds")
        time.sleep(0.1)


def _cluster_state(port: int) -> str:
    info = redis.Redis(port=port, decode_responses=True).execute_command("CLUSTER INFO")
    if isinstance(info, dict):
        return str(info.get("cluster_state"))
    for line in str(info).splitlines():
        if line.startswith("cluster_state:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


@pytest.fixture(scope="session")
def redis_cluster_url(redis_server_argv: Callable[..., list[str]]) -> Iterator[str]:
    """A three-master Redis Cluster started from ``redis-server`` on free loopback ports."""
    _need_redis_server()
    if shutil.which("redis-cli") is None:
        service_missing("redis", "'redis-cli' is not on PATH (needed to create a cluster)")
    ports = [cluster_port() for _ in range(3)]
    with contextlib.ExitStack() as stack:
        for port in ports:
            argv = redis_server_argv(
                port,
                "--cluster-enabled", "yes",
                "--cluster-config-file", f"nodes-{port}.conf",
                "--cluster-node-timeout", "2000",
            )  # fmt: skip
            stack.enter_context(start_server_process(argv, port=port, name="redis"))
        create_argv = [
            "redis-cli", "--cluster", "create",
            *(f"127.0.0.1:{port}" for port in ports),
            "--cluster-replicas", "0", "--cluster-yes",
        ]  # fmt: skip
        created = subprocess.run(
            create_argv,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if created.returncode != 0:
            service_missing("redis", f"redis-cli --cluster create failed: {created.stdout[-500:]}")

        def cluster_ok() -> bool:
            return all(_cluster_state(port) == "ok" for port in ports)

        _wait(cluster_ok, 30, "the cluster reaching state ok")
        yield "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in ports)


@contextlib.contextmanager
def _sentinel_group(argv: Callable[..., list[str]], folder: Path) -> Iterator[dict[str, Any]]:
    master, replica, sentinel = free_port(), free_port(), free_port()
    service = "satchelmaster"
    config = folder / "sentinel.conf"
    config.write_text(
        f"port {sentinel}\n"
        "bind 127.0.0.1\n"
        f"dir {folder}\n"
        f"sentinel monitor {service} 127.0.0.1 {master} 1\n"
        f"sentinel down-after-milliseconds {service} 1000\n"
        f"sentinel failover-timeout {service} 5000\n"
    )
    with contextlib.ExitStack() as stack:
        master_process = stack.enter_context(
            start_server_process(argv(master), port=master, name="redis")
        )
        stack.enter_context(
            start_server_process(
                argv(replica, "--replicaof", "127.0.0.1", str(master)), port=replica, name="redis"
            )
        )
        stack.enter_context(
            start_server_process(
                ["redis-server", str(config), "--sentinel"], port=sentinel, name="redis"
            )
        )

        def replica_linked() -> bool:
            info = redis.Redis(port=replica).info("replication")
            return bool(info.get("master_link_status") == "up")

        def sentinel_knows_master() -> bool:
            address = redis.Redis(port=sentinel).execute_command(
                "SENTINEL", "get-master-addr-by-name", service
            )
            return address is not None

        _wait(replica_linked, 30, "the replica linking to its master")
        _wait(sentinel_knows_master, 30, "the Sentinel finding its master")
        yield {
            "url": f"redis+sentinel://127.0.0.1:{sentinel}/{service}/0",
            "service": service,
            "sentinel_port": sentinel,
            "master_port": master,
            "replica_port": replica,
            "master_process": master_process,
        }


@pytest.fixture(scope="session")
def redis_sentinel(
    redis_server_argv: Callable[..., list[str]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """One master, one replica and one Sentinel watching them, on free loopback ports."""
    _need_redis_server()
    with _sentinel_group(redis_server_argv, tmp_path_factory.mktemp("sentinel")) as group:
        yield group


@pytest.fixture
def own_redis_sentinel(
    redis_server_argv: Callable[..., list[str]], tmp_path: Path
) -> Iterator[dict[str, Any]]:
    """A Sentinel group of one test's own, for a test that kills its master."""
    _need_redis_server()
    with _sentinel_group(redis_server_argv, tmp_path) as group:
        yield group


@pytest.fixture
def start_redis(redis_server_argv: Callable[..., list[str]]) -> ServerStarter:
    """Start a ``redis-server`` on ``port`` (a context manager that stops it)."""
    _need_redis_server()

    def start(port: int) -> AbstractContextManager[subprocess.Popen[bytes]]:
        return start_server_process(redis_server_argv(port), port=port, name="redis")

    return start
