"""``satchel.toolkit``: the helpers every driver, built-in or third-party, builds on."""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from typing import Any

import pytest

from satchel import ConfigError, LockTimeout, PoolExhausted, SessionBackendError, SessionConfig
from satchel.drivers import ArraySessionHandler
from satchel.toolkit import (
    AsyncTokenLock,
    StoreErrors,
    ThreadedAsyncHandler,
    TokenLock,
    decode_payload,
    describe_error,
    format_hosts,
    lazy_factory,
    parse_hosts,
    redact_url,
    require_modules,
    threaded_twin,
)


class LockStore:
    """A lock record per name, as a store keeps it: token and expiry, released by token only."""

    def __init__(self) -> None:
        self.records: dict[str, tuple[str, float]] = {}
        self.fail_after_claim = False  # the claim lands but its reply is "lost"
        self.releases = 0

    def try_acquire(self, token: str, lock_seconds: float = 10) -> bool:
        held = self.records.get("lock")
        if held is not None and held[1] > time.monotonic():
            return False
        self.records["lock"] = (token, time.monotonic() + lock_seconds)
        if self.fail_after_claim:
            raise ConnectionError("the reply was lost")
        return True

    def release(self, token: str) -> None:
        self.releases += 1
        if self.records.get("lock", ("", 0))[0] == token:
            del self.records["lock"]

    def lock(self, wait_seconds: float = 0) -> TokenLock:
        return TokenLock(
            self.try_acquire, self.release, wait_seconds=wait_seconds, description="a test session"
        )

    def async_lock(self, wait_seconds: float = 0) -> AsyncTokenLock:
        async def try_acquire(token: str) -> bool:
            return self.try_acquire(token)

        async def release(token: str) -> None:
            await asyncio.sleep(0.05)  # a round trip: time for a cancellation to arrive
            self.release(token)

        return AsyncTokenLock(
            try_acquire, release, wait_seconds=wait_seconds, description="a test session"
        )


def test_a_token_lock_excludes_and_is_released_after_the_block() -> None:
    store = LockStore()
    expected = "could not lock a test session within 0 seconds"
    with store.lock(), pytest.raises(LockTimeout, match=expected):
        store.lock().__enter__()
    assert store.records == {}


def test_a_token_lock_is_released_when_the_block_raises() -> None:
    store = LockStore()
    with pytest.raises(KeyError), store.lock():
        raise KeyError("boom")
    assert store.records == {}


def test_an_abandoned_lock_is_not_released_by_the_garbage_collector() -> None:
    store = LockStore()
    lock = store.lock()
    lock.__enter__()
    del lock
    gc.collect()
    # Released only by its holder's exit: an abandoned lock expires, like a dead holder's.
    assert "lock" in store.records
    assert store.releases == 0


def test_an_attempt_that_took_the_lock_and_then_failed_releases_it() -> None:
    store = LockStore()
    store.fail_after_claim = True
    with pytest.raises(ConnectionError):
        store.lock().__enter__()
    assert store.records == {}  # not held until it expires


def test_a_lock_that_timed_out_releases_nothing() -> None:
    store = LockStore()
    with store.lock():
        with pytest.raises(LockTimeout):
            store.lock(wait_seconds=0.1).__enter__()
        assert "lock" in store.records
    assert store.releases == 1


def test_a_failing_release_after_a_failing_block_keeps_the_block_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def refuse(token: str) -> None:
        raise SessionBackendError("test", "nowhere", "release failed")

    lock = TokenLock(lambda token: True, refuse, wait_seconds=0, description="a test session")
    with pytest.raises(KeyError), lock:
        raise KeyError("the block's own error")
    assert "could not release the lock of a test session" in caplog.text
    with pytest.raises(SessionBackendError), lock:
        pass  # a block that succeeded: the release's failure is the error


def test_an_async_token_lock_excludes_and_releases() -> None:
    store = LockStore()

    async def main() -> None:
        async with store.async_lock():
            with pytest.raises(LockTimeout):
                await store.async_lock().__aenter__()
        assert store.records == {}

    asyncio.run(main())


def test_a_cancelled_request_still_releases_its_async_lock() -> None:
    store = LockStore()

    async def holder(entered: asyncio.Event) -> None:
        async with store.async_lock():
            entered.set()
            await asyncio.sleep(10)

    async def main() -> None:
        entered = asyncio.Event()
        task = asyncio.create_task(holder(entered))
        await entered.wait()
        task.cancel()  # in the block
        await asyncio.sleep(0.01)
        task.cancel()  # again, during the release (as anyio's cancel scopes do)
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.1)
        assert store.records == {}

    asyncio.run(main())


def test_an_async_attempt_that_took_the_lock_and_then_failed_releases_it() -> None:
    store = LockStore()
    store.fail_after_claim = True

    async def main() -> None:
        with pytest.raises(ConnectionError):
            await store.async_lock().__aenter__()

    asyncio.run(main())
    assert store.records == {}


def test_an_abandoned_async_lock_is_not_released_by_the_garbage_collector() -> None:
    store = LockStore()

    async def main() -> None:
        lock = store.async_lock()
        await lock.__aenter__()
        del lock
        gc.collect()
        await asyncio.sleep(0.1)

    asyncio.run(main())
    assert "lock" in store.records


