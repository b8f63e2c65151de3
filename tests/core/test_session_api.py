"""Every ``Session`` method, with Laravel's semantics.

A request here is ``session = manager.start(cookie)``, some work, ``session.save()``;
the next request starts with ``session.cookie_value()`` as its cookie.
"""

from __future__ import annotations

import dataclasses
import decimal
import string
from collections.abc import Callable
from typing import Any

import attrs
import pytest

from satchel import SaveOutcome, SessionManager
from satchel.store import Session

NextRequest = Callable[[SessionManager, Session], Session]
ALNUM = set(string.ascii_letters + string.digits)


@attrs.define
class Item:
    sku: str
    qty: int


@attrs.define
class Cart:
    items: list[Item]
    total: decimal.Decimal
    tags: set[str] = attrs.field(factory=set)


@dataclasses.dataclass
class Address:
    street: str
    zip_code: str
    lines: tuple[str, ...] = ()


def test_fresh_session_is_empty(manager: SessionManager) -> None:
    session = manager.start(None)
    assert len(session) == 0
    assert session.all() == {}
    assert list(session) == []
    assert session.new


# -- get -------------------------------------------------------------------------


def test_get_with_dot_notation(manager: SessionManager, next_request: NextRequest) -> None:
    session = manager.start(None)
    session.put("user", {"name": "ada", "teams": ["core"]})
    assert session.get("user.teams") == ["core"]
    assert session.get("user.name") == "ada"
    session = next_request(manager, session)
    assert session.get("user.teams") == ["core"]
    assert session.get("user.missing") is None
    assert session.get("user.name.deeper", "dflt") == "dflt"
    assert session.get("nope.nope", 5) == 5


def test_get_prefers_a_literal_dotted_key(
    manager: SessionManager, next_request: NextRequest
) -> None:
    session = manager.start(None)
    session["a.b"] = "literal"  # the mapping interface keeps keys as they are
    session.put("a", {"b": "nested"})
    assert session.get("a.b") == "literal"
    session = next_request(manager, session)
    assert session.get("a.b") == "literal"
    del session["a.b"]
    assert session.get("a.b") == "nested"


def test_get_default_and_callable_default(manager: SessionManager) -> None:
    session = manager.start(None)
    assert session.get("missing") is None
    assert session.get("missing", 3) == 3
    calls: list[int] = []

    def default() -> str:
        calls.append(1)
        return "computed"

    assert session.get("missing", default) == "computed"
    assert calls == [1]
    session.put("present", "x")
    assert session.get("present", default) == "x"
    assert calls == [1]  # not called when the key is present


def test_get_none_value_is_returned_not_default(manager: SessionManager) -> None:
    session = manager.start(None)
    session.put("k", None)
    assert session.get("k", "dflt") is None


def test_get_typed_attrs_class_after_reload(
    manager: SessionManager, next_request: NextRequest
) -> None:
    cart = Cart(
        items=[Item("a-1", 2), Item("b-2", 1)], total=decimal.Decimal("12.50"), tags={"x", "y"}
    )
    session = manager.start(None)
    session.put("cart", cart)
    session = next_request(manager, session)
    raw = session.get("cart")
    assert isinstance(raw, dict)  # read back as a mapping without a type
    typed = session.get("cart", type=Cart)
    assert isinstance(typed, Cart)
    assert typed == cart
    assert isinstance(typed.items[0], Item)
    assert isinstance(typed.total, decimal.Decimal)
    assert session.get("absent", type=Cart) is None


def test_get_typed_dataclass_after_reload(
    manager: SessionManager, next_request: NextRequest
) -> None:
    address = Address("1 Main St", "75001", ("flat 2", "floor 3"))
    session = manager.start(None)
    session.put("address", address)
    session = next_request(manager, session)
    typed = session.get("address", type=Address)
    assert isinstance(typed, Address)
    assert typed == address
    assert typed.lines == ("flat 2", "floor 3")


def test_get_dot_notation_indexes_lists_like_laravel(manager: SessionManager) -> None:
    session = manager.start(None)
    session.put("user.teams", ["core", "docs"])
    assert session.get("user.teams.1") == "docs"
    assert session.get("user.teams.01") is None  # PHP: "01" is a string key, not index 1
    assert session.get("user.teams.2") is None


# -- dot notation on lists: put and forget act on the index get reads ------------------------------


