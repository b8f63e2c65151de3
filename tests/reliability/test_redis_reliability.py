"""Issue 6 on the redis driver: no lost updates, no resurrected logouts, a failover under load.

The same tests as ``test_concurrency_builtin.py`` and ``test_resurrection.py``,
on real ``redis-server`` processes: 40 overlapping requests of one session
through the WSGI middleware (sync handler) and the ASGI middleware (the
``redis.asyncio`` twin), on one server and on a three-master Cluster; the
controls without ``block`` or ``merge_on_save`` lose writes, so the tests can
fail. Then a Sentinel failover while threads keep making requests.

Servers: ``SATCHEL_TEST_REDIS_URL`` or a ``redis-server`` started here; the
Cluster and the Sentinel group are always started here (they are stopped or
failed over). A missing ``redis-server`` skips, or fails when
``SATCHEL_REQUIRE_SERVICES`` names ``redis``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from satchel import SaveOutcome, Session, SessionConfig, SessionManager
from satchel.testing import free_port, service_missing, start_server_process
from satchel.testing.concurrency import concurrent_distinct_keys, concurrent_increments
from satchel.testing.services import port_open
from satchel.wsgi import SessionMiddleware as WsgiSessionMiddleware
from satchel_redis import AsyncRedisSessionHandler, RedisSessionHandler

URL_ENV = "SATCHEL_TEST_REDIS_URL"
REQUESTS = 40
VIAS = ["wsgi", "asgi"]
QUICK = {"socket_timeout": 2.0, "socket_connect_timeout": 1.0}


# -- servers -------------------------------------------------------------------------


def _need_redis_server() -> None:
    if shutil.which("redis-server") is None:
        service_missing("redis", "'redis-server' is not on PATH")


def _server_argv(port: int, folder: Path, *extra: str) -> list[str]:
    return [
        "redis-server",
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(folder),
        *extra,
    ]  # fmt: skip


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(redis.RedisError):
            if predicate():
                return
        if time.monotonic() > deadline:
            service_missing("redis", f"{what} did not happen within {timeout:g} seconds")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
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
    argv = _server_argv(port, tmp_path_factory.mktemp("redis"))
    with start_server_process(argv, port=port, name="redis"):
        yield f"redis://127.0.0.1:{port}/0"


def _cluster_port() -> int:
    for _ in range(200):
        port = free_port()
        if port + 10000 < 65536 and not port_open(port + 10000):  # the cluster bus port
            return port
    raise RuntimeError("no free port pair for a cluster node")


def _cluster_ok(port: int) -> bool:
    info = redis.Redis(port=port, decode_responses=True).execute_command("CLUSTER INFO")
    text = info if isinstance(info, str) else "\n".join(f"{k}:{v}" for k, v in dict(info).items())
    return "cluster_state:ok" in text


@pytest.fixture(scope="module")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    _need_redis_server()
    if shutil.which("redis-cli") is None:
        service_missing("redis", "'redis-cli' is not on PATH (needed to create a cluster)")
    ports = [_cluster_port() for _ in range(3)]
    with contextlib.ExitStack() as stack:
        for port in ports:
            argv = _server_argv(
                port,
                tmp_path_factory.mktemp(f"cluster-{port}"),
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
        _wait(lambda: all(_cluster_ok(port) for port in ports), 30, "the cluster reaching ok")
        yield "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in ports)


@pytest.fixture
def sentinel_group(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A master, a replica and one Sentinel of this test's own (it fails the master over)."""
    _need_redis_server()
    master, replica, sentinel = free_port(), free_port(), free_port()
    service = "satchelmaster"
    config = tmp_path / "sentinel.conf"
    config.write_text(
        f"port {sentinel}\n"
        "bind 127.0.0.1\n"
        f"dir {tmp_path}\n"
        f"sentinel monitor {service} 127.0.0.1 {master} 1\n"
        f"sentinel down-after-milliseconds {service} 1000\n"
        f"sentinel failover-timeout {service} 5000\n"
    )
    with contextlib.ExitStack() as stack:
        master_process = stack.enter_context(
            start_server_process(
                # No 5-second wait before the replica's first sync.
                _server_argv(master, tmp_path, "--repl-diskless-sync-delay", "0"),
                port=master,
                name="redis",
            )
        )
        replica_argv = _server_argv(replica, tmp_path, "--replicaof", "127.0.0.1", str(master))
        stack.enter_context(start_server_process(replica_argv, port=replica, name="redis"))
        stack.enter_context(
            start_server_process(
                ["redis-server", str(config), "--sentinel"], port=sentinel, name="redis"
            )
        )

        def replica_linked() -> bool:
            info = redis.Redis(port=replica).info("replication")
            return bool(info.get("master_link_status") == "up")

        def sentinel_sees_the_replica() -> bool:
            replicas = redis.Redis(port=sentinel, decode_responses=True).execute_command(
                "SENTINEL", "replicas", service
            )
            return bool(replicas)

        _wait(replica_linked, 30, "the replica linking to its master")
        _wait(sentinel_sees_the_replica, 30, "the Sentinel finding the replica")
        yield {
            "url": f"redis+sentinel://127.0.0.1:{sentinel}/{service}/0",
            "service": service,
            "sentinel_port": sentinel,
            "master_port": master,
            "replica_port": replica,
            "master_process": master_process,
        }


