"""The global session helper: ``from satchel import session``.

Every middleware binds the request's :class:`satchel.Session` to a context
variable for the duration of the request, so any function called while
handling it (threads started by the framework and asyncio tasks included,
since both copy the context) reaches the same session. Outside a request the
proxy raises a ``RuntimeError`` that says so.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
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


def current_session() -> Session:
    """The session of the request being handled (``RuntimeError`` outside a request)."""
    found = _current.get()
    if found is None:
        raise RuntimeError(OUTSIDE_REQUEST)
    return found


def has_session() -> bool:
    """Whether a request's session is bound in the current context."""
    return _current.get() is not None


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
        found = _current.get()
        return f"<satchel.session proxy to {found!r}>" if found else "<satchel.session (unbound)>"


# Typed as a Session so editors and mypy see the whole API through the proxy.
session = cast("Session", SessionProxy())
