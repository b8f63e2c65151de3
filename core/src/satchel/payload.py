"""The stored payload: JSON with type tags, a format version and bookkeeping.

What the application puts comes back equal: JSON's own types and datetime,
date, time, timedelta, UUID, Decimal, bytes, tuple, set, frozenset, integers of
any size, and attrs or dataclass instances (read back as mappings, or typed
with ``session.get(key, type=Cls)``). Anything else is a ``TypeError`` naming
the key, and so is a value that nests containers more than ``MAX_DEPTH``
levels deep. Nothing is ever pickled: decoding builds only these plain types.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import json
import math
import uuid
from collections.abc import Mapping
from typing import Any, Literal
from zoneinfo import ZoneInfo

import attrs
import cattrs
import msgspec

FORMAT_VERSION = 1
TAG = "__t"  # a JSON object carrying this key is a tagged value
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Containers (lists, dicts, tuples, sets, attrs/dataclass instances) one value may nest.
# Real session data nests a few levels; each level costs the encoder and decoder up to
# four Python frames, so a value at the limit needs about a quarter of Python's default
# recursion limit (1000) and leaves the rest to the web framework's stack.
MAX_DEPTH = 64
_PATH_SHOWN = 120  # characters of a too-deep value's path put in the error message


class PayloadError(ValueError):
    """A stored payload could not be decoded (corrupt, foreign or from a future format)."""


def _make_value_converter() -> cattrs.Converter:
    converter = cattrs.Converter()
    # Values decoded from the payload are already of these types: pass them through.
    for passthrough in (
        dt.datetime,
        dt.date,
        dt.time,
        dt.timedelta,
        uuid.UUID,
        decimal.Decimal,
        bytes,
    ):
        converter.register_structure_hook(passthrough, _passthrough)
        converter.register_unstructure_hook(passthrough, lambda value: value)
    return converter


def _passthrough(value: Any, type_: type) -> Any:
    if isinstance(value, type_):
        return value
    raise TypeError(f"expected {type_.__name__}, got {type(value).__name__}")


value_converter = _make_value_converter()
"""The cattrs converter that turns attrs/dataclass values into mappings and back."""


def encode_value(value: Any, path: str, *, hashable: bool = False, depth: int = 0) -> Any:
    """Turn a session value into JSON-ready data with type tags; ``TypeError`` names ``path``.

    ``hashable``: the value is a set member or a dict key (inside one, an attrs or
    dataclass instance is refused: it would read back as an unhashable mapping).
    ``depth``: how many containers already enclose the value (a dotted key's own
    levels, say); a container that would be level ``MAX_DEPTH + 1`` is refused.
    """
    return _encode(value, path, hashable, depth)


def _encode(value: Any, path: str, hashable: bool, depth: int) -> Any:
    # encode_value's recursion: positional arguments and the depth check inline, as
    # every save runs it over the whole session.
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str.__str__(value)  # the content, even for a str enum or subclass
    if isinstance(value, int):
        number = int(value)
        return number if INT64_MIN <= number <= INT64_MAX else {TAG: "int", "v": str(number)}
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else {TAG: "float", "v": repr(float(value))}
    if isinstance(value, list):
        if depth >= MAX_DEPTH:
            raise _too_deep(path)
        depth += 1
        return [_encode(item, f"{path}[{index}]", False, depth) for index, item in enumerate(value)]
    if isinstance(value, dict):
        if depth >= MAX_DEPTH:
            raise _too_deep(path)
        depth += 1
        if all(isinstance(key, str) for key in value) and TAG not in value:
            return {
                key: _encode(item, f"{path}.{key}", False, depth) for key, item in value.items()
            }
        return {
            TAG: "dict",
            "v": [
                [_encode(key, path, True, depth), _encode(item, f"{path}[{key!r}]", False, depth)]
                for key, item in value.items()
            ],
        }
    if isinstance(value, tuple):
        if depth >= MAX_DEPTH:
            raise _too_deep(path)
        depth += 1
        return {
            TAG: "tuple",
            "v": [_encode(item, f"{path}[{i}]", hashable, depth) for i, item in enumerate(value)],
        }
    if isinstance(value, (set, frozenset)):
        if depth >= MAX_DEPTH:
            raise _too_deep(path)
        depth += 1
        items = [_encode(item, f"{path}{{}}", True, depth) for item in value]
        items.sort(
            key=canonical_json
        )  # a stable order, so an unchanged set is never seen as changed
        return {TAG: "frozenset" if isinstance(value, frozenset) else "set", "v": items}
    if isinstance(value, dt.datetime):
        encoded: dict[str, Any] = {TAG: "datetime", "v": value.isoformat()}
        zone_key = getattr(value.tzinfo, "key", None)
        if isinstance(zone_key, str):
            encoded["tz"] = zone_key
        return encoded
    if isinstance(value, dt.date):
        return {TAG: "date", "v": value.isoformat()}
    if isinstance(value, dt.time):
        return {TAG: "time", "v": value.isoformat()}
    if isinstance(value, dt.timedelta):
        return {TAG: "timedelta", "v": [value.days, value.seconds, value.microseconds]}
    if isinstance(value, uuid.UUID):
        return {TAG: "uuid", "v": str(value)}
    if isinstance(value, decimal.Decimal):
        return {TAG: "decimal", "v": str(value)}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {TAG: "bytes", "v": base64.b64encode(bytes(value)).decode("ascii")}
    if attrs.has(type(value)) or (dataclasses.is_dataclass(value) and not isinstance(value, type)):
        if hashable:
            raise TypeError(
                f"session value {path!r} holds a {type(value).__name__} instance in a set or as "
                "a dict key, which would read back as an unhashable mapping; use a tuple or a str"
            )
        try:
            plain = value_converter.unstructure(value)
        except RecursionError:
            # cattrs recurses through nested instances before the depth below is counted.
            raise _too_deep(path) from None
        # The instance is the mapping it unstructures to: one level, counted there.
        return {TAG: "object", "v": _encode(plain, path, False, depth)}
    raise TypeError(
        f"session value {path!r} has type {type(value).__name__}, which satchel cannot store; "
        "store JSON types, datetime, date, time, timedelta, UUID, Decimal, bytes, tuple, set, "
        "frozenset, or attrs/dataclass instances"
    )


def _too_deep(path: str) -> TypeError:
    shown = path if len(path) <= _PATH_SHOWN else path[:_PATH_SHOWN] + "…"
    return TypeError(
        f"session value {shown!r} nests containers more than {MAX_DEPTH} levels deep, "
        "which satchel refuses to store"
    )


def decode_value(data: Any, depth: int = 0) -> Any:
    """Rebuild a value from :func:`encode_value`'s output; ``PayloadError`` when it is malformed.

    ``depth`` counts the containers around ``data``, as :func:`encode_value`
    does: a stored value nested deeper than ``MAX_DEPTH`` is malformed too.
    """
    if isinstance(data, list):
        if depth >= MAX_DEPTH:
            raise _stored_too_deep()
        return [decode_value(item, depth + 1) for item in data]
    if not isinstance(data, dict):
        if isinstance(data, (str, int, float, bool)) or data is None:
            return data
        raise PayloadError(f"unexpected JSON value of type {type(data).__name__}")
    tag = data.get(TAG)
    if tag is None:
        if depth >= MAX_DEPTH:
            raise _stored_too_deep()
        inner = depth + 1
        return {key: decode_value(item, inner) for key, item in data.items()}
    raw = data.get("v")
    decoder = _DECODERS.get(tag) if isinstance(tag, str) else None
    if decoder is None:
        raise PayloadError(f"unknown type tag {tag!r}")
    try:
        return decoder(raw, data, depth)
    except PayloadError:
        raise
    except (TypeError, ValueError, LookupError, AttributeError, ArithmeticError) as exc:
        # LookupError: a short timedelta list; AttributeError: UUID of a non-string;
        # ArithmeticError: overflow, a bad Decimal
        raise PayloadError(f"bad {tag!r} value: {exc}") from exc


def _stored_level_below(depth: int) -> int:
    """The depth of a tagged container's items, or the ``PayloadError`` past the limit."""
    if depth >= MAX_DEPTH:
        raise _stored_too_deep()
    return depth + 1