@pytest.fixture
def prefix() -> str:
    return f"satchel-reliability:{secrets.token_hex(6)}:"


def manager_for(connection: str, prefix: str, **config: Any) -> SessionManager:
    return SessionManager(
        SessionConfig.from_dict(
            {
                "driver": "redis",
                "connection": connection,
                "prefix": prefix,
                "lottery": [0, 1],
                "options": QUICK,
                **config,
            }
        )
    )


# -- 40 overlapping requests ------------------------------------------------------------


@pytest.mark.parametrize("via", VIAS)
def test_blocking_keeps_every_increment(redis_url: str, prefix: str, via: str) -> None:
    manager = manager_for(redis_url, prefix, block=True)
    assert isinstance(manager.handler(), RedisSessionHandler)
    assert isinstance(manager.async_handler(), AsyncRedisSessionHandler)
    assert concurrent_increments(manager, via=via, requests=REQUESTS) == REQUESTS  # type: ignore[arg-type]


@pytest.mark.parametrize("via", VIAS)
def test_without_blocking_increments_are_lost(redis_url: str, prefix: str, via: str) -> None:
    manager = manager_for(redis_url, prefix)
    count = concurrent_increments(manager, via=via, requests=REQUESTS, block=False)  # type: ignore[arg-type]
    assert count < REQUESTS


@pytest.mark.parametrize("via", VIAS)
def test_merge_on_save_keeps_every_key(redis_url: str, prefix: str, via: str) -> None:
    manager = manager_for(redis_url, prefix, merge_on_save=True)
    keys = concurrent_distinct_keys(manager, via=via, requests=REQUESTS)  # type: ignore[arg-type]
    assert keys == {f"key{index}" for index in range(REQUESTS)}


@pytest.mark.parametrize("via", VIAS)
def test_without_merging_keys_are_lost(redis_url: str, prefix: str, via: str) -> None:
    manager = manager_for(redis_url, prefix)
    keys = concurrent_distinct_keys(manager, via=via, requests=REQUESTS)  # type: ignore[arg-type]
    assert len(keys) < REQUESTS


@pytest.mark.parametrize("via", VIAS)
def test_cluster_blocking_keeps_every_increment(
    redis_cluster_url: str, prefix: str, via: str
) -> None:
    manager = manager_for(redis_cluster_url, prefix, block=True)
    assert isinstance(manager.handler().client, redis.RedisCluster)  # type: ignore[attr-defined]
    assert concurrent_increments(manager, via=via, requests=REQUESTS) == REQUESTS  # type: ignore[arg-type]


