"""Hostile bytes in request metadata are stored cleaned or dropped, never a 500.

The replay: a client sends a NUL, escape sequences, bytes that are not UTF-8
or 100 KB in ``User-Agent``, and an application stores a user id it decoded
from JSON (a NUL, a lone surrogate), through werkzeug's threaded server (the
sync handler) and uvicorn (the asyncio engine), on SQLite, PostgreSQL and
MariaDB. PostgreSQL refuses NUL in text, and no DBAPI can send a surrogate.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from fixtures.database_support import async_url, fetch_row
from fixtures.live_servers import RawReply, http_get, serve_asgi, serve_wsgi
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from werkzeug.wrappers import Request as WerkzeugRequest

from satchel import ConfigError, RequestMetadata, SessionConfig, SessionManager
from satchel.asgi import SessionMiddleware as AsgiSessionMiddleware
from satchel.wsgi import SessionMiddleware as WsgiSessionMiddleware
from satchel_database.options import DatabaseOptions
from satchel_database.schema import IP_ADDRESS_LENGTH, USER_ID_LENGTH
from satchel_database.statements import cleaned_text, exact_text, metadata_columns, user_id_of

COOKIE = "satchel_session"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0"

# -- the cleaning, unit by unit -----------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        (FIREFOX, FIREFOX),
        ("Mozilla/5.0\x00(evil)", "Mozilla/5.0(evil)"),
        ("Mozilla\x1b[31m red\x1b[0m", "Mozilla[31m red[0m"),
        ("tab\there\r\nX-Injected: 1", "tabhereX-Injected: 1"),
        ("C1 \x85\x9b controls", "C1  controls"),
        ("DEL\x7f", "DEL"),
        ("lone \udcff surrogate", "lone \ufffd surrogate"),
        ("naïve ünïcode ✓ 🍐", "naïve ünïcode ✓ 🍐"),
        ("\x00\x01\x1f", None),
        ("", None),
        ("   ", None),
    ],
)
def test_cleaned_text_keeps_what_every_column_stores(sent: str, stored: str | None) -> None:
    assert cleaned_text(sent, 500) == stored


def test_cleaned_text_cuts_to_the_length() -> None:
    assert cleaned_text("a" * 100_000, 500) == "a" * 500
    assert cleaned_text("\x00" * 10 + "b" * 600, 500) == "b" * 500


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("198.51.100.7", "198.51.100.7"),
        ("2001:db8::5", "2001:db8::5"),
        ("user\x00admin", None),  # cleaned, it would name another user
        ("\udcff", None),
        ("x" * 46, None),
        ("", None),
    ],
)
def test_exact_text_is_kept_whole_or_left_out(sent: str, stored: str | None) -> None:
    assert exact_text(sent, IP_ADDRESS_LENGTH) == stored


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        (42, "42"),
        (-7, "-7"),
        ("alice", "alice"),
        (uuid.UUID(int=1), str(uuid.UUID(int=1))),
        (True, None),
        (1.5, None),
        ("a\x00b", None),
        ("\ud800", None),
        ("u" * (USER_ID_LENGTH + 1), None),
        (10**300, None),
        # str() of these raises ValueError (Python's limit on int-to-text conversion).
        pytest.param(10**5000, None, id="int-of-5001-digits"),
        pytest.param(-(10**5000), None, id="negative-int-of-5001-digits"),
    ],
)
def test_user_id_is_stored_exactly_or_not_at_all(value: object, stored: str | None) -> None:
    assert user_id_of({"user_id": value}, "user_id") == stored


@given(
    user_agent=st.one_of(st.none(), st.text()),
    ip_address=st.one_of(st.none(), st.text()),
    user_id=st.one_of(st.text(), st.integers(), st.booleans(), st.none()),
)
def test_any_metadata_becomes_columns_every_dialect_stores(
    user_agent: str | None, ip_address: str | None, user_id: object
) -> None:
    options = DatabaseOptions()
    columns = metadata_columns(
        RequestMetadata(ip_address=ip_address, user_agent=user_agent, values={"user_id": user_id}),
        options,
    )
    limits = {
        "user_id": USER_ID_LENGTH,
        "ip_address": IP_ADDRESS_LENGTH,
        "user_agent": options.user_agent_max_length,
    }
    for name, value in columns.items():
        if value is None:
            continue
        value.encode("utf-8")  # no surrogate: every DBAPI can send it
        assert "\x00" not in value  # PostgreSQL refuses NUL in text
        assert not any(ch < " " or "\x7f" <= ch <= "\x9f" for ch in value)
        assert 0 < len(value) <= limits[name]


@pytest.mark.parametrize("length", [0, 16384])
def test_user_agent_max_length_stays_within_what_every_column_holds(length: int) -> None:
    config = SessionConfig(
        driver="database", connection="sqlite://", options={"user_agent_max_length": length}
    )
    with pytest.raises(ConfigError) as caught:
        DatabaseOptions.from_config(config)
    assert caught.value.key == "options.user_agent_max_length"


# -- the replay through real servers ------------------------------------------------------

# The User-Agent sent, what is stored, and whether every server passes it to the app
# (h11, under uvicorn, answers 400 to a NUL, an escape or a line past 16 KB itself).
AGENTS = {
    "nul": (b"Mozilla/5.0\x00(evil)", "Mozilla/5.0(evil)", False),
    "escape": (b"Mozilla\x1b[2J\x1b[31m red", "Mozilla[2J[31m red", False),
    "not-utf8": (b"Mozilla/5.0 \xff\xfe\x80\xc3( \x9b31m", "Mozilla/5.0 \xff\xfe\xc3( 31m", True),
    "60kb": (b"A" * 60_000, "A" * 500, False),
    "100kb": (b"A" * 100_000, "A" * 500, False),  # werkzeug refuses a line past 64 KB
}
USER_IDS = {  # what the app decodes from JSON and keeps under user_key, and what is stored
    "nul": ('"a\\u0000b"', None),
    "surrogate": ('"\\udcff"', None),
    "plain": ('"alice"', "alice"),
}


def remember_user(session: Any, user: str | None) -> None:
    """What both apps do: keep the user id an API sent as JSON, and count the visit."""
    if user is not None:
        session["user_id"] = json.loads(user)
    session["visits"] = session.get("visits", 0) + 1


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    remember_user(environ["satchel.session"], WerkzeugRequest(environ).args.get("user"))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


async def asgi_visit(request: Request) -> PlainTextResponse:
    remember_user(request.session, request.query_params.get("user"))
    return PlainTextResponse("ok")


@pytest.fixture(params=["werkzeug", "uvicorn"])
def served(
    request: pytest.FixtureRequest, database_url: str, make_table: Callable[[str], str]
) -> Iterator[tuple[str, str, str]]:
    """The app on the database under werkzeug (sync handler) or uvicorn (asyncio engine):
    its address, the database's URL and the table."""
    table = make_table(database_url)
    asgi = request.param == "uvicorn"
    config = SessionConfig(
        driver="database",
        connection=async_url(database_url) if asgi else database_url,
        table=table,
        cookie=COOKIE,
        lottery=(0, 1),
    )
    manager = SessionManager(config)
    if asgi:

        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            yield
            await manager.async_handler().close()  # the engine's connections, in their loop

        starlette = Starlette(routes=[Route("/", asgi_visit)], lifespan=lifespan)
        server = serve_asgi(AsgiSessionMiddleware(starlette, manager), lifespan="on")
    else:
        server = serve_wsgi(WsgiSessionMiddleware(wsgi_app, manager))
    with server as address:
        yield address, database_url, table


