"""The cookie's ``path`` and ``domain`` hold only what RFC 6265 allows in ``Set-Cookie``.

Every way they are given (``SessionConfig(**kw)``, ``from_env``, a
``CookiePolicy`` as the Flask glue builds one) goes through one check, which
names the key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from satchel import ConfigError, SessionConfig
from satchel.cookies import CookiePolicy

# Every CTL (0x00-0x1f and DEL) and ";", each inside a value, where stripping
# whitespace around an environment variable cannot remove it.
FORBIDDEN = [chr(code) for code in range(0x20)] + ["\x7f", ";"]
SOURCES: dict[str, Callable[[str, str], Any]] = {
    "SessionConfig(**kw)": lambda key, value: SessionConfig(**{key: value}),
    "SessionConfig.from_env": lambda key, value: SessionConfig.from_env(
        {f"SESSION_{key.upper()}": value}
    ),
    "CookiePolicy": lambda key, value: CookiePolicy(name="sid", **{key: value}),
}


def _char_id(char: str) -> str:
    return f"{ord(char):#04x}"


@pytest.mark.parametrize("source", list(SOURCES))
@pytest.mark.parametrize("char", FORBIDDEN, ids=_char_id)
@pytest.mark.parametrize(("key", "around"), [("path", "/app{}x"), ("domain", "shop{}x.example")])
def test_a_control_character_or_semicolon_in_path_or_domain_is_refused(
    source: str, char: str, key: str, around: str
) -> None:
    value = around.format(char)
    with pytest.raises(ConfigError) as info:
        SOURCES[source](key, value)
    assert info.value.key == key
    assert repr(value) in str(info.value)  # a control character shown escaped, never raw


@pytest.mark.parametrize("source", list(SOURCES))
@pytest.mark.parametrize(
    "path", ["/", "", "/app", "/a b", "/a,b", "/~user/x=y", "/%2e", "/app/", "/a:b@c!$&'()*+"]
)
def test_every_path_rfc_6265_allows_is_kept(source: str, path: str) -> None:
    built = SOURCES[source]("path", path)
    assert built.path == path


@pytest.mark.parametrize("source", list(SOURCES))
@pytest.mark.parametrize(
    "domain",
    [
        "example.com",
        ".example.com",
        "shop.example.co.uk",
        "EXAMPLE.COM",
        "localhost",
        "127.0.0.1",
        "a-b.example",
        "xn--bcher-kva.example",
        "a" * 63 + ".example",
        "3com.example",
    ],
)
def test_every_host_name_is_a_domain(source: str, domain: str) -> None:
    assert SOURCES[source]("domain", domain).domain == domain


@pytest.mark.parametrize("source", list(SOURCES))
@pytest.mark.parametrize(
    "domain",
    [
        "exa mple.com",
        "-shop.example",
        "shop-.example",
        "shop..example",
        "..example.com",
        "example.com.",
        ".",
        "shop_1.example",
        "shop.example:8000",
        "[::1]",
        "bücher.example",
        "a" * 64 + ".example",
        ("a" * 63 + ".") * 4 + "example",
        "https://shop.example",
        "shop.example/path",
        'shop".example',
    ],
)
def test_what_is_not_a_host_name_is_refused_as_a_domain(source: str, domain: str) -> None:
    with pytest.raises(ConfigError) as info:
        SOURCES[source]("domain", domain)
    assert info.value.key == "domain"


def test_no_domain_is_a_host_only_cookie() -> None:
    assert SessionConfig(domain=None).domain is None
    assert CookiePolicy(name="sid", domain=None).domain is None
    assert "Domain" not in CookiePolicy(name="sid", domain="").set_header(
        "v", https=True, max_age=60
    )
