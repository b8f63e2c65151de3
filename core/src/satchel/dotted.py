"""Laravel's ``Arr`` helpers on session data: dotted paths through mappings and lists.

``get("user.teams.0")`` reads through nested mappings and list indexes;
``put``, ``forget`` and ``has`` follow the same rules (Laravel's
``Arr::get``, ``Arr::set``, ``Arr::forget``): the literal key first, then the
dotted path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

MISSING: Any = object()
"""What :func:`lookup` returns for a path that leads nowhere."""


def keys_of(keys: str | Iterable[str]) -> list[str]:
    """One key or several, as a list."""
    return [keys] if isinstance(keys, str) else list(keys)


def append_unique(target: list[str], names: Iterable[str]) -> None:
    """Append each of ``names`` not already in ``target``."""
    for name in names:
        if name not in target:
            target.append(name)


def list_index(segment: str) -> int | None:
    """The list index a dot-notation segment names, or ``None`` when it names none.

    Only a canonical non-negative integer is an index (``"0"``, ``"12"``; not
    ``"01"``, ``"-1"`` or non-ASCII digits), as PHP turns only those into
    integer array keys.
    """
    if segment.isascii() and segment.isdigit() and (segment == "0" or segment[0] != "0"):
        return int(segment)
    return None


def child(container: Any, segment: str) -> Any:
    """One step of a dotted path: a mapping's key or a list's index (``MISSING`` if absent)."""
    if type(container) is dict or isinstance(container, Mapping):  # an ABC's check is slow
        return container.get(segment, MISSING)
    if isinstance(container, (list, tuple)):
        index = list_index(segment)
        if index is not None and index < len(container):
            return container[index]  # Laravel's Arr::get indexes lists too
    return MISSING


def lookup(values: Mapping[str, Any], key: str) -> Any:
    """Laravel's ``Arr::get``: the literal key first, then the dotted path."""
    if key in values:
        return values[key]
    current: Any = values
    for segment in key.split("."):
        # Session data is plain dicts: the common step needs no call to child().
        current = (
            current.get(segment, MISSING) if type(current) is dict else child(current, segment)
        )
        if current is MISSING:
            break
    return current


def _set_slot(
    container: dict[str, Any] | list[Any] | tuple[Any, ...],
    segment: str,
    value: Any,
    *,
    key: str,
    where: str,
) -> None:
    """Set ``segment`` of a mapping, or the index it names of a list (``where`` is its path)."""
    if isinstance(container, dict):
        container[segment] = value
        return
    if isinstance(container, tuple):
        raise _unchangeable(where, key)
    index = list_index(segment)
    if index is None:
        raise TypeError(f"session value {where!r} is a list: {key!r} names no index in it")
    if index > len(container):
        raise IndexError(
            f"{key!r} is past the end of the session list {where!r} ({len(container)} items)"
        )
    if index == len(container):
        container.append(value)
    else:
        container[index] = value


def assign(values: dict[str, Any], key: str, value: Any) -> None:
    """Laravel's ``Arr::set``: create nested mappings along a dotted path.

    Anything on the path that is neither a mapping nor a list is replaced by
    a mapping, as Laravel does. A list is indexed, as ``get`` reads it: an
    index in range is replaced and the index one past the end appends; any
    other segment raises (``TypeError``, or ``IndexError`` past the end)
    rather than replacing the list with a mapping. The error comes before any
    change: nothing is created until the path's last list is passed.
    """
    if "." not in key:
        values[key] = value  # a top-level key: the common case
        return
    segments = key.split(".")
    current: dict[str, Any] | list[Any] | tuple[Any, ...] = values
    for depth, segment in enumerate(segments[:-1]):
        found = child(current, segment)
        if not isinstance(found, (dict, list, tuple)):
            found = {}
            _set_slot(current, segment, found, key=key, where=".".join(segments[:depth]))
        current = found
    _set_slot(current, segments[-1], value, key=key, where=".".join(segments[:-1]))


def forget(values: dict[str, Any], key: str) -> None:
    """Laravel's ``Arr::forget``: the literal key first, then the dotted path.

    An index in range of a list removes that element (later ones move up);
    a path that leads nowhere does nothing.
    """
    if key in values:
        del values[key]
        return
    segments = key.split(".")
    current: Any = values
    for segment in segments[:-1]:
        current = child(current, segment)
        if current is MISSING or current is None:
            return
    leaf = segments[-1]
    if isinstance(current, dict):
        current.pop(leaf, None)
    elif isinstance(current, (list, tuple)) and child(current, leaf) is not MISSING:
        if isinstance(current, tuple):
            raise _unchangeable(".".join(segments[:-1]), key)
        del current[int(leaf)]


def _unchangeable(where: str, key: str) -> TypeError:
    return TypeError(f"session value {where!r} is a tuple, which {key!r} cannot change in place")