def _stored_too_deep() -> PayloadError:
    return PayloadError(f"a value nests containers more than {MAX_DEPTH} levels deep")


def _decode_datetime(raw: Any, data: dict[str, Any], depth: int) -> dt.datetime:
    value = dt.datetime.fromisoformat(raw)
    zone_key = data.get("tz")
    if isinstance(zone_key, str) and value.tzinfo is not None:
        try:
            return value.astimezone(ZoneInfo(zone_key))
        except Exception:  # an unknown zone on this machine: keep the fixed offset
            return value
    return value


def _decode_dict(raw: Any, data: dict[str, Any], depth: int) -> dict[Any, Any]:
    inner = _stored_level_below(depth)
    return {_hashable(decode_value(key, inner)): decode_value(item, inner) for key, item in raw}


def _decode_items(raw: Any, depth: int) -> list[Any]:
    """The decoded items of a tagged tuple, set or frozenset: one level below it."""
    inner = _stored_level_below(depth)
    return [decode_value(item, inner) for item in _list(raw)]


def _hashable(value: Any) -> Any:
    hash(value)  # raises TypeError for a list or dict used as a key
    return value


_DECODERS: dict[str, Any] = {
    "int": lambda raw, _, __: int(str(raw)),
    "float": lambda raw, _, __: float(str(raw)),
    "dict": _decode_dict,
    "tuple": lambda raw, _, depth: tuple(_decode_items(raw, depth)),
    "set": lambda raw, _, depth: {_hashable(item) for item in _decode_items(raw, depth)},
    "frozenset": lambda raw, _, depth: frozenset(map(_hashable, _decode_items(raw, depth))),
    "datetime": _decode_datetime,
    "date": lambda raw, _, __: dt.date.fromisoformat(raw),
    "time": lambda raw, _, __: dt.time.fromisoformat(raw),
    "timedelta": lambda raw, _, __: dt.timedelta(days=raw[0], seconds=raw[1], microseconds=raw[2]),
    "uuid": lambda raw, _, __: uuid.UUID(raw),
    "decimal": lambda raw, _, __: decimal.Decimal(raw),
    "bytes": lambda raw, _, __: base64.b64decode(raw, validate=True),
    # An instance is stored as the mapping it unstructured to: that mapping is its level.
    "object": lambda raw, _, depth: decode_value(raw, depth),
}