@pytest.mark.parametrize("via", VIAS)
def test_cluster_merge_on_save_keeps_every_key(
    redis_cluster_url: str, prefix: str, via: str
) -> None:
    manager = manager_for(redis_cluster_url, prefix, merge_on_save=True)
    keys = concurrent_distinct_keys(manager, via=via, requests=REQUESTS)  # type: ignore[arg-type]
    assert keys == {f"key{index}" for index in range(REQUESTS)}


# -- no resurrection ---------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


ENDINGS: dict[str, Callable[[Session], None]] = {
    "invalidate": lambda session: session.invalidate(),
    "regenerate-destroy": lambda session: session.regenerate(destroy=True),
}


def clocked_manager(redis_url: str, prefix: str, clock: Clock) -> SessionManager:
    config = SessionConfig(
        driver="redis", connection=redis_url, prefix=prefix, lottery=(0, 1), touch_interval=60
    )
    return SessionManager(config, clock=clock)


def logged_in(manager: SessionManager) -> str:
    session = manager.start(None)
    session.put("user_id", 42)
    session.save()
    return session.cookie_value()


def stored_keys(redis_url: str, prefix: str) -> set[bytes]:
    client = redis.Redis.from_url(redis_url)
    try:
        return set(client.scan_iter(match=f"{prefix}*"))
    finally:
        client.close()


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_a_late_write_does_not_resurrect(redis_url: str, prefix: str, ending: str) -> None:
    manager = clocked_manager(redis_url, prefix, Clock())
    cookie = logged_in(manager)
    slow = manager.start(cookie)  # request A: loaded before the logout
    quick = manager.start(cookie)  # request B: ends the session
    ENDINGS[ending](quick)
    quick.save()
    keys_after_logout = stored_keys(redis_url, prefix)
    slow.put("cart", ["apple"])
    assert slow.save() is SaveOutcome.ENDED
    assert slow.cookie_action() is None
    assert stored_keys(redis_url, prefix) == keys_after_logout  # nothing written for the old id
    revived = manager.start(cookie)
    assert revived.all() == {}
    assert revived.id != cookie


def test_a_late_refresh_does_not_resurrect(redis_url: str, prefix: str) -> None:
    clock = Clock()
    manager = clocked_manager(redis_url, prefix, clock)
    cookie = logged_in(manager)
    clock.now += 120  # past touch_interval: A's save would be a refresh
    slow = manager.start(cookie)
    slow.get("user_id")
    quick = manager.start(cookie)
    quick.invalidate()
    quick.save()
    assert slow.save() is SaveOutcome.ENDED
    assert manager.start(cookie).all() == {}


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_async_late_write_and_refresh_do_not_resurrect(
    redis_url: str, prefix: str, ending: str
) -> None:
    clock = Clock()
    manager = clocked_manager(redis_url, prefix, clock)
    written, refreshed = logged_in(manager), logged_in(manager)
    clock.now += 120

    async def race(cookie: str, change: bool) -> SaveOutcome:
        slow = await manager.astart(cookie)
        quick = await manager.astart(cookie)
        ENDINGS[ending](quick)
        await quick.asave()
        if change:
            slow.put("cart", ["pear"])
        else:
            slow.get("user_id")  # only the idle expiry is due: a refresh
        return await slow.asave()

    assert asyncio.run(race(written, change=True)) is SaveOutcome.ENDED
    assert asyncio.run(race(refreshed, change=False)) is SaveOutcome.ENDED
    assert manager.start(written).all() == {}
    assert manager.start(refreshed).all() == {}


def test_a_late_write_under_merge_on_save_does_not_resurrect(redis_url: str, prefix: str) -> None:
    manager = manager_for(redis_url, prefix, merge_on_save=True)
    cookie = logged_in(manager)
    slow = manager.start(cookie)
    slow.get("user_id")
    quick = manager.start(cookie)
    quick.invalidate()
    quick.save()
    slow.put("cart", ["plum"])
    assert slow.save() is SaveOutcome.ENDED
    assert manager.start(cookie).all() == {}


