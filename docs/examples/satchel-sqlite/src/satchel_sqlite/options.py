"""The ``sqlite`` driver's settings, read from ``SessionConfig.options``."""

from __future__ import annotations

import attrs


@attrs.frozen(kw_only=True)
class SqliteOptions:
    """Settings of the ``sqlite`` driver (``SessionConfig.options``).

    Attributes:
        busy_timeout: Seconds a statement waits for another connection's write lock.
    """

    busy_timeout: float = attrs.field(default=5.0, validator=attrs.validators.gt(0))
