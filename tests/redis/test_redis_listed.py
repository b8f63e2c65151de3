"""``satchel drivers`` lists the redis driver, from its distribution, with nothing failed."""

from __future__ import annotations

import subprocess

from satchel.testing.plugin import check_driver_listed


def test_satchel_drivers_lists_redis(
    satchel_drivers_listing: subprocess.CompletedProcess[str],
) -> None:
    check_driver_listed(satchel_drivers_listing, "redis", "satchel-redis", twin=True)