def test_put_on_a_list_index_replaces_that_element(
    manager: SessionManager, next_request: NextRequest
) -> None:
    session = manager.start(None)
    session.put("user.teams", ["core", "docs"])
    session.put("user.teams.0", "web")
    assert session.get("user") == {"teams": ["web", "docs"]}
    session = next_request(manager, session)
    assert session.get("user.teams") == ["web", "docs"]


def test_put_one_past_the_end_of_a_list_appends(manager: SessionManager) -> None:
    session = manager.start(None)
    session.put("user.teams", ["core"])
    session.put("user.teams.1", "docs")
    assert session.get("user.teams") == ["core", "docs"]


def test_put_through_a_list_element(manager: SessionManager) -> None:
    session = manager.start(None)
    session.put("rows", [{"id": 1}, "scalar"])
    session.put("rows.0.name", "ada")  # into the mapping at index 0
    session.put("rows.1.name", "bob")  # a scalar on the path is replaced by a mapping
    session.put("rows.2.name", "cy")  # one past the end: a new mapping is appended
    assert session.get("rows") == [{"id": 1, "name": "ada"}, {"name": "bob"}, {"name": "cy"}]
    session.put("grid", [[1, 2], [3]])
    session.put("grid.1.1", 4)
    assert session.get("grid") == [[1, 2], [3, 4]]


@pytest.mark.parametrize(
    ("key", "error"),
    [
        ("user.teams.5", IndexError),  # past the end
        ("user.teams.lead", TypeError),  # not an index
        ("user.teams.01", TypeError),  # not canonical
        ("user.teams.-1", TypeError),
        ("user.teams.5.name", IndexError),  # deeper: nothing is created on the way
    ],
)
def test_put_never_replaces_a_list_with_a_mapping(
    manager: SessionManager, key: str, error: type[Exception]
) -> None:
    session = manager.start(None)
    session.put("user.teams", ["core", "docs"])
    with pytest.raises(error, match=r"'user\.teams'"):
        session.put(key, "x")
    assert session.get("user") == {"teams": ["core", "docs"]}


def test_put_and_forget_cannot_change_a_tuple_in_place(manager: SessionManager) -> None:
    session = manager.start(None)
    session.put("pair", ("a", {"b": 1}))
    with pytest.raises(TypeError, match="'pair' is a tuple"):
        session.put("pair.0", "z")
    with pytest.raises(TypeError, match="'pair' is a tuple"):
        session.forget("pair.0")
    session.put("pair.1.c", 2)  # the mapping inside the tuple can change
    assert session.get("pair") == ("a", {"b": 1, "c": 2})


def test_forget_a_list_index_removes_that_element(
    manager: SessionManager, next_request: NextRequest
) -> None:
    session = manager.start(None)
    session.put("user.teams", ["core", "docs", "web"])
    session.forget("user.teams.0")
    assert session.get("user.teams") == ["docs", "web"]
    session.forget(["user.teams.5", "user.teams.lead", "user.teams.1.x"])  # nothing there
    assert session.get("user.teams") == ["docs", "web"]
    session.put("rows", [{"id": 1, "name": "ada"}])
    session.forget("rows.0.name")
    assert session.get("rows") == [{"id": 1}]
    session = next_request(manager, session)
    assert session.all() == {"user": {"teams": ["docs", "web"]}, "rows": [{"id": 1}]}


def test_pull_a_list_index(manager: SessionManager) -> None:
    session = manager.start(None)
    session.put("queue", ["first", "second"])
    assert session.pull("queue.0") == "first"
    assert session.get("queue") == ["second"]


# -- put ---------------------------------------------------------------------------


def test_put_one_and_mapping(manager: SessionManager, next_request: NextRequest) -> None:
    session = manager.start(None)
    session.put("key", "value")
    session.put({"a": 1, "user.name": "ada", "user.role": "admin"})
    assert session.all() == {"key": "value", "a": 1, "user": {"name": "ada", "role": "admin"}}
    session = next_request(manager, session)
    assert session.all() == {"key": "value", "a": 1, "user": {"name": "ada", "role": "admin"}}
    assert "user.name" not in session  # the dotted key was expanded, not stored literally


