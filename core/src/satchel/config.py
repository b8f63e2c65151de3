"""``SessionConfig``: every setting of satchel, after Laravel's ``config/session``."""

from __future__ import annotations

import json
import math
import os
import re
import sys
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import attrs
import cattrs

from satchel.crypto import check_secrets
from satchel.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

T = TypeVar("T")

SAME_SITE_VALUES = ("lax", "strict", "none")
HOST_PREFIX = "__Host-"
SECURE_PREFIX = "__Secure-"
TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "off"})
# 256 KiB: 64 times what a cookie holds and a quarter of memcached's default item size,
# far above what a session that is read on every request should carry.
DEFAULT_MAX_PAYLOAD_BYTES = 256 * 1024
# Environment variables that start with SESSION_ but belong to someone else.
FOREIGN_ENV_NAMES = frozenset({"SESSION_MANAGER"})
# RFC 6265 path-value: any CHAR except CTLs or ";" (so printable ASCII, space included).
_COOKIE_PATH_CHARS = frozenset(chr(code) for code in range(0x20, 0x7F)) - {";"}
# RFC 6265 domain-value: a host name (RFC 1034, as RFC 1123 relaxes it): dot-separated
# labels of ASCII letters, digits and inner hyphens, 63 characters at most each.
_DOMAIN_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
MAX_DOMAIN_LENGTH = 253