def stored_row(reply: RawReply, url: str, table: str) -> dict[str, object]:
    assert reply.status == 200, reply
    header = reply.header("set-cookie")
    assert header is not None
    cookie = header.split(";", 1)[0].split("=", 1)[1]
    row = fetch_row(url, table, hashlib.sha256(cookie.encode("ascii")).hexdigest())
    assert row is not None
    return row


@pytest.mark.parametrize("agent", list(AGENTS))
def test_a_hostile_user_agent_is_stored_cleaned(served: tuple[str, str, str], agent: str) -> None:
    address, url, table = served
    sent, stored, every_server_passes_it = AGENTS[agent]
    try:
        reply = http_get(address, "/", {"User-Agent": sent})
    except ConnectionResetError:
        # The server refused the header and closed the connection while the request was
        # still arriving, which discards its 400: the app never ran, nothing was stored.
        assert not every_server_passes_it
        return
    if reply.status != 200 and not every_server_passes_it:
        # The server refused the header itself: the app never ran, nothing was stored.
        assert 400 <= reply.status < 500, reply
        assert reply.header("set-cookie") is None
        return
    row = stored_row(reply, url, table)
    assert row["user_agent"] == stored
    assert row["ip_address"] == "127.0.0.1"


@pytest.mark.parametrize("user", list(USER_IDS))
def test_a_hostile_user_id_is_left_out_never_a_500(served: tuple[str, str, str], user: str) -> None:
    address, url, table = served
    sent, stored = USER_IDS[user]
    reply = http_get(address, f"/?user={urllib.parse.quote(sent)}", {"User-Agent": FIREFOX})
    row = stored_row(reply, url, table)
    assert row["user_id"] == stored
    assert row["user_agent"] == FIREFOX
