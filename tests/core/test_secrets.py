"""Weak secrets are refused wherever a key enters satchel; generated keys always pass.

HKDF is fast, so a secret_key of little entropy falls to an offline search
from one cookie. A key must be at least 32 bytes of UTF-8, with at least 10
distinct characters and no character more than 7 times in a row.
"""

from __future__ import annotations

import base64
import os
import secrets
import string
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from satchel import ConfigError, SessionConfig, SessionManager
from satchel.crypto import Encrypter, generate_secret

STRONG = "a-strong-test-secret-0123456789abcdefghij"
# Django's get_random_secret_key(): 50 characters from this alphabet.
DJANGO_ALPHABET = string.ascii_lowercase + string.digits + "!@#$%^&*(-_=+)"
DRAWS = 2000

WEAK_SECRETS = [
    pytest.param("a" * 16, id="the-attack's-16-letters"),
    pytest.param("k" * 32, id="one-letter-32"),
    pytest.param("k" * 200, id="one-letter-200"),
    pytest.param(string.ascii_letters[:31], id="31-bytes"),
    pytest.param("é" * 15 + "0", id="31-bytes-of-utf8"),
    pytest.param("change-me-change-me-change-me-change-me", id="8-distinct"),
    pytest.param("my-key-" + "x" * 30, id="padded-with-one-letter"),
    pytest.param("abcdefghij" + "-" * 8 + "klmnopqrstuv", id="a-run-of-8"),
]


def _ways_to_set(key: str, value: str) -> dict[str, Callable[[], Any]]:
    """Every way a secret reaches satchel, for config key ``key``."""
    if key == "secret_key":
        keyword: dict[str, Any] = {"secret_key": value}
        env = {"SESSION_SECRET_KEY": value}
    else:
        keyword = {"secret_key": STRONG, "secret_key_fallbacks": (STRONG[::-1], value)}
        env = {
            "SESSION_SECRET_KEY": STRONG,
            "SESSION_SECRET_KEY_FALLBACKS": f"{STRONG[::-1]},{value}",
        }
    return {
        "keyword": lambda: SessionConfig(**keyword),
        "from_dict": lambda: SessionConfig.from_dict(keyword),
        "from_env": lambda: SessionConfig.from_env(env),
        "Encrypter": lambda: Encrypter(
            keyword["secret_key"], keyword.get("secret_key_fallbacks", ())
        ),
    }


@pytest.mark.parametrize("key", ["secret_key", "secret_key_fallbacks"])
@pytest.mark.parametrize("value", WEAK_SECRETS)
def test_a_weak_secret_is_refused_naming_the_key_and_never_echoing_it(key: str, value: str) -> None:
    for way, build in _ways_to_set(key, value).items():
        with pytest.raises(ConfigError) as info:
            build()
        assert info.value.key == key, way
        message = str(info.value)
        assert value not in message, way
        assert value[:12] not in message, way
        assert "satchel key:generate" in message, way
        if key == "secret_key_fallbacks":
            assert "fallback 2" in message, way  # which of the fallbacks it is


def test_a_weak_key_is_refused_by_the_command_line_too(tmp_path: Any) -> None:
    """The attack's key, given as the environment gives it to ``satchel gc``."""
    weak = "a" * 16
    result = subprocess.run(
        [sys.executable, "-m", "satchel", "gc"],
        capture_output=True,
        text=True,
        env={**os.environ, "SESSION_SECRET_KEY": weak, "SESSION_FILES": str(tmp_path / "s")},
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "'secret_key'" in result.stderr
    assert weak not in result.stderr + result.stdout


def test_the_length_is_counted_in_utf8_bytes() -> None:
    sixteen_distinct_two_byte_characters = "αβγδεζηθικλμνξοπ"
    assert len(sixteen_distinct_two_byte_characters.encode("utf-8")) == 32
    SessionConfig(secret_key=sixteen_distinct_two_byte_characters)
    with pytest.raises(ConfigError, match="32 bytes"):
        SessionConfig(secret_key=sixteen_distinct_two_byte_characters[:-1] + "x")


GENERATORS: dict[str, Callable[[], str]] = {
    "satchel key:generate": generate_secret,
    "secrets.token_urlsafe(32)": lambda: secrets.token_urlsafe(32),
    "secrets.token_hex(32)": lambda: secrets.token_hex(32),
    "base64 of 32 random bytes": lambda: base64.b64encode(secrets.token_bytes(32)).decode(),
    "Django's get_random_secret_key()": lambda: "".join(
        secrets.choice(DJANGO_ALPHABET) for _ in range(50)
    ),
    "Laravel's base64: key": lambda: "base64:" + base64.b64encode(secrets.token_bytes(32)).decode(),
}


def test_the_rule_is_only_as_strict_as_documented() -> None:
    """Ten distinct characters, no run longer than seven, 32 bytes: accepted, however plain."""
    SessionConfig(secret_key="0123456789" * 4)
    SessionConfig(secret_key="abcdefghij" + "-" * 7 + "klmnopqrstuvwxyz")


@pytest.mark.parametrize("generator", list(GENERATORS))
def test_generated_keys_are_accepted(generator: str) -> None:
    make = GENERATORS[generator]
    keys = [make() for _ in range(DRAWS)]
    for key in keys:
        Encrypter(key, [make()])
    assert len(set(keys)) == DRAWS
    # Through the config, as a current key and as a fallback.
    config = SessionConfig(secret_key=keys[0], secret_key_fallbacks=keys[1:4], encrypt=True)
    assert SessionManager(config).encrypter is not None