# -- Sentinel failover under load ---------------------------------------------------------

LOAD_THREADS = 4
FAILOVER_WITHIN_SECONDS = 30.0
# From the Sentinel naming the new master to every load thread succeeding again.
# (Without the driver following NOREPLICAS to the new master, a guarded failover
# took about 10 s here: until the Sentinel demoted the old master.)
RECOVERY_WITHIN_SECONDS = 5.0
SENTINEL_OPTIONS = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0, "retries": 1}
BLOCK_WAIT_SECONDS = 3.0
# The longest a failing request may take: the lock wait, then a command's
# (retries + 1) attempts each cut off by the socket timeout, with slack.
REQUEST_BOUND_SECONDS = BLOCK_WAIT_SECONDS + 2 * 2 * 1.0 + 2.0


def _environ(cookie_header: str) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/",
        "QUERY_STRING": "",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_COOKIE": cookie_header,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }


def wsgi_request(middleware: WsgiSessionMiddleware, cookie_name: str, cookie: str) -> int:
    """One request through the middleware: its status, or 500 when it raised (as a server would)."""
    status: list[str] = []

    def start_response(line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        status.append(line)
        return lambda data: None

    try:
        body: Iterable[bytes] = middleware(_environ(f"{cookie_name}={cookie}"), start_response)
        try:
            for _ in body:
                pass
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
    except Exception:
        return 500
    return int(status[0].split()[0])


class Load:
    """Threads making requests (each its own user, incrementing a counter) until stopped."""

    def __init__(self, manager: SessionManager) -> None:
        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            environ["satchel.session"].increment("hits")
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok"]

        self.manager = manager
        self.middleware = WsgiSessionMiddleware(app, manager)
        self.cookies = [seed(manager, {"hits": 0}) for _ in range(LOAD_THREADS)]
        # (thread, started, finished, status) of every request
        self.log: list[tuple[int, float, float, int]] = []
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, args=(index,), daemon=True)
            for index in range(LOAD_THREADS)
        ]

    def _run(self, index: int) -> None:
        name, cookie = self.manager.config.cookie, self.cookies[index]
        while not self.stop.is_set():
            started = time.monotonic()
            status = wsgi_request(self.middleware, name, cookie)
            self.log.append((index, started, time.monotonic(), status))
            if status != 200:
                time.sleep(0.05)

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def ok_since(self, moment: float) -> int:
        return sum(1 for _, started, _, status in self.log if started >= moment and status == 200)


def seed(manager: SessionManager, values: dict[str, Any]) -> str:
    session = manager.start(None)
    session.put(values)
    session.save()
    return session.cookie_value()


def _wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _master_port(group: dict[str, Any]) -> int | None:
    with (
        contextlib.suppress(redis.RedisError),
        redis.Redis(port=group["sentinel_port"], decode_responses=True) as sentinel,
    ):
        address = sentinel.execute_command("SENTINEL", "get-master-addr-by-name", group["service"])
        if address:
            return int(address[1])
    return None


FAULTS = {
    # SENTINEL FAILOVER: the replica is promoted while the old master still runs.
    # The master has min-replicas-to-write 1, so it refuses writes (NOREPLICAS)
    # once its replica is gone instead of taking writes that are then lost.
    "sentinel-failover": ("failover", True),
    # SIGKILL of the master: the Sentinel notices (down-after 1 s) and promotes the replica.
    "master-killed": ("kill", False),
}


def _start_load(
    group: dict[str, Any], prefix: str, *, guarded: bool
) -> tuple[SessionManager, RedisSessionHandler, str]:
    manager = manager_for(
        group["url"],
        prefix,
        block=True,
        block_lock_seconds=2,
        block_wait_seconds=BLOCK_WAIT_SECONDS,
        options=SENTINEL_OPTIONS,
    )
    handler = manager.handler()
    assert isinstance(handler, RedisSessionHandler)
    before_failover = seed(manager, {"user_id": 7})
    handler.client.wait(1, 5000)  # replicated before the fault
    if guarded:
        with redis.Redis(port=group["master_port"]) as master:
            master.config_set("min-replicas-to-write", 1)
    return manager, handler, before_failover


