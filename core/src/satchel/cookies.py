"""The session cookie on the wire: reading it from a ``Cookie`` header, writing ``Set-Cookie``.

Every piece of web glue (ASGI, WSGI, Flask) goes through this module, so the
attributes, the ``__Host-`` rules and the deletion header are decided in one
place. Reading is defensive: an oversized, duplicated or garbled header
gives "no cookie" (a fresh session), never an exception.
"""

from __future__ import annotations

import email.utils
import functools
import math
import time

import attrs

from satchel.config import (
    SessionConfig,
    check_cookie_prefix,
    check_cookie_scope,
    cookie_name_prefix,
)
from satchel.errors import ConfigError

MAX_COOKIE_VALUE_BYTES = 4096  # satchel never sets a longer one, so a longer one is not ours
MAX_COOKIE_HEADER_BYTES = 64 * 1024  # beyond any sane browser; parsing stops there
_EXPIRING_KEPT = 8  # a policy's persistent cookie attributes kept at once (see set_header)
# The instant browsers take as "already expired" when a cookie is deleted.
EPOCH_EXPIRES = "Thu, 01 Jan 1970 00:00:00 GMT"
_SAME_SITE_WORDS = {"lax": "Lax", "strict": "Strict", "none": "None"}
# RFC 6265 cookie-octets: what a value may hold without quoting.
_VALUE_CHARS = frozenset(
    chr(code) for code in range(0x21, 0x7F) if chr(code) not in {'"', ",", ";", "\\"}
)

# Deleting them from a value's bytes leaves nothing exactly when it is cookie-octets:
# one pass in C, cheaper than a regular expression.
_VALUE_BYTES = "".join(sorted(_VALUE_CHARS)).encode("ascii")

# RFC 6265 token characters: what a cookie name may hold.
_NAME_CHARS = frozenset(
    chr(code) for code in range(0x21, 0x7F) if chr(code) not in set('()<>@,;:\\"/[]?={}')
)


def read_cookie(header: str | None, name: str) -> str | None:
    """The value of cookie ``name`` in a ``Cookie`` request header, or ``None``.

    When the name appears more than once, the first wins (browsers send the
    most specific path first). A value that is empty, too long for satchel to
    have set, or holds characters outside RFC 6265's cookie-octets counts as
    absent.
    """
    if not header:
        return None
    key, _, value = header.partition("=")
    if (
        key == name
        and len(value) <= MAX_COOKIE_VALUE_BYTES
        # A session id needs no call; a sealed payload (base64url) needs one.
        and ((value.isascii() and value.isalnum()) or _cookie_octets(value))
    ):
        return value  # the header is this one cookie: no split, no strip
    if name not in header:
        return None
    if len(header) > MAX_COOKIE_HEADER_BYTES:
        header = header[:MAX_COOKIE_HEADER_BYTES]
    # One cookie (the common header) needs no split.
    for part in header.split(";") if ";" in header else (header,):
        key, sep, value = part.partition("=")
        if not sep or key.strip() != name:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        # Empty, too long, or not cookie-octets: absent.
        return value if _is_cookie_value(value) else None
    return None


def _is_cookie_value(value: str) -> bool:
    """Whether ``value`` could be a cookie satchel set: cookie-octets, not too long."""
    return len(value) <= MAX_COOKIE_VALUE_BYTES and _cookie_octets(value)


def _cookie_octets(value: str) -> bool:
    """Whether ``value`` is a non-empty run of RFC 6265 cookie-octets."""
    return (
        value.isascii()
        and (value.isalnum() or not value.encode("ascii").translate(None, _VALUE_BYTES))
        and value != ""
    )