def test_put_dotted_replaces_a_non_mapping_on_the_path(manager: SessionManager) -> None:
    session = manager.start(None)
    session.put("a", "scalar")
    session.put("a.b", 1)
    assert session.get("a") == {"b": 1}
    session.put("a.c", 2)
    assert session.get("a") == {"b": 1, "c": 2}


def test_put_mapping_refuses_non_string_keys(manager: SessionManager) -> None:
    session = manager.start(None)
    with pytest.raises(TypeError):
        session.put({1: "x"})  # type: ignore[dict-item]


# -- push / pull -------------------------------------------------------------------------


def test_push_into_dotted_list(manager: SessionManager, next_request: NextRequest) -> None:
    session = manager.start(None)
    session.put("user.teams", ["core"])
    session.push("user.teams", "developers")
    assert session.get("user.teams") == ["core", "developers"]
    session = next_request(manager, session)
    session.push("user.teams", "docs")
    assert session.get("user.teams") == ["core", "developers", "docs"]
    session.push("fresh.list", 1)
    assert session.get("fresh") == {"list": [1]}
    session = next_request(manager, session)
    assert session.get("user.teams") == ["core", "developers", "docs"]
    assert session.get("fresh.list") == [1]


@pytest.mark.parametrize("value", ["core", 3, True, {"a": 1}])
def test_push_onto_a_non_list_raises_and_keeps_the_value(
    manager: SessionManager, value: Any
) -> None:
    # Laravel errors on `$array[] = ...` for a scalar; silently replacing it would lose data.
    session = manager.start(None)
    session.put("teams", value)
    with pytest.raises(TypeError, match="'teams'"):
        session.push("teams", "docs")
    assert session.get("teams") == value


def test_push_onto_none_starts_a_list(manager: SessionManager) -> None:
    session = manager.start(None)
    session.put("teams", None)
    session.push("teams", "docs")
    assert session.get("teams") == ["docs"]


def test_pull(manager: SessionManager, next_request: NextRequest) -> None:
    session = manager.start(None)
    session.put({"k": "v", "user.name": "ada", "user.id": 7, "none": None})
    assert session.pull("k") == "v"
    assert "k" not in session
    assert session.pull("k", "default") == "default"
    assert session.pull("k", lambda: "called") == "called"
    assert session.pull("user.name") == "ada"
    assert session.get("user") == {"id": 7}
    assert session.pull("none", "dflt") is None  # present with None: None, and removed
    assert not session.exists("none")
    session = next_request(manager, session)
    assert session.all() == {"user": {"id": 7}}


# -- has / exists / missing ---------------------------------------------------------------


def test_has_exists_missing_with_none(manager: SessionManager, next_request: NextRequest) -> None:
    session = manager.start(None)
    session.put({"name": "ada", "nothing": None, "zero": 0, "empty": "", "user.id": None})
    for _ in range(2):  # before and after a reload
        assert session.has("name")
        assert session.exists("name")
        assert not session.missing("name")

        assert not session.has("nothing")
        assert session.exists("nothing")
        assert session.missing("nothing")  # missing when absent or null

        assert not session.has("absent")
        assert not session.exists("absent")
        assert session.missing("absent")

        assert session.has("zero")
        assert session.has("empty")  # falsy but not None
        assert not session.has("user.id")
        assert session.exists("user.id")
        assert session.exists("user")
        session = next_request(manager, session)


def test_has_exists_missing_with_lists(manager: SessionManager) -> None:
    session = manager.start(None)
    session.put({"a": 1, "b": 2, "n": None})
    assert session.has(["a", "b"])
    assert not session.has(["a", "n"])
    assert not session.has(["a", "absent"])
    assert session.exists(["a", "b", "n"])
    assert not session.exists(["a", "absent"])
    assert not session.missing(["a", "b"])
    assert session.missing(["a", "n"])
    assert session.missing(["a", "absent"])
    assert session.has([])  # vacuously all of them


# -- all / only / except_ ---------------------------------------------------------------------


def test_all_only_except(manager: SessionManager) -> None:
    session = manager.start(None)
    session.put({"a": 1, "b": {"c": 2}, "d": None})
    assert session.all() == {"a": 1, "b": {"c": 2}, "d": None}
    assert session.only(["a", "d", "absent"]) == {"a": 1, "d": None}
    assert session.except_(["a", "absent"]) == {"b": {"c": 2}, "d": None}
    snapshot = session.all()
    snapshot["new"] = 1
    assert "new" not in session  # all() is a copy


