"""``satchel.cookies``: reading the cookie robustly, writing Set-Cookie, merging headers."""

from __future__ import annotations

from email.utils import formatdate

import pytest
from hypothesis import given
from hypothesis import strategies as st

from satchel import ConfigError, SessionConfig
from satchel.cookies import (
    CookiePolicy,
    merge_cache_control,
    merge_vary,
    read_cookie,
)
from satchel.web import SessionHeaders, client_address


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("sid=abc", "abc"),
        ("other=1; sid=abc; more=2", "abc"),
        ("sid=first; sid=second", "first"),
        ('sid="quoted"', "quoted"),
        ("  sid  =  spaced  ", "spaced"),
        ("sidx=nope; xsid=nope", None),
        ("sid=", None),
        ("sid", None),
        ("", None),
        (None, None),
        ("sid=" + "a" * 4097, None),
        ("sid=a b", None),
        ("sid=a\\b", None),
        ("sid=\u00e9", None),
        (";;;=;=sid=;", None),
    ],
)
def test_read_cookie(header: str | None, expected: str | None) -> None:
    assert read_cookie(header, "sid") == expected


@given(st.text(max_size=2000))
def test_read_cookie_never_raises(header: str) -> None:
    value = read_cookie(header, "sid")
    assert value is None or (0 < len(value) <= 4096 and ";" not in value)


def test_set_header_with_every_attribute() -> None:
    policy = CookiePolicy(
        name="sid",
        path="/app",
        domain="example.com",
        secure=True,
        http_only=True,
        same_site="strict",
        partitioned=True,
        max_age=60,
    )
    assert policy.set_header("v", https=False, max_age=60, now=1_445_412_420) == (
        "sid=v; Expires=Wed, 21 Oct 2015 07:28:00 GMT; Max-Age=60; Path=/app; "
        "Domain=example.com; Secure; HttpOnly; SameSite=Strict; Partitioned"
    )
    assert policy.delete_header(https=False) == (
        "sid=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/app; "
        "Domain=example.com; Secure; HttpOnly; SameSite=Strict; Partitioned"
    )


def test_persistent_cookies_set_within_one_second_each_get_their_own_attributes() -> None:
    policy = CookiePolicy(name="sid")
    headers = [
        policy.set_header(value, https=https, max_age=max_age, now=now)
        for now in (1_445_412_420.0, 1_445_412_420.9, 1_445_412_421.5)
        for value in ("first", "second")
        for https in (False, True)
        for max_age in (60, 120)
    ]
    expected = [
        f"sid={value}; Expires={formatdate(int(now) + max_age, usegmt=True)}; "
        f"Max-Age={max_age}; Path=/;{' Secure;' if https else ''} HttpOnly; SameSite=Lax"
        for now in (1_445_412_420.0, 1_445_412_420.9, 1_445_412_421.5)
        for value in ("first", "second")
        for https in (False, True)
        for max_age in (60, 120)
    ]
    assert headers == expected


def test_browser_session_cookie_has_no_max_age() -> None:
    policy = CookiePolicy.from_config(SessionConfig())
    assert policy.set_header("v", https=False, max_age=None) == (
        "satchel_session=v; Path=/; HttpOnly; SameSite=Lax"
    )


@pytest.mark.parametrize(
    ("name", "secure", "same_site", "https", "expected"),
    [
        ("sid", None, "lax", False, False),
        ("sid", None, "lax", True, True),
        ("sid", True, "lax", False, True),
        ("sid", False, "lax", True, False),
        ("__Host-sid", None, "lax", False, True),
        ("__Secure-sid", None, "lax", False, True),
        ("__host-sid", None, "lax", False, True),  # browsers match prefixes case-insensitively
        ("sid", None, "none", False, True),
    ],
)
def test_secure_flag(
    name: str, secure: bool | None, same_site: str, https: bool, expected: bool
) -> None:
    policy = CookiePolicy(name=name, secure=secure, same_site=same_site)
    assert policy.is_secure(https=https) is expected


@pytest.mark.parametrize(
    "settings",
    [
        {"name": "__Host-sid", "domain": "example.com"},
        {"name": "__Host-sid", "path": "/app"},
        {"name": "__Host-sid", "secure": False},
        {"name": "__Secure-sid", "secure": False},
        {"name": "__HOST-sid", "domain": "example.com"},
        {"name": "__secure-sid", "secure": False},
        {"name": "bad name"},
        {"name": "sid;x"},
        {"name": "sid", "path": "/;evil"},
        {"name": "sid", "domain": "a\r\nb"},
        {"name": "sid", "same_site": "sometimes"},
    ],
)
def test_bad_policies_are_refused(settings: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        CookiePolicy(**settings)  # type: ignore[arg-type]


def test_set_header_refuses_a_value_that_would_break_the_header() -> None:
    with pytest.raises(ValueError, match="cookie-octets"):
        CookiePolicy(name="sid").set_header("a;b", https=False, max_age=None)


@pytest.mark.parametrize(
    ("existing", "expected"),
    [
        (None, "Cookie"),
        ("", "Cookie"),
        ("Accept-Encoding", "Accept-Encoding, Cookie"),
        ("accept-encoding, cookie", "accept-encoding, cookie"),
        ("*", "*"),
    ],
)
def test_merge_vary(existing: str | None, expected: str) -> None:
    assert merge_vary(existing) == expected


@pytest.mark.parametrize(
    ("existing", "expected"),
    [
        (None, "private"),
        ("public, max-age=60", "private, max-age=60"),
        ("max-age=60, s-maxage=600", "private, max-age=60"),
        ("no-store", "no-store"),
        ("private, max-age=5", "private, max-age=5"),
        ("no-store, public", "no-store"),
    ],
)
def test_merge_cache_control(existing: str | None, expected: str) -> None:
    assert merge_cache_control(existing) == expected


def test_session_headers_apply() -> None:
    extra = SessionHeaders(set_cookie="sid=v; Path=/", vary_cookie=True)
    merged = extra.apply([("Content-Type", "text/plain"), ("Vary", "Accept"), ("vary", "Origin")])
    assert merged == [
        ("Content-Type", "text/plain"),
        ("Vary", "Accept, Origin, Cookie"),
        ("Cache-Control", "private"),
        ("Set-Cookie", "sid=v; Path=/"),
    ]
    untouched = [("Content-Type", "text/plain")]
    assert SessionHeaders().apply(untouched) is untouched


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("2001:db8::1", "2001:db8::1"),
        ("testclient", None),
        ("unix:/tmp/sock", None),
        (None, None),
    ],
)
def test_client_address(host: object, expected: str | None) -> None:
    assert client_address(host) == expected
