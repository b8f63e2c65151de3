"""A model-based test: the session against a plain dict with Laravel's ``Arr`` semantics.

Rules put/get/forget/flush/has/exists/missing/pull/push/increment and the flash
methods (flash/now/reflash/keep, with Laravel's ageing at save) run on both the
session and the model; a "save and start the next request" rule reloads the
session through the ``array`` driver, so the model is checked across reloads.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from satchel import SaveOutcome, SessionConfig, SessionManager
from satchel.store import Session

MISSING: Any = object()
KEYS = st.sampled_from(["a", "b", "c", "a.b", "a.c", "b.a.c", "a.b.c", "c.a"])
NESTED_KEYS = st.sampled_from(["a", "b", "c", "a.b"])  # "a.b" here is a literal nested key
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=3),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(NESTED_KEYS, children),
    max_leaves=6,
)


# -- Laravel's Arr, on plain dicts -----------------------------------------------------------


def arr_get(array: dict[str, Any], key: str, default: Any = MISSING) -> Any:
    """``Arr::get``: the literal key first, then the dotted path through arrays."""
    if key in array:
        return array[key]
    if "." not in key:
        return default
    current: Any = array
    for segment in key.split("."):
        if isinstance(current, dict) and segment in current:
            current = current[segment]
        else:
            return default
    return current


def arr_set(array: dict[str, Any], key: str, value: Any) -> None:
    """``Arr::set``: replace anything that is not an array (or is null) along the path."""
    segments = key.split(".")
    current = array
    for segment in segments[:-1]:
        if not isinstance(current.get(segment), dict):  # !isset || !is_array
            current[segment] = {}
        current = current[segment]
    current[segments[-1]] = value


def arr_forget(array: dict[str, Any], key: str) -> None:
    """``Arr::forget``: the literal key first, then the dotted path (isset: not null)."""
    if key in array:
        del array[key]
        return
    segments = key.split(".")
    current: Any = array
    for segment in segments[:-1]:
        if isinstance(current, dict) and current.get(segment) is not None:
            current = current[segment]
        else:
            return
    if isinstance(current, dict):
        current.pop(segments[-1], None)


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

    @rule(key=KEYS, value=json_values)
    def put(self, key: str, value: Any) -> None:
        self.session.put(key, value)
        arr_set(self.model, key, copy.deepcopy(value))

    @rule(mapping=st.dictionaries(KEYS, json_values, max_size=3))
    def put_many(self, mapping: dict[str, Any]) -> None:
        self.session.put(mapping)
        for key, value in mapping.items():
            arr_set(self.model, key, copy.deepcopy(value))

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
        self.session.push(key, value)
        arr_set(self.model, key, items)

    @rule(key=KEYS, by=st.integers(-3, 3))
    def increment(self, key: str, by: int) -> None:
        current = arr_get(self.model, key, None)
        if current is None and not self.session.exists(key):
            current = 0
        if isinstance(current, bool) or not isinstance(current, int):
            with pytest.raises(TypeError):
                self.session.increment(key, by)
            return
        assert self.session.increment(key, by) == current + by
        arr_set(self.model, key, current + by)

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
        self.session.flash(key, value)
        arr_set(self.model, key, copy.deepcopy(value))
        _add(self.flash_new, [key])
        self.flash_old = [name for name in self.flash_old if name != key]

    @rule(key=KEYS, value=json_values)
    def now_(self, key: str, value: Any) -> None:
        self.session.now(key, value)
        arr_set(self.model, key, copy.deepcopy(value))
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
    arr_set(data, "user.teams.lead", "ada")  # a list on the path is replaced
    assert data == {"user": {"teams": {"lead": "ada"}}}
    data["a.b"] = 1
    data["a"] = {"b": 2}
    assert arr_get(data, "a.b") == 1
    arr_forget(data, "a.b")
    assert arr_get(data, "a.b") == 2
    data["n"] = None
    arr_set(data, "n.x", 1)  # null is not isset: replaced
    assert data["n"] == {"x": 1}
    assert arr_get(data, "nope") is MISSING
    assert arr_get(data, "user.teams.lead.x") is MISSING
