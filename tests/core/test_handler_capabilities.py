"""``satchel.handler.supports``: the protocol checks core makes on every request, remembered."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from satchel.drivers import ArraySessionHandler, NullSessionHandler
from satchel.handler import SupportsLock, SupportsMetadata, SupportsWriteExisting, supports
from satchel.threaded import ThreadedAsyncHandler


def test_supports_answers_as_isinstance_does() -> None:
    for handler in (ArraySessionHandler(lifetime_seconds=60), NullSessionHandler()):
        for capability in (SupportsLock, SupportsMetadata, SupportsWriteExisting):
            assert supports(handler, capability) is isinstance(handler, capability)
            assert supports(handler, capability) is isinstance(handler, capability)  # cached


def test_a_class_making_attributes_up_is_asked_each_time() -> None:
    class Chameleon:
        can_lock = False

        def __getattr__(self, name: str) -> Any:
            if name == "lock" and self.can_lock:

                @contextlib.contextmanager
                def lock(session_id: str, **_: float) -> Iterator[None]:
                    yield

                return lock
            raise AttributeError(name)

    handler = Chameleon()
    assert not supports(handler, SupportsLock)
    handler.can_lock = True
    assert supports(handler, SupportsLock)


def test_the_threaded_twin_carries_its_handlers_capabilities() -> None:
    assert supports(ThreadedAsyncHandler(ArraySessionHandler(lifetime_seconds=60)), SupportsLock)
    assert not supports(ThreadedAsyncHandler(NullSessionHandler()), SupportsLock)