def _list(raw: Any) -> list[Any]:
    if not isinstance(raw, list):
        raise PayloadError("expected a list")
    return raw


def canonical_json(encoded: Any) -> str:
    """One encoded value as canonical JSON (sorted keys): equal text means an equal value."""
    return json.dumps(encoded, sort_keys=True, separators=(",", ":"), allow_nan=False)


def structure_as(value: Any, type_: type[Any]) -> Any:
    """Structure a decoded value into ``type_`` (an attrs class, a dataclass, …) with cattrs."""
    if isinstance(value, type_):
        return value
    return value_converter.structure(value, type_)


@attrs.define
class Envelope:
    """A decoded payload: the application's values and core's bookkeeping.

    Attributes:
        values: The application's data, decoded.
        created: Unix time the session was created (absolute expiry counts from it).
        last_activity: Unix time of the last write or refresh (idle expiry counts from it).
        flash_new: Keys flashed this request, kept for the next one.
        flash_old: Keys flashed last request, forgotten at this request's save.
        token: The CSRF token, or ``None`` until first asked for.
        permanent: Flask's ``session.permanent``; ``None`` follows the config.
        client_id: The session id, kept in the payload by the cookie driver only
            (a server-side store never holds an id).
        stored_values: The values as :func:`loads` parsed them, type tags and all
            (not part of the payload itself): their :func:`values_json` is what was
            read. For a payload with no tagged value they are ``values`` itself.
        plain: Whether :func:`loads` found ``values`` to hold only JSON's own types,
            untagged (not part of the payload itself): their :func:`values_json` is
            then their encoding, with no check needed.
        stored_json: The JSON of ``stored_values`` exactly as the payload held it, when
            :func:`loads` read a payload in the form :func:`dumps` writes (not part of
            the payload itself): the :func:`values_json` it was written with, so a
            change check need not encode what was read.
    """

    values: dict[str, Any]
    created: float
    last_activity: float
    flash_new: list[str] = attrs.field(factory=list)
    flash_old: list[str] = attrs.field(factory=list)
    token: str | None = None
    permanent: bool | None = None
    client_id: str | None = None
    stored_values: dict[str, Any] | None = attrs.field(default=None, eq=False, repr=False)
    plain: bool = attrs.field(default=False, eq=False, repr=False)
    stored_json: bytes | None = attrs.field(default=None, eq=False, repr=False)


