"""A model-based test: the session against a plain dict with Laravel's ``Arr`` semantics.

Rules put/get/forget/flush/has/exists/missing/pull/push/increment and the flash
methods (flash/now/reflash/keep, with Laravel's ageing at save) run on both the
session and the model; a "save and start the next request" rule reloads the
session through the ``array`` driver, so the model is checked across reloads.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from satchel import SaveOutcome, SessionConfig, SessionManager
from satchel.store import Session

MISSING: Any = object()
# Digit segments reach into lists ("a.0", "a.3" is one past a list of three) and into
# mappings with digit keys ("0" among NESTED_KEYS).
KEYS = st.sampled_from(
    [
        *("a", "b", "c", "a.b", "a.c", "b.a.c", "a.b.c", "c.a"),
        *("a.0", "a.1", "a.3", "b.0", "a.0.b", "a.1.0", "b.a.0", "a.b.1"),
    ]
)
NESTED_KEYS = st.sampled_from(["a", "b", "c", "a.b", "0", "1"])  # "a.b" is a literal nested key
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=3),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(NESTED_KEYS, children),
    max_leaves=6,
)


# -- Laravel's Arr, on PHP arrays ------------------------------------------------------------
#
# The reference is Laravel's own code ported line for line onto an emulation of PHP
# arrays, where a list is nothing but an array whose keys are 0..n-1 and a key string
# like "1" is the integer 1. The session's contract adds one rule over PHP: a list must
# come back a list. A write that would leave holes or string keys in one (PHP would turn
# it into a mapping) is refused instead: IndexError for an integer key past the end,
# TypeError for any other. A forget that leaves a hole closes it (the element is removed).


@dataclasses.dataclass
class PhpArray:
    entries: dict[int | str, Any]
    was_list: bool


class Refused(Exception):
    def __init__(self, error: type[Exception]) -> None:
        self.error = error


def php_key(segment: str) -> int | str:
    """PHP's array-key cast: a canonical decimal integer string becomes an int."""
    return int(segment) if re.fullmatch(r"0|-?[1-9][0-9]*", segment) else segment


def to_php(value: Any) -> Any:
    if isinstance(value, list):
        return PhpArray({i: to_php(item) for i, item in enumerate(value)}, was_list=True)
    if isinstance(value, dict):
        return PhpArray({php_key(k): to_php(v) for k, v in value.items()}, was_list=False)
    return value


def from_php(value: Any, *, close_holes: bool = False) -> Any:
    if not isinstance(value, PhpArray):
        return value
    items = {k: from_php(v, close_holes=close_holes) for k, v in value.entries.items()}
    if not value.was_list:
        return {str(k): v for k, v in items.items()}
    if close_holes:
        return list(items.values())
    if list(items) != list(range(len(items))):
        past_end = [k for k in items if not isinstance(k, int) or k < 0 or k >= len(items)]
        numeric = all(isinstance(k, int) and k >= 0 for k in past_end)
        raise Refused(IndexError if numeric else TypeError)
    return list(items.values())


def arr_get(array: dict[str, Any], key: str, default: Any = MISSING) -> Any:
    """``Arr::get``: the literal key first, then ``accessible && exists`` down the path."""
    php = to_php(array)
    if php_key(key) in php.entries:
        return from_php(php.entries[php_key(key)])
    if "." not in key:
        return default
    current: Any = php
    for segment in key.split("."):
        if isinstance(current, PhpArray) and php_key(segment) in current.entries:
            current = current.entries[php_key(segment)]
        else:
            return default
    return from_php(current)


def arr_set(array: dict[str, Any], key: str, value: Any) -> None:
    """``Arr::set``: ``!isset || !is_array`` along the path becomes ``[]``; then assign.

    Raises ``Refused`` (leaving ``array`` as it was) when a list would stop being one.
    """
    php = to_php(array)
    keys = key.split(".")
    current = php
    while len(keys) > 1:
        segment = php_key(keys.pop(0))
        if not isinstance(current.entries.get(segment), PhpArray):
            current.entries[segment] = PhpArray({}, was_list=False)  # a new mapping
        current = current.entries[segment]
    current.entries[php_key(keys[0])] = to_php(value)
    result = from_php(php)
    array.clear()
    array.update(result)


def arr_forget(array: dict[str, Any], key: str) -> None:
    """``Arr::forget``: the literal key first, then ``isset && accessible`` down the path."""
    php = to_php(array)
    if php_key(key) in php.entries:
        del php.entries[php_key(key)]
    else:
        parts = key.split(".")
        current = php
        while len(parts) > 1:
            part = php_key(parts.pop(0))
            child = current.entries.get(part)
            if not isinstance(child, PhpArray):  # null is not isset; a scalar not accessible
                return
            current = child
        current.entries.pop(php_key(parts[0]), None)
    result = from_php(php, close_holes=True)
    array.clear()
    array.update(result)


def refusal(change: Callable[[], None]) -> type[Exception] | None:
    """Run a change to the model: the error the session must raise instead, or ``None``."""
    try:
        change()
    except Refused as refused:
        return refused.error
    return None


