"""The payload: what is put comes back equal (and of the same type), and decoding never runs code."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import decimal
import enum
import json
import math
import uuid
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from satchel import SaveOutcome, SessionConfig, SessionManager, payload
from satchel.drivers.array import ArraySessionHandler
from satchel.payload import (
    FORMAT_VERSION,
    MAX_DEPTH,
    Envelope,
    PayloadError,
    decode_value,
    dumps,
    encode_value,
    loads,
    value_converter,
)
from satchel.store import Session

NextRequest = Callable[[SessionManager, Session], Session]
PARIS = ZoneInfo("Europe/Paris")
UTC = dt.timezone.utc


def assert_same(expected: Any, actual: Any, path: str = "value") -> None:
    """Equality that also checks types, time zones, float signs and NaNs, all the way down."""
    assert type(actual) is type(expected), f"{path}: {type(actual)} is not {type(expected)}"
    if isinstance(expected, float):
        if math.isnan(expected):
            assert math.isnan(actual), path
        else:
            assert actual == expected, path
            assert math.copysign(1, actual) == math.copysign(1, expected), f"{path}: sign"
    elif isinstance(expected, decimal.Decimal):
        assert str(actual) == str(expected), path
    elif isinstance(expected, dt.datetime):
        assert actual.replace(tzinfo=None) == expected.replace(tzinfo=None), f"{path}: wall"
        assert actual.utcoffset() == expected.utcoffset(), f"{path}: offset"
        key = getattr(expected.tzinfo, "key", None)
        if key is not None:
            assert getattr(actual.tzinfo, "key", None) == key, f"{path}: zone"
        if expected.tzinfo is not None:
            assert actual.astimezone(UTC) == expected.astimezone(UTC), f"{path}: instant"
    elif isinstance(expected, dt.time):
        assert actual == expected, path
        assert actual.utcoffset() == expected.utcoffset(), f"{path}: offset"
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), path
        for index, (left, right) in enumerate(zip(expected, actual, strict=True)):
            assert_same(left, right, f"{path}[{index}]")
    elif isinstance(expected, dict):
        assert list(actual) == list(expected), f"{path}: keys"
        for key_expected, key_actual in zip(expected, actual, strict=True):
            assert_same(key_expected, key_actual, f"{path} key {key_expected!r}")
            assert_same(expected[key_expected], actual[key_actual], f"{path}[{key_expected!r}]")
    elif isinstance(expected, (set, frozenset)):
        assert actual == expected, path
        by_value = {item: item for item in actual}
        for item in expected:
            assert_same(item, by_value[item], f"{path} item {item!r}")
    else:
        assert actual == expected, path


ROUND_TRIP_VALUES = {
    "naive-datetime": dt.datetime(2024, 2, 29, 13, 45, 7, 123456),
    "utc-datetime": dt.datetime(2024, 2, 29, 13, 45, 7, tzinfo=UTC),
    "zoneinfo-utc": dt.datetime(2024, 1, 1, tzinfo=ZoneInfo("UTC")),
    "paris-summer": dt.datetime(2024, 7, 14, 22, 0, tzinfo=PARIS),
    "paris-winter": dt.datetime(2024, 12, 24, 23, 59, 59, 999999, tzinfo=PARIS),
    "paris-ambiguous-first": dt.datetime(2024, 10, 27, 2, 30, tzinfo=PARIS),
    "paris-ambiguous-second": dt.datetime(2024, 10, 27, 2, 30, fold=1, tzinfo=PARIS),
    "fixed-offset": dt.datetime(
        2024, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=-3, minutes=-30))
    ),
    "date": dt.date(1999, 12, 31),
    "time": dt.time(23, 59, 59, 1),
    "time-utc": dt.time(8, 0, tzinfo=UTC),
    "timedelta": dt.timedelta(days=-3, seconds=5, microseconds=7),
    "timedelta-big": dt.timedelta(days=999_999_999),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "uuid4": uuid.uuid4(),
    "decimal": decimal.Decimal("12.50"),
    "decimal-exp": decimal.Decimal("-1.2E+30"),
    "decimal-nan": decimal.Decimal("NaN"),
    "decimal-inf": decimal.Decimal("-Infinity"),
    "bytes": bytes(range(256)),
    "empty-bytes": b"",
    "tuple": (1, "a", (2, 3), [4]),
    "empty-tuple": (),
    "set": {1, "a", (1, 2), frozenset({3})},
    "empty-set": set(),
    "frozenset": frozenset({"x", 1.5, b"y"}),
    "int-64-max": 2**63 - 1,
    "int-64-min": -(2**63),
    "int-beyond-64": 2**64 + 1,
    "int-negative-huge": -(10**100),
    "nested": {"a": [1, {"b": (2, {3}), "c": {"d": [dt.date(2020, 1, 1)]}}], "e": None},
    "non-string-keys": {1: "one", (1, 2): "pair", None: "none", 2.5: "float", False: "bool"},
    "mixed-keys": {"a": 1, 2: "b", dt.date(2020, 1, 1): "date", uuid.UUID(int=5): "uuid"},
    "tag-lookalike": {"__t": "int", "v": "5"},
    "nested-tag-lookalike": [{"__t": "bytes", "v": "not base64 !"}],
    "nan": float("nan"),
    "inf": float("inf"),
    "-inf": float("-inf"),
    "negative-zero": -0.0,
    "float": 0.1,
    "bool-not-int": [True, False, 1, 0],
    "non-ascii": "héllo wörld — 日本語 🎉 \u0000 \u2028",
    "empty-string": "",
    "lone-surrogates": "a\ud800b\udfffc",  # a str that is not valid UTF-8 still round-trips
    "list-of-floats": [1.0, 2.5, float("inf")],
}


@pytest.mark.parametrize("value", list(ROUND_TRIP_VALUES.values()), ids=list(ROUND_TRIP_VALUES))
def test_round_trip_through_a_request(
    manager: SessionManager, next_request: NextRequest, value: Any
) -> None:
    session = manager.start(None)
    session.put("value", value)
    session.put("nested.value", [value])
    session = next_request(manager, session)
    assert_same(value, session.get("value"))
    assert_same([value], session.get("nested.value"))
    # And once more, unchanged: an unchanged value must not look changed.
    assert not session.modified
    session = next_request(manager, session)
    assert_same(value, session.get("value"))


@pytest.mark.parametrize("value", list(ROUND_TRIP_VALUES.values()), ids=list(ROUND_TRIP_VALUES))
def test_round_trip_through_the_file_driver(
    file_manager: SessionManager, next_request: NextRequest, value: Any
) -> None:
    session = file_manager.start(None)
    session.put("value", value)
    session = next_request(file_manager, session)
    assert_same(value, session.get("value"))


def test_whole_session_round_trip_equals(
    manager: SessionManager, next_request: NextRequest
) -> None:
    session = manager.start(None)
    session.put(dict(ROUND_TRIP_VALUES.items()))
    session = next_request(manager, session)
    for name, value in ROUND_TRIP_VALUES.items():
        assert_same(value, session.get(name), name)


SCALARS = {
    name: value
    for name, value in ROUND_TRIP_VALUES.items()
    if type(value) in (str, int, float, bool, type(None))
}


@pytest.mark.parametrize("value", list(SCALARS.values()), ids=list(SCALARS))
def test_scalars_put_at_top_level_keys_round_trip(
    manager: SessionManager, next_request: NextRequest, value: Any
) -> None:
    session = manager.start(None)
    session.put({"user": {"name": "Ada"}, "count": 1})
    session = next_request(manager, session)
    session.put("value", value)
    session["item"] = value
    session.increment("count")
    session = next_request(manager, session)
    assert_same(value, session.get("value"))
    assert_same(value, session["item"])
    assert session.get("user") == {"name": "Ada"}
    assert session.get("count") == 2
    assert not session.modified


def test_a_container_read_or_put_then_changed_in_place_is_stored_as_it_is(
    manager: SessionManager, next_request: NextRequest
) -> None:
    read = manager.start(None)
    read.put({"cart": [1], "count": 1})
    put = manager.start(None)
    put.put("count", 1)
    read, put = next_request(manager, read), next_request(manager, put)
    # In each, a container changes in place besides a number being put.
    cart = read.get("cart")
    read.increment("count")
    cart.append((2, 3))
    added: list[Any] = []
    put.put("added", added)
    put["count"] = 5
    added.append(dt.date(2020, 1, 1))
    read, put = next_request(manager, read), next_request(manager, put)
    assert_same([1, (2, 3)], read.get("cart"))
    assert read.get("count") == 2
    assert_same([dt.date(2020, 1, 1)], put.get("added"))
    assert put.get("count") == 5


def test_a_dotted_put_naming_a_type_tag_stays_a_mapping(
    manager: SessionManager, next_request: NextRequest
) -> None:
    session = manager.start(None)
    session.put("count", 1)
    session = next_request(manager, session)
    session.put("a.__t", "int")
    session.put("a.v", "5")
    session.increment("count")
    session = next_request(manager, session)
    assert_same({"__t": "int", "v": "5"}, session.get("a"))


def test_a_leniently_read_payload_keeps_its_non_finite_floats_through_a_put(
    manager: SessionManager, next_request: NextRequest
) -> None:
    session_id = "a" * 40
    now = manager.clock()
    manager.handler().write(
        manager.storage_key(session_id),
        '{"v":1,"data":{"big":Infinity,"small":-Infinity},'
        f'"meta":{{"created":{now},"last_activity":{now}}}}}',
    )
    session = manager.start(session_id)
    session.put("count", 1)
    session = next_request(manager, session)
    assert_same(float("inf"), session.get("big"))
    assert_same(float("-inf"), session.get("small"))
    assert session.get("count") == 1


class Color(str, enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Shout(str):
    def __str__(self) -> str:
        return "SHOUTED"


def test_str_and_int_subclasses_keep_their_content(
    manager: SessionManager, next_request: NextRequest
) -> None:
    # A str-mixin enum's str() is "Color.RED"; what is stored must be its content, "red".
    session = manager.start(None)
    session.put({"color": Color.RED, "level": Level.HIGH, "shout": Shout("quiet")})
    session = next_request(manager, session)
    assert_same("red", session.get("color"))
    assert session.get("color") == Color.RED
    assert_same(3, session.get("level"))
    assert session.get("level") == Level.HIGH
    assert_same("quiet", session.get("shout"))


@attrs.frozen
class Point:
    x: int


@dataclasses.dataclass(frozen=True)
class Tag:
    name: str


@pytest.mark.parametrize(
    "value",
    [
        pytest.param({Point(1)}, id="attrs-in-set"),
        pytest.param(frozenset({Tag("a")}), id="dataclass-in-frozenset"),
        pytest.param({Tag("a"): 1}, id="dataclass-as-key"),
        pytest.param({(1, Point(2))}, id="attrs-in-tuple-in-set"),
    ],
)
def test_objects_that_would_read_back_unhashable_are_refused(
    manager: SessionManager, next_request: NextRequest, value: Any
) -> None:
    # Stored, they would read back as dicts inside a set: the whole session would be lost.
    session = manager.start(None)
    session.put("keep", 1)
    with pytest.raises(TypeError, match="'points"):
        session.put("points", value)
    session = next_request(manager, session)
    assert session.all() == {"keep": 1}


def test_objects_in_lists_and_tuples_are_fine(
    manager: SessionManager, next_request: NextRequest
) -> None:
    session = manager.start(None)
    session.put("points", [Point(1), (Tag("a"),)])
    session = next_request(manager, session)
    assert session.get("points") == [{"x": 1}, ({"name": "a"},)]


def test_unchanged_set_is_not_seen_as_changed(manager: SessionManager) -> None:
    session = manager.start(None)
    session.put("s", {"b", "a", 3, (1, 2), b"x"})
    session.save()
    again = manager.start(session.id)
    again.get("s")
    assert not again.modified


def test_encoding_is_plain_json() -> None:
    for name, value in ROUND_TRIP_VALUES.items():
        encoded = encode_value(value, name)
        text = json.dumps(encoded, allow_nan=False)  # no NaN/Infinity literals, nothing exotic
        assert_same(value, decode_value(json.loads(text)), name)


def test_dumps_loads_envelope() -> None:
    envelope = Envelope(
        values={"a": {1, 2}, "b": dt.date(2020, 1, 1)},
        created=1.5,
        last_activity=2.5,
        flash_new=["a"],
        flash_old=["b"],
        token="t" * 40,
        permanent=False,
    )
    text = dumps(envelope)
    document = json.loads(text)
    assert document["v"] == FORMAT_VERSION
    loaded = loads(text)
    assert loaded == envelope


def test_decode_value_never_builds_other_types() -> None:
    for tag in ("pickle", "object_", "type", "eval", "__reduce__", "module"):
        with pytest.raises(PayloadError):
            decode_value({"__t": tag, "v": "os.system"})


# -- depth ---------------------------------------------------------------------------------


@attrs.define
class Node:
    child: Any


NESTINGS: dict[str, Callable[[Any], Any]] = {
    "list": lambda inner: [inner],
    "dict": lambda inner: {"a": inner},
    "tuple": lambda inner: (inner,),
    "frozenset": lambda inner: frozenset([inner]),
    "int-keyed-dict": lambda inner: {1: inner},
    "attrs": Node,
}


def nested(kind: str, levels: int) -> Any:
    """A value of ``levels`` containers of one kind, one inside the other, around a string."""
    value: Any = "leaf"
    for _ in range(levels):
        value = NESTINGS[kind](value)
    return value


# Every way a value enters the session (the session is loaded first).
MUTATORS: dict[str, Callable[[Session, str, Any], object]] = {
    "put": lambda session, key, value: session.put(key, value),
    "put-mapping": lambda session, key, value: session.put({key: value}),
    "setitem": lambda session, key, value: session.__setitem__(key, value),
    "push": lambda session, key, value: session.push(key, value),
    "flash": lambda session, key, value: session.flash(key, value),
    "now": lambda session, key, value: session.now(key, value),
    "remember": lambda session, key, value: session.remember(key, lambda: value),
}


@pytest.mark.parametrize("kind", list(NESTINGS))
def test_a_value_at_the_depth_limit_round_trips(
    manager: SessionManager, next_request: NextRequest, kind: str
) -> None:
    value = nested(kind, MAX_DEPTH)
    session = manager.start(None)
    session.put("deep", value)
    session = next_request(manager, session)
    assert session.get("deep") == (value if kind != "attrs" else value_converter.unstructure(value))


@pytest.mark.parametrize("mutator", list(MUTATORS))
@pytest.mark.parametrize("kind", list(NESTINGS))
@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 480])
def test_a_value_nested_past_the_depth_limit_is_refused_naming_the_key(
    manager: SessionManager, next_request: NextRequest, kind: str, mutator: str, levels: int
) -> None:
    # 480 levels: deep enough that the encoder, unchecked, ran out of stack at save.
    session = manager.start(None)
    session.put("keep", 1)
    with pytest.raises(TypeError, match=rf"'deep\b.*more than {MAX_DEPTH} levels deep"):
        MUTATORS[mutator](session, "deep", nested(kind, levels))
    assert session.all() == {"keep": 1}
    session = next_request(manager, session)
    assert session.all() == {"keep": 1}


def test_a_dotted_keys_own_levels_count_toward_the_depth_limit(manager: SessionManager) -> None:
    session = manager.start(None)
    session.put("a.b", nested("list", MAX_DEPTH - 1))  # "a" holds MAX_DEPTH levels
    with pytest.raises(TypeError, match=r"'c\.d\.e"):
        session.put("c.d.e", nested("list", MAX_DEPTH - 1))
    assert session.all() == {"a": {"b": nested("list", MAX_DEPTH - 1)}}
    session.save()


def test_a_self_containing_value_is_refused_at_put(manager: SessionManager) -> None:
    loop: list[Any] = []
    loop.append(loop)
    session = manager.start(None)
    with pytest.raises(TypeError, match="'loop"):
        session.put("loop", loop)


def test_a_too_deep_change_made_in_place_fails_at_save_naming_the_key(
    manager: SessionManager,
) -> None:
    session = manager.start(None)
    session.put("deep", [])
    session.get("deep").append(nested("list", 480))  # never passes through put
    with pytest.raises(TypeError, match="'deep"):
        session.save()


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 600])
def test_decoding_refuses_a_stored_value_nested_past_the_depth_limit(levels: int) -> None:
    text = "[" * levels + "]" * levels
    assert decode_value(json.loads("[" * MAX_DEPTH + "]" * MAX_DEPTH)) is not None
    with pytest.raises(PayloadError, match="levels deep"):
        decode_value(json.loads(text))
    envelope = dumps(Envelope(values={}, created=1.0, last_activity=1.0), f'{{"deep":{text}}}')
    with pytest.raises(PayloadError):
        loads(envelope)


# -- properties ----------------------------------------------------------------------------

zones: st.SearchStrategy[dt.tzinfo] = st.sampled_from(
    [UTC, PARIS, ZoneInfo("America/New_York"), ZoneInfo("Asia/Kolkata"), ZoneInfo("UTC")]
)
datetimes = st.datetimes(
    min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1)
) | st.datetimes(
    min_value=dt.datetime(1900, 1, 1),
    max_value=dt.datetime(2200, 1, 1),
    timezones=zones,
    allow_imaginary=False,
)
hashable_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=10)
    | st.binary(max_size=10)
    | st.dates()
    | st.times(timezones=st.sampled_from([None, UTC]))
    | st.timedeltas()
    | st.uuids()
    | st.decimals(allow_nan=False)
    | datetimes
)
hashables = st.recursive(
    hashable_leaves,
    lambda children: (
        st.lists(children, max_size=3).map(tuple) | st.frozensets(children, max_size=3)
    ),
    max_leaves=6,
)
leaves = hashable_leaves | st.floats() | st.decimals()
values = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=4)
        | st.lists(children, max_size=4).map(tuple)
        | st.sets(hashables, max_size=4)
        | st.frozensets(hashables, max_size=4)
        | st.dictionaries(st.text(max_size=6), children, max_size=4)
        | st.dictionaries(hashables, children, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_encode_decode_round_trip(value: Any) -> None:
    encoded = encode_value(value, "k")
    text = json.dumps(encoded, allow_nan=False, ensure_ascii=False)
    assert_same(value, decode_value(json.loads(text)))


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(), st.binary()))
def test_loads_random_input_only_raises_payload_error(text: Any) -> None:
    try:
        result = loads(text)
    except PayloadError:
        return
    assert isinstance(result, Envelope)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(["__t", "v", "int", "float", "dict", "tuple", "set", "frozenset"])
    | st.sampled_from(["datetime", "date", "time", "timedelta", "uuid", "decimal", "bytes"])
    | st.sampled_from(["object", "tz", "Europe/Paris", "../../etc/passwd", "2020-01-01", "AA=="]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["__t", "v", "tz", "new", "old", "a"]) | st.text(max_size=4),
            children,
            max_size=4,
        )
    ),
    max_leaves=15,
)
tagged = st.builds(
    lambda tag, raw, extra: {"__t": tag, "v": raw, **extra},
    st.sampled_from(
        [
            "int",
            "float",
            "dict",
            "tuple",
            "set",
            "frozenset",
            "datetime",
            "date",
            "time",
            "timedelta",
            "uuid",
            "decimal",
            "bytes",
            "object",
            "nope",
        ]
    ),
    json_values,
    st.dictionaries(st.just("tz"), json_values, max_size=1),
)
meta_values = st.fixed_dictionaries(
    {},
    optional={
        "created": json_values,
        "last_activity": json_values,
        "flash": json_values,
        "token": json_values,
        "permanent": json_values,
        "id": json_values,
    },
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.dictionaries(st.text(max_size=4), tagged | json_values, max_size=3) | json_values,
    meta=meta_values | json_values,
    version=st.sampled_from([1, 1, 1, 2, "1", None, True]),
)
def test_loads_structured_garbage_only_raises_payload_error(
    data: Any, meta: Any, version: Any
) -> None:
    document = json.dumps({"v": version, "data": data, "meta": meta})
    try:
        result = loads(document)
    except PayloadError:
        return
    assert isinstance(result, Envelope)
    assert math.isfinite(result.created)
    assert math.isfinite(result.last_activity)


# Bookkeeping as dumps writes it, and near misses of every kind.
written_meta = st.fixed_dictionaries(
    {
        "created": st.floats(allow_nan=False, allow_infinity=False)
        | st.integers(-(10**20), 10**20),
        "last_activity": st.floats(allow_nan=False, allow_infinity=False)
        | st.integers(-(10**20), 10**20),
    },
    optional={
        "flash": st.none()
        | st.fixed_dictionaries(
            {},
            optional={
                "new": st.lists(st.text(max_size=4) | st.integers(), max_size=3),
                "old": st.lists(st.text(max_size=4) | st.none(), max_size=3) | st.none(),
                "other": st.integers(),
            },
        ),
        "token": st.none() | st.text(max_size=8) | st.integers(),
        "permanent": st.none() | st.booleans() | st.integers(0, 1),
        "id": st.none() | st.text(max_size=8) | st.booleans(),
        "other": json_values,
    },
)


def _read(text: str) -> Envelope | type[PayloadError]:
    try:
        return loads(text)
    except PayloadError:
        return PayloadError


def _read_leniently(text: str) -> Envelope | type[PayloadError]:
    try:
        return payload._loads_document(text)
    except PayloadError:
        return PayloadError


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.dictionaries(st.text(max_size=4), tagged | json_values, max_size=3)
    | st.dictionaries(st.text(max_size=4), st.integers() | st.text(max_size=4), max_size=3)
    | json_values,
    meta=written_meta | written_meta | meta_values,
    version=st.sampled_from([1, 1, 1, 1, 1, 2, 1.0, None, True]),
)
def test_loads_reads_every_payload_as_the_lenient_reader_does(
    data: Any, meta: Any, version: Any
) -> None:
    """The typed parse of what dumps writes agrees with the lenient reader of any payload."""
    document = json.dumps({"v": version, "data": data, "meta": meta})
    expected, actual = _read_leniently(document), _read(document)
    if expected is PayloadError or actual is PayloadError:
        assert actual is expected
        return
    assert isinstance(actual, Envelope)
    assert isinstance(expected, Envelope)
    # repr shows the values with float signs and NaNs; types are checked apart.
    assert repr(actual) == repr(expected)
    assert repr(actual.stored_values) == repr(expected.stored_values)
    assert type(actual.created) is type(expected.created) is float
    assert type(actual.last_activity) is type(expected.last_activity) is float


@settings(max_examples=200, deadline=None)
@given(tagged | json_values)
def test_decode_value_only_raises_payload_error(data: Any) -> None:
    with contextlib.suppress(PayloadError):
        decode_value(data)


def test_loads_keeps_the_values_json_as_the_payload_held_it() -> None:
    """The change check compares with the stored bytes instead of encoding what was read."""
    envelope = Envelope(values={"b": [1, {"c": "é"}], "a": 2}, created=1.0, last_activity=2.0)
    text = dumps(envelope)
    assert loads(text).stored_json == payload.values_json(payload.encode_values(envelope.values))
    # A payload written with other spacing keeps its own bytes: they still parse to the values.
    spaced = text.replace('"a":2', '"a": 2')
    loaded = loads(spaced)
    assert loaded.stored_json is not None
    assert b'"a": 2' in loaded.stored_json
    assert loaded.values == envelope.values


def test_a_session_stored_with_other_spacing_saves_its_values_intact() -> None:
    manager = SessionManager(
        SessionConfig(driver="array", secret_key="a-payload-test-secret-0123456789abcdefgh")
    )
    session = manager.start(None)
    session.put({"cart": [1, 2], "name": "Ada"})
    session.save()
    handler = manager.handler()
    assert isinstance(handler, ArraySessionHandler)
    [key] = handler._entries  # the one record, rewritten with a space the encoder never writes
    handler.write(key, handler.read(key).replace('"name":', '"name": '))
    again = manager.start(session.id)
    assert again.get("cart") == [1, 2]  # a container handed out: the save checks for changes
    again.save()
    assert manager.start(session.id).all() == {"cart": [1, 2], "name": "Ada"}


# Long enough for the encoder's checks to search instead of count, once with text
# whose UTF-8 holds the bytes MessagePack writes before a large unsigned integer.
PADDINGS = ("", "x" * 3000, "π" * 1500)


def canonical_json(values: dict[str, Any]) -> bytes:
    return payload.values_json(payload.encode_values(values))


@pytest.mark.parametrize("padding", PADDINGS, ids=["short", "long", "long-greek"])
@pytest.mark.parametrize(
    "number",
    [
        2**32 + 1,
        2**63 - 1,
        2**63,
        2**64 - 1,
        2**64,
        10**30,
        -(2**63),
        -(2**63) - 1,
        1234567890123456789,
    ],
)
def test_integers_past_64_bits_are_tagged_whatever_the_payload_size(
    padding: str, number: int
) -> None:
    values = {"pad": padding, "n": number, "list": [number, {"deep": number}]}
    assert payload.encode_to_json(values) == canonical_json(values)
    assert loads(dumps(Envelope(values=values, created=1.0, last_activity=1.0))).values == values


@pytest.mark.parametrize("padding", PADDINGS, ids=["short", "long", "long-greek"])
@pytest.mark.parametrize("nesting", [MAX_DEPTH - 10, MAX_DEPTH + 3])
def test_many_brackets_send_values_through_the_full_encoder(padding: str, nesting: int) -> None:
    values: dict[str, Any] = {"pad": padding, "flat": [[] for _ in range(nesting)]}
    encoded = payload.encode_to_json(values)
    assert encoded == canonical_json(values)
    text = dumps(Envelope(values=values, created=1.0, last_activity=1.0))
    assert loads(text).plain is (nesting < MAX_DEPTH)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.text(max_size=6), values, max_size=4), st.sampled_from(PADDINGS))
def test_the_fast_encoding_is_the_canonical_one(data: dict[str, Any], padding: str) -> None:
    data["~pad"] = padding
    try:
        canonical = canonical_json(data)
    except (TypeError, ValueError):
        return  # refused by the full encoder; encode_to_json refuses it the same way
    assert payload.encode_to_json(data) == canonical
    # Checked against its own canonical JSON, nothing changed; against other bytes, it did.
    assert payload.changed_json(data, canonical) in (None, canonical)
    assert payload.changed_json(data, canonical + b" ") == canonical


def test_a_handed_out_container_replaced_in_place_by_a_lookalike_is_saved() -> None:
    """Equal JSON is not enough: a tuple where the list was, or a datetime where its ISO
    string was, encodes alike, and is kept."""
    manager = SessionManager(
        SessionConfig(driver="array", secret_key="a-payload-test-secret-0123456789abcdefgh")
    )
    when = dt.datetime(2026, 1, 1, 12, 30)
    lookalikes = [("items", [1, 2], (1, 2)), ("when", when.isoformat(), when)]
    for padding in PADDINGS:
        for name, stored, lookalike in lookalikes:
            session = manager.start(None)
            session.put({"cart": {name: stored}, "pad": padding})
            session.save()
            unchanged = manager.start(session.id)
            unchanged.get("cart")
            assert unchanged.save() is SaveOutcome.UNCHANGED
            swapped = manager.start(session.id)
            swapped.get("cart")[name] = lookalike
            assert swapped.save() is SaveOutcome.WRITTEN
            assert_same({name: lookalike}, manager.start(session.id).get("cart"))
