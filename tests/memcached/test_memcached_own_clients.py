"""The driver's own memcached clients (one server without TLS), sync and asyncio, on real servers.

Both speak the text protocol of :mod:`satchel_memcached.protocol`: here the
commands themselves, answers split anywhere, a connection dropped while idle
(the next command works, no error), a failed command's connection never
reused, a silent server's late answer read by no one, the pool bound under a
burst of threads, and a forked process that opens connections of its own.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fixtures.memcached_servers import peak_connections
from fixtures.tcp_proxy import TcpProxy, proxy_to
from pymemcache.client.base import Client

from satchel import SessionBackendError, SessionConfig
from satchel.testing import free_port, new_storage_id
from satchel.testing.services import frozen_process
from satchel_memcached import (
    AsyncMemcachedClient,
    AsyncMemcachedSessionHandler,
    MemcachedClient,
    MemcachedSessionHandler,
)
from satchel_memcached import client as own_client
from satchel_memcached.protocol import AnswerReader, MemcachedServerError, parse_answer

KINDS = ("sync", "asyncio")


def _host_port(connection: str) -> tuple[str, int]:
    host, _, port = connection.split(",", maxsplit=1)[0].rpartition(":")
    return host, int(port)


class Calls:
    """A sync or asyncio client or handler, called the same way: the asyncio one's
    coroutines run on one event loop kept for the test, so connections are reused."""

    def __init__(self, target: Any, loop: asyncio.AbstractEventLoop | None) -> None:
        self.target = target
        self.loop = loop

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.target, name)
        if self.loop is None:
            return method  # type: ignore[no-any-return]
        loop = self.loop
        return lambda *args, **kwargs: loop.run_until_complete(method(*args, **kwargs))


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture
def make_handler(
    kind: str, loop: asyncio.AbstractEventLoop, unique_prefix: str
) -> Iterator[Callable[..., Calls]]:
    """The handler of ``kind`` on the driver's own client, for a connection and options."""
    made: list[Calls] = []

    def make(connection: str, **options: Any) -> Calls:
        if kind == "sync":
            calls = Calls(_sync_handler(connection, unique_prefix, **options), None)
        else:
            config = SessionConfig(
                driver="memcached", connection=connection, prefix=unique_prefix, options=options
            )
            handler = AsyncMemcachedSessionHandler.from_config(config)
            assert isinstance(handler, AsyncMemcachedSessionHandler)
            calls = Calls(handler, loop)
        made.append(calls)
        return calls

    yield make
    for calls in made:
        calls.close()


@pytest.fixture
def own_memcached(start_memcached: Any) -> Iterator[tuple[str, Any]]:
    """A memcached of this test (frozen or counted): its connection and process."""
    port = free_port()
    with start_memcached(port) as process:
        yield f"127.0.0.1:{port}", process


@pytest.fixture
def proxy(memcached_connection: str) -> Iterator[TcpProxy]:
    """A proxy to the shared memcached, which a test cuts instead of stopping the server."""
    with proxy_to(*_host_port(memcached_connection)) as started:
        yield started


def _sync_handler(connection: str, prefix: str, **options: Any) -> MemcachedSessionHandler:
    handler = MemcachedSessionHandler.from_config(
        SessionConfig(driver="memcached", connection=connection, prefix=prefix, options=options)
    )
    assert isinstance(handler.client, MemcachedClient)
    return handler


def _idle_ports(client: MemcachedClient | AsyncMemcachedClient) -> list[int]:
    """The local ports of a client's idle connections.

    Connections are told apart by their local ports, not by the server's count
    of connections, which a client of another test (one that probes a port that
    was free) could raise too.
    """
    if isinstance(client, MemcachedClient):
        return [sock.getsockname()[1] for sock in client._idle]
    pool = client._connections
    transports = [] if pool is None else [connection.transport for connection in pool.idle]
    return [transport.get_extra_info("sockname")[1] for transport in transports if transport]


# -- the commands ------------------------------------------------------------------------------


def test_each_client_speaks_each_command(
    kind: str, loop: asyncio.AbstractEventLoop, memcached_connection: str, unique_prefix: str
) -> None:
    host, port = _host_port(memcached_connection)
    if kind == "sync":
        client = Calls(MemcachedClient(host, port, connect_timeout=2, timeout=2), None)
    else:
        client = Calls(AsyncMemcachedClient(host, port, connect_timeout=2, timeout=2), loop)
    key = unique_prefix + "k"
    awkward = b"line\r\nEND\r\nVALUE x 0 1\r\n\x00\xff"
    assert client.get(key) is None
    assert client.gets(key) == (None, None)
    assert not client.replace(key, b"x", 60)
    assert client.add(key, awkward, 60)
    assert not client.add(key, b"other", 60)
    assert client.get(key) == awkward
    value, cas = client.gets(key)
    assert value == awkward
    assert cas is not None
    assert client.cas(key, b"swapped", cas, 60)
    assert not client.cas(key, b"late", cas, 60)  # changed since that gets
    assert client.get(key) == b"swapped"
    assert client.replace(key, b"x" * 300_000, 60)  # an answer in many pieces
    assert client.get(key) == b"x" * 300_000
    assert client.set(key, b"", 60)
    assert client.get(key) == b""
    assert client.delete(key)
    assert not client.delete(key)
    client.close()