def _add(target: list[str], names: list[str]) -> None:
    for name in names:
        if name not in target:
            target.append(name)


class SessionModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 1_800_000_000.0
        self.manager = SessionManager(SessionConfig(driver="array"), clock=lambda: self.now)
        self.session: Session = self.manager.start(None)
        self.model: dict[str, Any] = {}
        self.saved_id: str | None = None
        self.flash_new: list[str] = []
        self.flash_old: list[str] = []

    # -- writes ---------------------------------------------------------------------------------

    def _apply(self, call: Callable[[], Any], change: Callable[[], None]) -> Any:
        """``change`` the model, then ``call`` the session: it must refuse as the model did.

        Returns what ``call`` returned, or ``MISSING`` when both refused.
        """
        error = refusal(change)
        if error is None:
            return call()
        with pytest.raises(error):
            call()
        return MISSING

    @rule(key=KEYS, value=json_values)
    def put(self, key: str, value: Any) -> None:
        self._apply(
            lambda: self.session.put(key, value),
            lambda: arr_set(self.model, key, copy.deepcopy(value)),
        )

    @rule(mapping=st.dictionaries(KEYS, json_values, max_size=3))
    def put_many(self, mapping: dict[str, Any]) -> None:
        def change() -> None:  # pair by pair: the pairs before a refused one stay set
            for key, value in mapping.items():
                arr_set(self.model, key, copy.deepcopy(value))

        self._apply(lambda: self.session.put(mapping), change)

    @rule(key=KEYS, value=json_values)
    def set_item(self, key: str, value: Any) -> None:
        self.session[key] = value  # the mapping interface: the key as it is, no dots
        self.model[key] = copy.deepcopy(value)

    @rule(keys=KEYS | st.lists(KEYS, max_size=3))
    def forget(self, keys: str | list[str]) -> None:
        self.session.forget(keys)
        for key in [keys] if isinstance(keys, str) else keys:
            arr_forget(self.model, key)

    @rule()
    def flush(self) -> None:
        self.session.flush()
        self.model.clear()
        self.flash_new, self.flash_old = [], []

    @rule(key=KEYS)
    def pull(self, key: str) -> None:
        expected = arr_get(self.model, key, "default")
        assert self.session.pull(key, "default") == expected
        arr_forget(self.model, key)

    @rule(key=KEYS, value=json_values)
    def push(self, key: str, value: Any) -> None:
        current = arr_get(self.model, key, None)
        if current is not None and not isinstance(current, list):
            with pytest.raises(TypeError):  # Laravel errors on `[]` for a scalar
                self.session.push(key, value)
            return
        items = [*(current or []), copy.deepcopy(value)]
        self._apply(lambda: self.session.push(key, value), lambda: arr_set(self.model, key, items))

    @rule(key=KEYS, by=st.integers(-3, 3))
    def increment(self, key: str, by: int) -> None:
        current = arr_get(self.model, key, None)
        if current is None:
            current = 0  # Laravel: get(key, 0) + amount, and PHP's null + 1 is 1
        if isinstance(current, bool) or not isinstance(current, int):
            with pytest.raises(TypeError):
                self.session.increment(key, by)
            return
        result = self._apply(
            lambda: self.session.increment(key, by),
            lambda: arr_set(self.model, key, current + by),
        )
        assert result in (MISSING, current + by)

    # -- reads ------------------------------------------------------------------------------------

    @rule(key=KEYS)
    def get(self, key: str) -> None:
        assert self.session.get(key, MISSING) == arr_get(self.model, key)
        assert self.session.get(key, MISSING) is MISSING or arr_get(self.model, key) is not MISSING

    @rule(keys=KEYS | st.lists(KEYS, max_size=3))
    def has_exists_missing(self, keys: str | list[str]) -> None:
        names = [keys] if isinstance(keys, str) else keys
        found = [arr_get(self.model, key) for key in names]
        exists = all(value is not MISSING for value in found)
        has = all(value is not MISSING and value is not None for value in found)
        assert self.session.exists(keys) is exists
        assert self.session.has(keys) is has
        assert self.session.missing(keys) is (not has)

    @rule(keys=st.lists(KEYS, max_size=3))
    def only_except(self, keys: list[str]) -> None:
        assert self.session.only(keys) == {k: v for k, v in self.model.items() if k in keys}
        assert self.session.except_(keys) == {k: v for k, v in self.model.items() if k not in keys}

    # -- requests -------------------------------------------------------------------------------

    # -- flash data (Laravel's _flash.new / _flash.old) ------------------------------------------

    @rule(key=KEYS, value=json_values)
    def flash(self, key: str, value: Any) -> None:
        done = self._apply(
            lambda: self.session.flash(key, value),
            lambda: arr_set(self.model, key, copy.deepcopy(value)),
        )
        if done is MISSING:
            return
        _add(self.flash_new, [key])
        self.flash_old = [name for name in self.flash_old if name != key]

    @rule(key=KEYS, value=json_values)
    def now_(self, key: str, value: Any) -> None:
        done = self._apply(
            lambda: self.session.now(key, value),
            lambda: arr_set(self.model, key, copy.deepcopy(value)),
        )
        if done is not MISSING:
            _add(self.flash_old, [key])

    @rule()
    def reflash(self) -> None:
        self.session.reflash()
        _add(self.flash_new, self.flash_old)
        self.flash_old = []

    @rule(keys=st.lists(KEYS, max_size=3))
    def keep(self, keys: list[str]) -> None:
        self.session.keep(keys)
        _add(self.flash_new, keys)
        self.flash_old = [name for name in self.flash_old if name not in keys]

    @precondition(lambda self: bool(self.flash_old))
    @rule(data=st.data())
    def keep_flashed(self, data: st.DataObject) -> None:
        # keep() on keys flashed last request: the case where it matters.
        keys = data.draw(st.lists(st.sampled_from(self.flash_old), min_size=1, max_size=2))
        self.keep(keys)

    def _save_model(self) -> None:
        """What ``save`` does to the model: age flash data; an empty session keeps nothing."""
        for key in self.flash_old:
            arr_forget(self.model, key)
        self.flash_old, self.flash_new = self.flash_new, []
        if not self.model:
            self.flash_old = []

    # -- requests -------------------------------------------------------------------------------

    @rule(seconds=st.integers(0, 120))
    def next_request(self, seconds: int) -> None:
        outcome = self.session.save()
        self._save_model()
        cookie = self.session.cookie_value()
        self.now += seconds
        self.session = self.manager.start(cookie)
        if self.model:
            assert outcome is not SaveOutcome.EMPTY
            assert self.session.id == cookie
            assert not self.session.new
            self.saved_id = cookie
        else:
            assert outcome in (SaveOutcome.EMPTY, SaveOutcome.NOT_LOADED)
            assert self.session.new

    @precondition(lambda self: self.saved_id is not None)
    @rule()
    def unchanged_request_is_not_rewritten(self) -> None:
        # A request that only reads, after all flash data has aged out, writes nothing.
        while self.flash_old or self.flash_new:
            self.next_request(0)
        self.next_request(0)
        if self.model:
            self.session.all()
            assert self.session.save() in (SaveOutcome.UNCHANGED, SaveOutcome.REFRESHED)
            self._save_model()
            self.session = self.manager.start(self.session.cookie_value())

    # -- invariants -------------------------------------------------------------------------------

    @invariant()
    def matches_the_model(self) -> None:
        assert self.session.all() == self.model
        assert len(self.session) == len(self.model)
        assert sorted(self.session) == sorted(self.model)
        for key in self.model:
            assert key in self.session