def _fail_over(group: dict[str, Any], how: str) -> None:
    if how == "failover":
        with redis.Redis(port=group["sentinel_port"]) as sentinel:
            sentinel.execute_command("SENTINEL", "FAILOVER", group["service"])
    else:
        group["master_process"].send_signal(signal.SIGKILL)
        group["master_process"].wait(timeout=10)


@pytest.mark.parametrize("fault", list(FAULTS))
def test_sentinel_failover_under_load(
    sentinel_group: dict[str, Any], prefix: str, fault: str
) -> None:
    group = sentinel_group
    how, guarded = FAULTS[fault]
    manager, handler, before_failover = _start_load(group, prefix, guarded=guarded)

    with Load(manager) as load:
        assert _wait_for(lambda: load.ok_since(0) >= 20, 10), "no load before the fault"
        fault_at = time.monotonic()
        _fail_over(group, how)
        assert _wait_for(
            lambda: _master_port(group) == group["replica_port"], FAILOVER_WITHIN_SECONDS
        ), "the Sentinel never promoted the replica"
        switched_at = time.monotonic()
        # Every thread gets requests through again on the new master.
        assert _wait_for(
            lambda: all(
                any(t == i and s >= switched_at and st == 200 for t, s, _, st in load.log)
                for i in range(LOAD_THREADS)
            ),
            RECOVERY_WITHIN_SECONDS,
        ), "requests did not succeed again soon after the failover"
        recovered_at = time.monotonic()
        assert _wait_for(lambda: load.ok_since(recovered_at) >= 20, 10)
    log = list(load.log)

    # The client follows the new master: the sync pool asks the Sentinel.
    pool = handler.client.connection_pool
    assert pool.get_master_address()[1] == group["replica_port"]
    assert redis.Redis(port=group["replica_port"]).info("replication")["role"] == "master"
    # No request hung: each ended, well or badly, within the timeouts.
    slowest = max(finished - started for _, started, finished, _ in log)
    assert slowest < REQUEST_BOUND_SECONDS, f"a request took {slowest:.1f} s"
    # Once recovered, every request succeeds.
    after = [status for _, started, _, status in log if started >= recovered_at]
    assert after
    assert set(after) == {200}
    failed = sum(1 for *_, status in log if status != 200)

    counts = [manager.start(cookie).get("hits") for cookie in load.cookies]
    for index, count in enumerate(counts):
        ok = sum(1 for t, _, _, status in log if t == index and status == 200)
        attempts = sum(1 for t, *_ in log if t == index)
        if guarded:
            # A guarded failover loses no acknowledged write; a failed request may
            # still have written before its error.
            assert ok <= count <= attempts, (index, ok, count, attempts)
        else:
            # SIGKILL may lose the last writes not yet replicated (Redis's own
            # asynchronous replication), never more than a few.
            assert ok - 5 <= count <= attempts, (index, ok, count, attempts)

    # A session written before the fault is still there; logged out after the
    # failover, it stays logged out, even for a request that loaded it before.
    late = manager.start(before_failover)
    assert late.get("user_id") == 7
    logout = manager.start(before_failover)
    logout.invalidate()
    logout.save()
    late.put("cart", ["fig"])
    assert late.save() is SaveOutcome.ENDED
    again = manager.start(before_failover)
    assert again.all() == {}
    assert again.id != before_failover
    print(  # the figures for the closing note
        f"{fault}: {len(log)} requests, {failed} failed during the switch, "
        f"switch {switched_at - fault_at:.1f} s, recovery {recovered_at - switched_at:.1f} s"
    )


