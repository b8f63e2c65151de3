"""The comparison table (``benchmarks/peers.py``) in quick mode: its shape and its counts.

Quick mode times too few requests for the times to mean anything, so nothing
here looks at a time: only at which rows are there and at what each request
cost its backend, as the servers (or the audit hook, or SQLAlchemy and
Django) counted it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from typing import Any

import pytest
from benchmarks import peers

from satchel.testing.services import port_open, service_missing

BACKENDS = ["redis", "memcached", "file", "cookie", "sqlite", "postgresql"]
SERVER_BACKENDS = ["redis", "memcached", "file", "sqlite", "postgresql"]
KINDS = ["untouched", "read-only", "read-modify-write"]
FLOORS = {("raw client", glue) for glue in ("WSGI", "ASGI", "Flask", "Django")}
SATCHEL = {("satchel", glue) for glue in ("WSGI", "ASGI", "Flask", "Django")}
PEERS = {
    "redis": {("Beaker", "WSGI"), ("starsessions", "ASGI"), ("Flask-Session", "Flask"),
              ("Django (cache)", "Django")},
    "memcached": {("Beaker", "WSGI"), ("Flask-Session", "Flask"), ("Django (cache)", "Django")},
    "file": {("Beaker", "WSGI"), ("Flask-Session", "Flask"), ("Django (file)", "Django")},
    "cookie": {("Beaker", "WSGI"), ("starsessions", "ASGI"), ("Starlette", "ASGI"),
               ("Flask", "Flask"), ("Django (signed_cookies)", "Django")},
    "sqlite": {("Beaker", "WSGI"), ("Flask-Session", "Flask"), ("Django (db)", "Django")},
    "postgresql": {("Beaker", "WSGI"), ("Flask-Session", "Flask"), ("Django (db)", "Django")},
}  # fmt: skip


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    for binary, name in (("redis-server", "redis"), ("memcached", "memcached")):
        if shutil.which(binary) is None:
            service_missing(name, f"{binary!r} is not on PATH")
    if peers.POSTGRES_ENV not in os.environ and not port_open(5432):
        service_missing("postgres", f"nothing on 127.0.0.1:5432 and no {peers.POSTGRES_ENV}")
    # One table per test run: pytest-xdist workers that both get tests of this module
    # share the first one's, since two runs at once would drop each other's tables.
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    out = shared / "peers-quick"
    with open(shared / "peers-quick.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / "latest.json").exists():
            out.mkdir(exist_ok=True)
            assert peers.main(["--quick", "--out", str(out)]) == 0
    document: dict[str, Any] = json.loads((out / "latest.json").read_text())
    document["out"] = out
    return document


def cell(table: dict[str, Any], backend: str, workload: str, library: str, glue: str,
         payload: str = "200 B") -> dict[str, Any]:  # fmt: skip
    (found,) = [
        r for r in table["results"]
        if (r["backend"], r["payload"], r["workload"], r["library"], r["glue"])
        == (backend, payload, workload, library, glue)
    ]  # fmt: skip
    return found


def test_every_backend_payload_and_workload_has_every_row(table: dict[str, Any]) -> None:
    results = table["results"]
    for backend in BACKENDS:
        payloads = ["200 B"] if backend == "cookie" else ["200 B", "20 KB"]
        assert {r["payload"] for r in results if r["backend"] == backend} == set(payloads)
        satchel = SATCHEL - {("satchel", "Django")} if backend == "cookie" else SATCHEL
        for payload in payloads:
            for kind in KINDS:
                rows = {(r["library"], r["glue"]) for r in results
                        if (r["backend"], r["payload"], r["workload"]) == (backend, payload, kind)}  # fmt: skip
                assert rows == satchel | PEERS[backend] | FLOORS, (backend, payload, kind)
    floors = [r for r in results if r["floor"]]
    assert {(r["library"], r["glue"]) for r in floors} == FLOORS
    assert all(r["ratio"] == 1.0 for r in floors)


def test_outputs_are_written(table: dict[str, Any]) -> None:
    markdown = (table["out"] / "latest.md").read_text()
    assert "### satchel and the best peer" in markdown
    assert "### PostgreSQL, 20 KB payload" in markdown
    assert "### Cookie, 20 KB payload" not in markdown  # no browser keeps such a cookie
    assert (table["out"] / "latest.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("backend", SERVER_BACKENDS)
def test_the_floor_is_one_read_and_one_write(table: dict[str, Any], backend: str) -> None:
    """The counting itself: the raw client's GET, or GET and SET, counted as such."""
    assert cell(table, backend, "untouched", "raw client", "WSGI")["calls"] == 0
    read = cell(table, backend, "read-only", "raw client", "WSGI")
    assert (read["calls"], read["writes"]) == (1, 0)
    written = cell(table, backend, "read-modify-write", "raw client", "WSGI")
    assert written["writes"] == 1
    # The file floor writes a temporary file and renames it into place.
    assert written["calls"] == (3 if backend == "file" else 2)