def parse_bool(value: object) -> bool:
    """A boolean from a bool, 0/1 or one of the words true/false/1/0/yes/no/on/off."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise ValueError(f"expected true or false, got {value!r}")


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True)
    converter.register_structure_hook(bool, lambda value, _: parse_bool(value))

    def structure_float(value: object, _: object) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError(f"expected a number, got {value!r}")
        return float(value)

    def structure_int(value: object, _: object) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ValueError(f"expected a whole number, got {value!r}")
        return int(value)

    def structure_str(value: object, _: object) -> str:
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {value!r}")
        return value

    converter.register_structure_hook(float, structure_float)
    converter.register_structure_hook(int, structure_int)
    converter.register_structure_hook(str, structure_str)
    return converter


converter = _make_converter()
"""The cattrs converter for config values: strict bools, numbers and strings."""


def cookie_name_prefix(name: str) -> str | None:
    """``HOST_PREFIX`` or ``SECURE_PREFIX`` when ``name`` carries it, else ``None``.

    Browsers match the prefixes case-insensitively (RFC 6265bis), so
    ``__host-sid`` gets the same rules as ``__Host-sid``.
    """
    folded = name.lower()
    for prefix in (HOST_PREFIX, SECURE_PREFIX):
        if folded.startswith(prefix.lower()):
            return prefix
    return None


def check_cookie_scope(*, path: str, domain: str | None) -> None:
    """Refuse a cookie ``path`` or ``domain`` that RFC 6265 does not allow, naming the key.

    The path may hold any printable ASCII but ``;`` (no control character can
    reach ``Set-Cookie``); the domain must be a host name, with an optional
    leading dot. ``None`` or an empty domain means a host-only cookie.
    """
    if not all(ch in _COOKIE_PATH_CHARS for ch in path):
        raise ConfigError(
            "path", f"may hold only printable ASCII characters other than ';', got {path!r}"
        )
    if not domain:
        return
    name = domain.removeprefix(".")
    if len(name) > MAX_DOMAIN_LENGTH or not all(
        _DOMAIN_LABEL.fullmatch(label) for label in name.split(".")
    ):
        raise ConfigError(
            "domain",
            "must be a host name (dot-separated labels of ASCII letters, digits and inner "
            "hyphens; an optional leading dot; an international name in its xn-- form), "
            f"got {domain!r}",
        )


def check_cookie_prefix(name: str, *, path: str, domain: str | None, secure: bool | None) -> None:
    """Refuse the attributes a ``__Host-`` or ``__Secure-`` cookie name forbids.

    A browser drops such a cookie, so every session would silently be new.
    """
    prefix = cookie_name_prefix(name)
    if prefix == HOST_PREFIX:
        if domain is not None:
            raise ConfigError("domain", f"must be unset for a {HOST_PREFIX} cookie name")
        if path != "/":
            raise ConfigError("path", f'must be "/" for a {HOST_PREFIX} cookie name')
    if prefix is not None and secure is False:
        raise ConfigError("secure", f"must not be false for the cookie name {name!r}")


def _is_of_type(value: object, annotation: Any) -> bool:
    """Whether ``value`` is of the declared type, strictly: no parsing, no coercion."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return True
    if annotation is type(None):
        return value is None
    if origin is typing.Union or origin is types.UnionType:
        return any(_is_of_type(value, arg) for arg in args)
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return (
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        )
    if annotation is str:
        return isinstance(value, str)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_is_of_type(item, args[0]) for item in value)
        return len(value) == len(args) and all(map(_is_of_type, value, args))
    if origin is Mapping:
        key_type, value_type = args
        return isinstance(value, Mapping) and all(
            _is_of_type(key, key_type) and _is_of_type(item, value_type)
            for key, item in value.items()
        )
    # A new key of a kind not handled above must add its rule here.
    raise TypeError(f"no type check for {annotation!r}")


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is type(None):
        return "None"
    if origin is typing.Union or origin is types.UnionType:
        return " or ".join(_type_name(arg) for arg in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a tuple of items each {_type_name(args[0])}"
        return f"a tuple of {len(args)} items ({', '.join(map(_type_name, args))})"
    if origin is Mapping:
        return f"a mapping with keys each {_type_name(args[0])}"
    names = {
        bool: "True or False",
        int: "a whole number",
        float: "a finite number",
        str: "a string",
        Any: "anything",
    }
    return names.get(annotation, str(annotation))


def _shown(attribute: attrs.Attribute[Any], value: object) -> str:
    # Fields kept out of repr (the secrets) are never echoed in a message.
    return repr(value) if attribute.repr else f"a value of type {type(value).__name__}"


def _check_declared_type(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """Every key's first validator: the value must already be of the declared type.

    ``from_dict``/``from_env`` parse text and lists into these types first;
    ``SessionConfig(**kw)`` is strict, so ``secure="false"`` is refused, not read as true.
    """
    if not _is_of_type(value, attribute.type):
        raise ConfigError(
            attribute.name, f"expected {_type_name(attribute.type)}, got {_shown(attribute, value)}"
        )


def _check_types_first(cls: type, fields: list[attrs.Attribute[Any]]) -> list[attrs.Attribute[Any]]:
    """The ``field_transformer`` that puts :func:`_check_declared_type` before every validator."""
    checked = []
    for field in fields:
        validator: Callable[[Any, attrs.Attribute[Any], Any], Any] = _check_declared_type
        if field.validator is not None:
            validator = attrs.validators.and_(_check_declared_type, field.validator)
        checked.append(field.evolve(validator=validator))
    return checked


def _list_to_tuple(value: object) -> object:
    # A list is what TOML, JSON and Laravel habit give; it means the same tuple.
    return tuple(value) if isinstance(value, list) else value


def _path_text(value: str | os.PathLike[str]) -> str:
    # A pathlib.Path names the same folder; the config keeps the text.
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def _zero_is_no_limit(value: object) -> object:
    # 0 cannot be a real limit (nothing fits), and TOML has no null: 0 spells "no limit".
    return None if type(value) is int and value == 0 else value


def _positive(instance: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and not value > 0:
        raise ConfigError(attribute.name, f"must be greater than 0, got {value!r}")


def _not_negative(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        raise ConfigError(attribute.name, f"must not be negative, got {value!r}")


def _check_lottery(
    instance: object, attribute: attrs.Attribute[Any], value: tuple[int, int]
) -> None:
    chances, out_of = value
    if out_of <= 0 or not 0 <= chances <= out_of:
        raise ConfigError(
            "lottery", f"must be (chances, out_of) with 0 <= chances <= out_of, got {value!r}"
        )


def _check_same_site(instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if value not in SAME_SITE_VALUES:
        raise ConfigError(
            "same_site", f"must be one of {', '.join(SAME_SITE_VALUES)}, got {value!r}"
        )


def _check_cookie_name(instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    # RFC 6265 token characters only, so the name can never break the header.
    if not value or any(ch in value for ch in ' \t\r\n;,="()<>@:/\\[]?{}') or not value.isascii():
        raise ConfigError("cookie", f"is not a valid cookie name: {value!r}")


def _lower(value: str) -> str:
    return value.lower() if isinstance(value, str) else value


@attrs.frozen(kw_only=True, field_transformer=_check_types_first)
class SessionConfig:
    """Every session setting, with Laravel's names and defaults.

    Attributes:
        driver: Name of the driver that stores sessions (``file``, ``cookie``,
            ``array``, ``null`` or any registered plugin's).
        lifetime: Minutes of idleness after which a session expires (fractions allowed).
        absolute_lifetime: Minutes since creation after which a session expires
            whatever its activity; ``None`` for no such limit.
        expire_on_close: Send a browser-session cookie (no Max-Age).
        encrypt: Encrypt the payload (AES-GCM) before the driver sees it.
        files: The folder the ``file`` driver keeps sessions in.
        connection: The driver's URL or address (``redis://…``, ``host:port``, an
            SQLAlchemy URL, ``mongodb://…``).
        table: The database driver's table.
        prefix: Key prefix for stores shared with other data (Redis, memcached).
        lottery: ``(chances, out_of)``: the odds that a request runs the garbage collector.
        cookie: The session cookie's name.
        path: The cookie's ``Path``.
        domain: The cookie's ``Domain``; ``None`` for a host-only cookie.
        secure: The cookie's ``Secure`` flag; ``None`` means: when the request is https.
        http_only: The cookie's ``HttpOnly`` flag.
        same_site: The cookie's ``SameSite``: ``lax``, ``strict`` or ``none``.
        partitioned: The cookie's ``Partitioned`` flag (CHIPS).
        secret_key: Key for the cookie driver and ``encrypt``.
        secret_key_fallbacks: Older keys, still accepted for reading.
        block: Hold a per-session lock across each request.
        block_lock_seconds: How long a held lock lasts before it expires by itself.
        block_wait_seconds: How long a request waits for the lock before ``LockTimeout``.
        merge_on_save: Re-read the stored session at save and apply only the keys changed.
        touch_interval: Seconds between refreshes of an unchanged session's last activity.
        max_payload_bytes: The most bytes a changed session may hand its driver (the
            payload as stored: serialised and, with ``encrypt``, encrypted); a larger
            save raises ``SessionTooLarge``. ``None`` (or ``0``, which TOML can
            write) for no limit.
        options: Driver-specific settings, structured by the driver itself.
    """

    driver: str = "file"
    lifetime: float = attrs.field(default=120.0, validator=_positive)
    absolute_lifetime: float | None = attrs.field(default=None, validator=_positive)
    expire_on_close: bool = False
    encrypt: bool = False
    files: str = attrs.field(default="storage/sessions", converter=_path_text)
    connection: str | None = None
    table: str = "sessions"
    prefix: str = "satchel:"
    lottery: tuple[int, int] = attrs.field(
        default=(2, 100), converter=_list_to_tuple, validator=_check_lottery
    )
    cookie: str = attrs.field(default="satchel_session", validator=_check_cookie_name)
    path: str = "/"
    domain: str | None = None
    secure: bool | None = None
    http_only: bool = True
    same_site: str = attrs.field(default="lax", converter=_lower, validator=_check_same_site)
    partitioned: bool = False
    secret_key: str | None = attrs.field(default=None, repr=False)
    secret_key_fallbacks: tuple[str, ...] = attrs.field(
        default=(), converter=_list_to_tuple, repr=False
    )
    block: bool = False
    block_lock_seconds: float = attrs.field(default=10.0, validator=_positive)
    block_wait_seconds: float = attrs.field(default=10.0, validator=_not_negative)
    merge_on_save: bool = False
    touch_interval: float = attrs.field(default=60.0, validator=_not_negative)
    max_payload_bytes: int | None = attrs.field(
        default=DEFAULT_MAX_PAYLOAD_BYTES, converter=_zero_is_no_limit, validator=_positive
    )
    options: Mapping[str, Any] = attrs.field(factory=dict)

    ENV_ALIASES: ClassVar[Mapping[str, str]] = {
        "SESSION_SECURE_COOKIE": "secure",
        "SESSION_PARTITIONED_COOKIE": "partitioned",
    }

    def __attrs_post_init__(self) -> None:
        check_cookie_scope(path=self.path, domain=self.domain)
        check_cookie_prefix(self.cookie, path=self.path, domain=self.domain, secure=self.secure)
        if self.same_site == "none" and self.secure is False:
            raise ConfigError("same_site", '"none" needs a Secure cookie; secure must not be false')
        check_secrets(self.secret_key, self.secret_key_fallbacks)
        if self.encrypt and not self.secret_key:
            raise ConfigError("secret_key", "must be set when encrypt is true")

    @property
    def lifetime_seconds(self) -> int:
        """The idle lifetime in whole seconds (at least 1)."""
        return max(1, round(self.lifetime * 60))

    @property
    def absolute_lifetime_seconds(self) -> int | None:
        """The absolute lifetime in whole seconds, or ``None``."""
        if self.absolute_lifetime is None:
            return None
        return max(1, round(self.absolute_lifetime * 60))

    @classmethod
    def field_names(cls) -> list[str]:
        """The config keys, in declaration order."""
        return [field.name for field in attrs.fields(cls)]

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any]) -> SessionConfig:
        """Build from a mapping of config keys; a bad or unknown key is a ``ConfigError`` naming it."""
        fields = {field.name: field for field in attrs.fields(cls)}
        values: dict[str, Any] = {}
        for key, raw in mapping.items():
            field = fields.get(key)
            if field is None:
                raise ConfigError(key, f"unknown key; known keys: {', '.join(fields)}")
            try:
                values[key] = converter.structure(raw, field.type)
            except Exception as exc:  # cattrs raises many kinds; all mean a bad value
                raise ConfigError(key, f"bad value {raw!r}: {_describe(exc)}") from exc
        return cls(**values)

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> SessionConfig:
        """Build from a TOML file whose top-level keys are config keys."""
        with Path(path).open("rb") as stream:
            try:
                document = tomllib.load(stream)
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                # TOML is UTF-8: a file in another encoding is no TOML either.
                raise ConfigError("<file>", f"{path} is not valid TOML: {exc}") from exc
        return cls.from_dict(document)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SessionConfig:
        """Build from ``SESSION_<KEY>`` environment variables (Laravel's names included)."""
        environ = os.environ if environ is None else environ
        fields = {field.name: field for field in attrs.fields(cls)}
        values: dict[str, Any] = {}
        spelled: dict[str, tuple[str, str]] = {}  # key -> the variable that set it, and its text
        for name, text in environ.items():
            if not name.startswith("SESSION_") or name in FOREIGN_ENV_NAMES:
                continue
            key = cls.ENV_ALIASES.get(name, name[len("SESSION_") :].lower())
            field = fields.get(key)
            if field is None:
                raise ConfigError(key, f"unknown key (from environment variable {name})")
            value = _parse_env_value(key, name, text, field.type)
            if key in spelled:
                # Two spellings of one key (SESSION_SECURE and SESSION_SECURE_COOKIE):
                # which one wins would depend on the environment's order.
                _require_agreement(key, field.type, spelled[key], (name, text))
                continue
            spelled[key] = (name, text)
            values[key] = value
        return cls.from_dict(values)

    def structure_options(self, options_class: type[T], *, driver: str | None = None) -> T:
        """Structure ``options`` into a driver's attrs class; a bad option is a ``ConfigError`` naming it."""
        known = {field.name for field in attrs.fields(options_class)}  # type: ignore[arg-type]
        owner = driver or self.driver
        for key in self.options:
            if key not in known:
                raise ConfigError(
                    f"options.{key}",
                    f"unknown option for driver {owner!r}; known options: {', '.join(sorted(known))}",
                )
        try:
            return converter.structure(dict(self.options), options_class)
        except cattrs.ClassValidationError as exc:
            key, message = _first_failure(exc, options_class, self.options)
            raise ConfigError(
                f"options.{key}", f"bad value for driver {owner!r}: {message}"
            ) from exc
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(
                "options", f"bad value for driver {owner!r}: {_describe(exc)}"
            ) from exc


attrs.resolve_types(SessionConfig)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, cattrs.BaseValidationError):
        return "; ".join(cattrs.transform_error(exc))
    return str(exc) or type(exc).__name__


def _first_failure(
    exc: cattrs.ClassValidationError, options_class: type, options: Mapping[str, Any]
) -> tuple[str, str]:
    """The option that failed and why: a field's own error, or a validator's."""
    failures, others = exc.group_exceptions()
    for inner, note in failures:
        return str(getattr(note, "name", "?")), _describe(inner)
    for inner in others:
        # An attrs validator raised while the class was built: a ConfigError names
        # the field; any other error (attrs' own validators raise ValueError and
        # TypeError with the field in their arguments) is traced to its field.
        if isinstance(inner, ConfigError):
            return inner.key.removeprefix("options."), inner.reason
        name = _failing_field(options_class, options)
        return name or "?", _validator_message(inner)
    return "?", _describe(exc)


def _validator_message(exc: BaseException) -> str:
    # attrs' validators raise with (message, attribute, expected, value) as arguments.
    first = exc.args[0] if exc.args else None
    return first if isinstance(first, str) else _describe(exc)


def _failing_field(options_class: type, options: Mapping[str, Any]) -> str | None:
    """The first given option whose validator refuses its value, run one field at a time."""
    attrs.resolve_types(options_class)
    field: attrs.Attribute[Any]
    for field in attrs.fields(options_class):
        if field.validator is None or field.name not in options:
            continue
        try:
            value = converter.structure(options[field.name], field.type or Any)
            field.validator(None, field, value)
        except Exception:  # any failure of this field's validator names it
            return field.name
    return None


def _require_agreement(
    key: str, field_type: Any, first: tuple[str, str], second: tuple[str, str]
) -> None:
    """Accept two variables for one key only when they mean the same value."""
    meanings = []
    for name, text in (first, second):
        try:
            meanings.append(
                converter.structure(_parse_env_value(key, name, text, field_type), field_type)
            )
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(key, f"bad value {text!r} in {name}: {_describe(exc)}") from exc
    if meanings[0] != meanings[1]:
        (name_a, text_a), (name_b, text_b) = sorted((first, second))
        raise ConfigError(
            key, f"{name_a}={text_a!r} and {name_b}={text_b!r} disagree; set only one of them"
        )


def _parse_env_value(key: str, name: str, text: str, field_type: Any) -> Any:
    stripped = text.strip()
    if stripped.lower() in ("", "null", "none") and "None" in str(field_type):
        return None
    if key == "options":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(key, f"{name} must be a JSON object: {exc}") from exc
    if key == "lottery":
        parts = [part.strip() for part in stripped.split(",")]
        if len(parts) != 2:
            raise ConfigError(key, f"{name} must look like '2,100', got {text!r}")
        return parts
    if key == "secret_key_fallbacks":
        return [part.strip() for part in stripped.split(",") if part.strip()]
    return stripped