def test_only_and_except_take_a_single_key_like_forget(manager: SessionManager) -> None:
    # A str is one key (as forget, has, exists and keep take it), never its characters.
    session = manager.start(None)
    session.put({"name": "ada", "n": 1, "a": 2})
    assert session.only("name") == {"name": "ada"}
    assert session.except_("name") == {"n": 1, "a": 2}


# -- forget / flush ------------------------------------------------------------------------


def test_forget_one_list_and_dotted(manager: SessionManager, next_request: NextRequest) -> None:
    session = manager.start(None)
    session.put({"name": "ada", "status": "ok", "other": 1, "user.id": 1, "user.name": "x"})
    session.forget("name")
    assert "name" not in session
    session.forget(["status", "other", "absent"])
    assert session.all() == {"user": {"id": 1, "name": "x"}}
    session.forget("user.id")
    assert session.all() == {"user": {"name": "x"}}
    session.forget("user.missing.deeper")  # no error
    session = next_request(manager, session)
    assert session.all() == {"user": {"name": "x"}}


def test_forget_literal_dotted_key_first(manager: SessionManager) -> None:
    session = manager.start(None)
    session["a.b"] = 1
    session.put("a.b", 2)
    session.forget("a.b")
    assert session.all() == {"a": {"b": 2}}


def test_flush_removes_data_flash_and_token(
    manager: SessionManager, next_request: NextRequest
) -> None:
    session = manager.start(None)
    session.put("a", 1)
    session.flash("f", 1)
    token = session.token()
    session = next_request(manager, session)
    session.flush()
    assert session.all() == {}
    assert len(session) == 0
    session.put("b", 2)
    assert session.token() != token
    session = next_request(manager, session)
    assert session.all() == {"b": 2}


# -- increment / decrement / remember -------------------------------------------------------------


def test_increment_decrement(manager: SessionManager, next_request: NextRequest) -> None:
    session = manager.start(None)
    assert session.increment("count") == 1
    assert session.increment("count", 2) == 3
    assert session.decrement("count") == 2
    assert session.decrement("count", 5) == -3
    assert session.decrement("down") == -1  # missing counts as 0
    assert session.increment("stats.views", 10) == 10
    assert session.increment("ratio", 0.5) == 0.5
    session = next_request(manager, session)
    assert session.get("count") == -3
    assert session.get("down") == -1
    assert session.get("stats") == {"views": 10}
    assert session.increment("count", by=4) == 1


def test_increment_and_decrement_count_none_as_zero(manager: SessionManager) -> None:
    # Laravel computes get(key, 0) + amount, and PHP's null + 1 is 1.
    session = manager.start(None)
    session.put({"up": None, "down": None, "nested.n": None})
    assert session.increment("up") == 1
    assert session.decrement("down", 2) == -2
    assert session.increment("nested.n", 0.5) == 0.5
    assert session.all() == {"up": 1, "down": -2, "nested": {"n": 0.5}}


@pytest.mark.parametrize("value", ["3", [1], True, {"a": 1}])
def test_increment_non_number_raises(manager: SessionManager, value: Any) -> None:
    session = manager.start(None)
    session.put("k", value)
    with pytest.raises(TypeError, match="'k'"):
        session.increment("k")
    with pytest.raises(TypeError):
        session.decrement("k")
    assert session.get("k") == value


def test_remember(manager: SessionManager, next_request: NextRequest) -> None:
    session = manager.start(None)
    calls: list[int] = []

    def compute() -> str:
        calls.append(1)
        return "value"

    assert session.remember("k", compute) == "value"
    assert session.remember("k", compute) == "value"
    assert calls == [1]
    session.put("none", None)
    assert session.remember("none", compute) == "value"  # None counts as absent
    assert calls == [1, 1]
    session = next_request(manager, session)
    assert session.remember("k", compute) == "value"
    assert calls == [1, 1]


# -- flash data -------------------------------------------------------------------------------


def test_flash_lives_for_this_request_and_the_next(
    manager: SessionManager, next_request: NextRequest
) -> None:
    session = manager.start(None)
    session.put("keep", 1)
    session.flash("status", "Task was successful!")
    session.flash("flag")
    assert session.get("status") == "Task was successful!"  # request N
    session = next_request(manager, session)
    assert session.get("status") == "Task was successful!"  # request N+1
    assert session.get("flag") is True
    session = next_request(manager, session)
    assert not session.exists("status")  # request N+2
    assert not session.exists("flag")
    assert session.all() == {"keep": 1}


