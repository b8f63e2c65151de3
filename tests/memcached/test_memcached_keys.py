"""Property tests: whatever id arrives, the memcached key is valid and names only that id."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from satchel_memcached import MemcachedSessionHandler, is_valid_key, key_id
from satchel_memcached.handler import MAX_PREFIX_BYTES

PREFIXES = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126),
    min_size=0,
    max_size=MAX_PREFIX_BYTES,
)


class _NoClient:
    """Stands in for a client: key naming never talks to the server."""


def _handler(prefix: str) -> MemcachedSessionHandler:
    return MemcachedSessionHandler(_NoClient(), lifetime_seconds=60, prefix=prefix)


@given(prefix=PREFIXES, session_id=st.text(max_size=400))
def test_every_id_gives_valid_session_and_lock_keys(prefix: str, session_id: str) -> None:
    handler = _handler(prefix)
    assert is_valid_key(handler._key(session_id))
    assert is_valid_key(handler._lock_key(session_id))
    assert handler._key(session_id) != handler._lock_key(session_id)


@given(first=st.text(max_size=300), second=st.text(max_size=300))
def test_distinct_ids_give_distinct_keys(first: str, second: str) -> None:
    if first != second:
        assert key_id(first) != key_id(second)


@given(session_id=st.text(max_size=300), other=st.text(max_size=300))
def test_a_session_key_is_never_a_lock_key(session_id: str, other: str) -> None:
    handler = _handler("satchel:")
    assert handler._key(session_id) != handler._lock_key(other)