_sorted_json = msgspec.json.Encoder(order="sorted")
_json = msgspec.json.Encoder()
_parse_json = msgspec.json.Decoder()


def _encode_json(document: Any, *, sort_keys: bool) -> bytes:
    """``document`` as compact JSON bytes, non-ASCII text as UTF-8.

    A lone surrogate (which UTF-8 cannot carry) is written as a ``\\u`` escape
    instead, so every driver can store it.
    """
    try:
        return (_sorted_json if sort_keys else _json).encode(document)
    except UnicodeEncodeError:
        if isinstance(document, msgspec.Struct):
            document = msgspec.to_builtins(document)
        text = json.dumps(document, sort_keys=sort_keys, separators=(",", ":"), allow_nan=False)
        return text.encode("ascii")


def encode_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """Encode the application's data, naming the key of any value that cannot be stored."""
    return {key: _encode(value, key, False, 0) for key, value in values.items()}


def values_json(encoded_values: Mapping[str, Any]) -> bytes:
    """The canonical JSON of encoded values (sorted keys), as stored and as compared.

    Equal bytes mean equal values: a save compares them with what it loaded
    to decide whether anything changed.
    """
    return _encode_json(encoded_values, sort_keys=True)


def encode_to_json(values: Mapping[str, Any]) -> bytes:
    """The canonical JSON of the application's values: ``values_json(encode_values(values))``.

    Values that hold only JSON's own types (the common case) need no tags, and
    are encoded in one pass in C. Such an encoding is kept only when parsing it
    back gives values equal to these: a tuple, a set, a datetime, a UUID, a
    Decimal, bytes, a non-string key or a non-finite float would encode like
    the list, string or null it is not, and then compares unequal. ``1`` against
    ``1.0`` or ``True`` compares equal but encodes apart. Anything else, or a
    large integer (tagged to keep its digits), goes through :func:`encode_values`,
    which also refuses what cannot be stored, naming its key.
    """
    return _canonical_json(values, _plain_encoding(values))


def changed_json(values: Mapping[str, Any], loaded_json: bytes) -> bytes | None:
    """``None`` when ``values`` are exactly the plain values ``loaded_json`` holds, else
    their :func:`encode_to_json` (which equals ``loaded_json`` when tagged values are
    unchanged).

    Encoding plainly to the same bytes and parsing back equal means nothing
    changed, whatever those bytes hold: the checks :func:`encode_to_json` runs
    over an encoding (tags, depth, large integers) are for writing it, and an
    unchanged session is not written.
    """
    encoded = _plain_encoding(values)
    if encoded is not None and encoded == loaded_json and _parses_to(encoded, values):
        return None
    return _canonical_json(values, encoded)


def _plain_encoding(values: Mapping[str, Any]) -> bytes | None:
    """``values`` encoded in one pass in C as the JSON types they look like (``None``:
    something the plain encoder cannot write)."""
    try:
        return _sorted_json.encode(values)
    except Exception:  # not JSON's own types: the full encoder decides
        return None


def _parses_to(encoded: bytes, values: Mapping[str, Any]) -> bool:
    """Whether ``encoded`` parses back to values equal to ``values``."""
    try:
        return bool(_parse_json.decode(encoded) == values)
    except Exception:  # not JSON's own types: the full encoder decides
        return False


def _canonical_json(values: Mapping[str, Any], encoded: bytes | None) -> bytes:
    """The canonical JSON of ``values``: ``encoded`` (their plain encoding) when it is
    that already, else the full encoder's."""
    if (
        encoded is not None
        and _plain_json(encoded)
        and _fits_int64(values, encoded)
        and _parses_to(encoded, values)
    ):
        return encoded
    return values_json(encode_values(values))


_msgpack = msgspec.msgpack.Encoder()