SessionModel.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestSessionModel = SessionModel.TestCase


def test_arr_model_matches_laravel_examples() -> None:
    """The reference model itself, on examples worked out from Laravel's ``Arr``."""
    data: dict[str, Any] = {}
    arr_set(data, "user.teams", ["core"])
    assert data == {"user": {"teams": ["core"]}}
    arr_set(data, "user.teams.0", "web")  # an index in range: replaced
    arr_set(data, "user.teams.1", "docs")  # one past the end: appended
    assert data == {"user": {"teams": ["web", "docs"]}}
    assert arr_get(data, "user.teams.1") == "docs"
    assert refusal(lambda: arr_set(data, "user.teams.lead", "ada")) is TypeError
    assert refusal(lambda: arr_set(data, "user.teams.3", "x")) is IndexError
    assert refusal(lambda: arr_set(data, "user.teams.3.deep", "x")) is IndexError
    assert data == {"user": {"teams": ["web", "docs"]}}  # a refused write changes nothing
    arr_set(data, "user.teams.1.lead", "ada")  # a scalar in the list: replaced by a mapping
    assert data == {"user": {"teams": ["web", {"lead": "ada"}]}}
    arr_forget(data, "user.teams.0")  # the element goes; the list closes up
    assert data == {"user": {"teams": [{"lead": "ada"}]}}
    arr_forget(data, "user.teams.lead")  # no such index: nothing
    arr_set(data, "user.teams", {"0": "x"})  # a mapping with a digit key stays a mapping
    arr_set(data, "user.teams.5", "y")
    assert data == {"user": {"teams": {"0": "x", "5": "y"}}}
    arr_set(data, "fresh.0", "z")  # a missing step becomes a mapping
    assert data["fresh"] == {"0": "z"}
    del data["user"], data["fresh"]
    data["a.b"] = 1
    data["a"] = {"b": 2}
    assert arr_get(data, "a.b") == 1
    arr_forget(data, "a.b")
    assert arr_get(data, "a.b") == 2
    data["n"] = None
    arr_set(data, "n.x", 1)  # null is not isset: replaced
    assert data["n"] == {"x": 1}
    assert arr_get(data, "nope") is MISSING
    assert arr_get(data, "n.x.y") is MISSING
