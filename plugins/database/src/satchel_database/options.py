"""The database driver's own settings, read from ``SessionConfig.options``."""

from __future__ import annotations

import attrs

from satchel import ConfigError, SessionConfig

DRIVER_NAME = "database"


def _positive(instance: object, attribute: attrs.Attribute[object], value: float | None) -> None:
    if value is not None and not value > 0:
        raise ConfigError(f"options.{attribute.name}", f"must be greater than 0, got {value!r}")


def _not_negative(instance: object, attribute: attrs.Attribute[object], value: int | None) -> None:
    if value is not None and value < 0:
        raise ConfigError(f"options.{attribute.name}", f"must not be negative, got {value!r}")


@attrs.frozen(kw_only=True)
class DatabaseOptions:
    """Settings of the ``database`` driver (``SessionConfig.options``).

    Attributes:
        user_key: The session value whose content goes into the ``user_id``
            column, so ``satchel sessions --user ID`` can find a user's sessions.
        user_agent_max_length: ``User-Agent`` headers are cut to this many
            characters before they are stored.
        gc_batch_size: Rows deleted per statement by ``gc``; each batch is its
            own short transaction, so pruning never holds a long lock.
        connect_timeout: Seconds to wait for a new connection before the
            store counts as down.
        pool_size: Connections kept open per process (SQLAlchemy's default when unset).
        max_overflow: Extra connections allowed above ``pool_size`` under load.
        pool_timeout: Seconds to wait for a free pooled connection.
        pool_recycle: Seconds after which a pooled connection is replaced
            (servers close idle connections; MySQL after 8 hours by default).
        pool_pre_ping: Check a pooled connection before use, so a restarted
            server costs one reconnect rather than one failed request.
        write_retries: Extra attempts of a write the server aborted as a
            deadlock or serialisation failure (concurrent first writes of one id).
    """

    user_key: str = "user_id"
    user_agent_max_length: int = attrs.field(default=500, validator=_positive)
    gc_batch_size: int = attrs.field(default=5000, validator=_positive)
    connect_timeout: float = attrs.field(default=10.0, validator=_positive)
    pool_size: int | None = attrs.field(default=None, validator=_positive)
    max_overflow: int | None = attrs.field(default=None, validator=_not_negative)
    pool_timeout: float | None = attrs.field(default=None, validator=_positive)
    pool_recycle: int | None = attrs.field(default=3600, validator=_positive)
    pool_pre_ping: bool = True
    write_retries: int = attrs.field(default=3, validator=_not_negative)

    @classmethod
    def from_config(cls, config: SessionConfig) -> DatabaseOptions:
        """The options of ``config``; an unknown or bad one is a ``ConfigError`` naming it."""
        return config.structure_options(cls, driver=DRIVER_NAME)
