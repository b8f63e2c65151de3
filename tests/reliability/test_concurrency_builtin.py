"""40 overlapping requests of one session through WSGI and ASGI, on the built-in drivers.

With ``block = true`` every increment survives; with ``merge_on_save`` every
request's own key survives. The control cases show the same load loses writes
without either, so these tests can fail.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from satchel import ConfigError, SessionConfig, SessionManager
from satchel.testing.concurrency import concurrent_distinct_keys, concurrent_increments

REQUESTS = 40
VIAS = ["wsgi", "asgi"]
DRIVERS = ["file", "array"]


def manager_for(driver: str, tmp_path: Path, **config: object) -> SessionManager:
    return SessionManager(
        SessionConfig.from_dict(
            {"driver": driver, "files": str(tmp_path / "sessions"), "lottery": [0, 1], **config}
        )
    )


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize("driver", DRIVERS)
def test_blocking_keeps_every_increment(tmp_path: Path, driver: str, via: str) -> None:
    manager = manager_for(driver, tmp_path, block=True)
    assert concurrent_increments(manager, via=via, requests=REQUESTS) == REQUESTS  # type: ignore[arg-type]


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize("driver", DRIVERS)
def test_without_blocking_increments_are_lost(tmp_path: Path, driver: str, via: str) -> None:
    manager = manager_for(driver, tmp_path)
    count = concurrent_increments(manager, via=via, requests=REQUESTS, block=False)  # type: ignore[arg-type]
    assert count < REQUESTS


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize("driver", DRIVERS)
def test_merge_on_save_keeps_every_key(tmp_path: Path, driver: str, via: str) -> None:
    manager = manager_for(driver, tmp_path, merge_on_save=True)
    keys = concurrent_distinct_keys(manager, via=via, requests=REQUESTS)  # type: ignore[arg-type]
    assert keys == {f"key{index}" for index in range(REQUESTS)}


@pytest.mark.parametrize("via", VIAS)
def test_without_merging_keys_are_lost(tmp_path: Path, via: str) -> None:
    manager = manager_for("file", tmp_path)
    keys = concurrent_distinct_keys(manager, via=via, requests=REQUESTS)  # type: ignore[arg-type]
    assert len(keys) < REQUESTS


def test_merge_on_save_needs_a_driver_that_can_lock(tmp_path: Path) -> None:
    manager = manager_for("null", tmp_path, merge_on_save=True)
    with pytest.raises(ConfigError, match=r"merge_on_save.*'null'"):
        manager.start(None)
