"""The global session helper: ``from satchel import session``.

The ASGI and WSGI middlewares bind the request's :class:`satchel.Session` to
a context variable while the application handles the request (its body
included), so any function called meanwhile (threads started by the
framework and asyncio tasks included, since both copy the context) reaches
the same session. A framework with a request context of its own (Flask)
adds a lookup instead (:func:`add_lookup`), so the helper follows that
context wherever the framework pushes it (``stream_with_context`` bodies,
say). Outside a request the proxy raises a ``RuntimeError`` that says so.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from satchel.store import Session

_current: contextvars.ContextVar[Session | None] = contextvars.ContextVar(
    "satchel_session", default=None
)

OUTSIDE_REQUEST = (
    "satchel.session is used outside a request: only code running while a satchel "
    "middleware (satchel.asgi, satchel.wsgi or satchel.flask) handles a request can reach it"
)


# Lookups a framework glue added: each returns the session of its own current request, or None.
_lookups: list[Callable[[], Session | None]] = []


def add_lookup(lookup: Callable[[], Session | None]) -> None:
    """Let a framework's request context supply the session when none is bound here.

    ``lookup`` returns the current request's session, or ``None`` outside
    one; it is asked only when the helper is used and no middleware bound a
    session, so it costs a request nothing.
    """
    if lookup not in _lookups:
        _lookups.append(lookup)


def _find() -> Session | None:
    found = _current.get()
    if found is None:
        for lookup in _lookups:
            found = lookup()
            if found is not None:
                break
    return found


def current_session() -> Session:
    """The session of the request being handled (``RuntimeError`` outside a request)."""
    found = _find()
    if found is None:
        raise RuntimeError(OUTSIDE_REQUEST)
    return found


def has_session() -> bool:
    """Whether a request's session is reachable in the current context."""
    return _find() is not None


#: The context variable :func:`bind` sets. Glue that binds and unbinds within one call of
#: its own (so in one context) may call its ``set`` and ``reset`` directly.
BOUND_SESSION = _current


def bind(session: Session | None) -> contextvars.Token[Session | None]:
    """Make ``session`` the current one; give the token to :func:`unbind` afterwards."""
    return _current.set(session)


def unbind(token: contextvars.Token[Session | None]) -> None:
    """Undo :func:`bind` (from another context it simply clears the binding)."""
    try:
        _current.reset(token)
    except ValueError:
        # The server finished the request in a copy of the context (a WSGI
        # body closed from elsewhere); the binding must not outlive it anyway.
        _current.set(None)


class SessionProxy:
    """Stands for the current request's session: attribute, item and ``in`` access are forwarded."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        return getattr(current_session(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(current_session(), name, value)

    def __getitem__(self, key: str) -> Any:
        return current_session()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        current_session()[key] = value

    def __delitem__(self, key: str) -> None:
        del current_session()[key]

    def __contains__(self, key: object) -> bool:
        return key in current_session()

    def __iter__(self) -> Iterator[str]:
        return iter(current_session())

    def __len__(self) -> int:
        return len(current_session())

    def __bool__(self) -> bool:
        return bool(current_session())

    def __eq__(self, other: object) -> bool:
        return current_session() == other

    __hash__ = None  # type: ignore[assignment]  # as the mapping it stands for

    def __repr__(self) -> str:
        found = _find()
        return f"<satchel.session proxy to {found!r}>" if found else "<satchel.session (unbound)>"


# Typed as a Session so editors and mypy see the whole API through the proxy.
session = cast("Session", SessionProxy())
