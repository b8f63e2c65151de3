"""Shared pieces for drivers that implement session locks."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable

from satchel.errors import LockTimeout

POLL_SECONDS = 0.05  # Laravel polls its cache lock every 50 ms as well


def new_lock_token() -> str:
    """A random token naming one holder of a lock, so only it can release it."""
    return secrets.token_hex(16)


def wait_for_lock(
    try_acquire: Callable[[], bool], *, wait_seconds: float, description: str
) -> None:
    """Call ``try_acquire`` until it returns True or ``wait_seconds`` run out (``LockTimeout``)."""
    deadline = time.monotonic() + wait_seconds
    while not try_acquire():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise LockTimeout(f"could not lock {description} within {wait_seconds:g} seconds")
        time.sleep(min(POLL_SECONDS, remaining))


async def await_lock(
    try_acquire: Callable[[], Awaitable[bool]], *, wait_seconds: float, description: str
) -> None:
    """The async form of :func:`wait_for_lock`."""
    deadline = time.monotonic() + wait_seconds
    while not await try_acquire():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise LockTimeout(f"could not lock {description} within {wait_seconds:g} seconds")
        await asyncio.sleep(min(POLL_SECONDS, remaining))
