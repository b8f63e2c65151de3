"""``satchel.pooling``: bounded waits for a pooled connection, sync and asyncio."""

from __future__ import annotations

import asyncio
import threading

import pytest

from satchel import PoolExhausted, SessionBackendError, SessionBusy
from satchel.pooling import AsyncConnectionSlots, ConnectionSlots

SETTINGS = {"driver": "redis", "address": "redis://127.0.0.1:6379/0"}


def test_a_full_set_of_slots_makes_the_next_command_wait_then_fail() -> None:
    slots = ConnectionSlots(size=2, timeout=0.1, **SETTINGS)
    with slots, slots, pytest.raises(PoolExhausted) as caught, slots:
        pass
    error = caught.value
    assert isinstance(error, SessionBusy)
    assert isinstance(error, SessionBackendError)
    assert error.driver == "redis"
    assert "redis://127.0.0.1:6379/0" in str(error)
    assert "all 2 were in use" in str(error)
    with slots, slots:  # every slot came back, the failed wait's included
        pass


def test_a_slot_freed_while_a_thread_waits_goes_to_it() -> None:
    slots = ConnectionSlots(size=1, timeout=10, **SETTINGS)
    got: list[bool] = []
    slots.__enter__()
    waiter = threading.Thread(target=lambda: got.append(slots.__enter__() is None))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive()
    slots.__exit__(None, None, None)
    waiter.join(10)
    assert got == [True]


@pytest.mark.parametrize("slots", [ConnectionSlots, AsyncConnectionSlots])
def test_the_size_must_be_positive(slots: type[ConnectionSlots | AsyncConnectionSlots]) -> None:
    with pytest.raises(ValueError, match="size"):
        slots(size=0, timeout=1, **SETTINGS)


def test_async_waiters_are_served_in_order_and_time_out() -> None:
    async def scenario() -> list[str]:
        slots = AsyncConnectionSlots(size=1, timeout=10, **SETTINGS)
        served: list[str] = []

        async def command(name: str) -> None:
            async with slots:
                served.append(name)
                await asyncio.sleep(0.01)

        await asyncio.gather(*(command(str(index)) for index in range(5)))
        impatient = AsyncConnectionSlots(size=1, timeout=0.05, **SETTINGS)
        async with impatient:
            with pytest.raises(PoolExhausted):
                async with impatient:
                    pass
        async with impatient:  # the expired waiter took no slot with it
            pass
        return served

    assert asyncio.run(scenario()) == ["0", "1", "2", "3", "4"]


def test_an_async_waiter_cancelled_as_it_is_handed_the_slot_passes_it_on() -> None:
    async def scenario() -> None:
        slots = AsyncConnectionSlots(size=1, timeout=10, **SETTINGS)
        await slots.__aenter__()
        first = asyncio.ensure_future(slots.__aenter__())
        second = asyncio.ensure_future(slots.__aenter__())
        await asyncio.sleep(0)  # both wait now
        await slots.__aexit__(None, None, None)  # hands the slot to the first waiter...
        first.cancel()  # ...which is cancelled before it resumes
        await asyncio.gather(first, return_exceptions=True)
        await asyncio.wait_for(second, 1)  # the slot went on to the next waiter
        await slots.__aexit__(None, None, None)
        await asyncio.wait_for(slots.__aenter__(), 1)  # and came back after it

    asyncio.run(scenario())