def test_flash_again_in_next_request_extends(
    manager: SessionManager, next_request: NextRequest
) -> None:
    session = manager.start(None)
    session.put("keep", 1)
    session.flash("status", "one")
    session = next_request(manager, session)
    session.flash("status", "two")
    session = next_request(manager, session)
    assert session.get("status") == "two"
    session = next_request(manager, session)
    assert not session.exists("status")


def test_now_lasts_for_the_current_request_only(
    manager: SessionManager, next_request: NextRequest
) -> None:
    session = manager.start(None)
    session.put("keep", 1)
    session.now("status", "now only")
    assert session.get("status") == "now only"
    session = next_request(manager, session)
    assert not session.exists("status")
    assert session.all() == {"keep": 1}


def test_reflash_keeps_all_flash_data_one_more_request(
    manager: SessionManager, next_request: NextRequest
) -> None:
    session = manager.start(None)
    session.put("keep", 1)
    session.flash("a", 1)
    session.flash("b", 2)
    session = next_request(manager, session)  # N+1
    session.reflash()
    session = next_request(manager, session)  # N+2: still there
    assert session.get("a") == 1
    assert session.get("b") == 2
    session = next_request(manager, session)  # N+3: gone
    assert session.all() == {"keep": 1}


def test_keep_only_the_given_keys(manager: SessionManager, next_request: NextRequest) -> None:
    session = manager.start(None)
    session.put("keep", 1)
    session.flash("username", "ada")
    session.flash("email", "a@example.org")
    session.flash("status", "ok")
    session = next_request(manager, session)  # N+1
    session.keep(["username", "email"])
    session = next_request(manager, session)  # N+2
    assert session.get("username") == "ada"
    assert session.get("email") == "a@example.org"
    assert not session.exists("status")
    session.keep("username")
    session = next_request(manager, session)  # N+3
    assert session.get("username") == "ada"
    assert not session.exists("email")
    session = next_request(manager, session)  # N+4
    assert session.all() == {"keep": 1}


# -- regenerate / invalidate ----------------------------------------------------------------------


def test_regenerate_keeps_the_old_record(
    manager: SessionManager, next_request: NextRequest
) -> None:
    session = manager.start(None)
    session.put("user", "ada")
    old_token = session.token()
    session = next_request(manager, session)
    old_id = session.id
    session.regenerate()
    assert session.id != old_id
    assert session.token() != old_token
    assert session.all() == {"user": "ada"}
    new = next_request(manager, session)
    assert new.id == session.id
    assert new.all() == {"user": "ada"}
    assert new.token() == session.token()
    old = manager.start(old_id)
    assert old.id == old_id  # still readable
    assert old.get("user") == "ada"


def test_regenerate_destroy_removes_the_old_record(
    manager: SessionManager, next_request: NextRequest
) -> None:
    session = manager.start(None)
    session.put("user", "ada")
    old_token = session.token()
    session = next_request(manager, session)
    old_id = session.id
    session.regenerate(destroy=True)
    new_id = session.id
    assert new_id != old_id
    assert session.token() != old_token
    new = next_request(manager, session)
    assert new.id == new_id
    assert new.all() == {"user": "ada"}
    old = manager.start(old_id)
    assert old.id != old_id
    assert old.all() == {}


def test_regenerate_destroy_reaches_the_driver(
    recording_manager: SessionManager, recording: Any
) -> None:
    session = recording_manager.start(None)
    session.put("a", 1)
    session.save()
    old_key = recording_manager.storage_key(session.id)
    session = recording_manager.start(session.id)
    session.regenerate(destroy=True)
    session.save()
    assert recording.keys_of("destroy") == [old_key]
    assert list(recording.store) == [recording_manager.storage_key(session.id)]


def test_invalidate(manager: SessionManager, next_request: NextRequest) -> None:
    session = manager.start(None)
    session.put("user", "ada")
    session.flash("status", "ok")
    token = session.token()
    session = next_request(manager, session)
    old_id = session.id
    session.invalidate()
    assert session.all() == {}
    assert len(session) == 0
    assert session.id != old_id
    assert session.save() is SaveOutcome.EMPTY
    assert session.cookie_action() == "delete"
    old = manager.start(old_id)
    assert old.id != old_id
    assert old.all() == {}
    assert old.token() != token


