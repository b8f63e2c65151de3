"""SessionConfig: defaults, constructors and error messages that name the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest

from satchel import ConfigError, SessionConfig


def test_defaults_follow_laravel() -> None:
    config = SessionConfig()
    assert config.driver == "file"
    assert config.lifetime == 120
    assert config.lifetime_seconds == 7200
    assert config.lottery == (2, 100)
    assert (config.path, config.domain, config.secure) == ("/", None, None)
    assert (config.http_only, config.same_site, config.partitioned) == (True, "lax", False)
    assert (config.block, config.block_lock_seconds, config.block_wait_seconds) == (False, 10, 10)
    assert config.touch_interval == 60
    assert config.options == {}


def test_config_is_frozen() -> None:
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        SessionConfig().driver = "redis"  # type: ignore[misc]


def test_fractional_lifetimes() -> None:
    config = SessionConfig(lifetime=0.5, absolute_lifetime=1.5)
    assert config.lifetime_seconds == 30
    assert config.absolute_lifetime_seconds == 90


def test_from_dict_structures_values() -> None:
    config = SessionConfig.from_dict(
        {
            "driver": "redis",
            "lifetime": 30,
            "lottery": [1, 50],
            "secure": True,
            "options": {"db": 2},
        }
    )
    assert config.lottery == (1, 50)
    assert config.options == {"db": 2}
    assert config.secure is True


@pytest.mark.parametrize(
    ("mapping", "key"),
    [
        ({"lifetim": 10}, "lifetim"),
        ({"lifetime": "soon"}, "lifetime"),
        ({"lifetime": 0}, "lifetime"),
        ({"lifetime": True}, "lifetime"),
        ({"http_only": "maybe"}, "http_only"),
        ({"same_site": "sideways"}, "same_site"),
        ({"lottery": [5, 2]}, "lottery"),
        ({"lottery": "often"}, "lottery"),
        ({"cookie": "bad name;"}, "cookie"),
        ({"driver": 42}, "driver"),
        ({"cookie": "__Host-s", "domain": "example.com"}, "domain"),
        ({"cookie": "__Host-s", "path": "/app"}, "path"),
        ({"cookie": "__Host-s", "secure": False}, "secure"),
        ({"same_site": "none", "secure": False}, "same_site"),
        ({"encrypt": True}, "secret_key"),
    ],
)
def test_bad_or_unknown_keys_are_named(mapping: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        SessionConfig.from_dict(mapping)
    assert info.value.key == key
    assert repr(key) in str(info.value)


def test_host_prefix_is_accepted_with_its_rules() -> None:
    config = SessionConfig(cookie="__Host-session", secure=True)
    assert config.cookie == "__Host-session"


def test_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "session.toml"
    path.write_text(
        'driver = "array"\nlifetime = 15\nlottery = [0, 1]\n[options]\nuser_key = "uid"\n'
    )
    config = SessionConfig.from_toml(path)
    assert (config.driver, config.lifetime, config.lottery) == ("array", 15, (0, 1))
    assert config.options == {"user_key": "uid"}


def test_from_toml_names_an_unknown_key(tmp_path: Path) -> None:
    path = tmp_path / "session.toml"
    path.write_text("drvier = 'file'\n")
    with pytest.raises(ConfigError, match="'drvier'"):
        SessionConfig.from_toml(path)


def test_from_env_reads_every_key_and_laravels_spellings() -> None:
    config = SessionConfig.from_env(
        {
            "SESSION_DRIVER": "redis",
            "SESSION_LIFETIME": "30",
            "SESSION_ENCRYPT": "yes",
            "SESSION_SECRET_KEY": "current-key-0123456789abcdefghijkl",
            "SESSION_SECRET_KEY_FALLBACKS": "old-key-0123456789abcdefghijklmnop,older-key-0123456789abcdefghijklmn",
            "SESSION_DOMAIN": "null",
            "SESSION_SECURE_COOKIE": "true",
            "SESSION_PARTITIONED_COOKIE": "1",
            "SESSION_LOTTERY": "1, 1000",
            "SESSION_OPTIONS": '{"sentinel": ["127.0.0.1:26379"]}',
            "SESSION_MANAGER": "local/desktop:@/tmp/.ICE-unix/1",  # X11's, not ours
            "PATH": "/usr/bin",
        }
    )
    assert config.driver == "redis"
    assert config.lifetime == 30
    assert config.encrypt is True
    assert config.secret_key_fallbacks == (
        "old-key-0123456789abcdefghijklmnop",
        "older-key-0123456789abcdefghijklmn",
    )
    assert config.domain is None
    assert config.secure is True
    assert config.partitioned is True
    assert config.lottery == (1, 1000)
    assert config.options == {"sentinel": ["127.0.0.1:26379"]}


@pytest.mark.parametrize(
    ("environ", "key"),
    [
        ({"SESSION_LIFETME": "5"}, "lifetme"),
        ({"SESSION_HTTP_ONLY": "perhaps"}, "http_only"),
        ({"SESSION_LOTTERY": "2"}, "lottery"),
        ({"SESSION_OPTIONS": "{not json"}, "options"),
    ],
)
def test_from_env_names_the_bad_key(environ: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        SessionConfig.from_env(environ)
    assert info.value.key == key


@attrs.frozen
class ExampleOptions:
    """Attributes:
    timeout: seconds.
    pool_size: connections.
    """

    timeout: float = 5.0
    pool_size: int = 10


def test_structure_options_names_unknown_and_bad_options() -> None:
    assert SessionConfig(options={"timeout": 2}).structure_options(
        ExampleOptions
    ) == ExampleOptions(2.0)
    with pytest.raises(ConfigError, match=r"options\.pool"):
        SessionConfig(options={"pool": 3}).structure_options(ExampleOptions, driver="redis")
    with pytest.raises(ConfigError, match=r"options\.pool_size.*'redis'"):
        SessionConfig(options={"pool_size": "many"}).structure_options(
            ExampleOptions, driver="redis"
        )


def _at_least_one(instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if value < 1:
        raise ConfigError(attribute.name, "must be at least 1")


@attrs.frozen
class ValidatedOptions:
    """Attributes:
    pool_size: connections, validated by attrs.
    """

    pool_size: int = attrs.field(default=10, validator=_at_least_one)


def test_a_validator_error_inside_options_still_names_the_option() -> None:
    with pytest.raises(ConfigError) as info:
        SessionConfig(options={"pool_size": 0}).structure_options(ValidatedOptions, driver="db")
    assert info.value.key == "options.pool_size"
    assert "at least 1" in str(info.value)


@attrs.frozen(kw_only=True)
class AttrsValidatedOptions:
    """Attributes:
    timeout: seconds, above 0 (attrs' own validator).
    mode: one of two words (attrs' own validator).
    retries: validated by a function that does not name its field.
    """

    timeout: float = attrs.field(default=5.0, validator=attrs.validators.gt(0))
    mode: str = attrs.field(default="fast", validator=attrs.validators.in_(("fast", "safe")))
    retries: int = attrs.field(default=1, validator=lambda _, __, value: _not_negative(value))


def _not_negative(value: int) -> None:
    if value < 0:
        raise ValueError(f"must not be negative, got {value}")


@pytest.mark.parametrize(
    ("options", "key", "reason"),
    [
        ({"timeout": -1}, "options.timeout", "'timeout' must be > 0: -1.0"),
        ({"mode": "slow"}, "options.mode", "'mode' must be in ('fast', 'safe') (got 'slow')"),
        ({"retries": -2, "mode": "safe"}, "options.retries", "must not be negative, got -2"),
    ],
)
def test_an_attrs_validator_failure_names_the_option_in_one_readable_line(
    options: dict[str, Any], key: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as info:
        SessionConfig(options=options).structure_options(AttrsValidatedOptions, driver="acme")
    assert info.value.key == key
    assert info.value.reason == f"bad value for driver 'acme': {reason}"
    assert "Attribute(" not in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        # booleans: strict, a string is never read as one
        ({"http_only": "maybe"}, "http_only"),
        ({"secure": "false"}, "secure"),
        ({"secure": "false", "cookie": "__Host-s"}, "secure"),
        ({"encrypt": 1}, "encrypt"),
        ({"partitioned": None}, "partitioned"),
        # numbers
        ({"lifetime": "soon"}, "lifetime"),
        ({"lifetime": True}, "lifetime"),
        ({"lifetime": float("nan")}, "lifetime"),
        ({"lifetime": float("inf")}, "lifetime"),
        ({"absolute_lifetime": "1"}, "absolute_lifetime"),
        ({"touch_interval": None}, "touch_interval"),
        ({"block_wait_seconds": -1}, "block_wait_seconds"),
        # the lottery pair
        ({"lottery": "2,100"}, "lottery"),
        ({"lottery": (2,)}, "lottery"),
        ({"lottery": (2, "100")}, "lottery"),
        ({"lottery": (True, 2)}, "lottery"),
        ({"lottery": (5, 2)}, "lottery"),
        # strings
        ({"driver": 42}, "driver"),
        ({"cookie": None}, "cookie"),
        ({"files": 5}, "files"),
        ({"connection": 6379}, "connection"),
        ({"same_site": 1}, "same_site"),
        ({"same_site": "sideways"}, "same_site"),
        ({"secret_key": b"k" * 32}, "secret_key"),
        ({"secret_key_fallbacks": "old-key-0123456789-old-key-0123456789"}, "secret_key_fallbacks"),
        ({"secret_key_fallbacks": (b"k" * 32,)}, "secret_key_fallbacks"),
        # options
        ({"options": [1]}, "options"),
        ({"options": {1: "a"}}, "options"),
    ],
)
def test_direct_construction_validates_every_key(kwargs: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        SessionConfig(**kwargs)
    assert info.value.key == key
    assert repr(key) in str(info.value)


def test_a_bad_secret_is_never_echoed_in_the_message() -> None:
    with pytest.raises(ConfigError) as info:
        SessionConfig(secret_key=b"super-secret-value-0123456789abcdef")  # type: ignore[arg-type]
    assert "super-secret" not in str(info.value)
    assert "bytes" in str(info.value)


def test_direct_construction_keeps_typed_values() -> None:
    config = SessionConfig(
        lifetime=30,
        absolute_lifetime=None,
        files=Path("/srv/sessions"),  # a path names the same folder
        secure=False,
        lottery=[1, 50],  # a list is the same pair, as Laravel and TOML write it
        secret_key_fallbacks=["old-key-0123456789abcdefghijklmnop"],
        options={"db": 2},
    )
    assert config.lifetime == 30
    assert config.files == "/srv/sessions"
    assert config.secure is False
    assert config.lottery == (1, 50)
    assert config.secret_key_fallbacks == ("old-key-0123456789abcdefghijklmnop",)


@pytest.mark.parametrize("name", ["__host-sid", "__HOST-sid", "__hOsT-sid"])
@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"domain": "example.com"}, "domain"),
        ({"path": "/app"}, "path"),
        ({"secure": False}, "secure"),
    ],
)
def test_the_host_prefix_is_matched_case_insensitively(
    name: str, kwargs: dict[str, Any], key: str
) -> None:
    with pytest.raises(ConfigError) as info:
        SessionConfig(cookie=name, **kwargs)
    assert info.value.key == key


@pytest.mark.parametrize("name", ["__Secure-sid", "__secure-sid"])
def test_a_secure_prefix_name_refuses_secure_false(name: str) -> None:
    with pytest.raises(ConfigError) as info:
        SessionConfig(cookie=name, secure=False)
    assert info.value.key == "secure"
    assert SessionConfig(cookie=name, domain="example.com", path="/app").secure is None


@pytest.mark.parametrize(
    ("ours", "laravels"),
    [
        ("SESSION_SECURE", "SESSION_SECURE_COOKIE"),
        ("SESSION_PARTITIONED", "SESSION_PARTITIONED_COOKIE"),
    ],
)
@pytest.mark.parametrize("order", ["ours first", "laravels first"])
def test_from_env_refuses_two_spellings_that_disagree(ours: str, laravels: str, order: str) -> None:
    pairs = [(ours, "true"), (laravels, "false")]
    environ = dict(pairs if order == "ours first" else pairs[::-1])
    with pytest.raises(ConfigError) as info:
        SessionConfig.from_env(environ)
    assert info.value.key == ours.removeprefix("SESSION_").lower()
    assert ours in str(info.value)
    assert laravels in str(info.value)


@pytest.mark.parametrize("order", ["ours first", "laravels first"])
def test_from_env_accepts_two_spellings_that_agree(order: str) -> None:
    pairs = [("SESSION_SECURE", "yes"), ("SESSION_SECURE_COOKIE", "1")]
    environ = dict(pairs if order == "ours first" else pairs[::-1])
    assert SessionConfig.from_env(environ).secure is True


def test_from_env_names_the_bad_one_of_two_spellings() -> None:
    with pytest.raises(ConfigError) as info:
        SessionConfig.from_env({"SESSION_SECURE": "true", "SESSION_SECURE_COOKIE": "perhaps"})
    assert info.value.key == "secure"
    assert "SESSION_SECURE_COOKIE" in str(info.value)


def test_max_payload_bytes_defaults_to_256_kib() -> None:
    assert SessionConfig().max_payload_bytes == 256 * 1024


@pytest.mark.parametrize(
    ("given", "expected"),
    [("4096", 4096), (" 1048576 ", 1024 * 1024), ("null", None), ("", None), ("0", None)],
)
def test_max_payload_bytes_from_env(given: str, expected: int | None) -> None:
    assert SessionConfig.from_env({"SESSION_MAX_PAYLOAD_BYTES": given}).max_payload_bytes == (
        expected
    )


@pytest.mark.parametrize(("text", "expected"), [("65536", 65536), ("0", None)])
def test_max_payload_bytes_from_toml(tmp_path: Path, text: str, expected: int | None) -> None:
    # TOML has no null: 0 spells "no limit".
    path = tmp_path / "session.toml"
    path.write_text(f"max_payload_bytes = {text}\n")
    assert SessionConfig.from_toml(path).max_payload_bytes == expected


@pytest.mark.parametrize(
    ("given", "expected"), [(4096, 4096), ("4096", 4096), (None, None), (0, None)]
)
def test_max_payload_bytes_from_dict(given: object, expected: int | None) -> None:
    assert SessionConfig.from_dict({"max_payload_bytes": given}).max_payload_bytes == expected


@pytest.mark.parametrize("given", [-1, "lots", "4 KiB", 1.5, True, [4096]])
def test_a_bad_max_payload_bytes_is_named(given: object) -> None:
    with pytest.raises(ConfigError) as info:
        SessionConfig.from_dict({"max_payload_bytes": given})
    assert info.value.key == "max_payload_bytes"
    with pytest.raises(ConfigError) as info:
        SessionConfig(max_payload_bytes=given)  # type: ignore[arg-type]
    assert info.value.key == "max_payload_bytes"
    with pytest.raises(ConfigError) as info:
        SessionConfig.from_env({"SESSION_MAX_PAYLOAD_BYTES": str(given)})
    assert info.value.key == "max_payload_bytes"