@pytest.mark.parametrize("backend", SERVER_BACKENDS)
@pytest.mark.parametrize("glue", ["WSGI", "Django"])
def test_satchel_leaves_an_untouched_session_alone(
    table: dict[str, Any], backend: str, glue: str
) -> None:
    untouched = cell(table, backend, "untouched", "satchel", glue)
    assert (untouched["calls"], untouched["writes"], untouched["set_cookie"]) == (0, 0, 0)


@pytest.mark.parametrize("backend", [name for name in SERVER_BACKENDS if name != "file"])
def test_asgi_reads_a_session_whose_cookie_came_before_the_app_runs(
    table: dict[str, Any], backend: str
) -> None:
    untouched = cell(table, backend, "untouched", "satchel", "ASGI")
    assert (untouched["calls"], untouched["writes"], untouched["set_cookie"]) == (1, 0, 0)


def test_asgi_on_a_driver_whose_reads_never_wait_leaves_an_untouched_session_alone(
    table: dict[str, Any],
) -> None:
    """The file driver's reads never wait: ASGI loads its session on first use, as WSGI does."""
    untouched = cell(table, "file", "untouched", "satchel", "ASGI")
    assert (untouched["calls"], untouched["writes"], untouched["set_cookie"]) == (0, 0, 0)


def test_satchel_on_flask_refreshes_a_permanent_session_as_flask_does(
    table: dict[str, Any],
) -> None:
    """Flask's default SESSION_REFRESH_EACH_REQUEST re-sends a permanent session's cookie.

    Renewing the cookie's expiry needs the session's record, so the untouched Flask
    request reads once and writes nothing to the store (docs/web/flask.md: the cost,
    and that the setting set to False keeps untouched requests free).
    """
    untouched = cell(table, "redis", "untouched", "satchel", "Flask")
    assert (untouched["calls"], untouched["writes"], untouched["set_cookie"]) == (1, 0, 1)


@pytest.mark.parametrize("backend", SERVER_BACKENDS)
@pytest.mark.parametrize("glue", ["WSGI", "ASGI", "Flask", "Django"])
@pytest.mark.parametrize("payload", ["200 B", "20 KB"])
def test_satchel_reads_once_and_writes_nothing_on_a_read(
    table: dict[str, Any], backend: str, glue: str, payload: str
) -> None:
    read = cell(table, backend, "read-only", "satchel", glue, payload)
    assert (read["calls"], read["writes"]) == (1, 0)


# A change: one read and one write (on SQL the write runs in autocommit: no COMMIT of its own).
CHANGE_CALLS = {"redis": 2, "memcached": 2, "sqlite": 2, "postgresql": 2}


@pytest.mark.parametrize("backend", list(CHANGE_CALLS))
@pytest.mark.parametrize("glue", ["WSGI", "ASGI", "Flask", "Django"])
def test_a_change_is_one_read_and_one_write(table: dict[str, Any], backend: str, glue: str) -> None:
    written = cell(table, backend, "read-modify-write", "satchel", glue)
    expected = (CHANGE_CALLS[backend], 1, 1)
    assert (written["calls"], written["writes"], written["set_cookie"]) == expected


def test_cookie_sessions_call_no_backend_and_send_one_cookie_per_change(
    table: dict[str, Any],
) -> None:
    rows = [r for r in table["results"] if r["backend"] == "cookie"]
    assert all(r["calls"] == 0 for r in rows)
    changed = [r for r in rows if r["workload"] == "read-modify-write"]
    assert all(r["set_cookie"] == 1 for r in changed)
    satchel = [
        r for r in rows if r["library"] == "satchel" and r["workload"] != "read-modify-write"
    ]
    assert all(r["set_cookie"] == 0 for r in satchel if r["glue"] != "Flask")


def test_peers_counts_as_measured(table: dict[str, Any]) -> None:
    """What the peers cost, as their libraries stand in benchmarks/requirements.txt."""
    # Flask-Session and starsessions write the session back on every request that has one.
    for library, glue in (("Flask-Session", "Flask"), ("starsessions", "ASGI")):
        read = cell(table, "redis", "read-only", library, glue)
        assert (read["calls"], read["writes"], read["set_cookie"]) == (2, 1, 1), library
    # Beaker saves the access time on a read.
    assert cell(table, "redis", "read-only", "Beaker", "WSGI")["writes"] == 1
    # Flask's own permanent session re-signs and re-sends its cookie on every request.
    untouched = cell(table, "cookie", "untouched", "Flask", "Flask")
    assert (untouched["calls"], untouched["writes"], untouched["set_cookie"]) == (0, 0, 1)
    # Django's cache and db engines read once and leave the session alone.
    assert cell(table, "redis", "read-only", "Django (cache)", "Django")["writes"] == 0
    assert cell(table, "postgresql", "read-only", "Django (db)", "Django")["calls"] == 1