def _fits_int64(values: Mapping[str, Any], encoded: bytes) -> bool:
    """Whether every integer in ``values`` (encoded as ``encoded``) is within 64 bits,
    so the full encoder would not tag it.

    A short encoding's digits decide at once. For a long one, MessagePack
    encodes the values without their strings' length mattering: it refuses an
    integer beyond unsigned 64 bits, and writes one between signed and unsigned
    64 bits as 0xCF and a byte with its high bit set. Those two bytes may also
    sit inside a string or a larger number's bytes; then the JSON's digits decide.
    """
    if len(encoded) >= _COUNTED_BELOW:
        try:
            packed = _msgpack.encode(values)
        except OverflowError:
            return False
        except Exception:  # noqa: S110 - not MessagePack's types either: the digits decide
            pass
        else:
            at = packed.find(b"\xcf")
            while at != -1 and packed[at + 1 : at + 2] < b"\x80":
                at = packed.find(b"\xcf", at + 1)
            if at == -1:
                return True
    return _LONG_NUMBER not in encoded.translate(_DIGITS_AS_ZERO)


# 19 digits in a row: maybe an integer past 64 bits, which the full encoder tags.
# Found by mapping every digit to "0" and searching for a run: a regular expression
# steps through the bytes several times slower, which a 20 KB session feels.
_DIGITS_AS_ZERO = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_LONG_NUMBER = b"0" * 19


def _plain_json(encoded_json: bytes) -> bool:
    """:func:`_plain` for the values' JSON."""
    return b'"__t"' not in encoded_json and _brackets_within(encoded_json, MAX_DEPTH)


def _brackets_within(text: str | bytes, limit: int) -> bool:
    """Whether ``text`` holds at most ``limit`` of ``{`` and ``[``.

    A long text is searched bracket by bracket, stopping past the limit: each
    search skips ahead in C (``memchr``), where counting steps through every byte.
    """
    brackets: tuple[Any, Any] = ("{", "[") if isinstance(text, str) else (b"{", b"[")
    if len(text) < _COUNTED_BELOW:
        return text.count(brackets[0]) + text.count(brackets[1]) <= limit
    found = 0
    for bracket in brackets:
        at = text.find(bracket)
        while at != -1:
            found += 1
            if found > limit:
                return False
            at = text.find(bracket, at + 1)
    return True


_COUNTED_BELOW = 2048  # shorter texts are counted in one call


def parse_values_json(encoded_json: bytes) -> dict[str, Any]:
    """The encoded values :func:`values_json` made (still tagged: see :func:`decode_value`)."""
    parsed = _parse(encoded_json.decode("utf-8"))
    if not isinstance(parsed, dict):
        raise PayloadError("the values must be an object")
    return parsed


class _StoredFlash(msgspec.Struct):
    new: list[str]
    old: list[str]


class _StoredMeta(msgspec.Struct, omit_defaults=True):
    """The bookkeeping as :func:`dumps` writes it (``permanent`` and ``id`` only when set)."""

    created: float
    last_activity: float
    flash: _StoredFlash
    token: str | None
    permanent: bool | None = None
    id: str | None = None


class _StoredPayload(msgspec.Struct):
    """A payload in the form :func:`dumps` writes (unknown keys ignored)."""

    v: Literal[1]  # FORMAT_VERSION
    data: msgspec.Raw  # kept as written, then parsed: the bytes serve the change check
    meta: _StoredMeta


_parse_payload = msgspec.json.Decoder(_StoredPayload)
_parse_data = msgspec.json.Decoder(dict[str, Any])


def dumps(envelope: Envelope, encoded_json: bytes | str | None = None) -> str:
    """Serialise an envelope to the stored payload text.

    ``encoded_json`` is the values' :func:`values_json`, when the caller has it already.
    """
    if encoded_json is None:
        encoded_json = encode_to_json(envelope.values)
    elif isinstance(encoded_json, str):
        encoded_json = encoded_json.encode("utf-8")
    meta = _StoredMeta(
        envelope.created,
        envelope.last_activity,
        _StoredFlash(envelope.flash_new, envelope.flash_old),
        envelope.token,
        envelope.permanent,
        envelope.client_id,
    )
    # The values are serialised once, canonically, and spliced in: the same bytes
    # serve for the change check and for storage.
    document = b"".join(
        (
            b'{"v":%d,"data":' % FORMAT_VERSION,
            encoded_json,
            b',"meta":',
            _encode_json(meta, sort_keys=False),
            b"}",
        )
    )
    return document.decode("utf-8")