ANSWERS = [
    (b"END\r\n", True, (b"END\r\n", None)),
    (b"VALUE k 0 3\r\nabc\r\nEND\r\n", True, (b"VALUE k 0 3\r\n", b"abc")),
    (b"VALUE k 0 7 42\r\nEND\r\n\r\n\r\nEND\r\n", True, (b"VALUE k 0 7 42\r\n", b"END\r\n\r\n")),
    (b"VALUE k 0 0\r\n\r\nEND\r\n", True, (b"VALUE k 0 0\r\n", b"")),
    (b"STORED\r\n", False, (b"STORED\r\n", None)),
    (b"NOT_STORED\r\n", False, (b"NOT_STORED\r\n", None)),
    (b"EXISTS\r\n", False, (b"EXISTS\r\n", None)),
    (b"NOT_FOUND\r\n", False, (b"NOT_FOUND\r\n", None)),
    (b"DELETED\r\n", False, (b"DELETED\r\n", None)),
]


@pytest.mark.parametrize(("answer", "value", "parsed"), ANSWERS)
def test_an_answer_is_read_whole_however_it_is_split(
    answer: bytes, value: bool, parsed: tuple[bytes, bytes | None]
) -> None:
    assert parse_answer(answer, value) == parsed
    for cut in range(1, len(answer)):
        reader = AnswerReader(value)
        assert reader.feed(answer[:cut]) is None
        assert reader.received
        assert reader.feed(answer[cut:]) == parsed
    byte_by_byte = AnswerReader(value)
    results = [byte_by_byte.feed(answer[i : i + 1]) for i in range(len(answer))]
    assert results == [None] * (len(answer) - 1) + [parsed]


@pytest.mark.parametrize(
    ("answer", "value", "message"),
    [
        (b"ERROR\r\n", True, "'ERROR'"),
        (b"SERVER_ERROR out of memory storing object\r\n", False, "out of memory"),
        (b"CLIENT_ERROR bad data chunk\r\n", False, "bad data chunk"),
        (b"VALUE k 0 3\r\nabcd\r\nEND\r\n", True, "malformed value"),
        (b"VALUE k 0 3\r\nabc\r\nEND\r\nEND\r\n", True, "malformed value"),
        (b"VALUE k 0 3\r\nabc\r\nNOPE\r\n", True, "malformed value"),
        (b"VALUE k 0 x\r\n", True, "malformed value line"),
        (b"VALUE k\r\n", True, "malformed value line"),
        (b"VALUE k 0 3\r\nabc\r\nEND\r\n", False, "VALUE k 0 3"),
        (b"STORED\r\nSTORED\r\n", False, "more in the answer"),
        (b"x" * 5000, True, "too long"),
    ],
)
def test_what_no_memcached_answers_is_a_server_error(
    answer: bytes, value: bool, message: str
) -> None:
    with pytest.raises(MemcachedServerError, match=message):
        parse_answer(answer, value)


# -- connections -------------------------------------------------------------------------------


def test_a_connection_dropped_while_idle_is_replaced_without_an_error(
    make_handler: Callable[..., Calls], proxy: TcpProxy
) -> None:
    handler = make_handler(proxy.address, connect_timeout=2, timeout=2)
    key = new_storage_id()
    handler.write(key, "before")  # its connection kept idle
    proxy.restore()  # every connection through the proxy dropped; the server still up
    time.sleep(0.05)
    assert handler.read(key) == "before"  # on a new connection, no error
    handler.write(key, "after")
    assert handler.read(key) == "after"


def test_a_dropped_store_names_driver_and_address_and_recovers(
    make_handler: Callable[..., Calls], proxy: TcpProxy
) -> None:
    handler = make_handler(proxy.address, connect_timeout=1, timeout=1)
    key = new_storage_id()
    handler.write(key, "before")
    proxy.cut()
    with pytest.raises(SessionBackendError) as caught:
        handler.read(key)
    assert caught.value.driver == "memcached"
    assert proxy.address in str(caught.value)
    proxy.start()
    assert handler.read(key) == "before"


def test_an_answer_cut_midway_fails_and_leaves_nothing_for_the_next_command(
    make_handler: Callable[..., Calls], proxy: TcpProxy
) -> None:
    handler = make_handler(proxy.address, connect_timeout=2, timeout=2)
    key, other = new_storage_id(), new_storage_id()
    big = "x" * 300_000
    handler.write(key, big)
    handler.write(other, "small")
    proxy.cut_replies(1)
    with pytest.raises(SessionBackendError) as caught:
        handler.read(key)
    assert "the server closed the connection" in str(caught.value)
    # A connection kept after that would hand the rest of the big value to this read.
    assert handler.read(other) == "small"
    assert handler.read(key) == big