def test_invalidate_then_put_writes_under_the_new_id(
    manager: SessionManager, next_request: NextRequest
) -> None:
    session = manager.start(None)
    session.put("user", "ada")
    session = next_request(manager, session)
    old_id = session.id
    session.invalidate()
    session.put("user", "bob")
    assert session.save() is SaveOutcome.WRITTEN
    assert session.cookie_action() == "set"
    assert manager.start(session.cookie_value()).all() == {"user": "bob"}
    assert manager.start(old_id).all() == {}


# -- token / id -----------------------------------------------------------------------------


def test_token_made_on_first_use_and_stable(
    manager: SessionManager, next_request: NextRequest
) -> None:
    session = manager.start(None)
    token = session.token()
    assert len(token) == 40
    assert set(token) <= ALNUM
    assert session.token() == token
    session = next_request(manager, session)  # a session holding only a token is kept
    assert session.token() == token
    session = next_request(manager, session)
    assert session.token() == token
    assert "_token" not in session
    assert session.all() == {}


def test_regenerate_token(manager: SessionManager, next_request: NextRequest) -> None:
    session = manager.start(None)
    token = session.token()
    new = session.regenerate_token()
    assert new != token
    assert session.token() == new
    session = next_request(manager, session)
    assert session.token() == new


def test_id_is_40_alphanumeric_and_stable(
    manager: SessionManager, next_request: NextRequest
) -> None:
    session = manager.start(None)
    assert len(session.id) == 40
    assert set(session.id) <= ALNUM
    other = manager.start(None)
    assert other.id != session.id
    session.put("a", 1)
    first = session.id
    session = next_request(manager, session)
    assert session.id == first
    assert session.cookie_value() == first


# -- MutableMapping --------------------------------------------------------------------------


def test_mutable_mapping_interface(manager: SessionManager, next_request: NextRequest) -> None:
    session = manager.start(None)
    session["k"] = "v"
    assert session["k"] == "v"
    assert "k" in session
    assert "absent" not in session
    with pytest.raises(KeyError):
        session["absent"]
    assert session.setdefault("d", [1]) == [1]
    assert session.setdefault("d", [2]) == [1]
    session.update({"x": 1, "y": 2}, z=3)
    assert len(session) == 5
    assert sorted(session) == ["d", "k", "x", "y", "z"]
    assert dict(session.items()) == {"k": "v", "d": [1], "x": 1, "y": 2, "z": 3}
    assert session.pop("x") == 1
    assert session.pop("x", "gone") == "gone"
    with pytest.raises(KeyError):
        session.pop("x")
    del session["y"]
    with pytest.raises(KeyError):
        del session["y"]
    session = next_request(manager, session)
    assert dict(session) == {"k": "v", "d": [1], "z": 3}
    assert session == {"k": "v", "d": [1], "z": 3}
    session.clear()
    assert len(session) == 0


def test_mapping_setitem_refuses_unsupported_values(manager: SessionManager) -> None:
    session = manager.start(None)
    with pytest.raises(TypeError, match="'bad'"):
        session["bad"] = object()
    assert "bad" not in session


def test_bookkeeping_never_shows(manager: SessionManager, next_request: NextRequest) -> None:
    session = manager.start(None)
    session.token()
    session.flash("status", "ok")
    session.now("now", 1)
    session.put("app", 1)
    assert session.all() == {"status": "ok", "now": 1, "app": 1}
    session = next_request(manager, session)
    session.reflash()
    for probe in (session, next_request(manager, session)):
        data = probe.all()
        assert set(data) <= {"status", "app"}
        assert set(probe) == set(data)
        assert len(probe) == len(data)
        for name in ("_token", "_flash", "_flash.new", "_flash.old", "token", "flash", "meta"):
            assert name not in probe
            assert not probe.exists(name)
        for name in ("created", "last_activity", "v", "_previous", "version", "__t"):
            assert name not in probe
            assert not probe.exists(name)


def test_session_with_only_bookkeeping_has_length_zero(
    manager: SessionManager, next_request: NextRequest
) -> None:
    session = manager.start(None)
    session.token()
    session = next_request(manager, session)
    assert not session.new
    assert len(session) == 0
    assert list(session) == []