def _parse(text: str) -> Any:
    try:
        return _parse_json.decode(text)
    except (msgspec.DecodeError, UnicodeError, RecursionError):
        # An escaped lone surrogate, which the fast parser refuses: the stdlib's reads it.
        pass
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise PayloadError(f"not JSON: {exc}") from exc


_TAG_TEXT = f'"{TAG}"'


def _plain(text: str) -> bool:
    """Whether ``text`` cannot hold a tagged value or one nested past ``MAX_DEPTH``.

    A cheap over-estimate: brackets inside strings count too, and then the
    values are walked as usual.
    """
    return _TAG_TEXT not in text and _brackets_within(text, MAX_DEPTH)


# What reading a malformed payload's parsed JSON may raise; ArithmeticError: float()
# of an integer too large for a float.
_MALFORMED = (LookupError, TypeError, ValueError, AttributeError, ArithmeticError, RecursionError)


def loads(text: str) -> Envelope:
    """Parse a stored payload; ``PayloadError`` for anything that is not one."""
    try:
        # What dumps wrote is checked while it is parsed, in C.
        stored = _parse_payload.decode(text)
        stored_json = bytes(stored.data)
        data = _parse_data.decode(stored_json)
    except (msgspec.DecodeError, UnicodeError, RecursionError):
        # Anything else (a foreign or hand-made payload, an escaped lone surrogate,
        # garbage) goes through the lenient reader, which accepts or refuses it.
        return _loads_document(text)
    meta = stored.meta
    created, last_activity, flash = meta.created, meta.last_activity, meta.flash
    values = _values(text, data, created, last_activity)
    # Positional: the payload of every request that uses its session is built here.
    return Envelope(
        values,
        created,
        last_activity,
        flash.new,
        flash.old,
        meta.token,
        meta.permanent,
        meta.id,
        data,
        # Untagged, and parsed strictly: no NaN or infinity (which the lenient reader
        # accepts and msgspec would write as null), only JSON's own types.
        values is data,
        stored_json,
    )


def _loads_document(text: str) -> Envelope:
    """:func:`loads` of any JSON document: bookkeeping of other types is read leniently."""
    document = _parse(text)
    if not isinstance(document, dict) or not isinstance(document.get("v"), int):
        raise PayloadError("not a satchel payload")
    version = document["v"]
    if version != FORMAT_VERSION:
        # Later formats add a reader here; an unknown one is never guessed at.
        raise PayloadError(f"unsupported payload format version {version!r}")
    try:
        data = document["data"]
        meta = document["meta"]
        if not isinstance(data, dict) or not isinstance(meta, dict):
            raise PayloadError("data and meta must be objects")
        flash = meta.get("flash") or {}
        token = meta.get("token")
        permanent = meta.get("permanent")
        client_id = meta.get("id")
        created = float(meta["created"])
        last_activity = float(meta["last_activity"])
        flash_new = [str(key) for key in flash.get("new", [])]
        flash_old = [str(key) for key in flash.get("old", [])]
    except PayloadError:
        raise
    except _MALFORMED as exc:
        raise PayloadError(f"malformed payload: {exc}") from exc
    return Envelope(
        values=_values(text, data, created, last_activity),
        created=created,
        last_activity=last_activity,
        flash_new=flash_new,
        flash_old=flash_old,
        token=token if isinstance(token, str) else None,
        permanent=permanent if isinstance(permanent, bool) else None,
        client_id=client_id if isinstance(client_id, str) else None,
        stored_values=data,
    )


def _values(
    text: str, data: dict[str, Any], created: float, last_activity: float
) -> dict[str, Any]:
    """The decoded values of a parsed payload ``text``, once its timestamps are found finite."""
    if not (math.isfinite(created) and math.isfinite(last_activity)):
        raise PayloadError("timestamps must be finite")
    try:
        # JSON object keys are strings already: plain values are the parsed data itself.
        return data if _plain(text) else {key: decode_value(item) for key, item in data.items()}
    except PayloadError:
        raise
    except _MALFORMED as exc:
        raise PayloadError(f"malformed payload: {exc}") from exc