def test_a_cancelled_command_leaves_no_answer_behind(
    memcached_connection: str, unique_prefix: str
) -> None:
    handler = AsyncMemcachedSessionHandler.from_config(
        SessionConfig(
            driver="memcached",
            connection=memcached_connection,
            prefix=unique_prefix,
            options={"max_pool_size": 1},
        )
    )
    key, other = new_storage_id(), new_storage_id()

    async def scenario() -> None:
        await handler.write(key, "x" * 300_000)
        await handler.write(other, "small")
        reading = asyncio.ensure_future(handler.read(key))
        await asyncio.sleep(0)  # sent, its answer not read yet
        reading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reading
        assert await handler.read(other) == "small"
        await handler.close()

    asyncio.run(scenario())


def test_a_failed_command_leaves_its_connection_unused(
    make_handler: Callable[..., Calls], own_memcached: tuple[str, Any]
) -> None:
    connection, _ = own_memcached
    handler = make_handler(connection)
    watcher = Client(_host_port(connection))
    key = new_storage_id()
    handler.write(key, "kept")  # one connection, now idle
    assert len(_idle_ports(handler.target.client)) == 1
    item_limit = int(watcher.stats("settings")[b"item_size_max"])
    watcher.close()
    with pytest.raises(SessionBackendError, match="too large"):
        # The server answers SERVER_ERROR (and drops that key's item).
        handler.write(new_storage_id(), "x" * (item_limit + 1))
    assert _idle_ports(handler.target.client) == []  # the failed command's connection was closed
    assert handler.read(key) == "kept"
    [second] = _idle_ports(handler.target.client)
    assert handler.read(key) == "kept"
    assert _idle_ports(handler.target.client) == [second]  # the reads opened one, then reused it


@pytest.mark.parametrize("kernel_timeouts", [True, False], ids=["kernel", "python"])
def test_a_silent_server_times_out_and_its_late_answer_reaches_no_one(
    own_memcached: tuple[str, Any],
    unique_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    kernel_timeouts: bool,
) -> None:
    """The sync client's form of the asyncio one's test in test_memcached_asyncio.py, with
    the kernel's socket timeouts and with Python's (where the kernel's cannot be set)."""
    monkeypatch.setattr(own_client, "_KERNEL_TIMEOUTS", kernel_timeouts)
    connection, process = own_memcached
    handler = _sync_handler(connection, unique_prefix, timeout=0.3)
    first, second = new_storage_id(), new_storage_id()
    handler.write(first, "first")
    [sock] = handler.client._idle
    assert sock.gettimeout() == (None if kernel_timeouts else 0.3)
    handler.write(second, "second")
    with frozen_process(process):
        with pytest.raises(SessionBackendError) as caught:
            handler.read(first)
        assert connection in str(caught.value)
        assert "0.3 seconds" in str(caught.value)
    time.sleep(0.1)  # the server answers the timed-out get now
    assert handler.read(second) == "second"
    handler.close()


def test_a_burst_of_threads_waits_for_the_pool_and_opens_no_more_connections(
    own_memcached: tuple[str, Any], unique_prefix: str
) -> None:
    connection, process = own_memcached
    handler = _sync_handler(connection, unique_prefix, max_pool_size=2, pool_timeout=30, timeout=30)
    keys = [new_storage_id() for _ in range(16)]
    found: dict[str, str] = {}

    # Every thread is running before the server thaws, so on a loaded machine too the
    # first two cannot finish and hand their connection on before the others ask.
    all_started = threading.Barrier(len(keys) + 1)

    def session(key: str) -> None:
        all_started.wait(timeout=30)
        for _ in range(10):
            handler.write(key, key)
            found[key] = handler.read(key)

    def burst() -> None:
        threads = [threading.Thread(target=session, args=(key,)) for key in keys]
        with frozen_process(process):
            for thread in threads:
                thread.start()
            all_started.wait(timeout=30)
            time.sleep(0.3)  # all have asked: two hold a connection, the rest wait for one
        for thread in threads:
            thread.join()

    assert peak_connections(connection, burst) == 2
    assert found == {key: key for key in keys}
    handler.close()


def test_a_forked_process_opens_connections_of_its_own(
    own_memcached: tuple[str, Any], unique_prefix: str
) -> None:
    connection, _ = own_memcached
    handler = _sync_handler(connection, unique_prefix)
    key = new_storage_id()
    handler.write(key, "parent")  # the parent's connection, kept idle
    [parent_socket] = handler.client._idle
    [parent_port] = _idle_ports(handler.client)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads around
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            if handler.read(key) == "parent" and handler.write(key + "c", "child"):
                # One connection of its own, used for both commands.
                ports = _idle_ports(handler.client)
                code = 0 if len(ports) == 1 and ports[0] != parent_port else 2
            handler.close()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # The parent's connection is still its own and still open: no new one is made.
    assert handler.read(key + "c") == "child"
    assert handler.client._idle == [parent_socket]
    handler.close()