def test_an_unguarded_failover_loses_acknowledged_writes(
    sentinel_group: dict[str, Any], prefix: str
) -> None:
    """The control: without min-replicas-to-write the old master keeps taking writes
    after the Sentinel promoted its replica, until it is demoted seconds later.
    Those writes (a logout among them) are acknowledged and then lost: Redis's
    asynchronous replication, which satchel cannot see. The docs say so."""
    group = sentinel_group
    manager, _, _ = _start_load(group, prefix, guarded=False)
    with Load(manager) as load:
        assert _wait_for(lambda: load.ok_since(0) >= 20, 10), "no load before the fault"
        _fail_over(group, "failover")
        assert _wait_for(
            lambda: _master_port(group) == group["replica_port"], FAILOVER_WITHIN_SECONDS
        )
        # The old master, not yet demoted, keeps answering as a master.
        promoted_at = time.monotonic()
        assert _wait_for(lambda: load.ok_since(promoted_at) >= 20, 10)
    log = list(load.log)
    acknowledged = sum(1 for *_, status in log if status == 200)
    # What the new master holds: what every web server reads from now on.
    assert _master_port(group) == group["replica_port"]
    new_master = manager_for(f"redis://127.0.0.1:{group['replica_port']}/0", prefix)
    stored = sum(int(new_master.start(cookie).get("hits")) for cookie in load.cookies)
    print(f"unguarded failover: {acknowledged} acknowledged, {stored} stored")
    assert stored < acknowledged


def test_async_twin_follows_a_guarded_failover(sentinel_group: dict[str, Any], prefix: str) -> None:
    """The redis.asyncio twin under load: after the switch it reaches the new master."""
    group = sentinel_group
    manager, _, before_failover = _start_load(group, prefix, guarded=True)
    cookies = [seed(manager, {"hits": 0}) for _ in range(LOAD_THREADS)]
    log: list[tuple[int, float, bool]] = []

    async def request(index: int) -> None:
        started = time.monotonic()
        try:
            async with manager.alock(cookies[index]):
                session = await manager.astart(cookies[index])
                session.increment("hits")
                await session.asave()
        except Exception:
            log.append((index, started, False))
            await asyncio.sleep(0.05)
        else:
            log.append((index, started, True))

    async def user(index: int, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await request(index)

    def ok_since(moment: float, index: int | None = None) -> int:
        return sum(1 for i, s, ok in log if ok and s >= moment and index in (None, i))

    async def scenario() -> float:
        stop = asyncio.Event()
        users = [asyncio.create_task(user(index, stop)) for index in range(LOAD_THREADS)]
        try:
            while ok_since(0) < 20:
                await asyncio.sleep(0.05)
            await asyncio.to_thread(_fail_over, group, "failover")
            promoted = await asyncio.to_thread(
                _wait_for,
                lambda: _master_port(group) == group["replica_port"],
                FAILOVER_WITHIN_SECONDS,
            )
            assert promoted, "the Sentinel never promoted the replica"
            switched_at = time.monotonic()
            deadline = switched_at + RECOVERY_WITHIN_SECONDS
            while not all(ok_since(switched_at, index) for index in range(LOAD_THREADS)):
                assert time.monotonic() < deadline, "the async twin did not recover"
                await asyncio.sleep(0.05)
            return time.monotonic()
        finally:
            stop.set()
            await asyncio.gather(*users)
            await manager.async_handler().close()  # this loop's connections

    recovered_at = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert all(ok for _, started, ok in log if started >= recovered_at)
    # Read through a new web server's client: it asks the Sentinel. (This
    # manager's sync client wrote nothing since the failover, so it still reads
    # the old master until the Sentinel demotes it: see docs/drivers/redis.md.)
    fresh = manager_for(group["url"], prefix, options=SENTINEL_OPTIONS)
    for index, cookie in enumerate(cookies):
        ok = sum(1 for i, _, good in log if i == index and good)
        attempts = sum(1 for i, *_ in log if i == index)
        assert ok <= fresh.start(cookie).get("hits") <= attempts
    assert fresh.start(before_failover).get("user_id") == 7
    print(f"async guarded failover: {len(log)} requests, {sum(not ok for *_, ok in log)} failed")