@attrs.frozen(kw_only=True)
class CookiePolicy:
    """How the session cookie is written: its name and attributes.

    Attributes:
        name: The cookie's name.
        path: The ``Path`` attribute.
        domain: The ``Domain`` attribute; ``None`` for a host-only cookie.
        secure: ``Secure``: ``True``/``False``, or ``None`` for "when the request is https".
            Names with the ``__Host-``/``__Secure-`` prefix, and ``SameSite=None``,
            always get ``Secure``.
        http_only: The ``HttpOnly`` flag.
        same_site: ``lax``, ``strict``, ``none``, or ``None`` to send no ``SameSite``.
        partitioned: The ``Partitioned`` flag (CHIPS).
        max_age: ``Max-Age`` in seconds for a persistent cookie.
    """

    name: str
    path: str = "/"
    domain: str | None = None
    secure: bool | None = None
    http_only: bool = True
    same_site: str | None = "lax"
    partitioned: bool = False
    max_age: int = 7200
    # The attributes every header of this policy ends with, over http and over https.
    _tails: tuple[str, str] = attrs.field(init=False, eq=False, repr=False)
    # A persistent cookie's attributes from Expires on, by (expiry second, Max-Age, https):
    # every cookie set within one second with one Max-Age shares them. No session's value
    # is kept.
    _expiring: dict[tuple[int, int, bool], str] = attrs.field(
        init=False, eq=False, repr=False, factory=dict
    )

    def __attrs_post_init__(self) -> None:
        if not self.name or not all(ch in _NAME_CHARS for ch in self.name):
            raise ConfigError("cookie", f"is not a valid cookie name: {self.name!r}")
        if self.same_site is not None and self.same_site.lower() not in _SAME_SITE_WORDS:
            raise ConfigError("same_site", f"must be lax, strict or none, got {self.same_site!r}")
        check_cookie_scope(path=self.path, domain=self.domain)
        check_cookie_prefix(self.name, path=self.path, domain=self.domain, secure=self.secure)
        tails = tuple("; ".join(self._attributes(https=https)) for https in (False, True))
        object.__setattr__(self, "_tails", tails)

    @classmethod
    def from_config(cls, config: SessionConfig) -> CookiePolicy:
        """The policy a :class:`satchel.SessionConfig` describes."""
        return cls(
            name=config.cookie,
            path=config.path,
            domain=config.domain,
            secure=config.secure,
            http_only=config.http_only,
            same_site=config.same_site,
            partitioned=config.partitioned,
            max_age=config.lifetime_seconds,
        )

    def is_secure(self, *, https: bool) -> bool:
        """Whether the cookie carries ``Secure`` on a request made over ``https`` or not."""
        if cookie_name_prefix(self.name) is not None:
            return True
        if self.same_site is not None and self.same_site.lower() == "none":
            return True  # browsers drop SameSite=None without Secure
        return https if self.secure is None else self.secure

    def _attributes(self, *, https: bool) -> list[str]:
        parts = [f"Path={self.path}"]
        if self.domain:
            parts.append(f"Domain={self.domain}")
        if self.is_secure(https=https):
            parts.append("Secure")
        if self.http_only:
            parts.append("HttpOnly")
        if self.same_site is not None:
            parts.append(f"SameSite={_SAME_SITE_WORDS[self.same_site.lower()]}")
        if self.partitioned:
            parts.append("Partitioned")
        return parts

    def set_header(
        self, value: str, *, https: bool, max_age: int | None, now: float | None = None
    ) -> str:
        """A ``Set-Cookie`` value carrying ``value``; ``max_age=None`` makes a browser-session cookie.

        A persistent cookie carries ``Expires`` (``now``, Unix seconds, plus
        ``max_age``; the system clock when ``now`` is not given) beside
        ``Max-Age``, as werkzeug writes them: browsers go by ``Max-Age``,
        older clients and many tests read ``Expires``.
        """
        # A session id needs no call (as in read_cookie); a sealed payload needs one.
        if not ((value.isascii() and value.isalnum()) or _cookie_octets(value)):
            raise ValueError("a session cookie value must be non-empty RFC 6265 cookie-octets")
        if max_age is None:
            return f"{self.name}={value}; {self._tails[1 if https else 0]}"
        seconds = max(0, int(max_age))
        expires = math.floor((time.time() if now is None else now) + seconds)
        known = (expires, seconds, https)
        attributes = self._expiring.get(known)
        if attributes is None:
            tail = self._tails[1 if https else 0]
            attributes = f"Expires={_http_date_of_second(expires)}; Max-Age={seconds}; {tail}"
            if len(self._expiring) >= _EXPIRING_KEPT:
                self._expiring.clear()  # from earlier seconds: not needed again
            self._expiring[known] = attributes
        return f"{self.name}={value}; {attributes}"

    def delete_header(self, *, https: bool) -> str:
        """A ``Set-Cookie`` value that removes the cookie (same name, path, domain and flags)."""
        return f"{self.name}=; Expires={EPOCH_EXPIRES}; Max-Age=0; {self._tails[1 if https else 0]}"


def http_date(timestamp: float) -> str:
    """An HTTP date for ``Expires``, in werkzeug's format: ``Wed, 21 Oct 2015 07:28:00 GMT``."""
    return _http_date_of_second(math.floor(timestamp))


@functools.lru_cache(maxsize=8)
def _http_date_of_second(second: int) -> str:
    # Every cookie set within one second expires at the same second: format it once.
    return email.utils.formatdate(second, usegmt=True)


def merge_vary(existing: str | None) -> str:
    """A ``Vary`` value that includes ``Cookie``."""
    if not existing or not existing.strip():
        return "Cookie"
    names = [item.strip().lower() for item in existing.split(",")]
    if "cookie" in names or "*" in names:
        return existing
    return f"{existing}, Cookie"


def merge_cache_control(existing: str | None) -> str:
    """A ``Cache-Control`` value that no shared cache may store (a response setting a cookie).

    ``private`` is added and ``public`` removed; ``no-store`` already says enough.
    """
    if not existing or not existing.strip():
        return "private"
    directives = [item.strip() for item in existing.split(",") if item.strip()]
    lowered = [item.split("=", 1)[0].strip().lower() for item in directives]
    if "no-store" in lowered or "private" in lowered:
        kept = [item for item, name in zip(directives, lowered, strict=True) if name != "public"]
        return ", ".join(kept)
    kept = [
        item
        for item, name in zip(directives, lowered, strict=True)
        if name not in ("public", "s-maxage")
    ]
    return ", ".join(["private", *kept])