class ClientError(Exception):
    """A client library's error."""


class PoolEmpty(ClientError):
    """The client's pool had no connection."""


def test_store_errors_name_the_driver_and_address() -> None:
    errors = StoreErrors("acme", "acme://db1:9000", (ClientError, OSError))
    with pytest.raises(SessionBackendError) as info, errors:
        raise ClientError("connection refused\nsecond line")
    assert str(info.value) == (
        "session driver 'acme' at acme://db1:9000: ClientError: connection refused"
    )
    assert isinstance(info.value.__cause__, ClientError)
    with (
        pytest.raises(SessionBackendError, match="GET failed: OSError: down"),
        errors.action("GET"),
    ):
        raise OSError("down")
    with pytest.raises(KeyError), errors:  # not a store failure: a bug, as it is
        raise KeyError("x")


def test_store_errors_make_a_busy_pool_pool_exhausted() -> None:
    errors = StoreErrors("acme", "db1", (ClientError,), busy=lambda exc: isinstance(exc, PoolEmpty))
    with pytest.raises(PoolExhausted), errors:
        raise PoolEmpty("no connection")
    error = errors.error(ClientError("x"), "SET")
    assert type(error) is SessionBackendError
    assert str(error).endswith("SET failed: ClientError: x")


def test_describe_error_hides_secrets_and_keeps_one_short_line() -> None:
    assert describe_error(ValueError("bad password hunter2 for app"), hide=["hunter2"]) == (
        "ValueError: bad password *** for app"
    )
    assert describe_error(ValueError("")) == "ValueError"
    assert len(describe_error(ValueError("x" * 1000))) < 320


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://app:secret@cache:6379/0?ssl_password=x", "redis://cache:6379/0"),
        ("mongodb://u:p@ss@m1,m2/?replicaSet=rs0", "mongodb://m1,m2/"),
        ("postgresql+psycopg://user:pw@db/app", "postgresql+psycopg://db/app"),
        ("sqlite:///sessions.db", "sqlite:///sessions.db"),
        ("user:pw@host:11211", "host:11211"),
    ],
)
def test_redact_url_keeps_no_credentials(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    ("text", "hosts"),
    [
        ("cache", (("cache", 11211),)),
        ("cache:1", (("cache", 1),)),
        ("a:1, b ,[::1]:2", (("a", 1), ("b", 11211), ("::1", 2))),
        ("::1", (("::1", 11211),)),
        ("[fe80::1]", (("fe80::1", 11211),)),
    ],
)
def test_parse_hosts(text: str, hosts: tuple[tuple[str, int], ...]) -> None:
    assert parse_hosts(text, default_port=11211) == hosts
    assert parse_hosts(format_hosts(hosts), default_port=1) == hosts


@pytest.mark.parametrize(
    "text", ["", " , ", "a:x", "a:0", "a:65536", "bad host:1", "a/b:1", "u@h:1", "[::1]x"]
)
def test_parse_hosts_refuses_what_is_no_host_list(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_hosts(text, default_port=1, key="connection")
    assert info.value.key == "connection"


@pytest.mark.parametrize(
    ("value", "payload"),
    [
        (None, ""),
        ("text", "text"),
        (b"caf\xc3\xa9", "café"),
        (bytearray(b"x"), "x"),
        (memoryview(b"y"), "y"),
        (b"\xff\xfe", ""),
        (42, ""),
    ],
)
def test_decode_payload(value: object, payload: str) -> None:
    assert decode_payload(value) == payload


def test_lazy_factory_imports_its_target_on_first_use_only() -> None:
    sys.modules.pop("json.tool", None)
    factory = lazy_factory("json.tool:main.__call__")
    assert "json.tool" not in sys.modules
    with pytest.raises(TypeError):
        factory(SessionConfig())  # json.tool.main takes no config: it was called
    assert "json.tool" in sys.modules
    with pytest.raises(ValueError, match=r"package\.module:attribute"):
        lazy_factory("satchel.drivers.array.ArraySessionHandler")


def test_lazy_factory_builds_the_handler() -> None:
    factory = lazy_factory("satchel.drivers.array:ArraySessionHandler.from_config")
    assert isinstance(factory(SessionConfig(driver="array")), ArraySessionHandler)


def test_require_modules_names_what_is_missing_and_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    require_modules("json", "asyncio", install="nothing")
    monkeypatch.setitem(sys.modules, "acme_client", None)
    with pytest.raises(ImportError) as info:
        require_modules("json", "acme_client", install='pip install "acme-sessions"')
    assert str(info.value) == (
        "the Python module 'acme_client' is not installed; install it with: "
        'pip install "acme-sessions"'
    )
    assert info.value.name == "acme_client"
    with pytest.raises(ImportError, match="modules 'no_such_module_1', 'no_such_module_2' are"):
        require_modules("no_such_module_1", "no_such_module_2", install="x")


def test_threaded_twin_runs_the_sync_handler_in_threads() -> None:
    twin = threaded_twin(ArraySessionHandler.from_config)(SessionConfig(driver="array"))
    assert isinstance(twin, ThreadedAsyncHandler)

    async def main() -> Any:
        await twin.write("a" * 64, "payload")
        return await twin.read("a" * 64)

    assert asyncio.run(main()) == "payload"
    assert hasattr(twin, "lock")  # the capabilities carry over
