"""The complete snippets in docs/web/*.md run as written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from werkzeug.test import Client

from satchel import SessionConfig, SessionHandler, SessionManager
from satchel.drivers.file import LOCK_PREFIX

DOCS = Path(__file__).resolve().parents[2] / "docs" / "web"
ALL_DOCS = DOCS.parent
# manager.extend("driver", <factory expression>) as written in a snippet.
EXTEND_CALL = re.compile(r"""^\s*\w+\.extend\("(\w+)", (.+?)\)\s*(?:#.*)?$""", re.MULTILINE)
PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def snippets(page: str) -> list[str]:
    return PYTHON_BLOCK.findall((DOCS / page).read_text(encoding="utf-8"))


def run_snippet(code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.chdir(tmp_path)  # the snippets keep sessions in ./storage/sessions
    namespace: dict[str, Any] = {"__name__": "docs_snippet"}  # not "__main__": no server
    exec(compile(code, "<docs snippet>", "exec"), namespace)
    return namespace


def test_each_page_has_a_snippet() -> None:
    assert len(snippets("asgi.md")) == 2
    assert len(snippets("wsgi.md")) == 1
    assert len(snippets("flask.md")) == 1


def test_starlette_snippet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = run_snippet(snippets("asgi.md")[0], tmp_path, monkeypatch)["app"]
    client = TestClient(app)
    assert client.get("/cart").json() == {"items": [], "status": None}
    assert client.post("/cart/add/apple").json() == {"items": ["apple"], "status": "Item added"}
    before = client.cookies["satchel_session"]
    client.post("/login")
    assert client.cookies["satchel_session"] != before
    client.post("/logout")
    assert client.get("/cart").json() == {"items": [], "status": None}
    # The record is gone (lock records, ".lock-…", stay until the file driver's gc).
    stored = (tmp_path / "storage" / "sessions").iterdir()
    assert [path.name for path in stored if not path.name.startswith(LOCK_PREFIX)] == []


def test_fastapi_snippet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = run_snippet(snippets("asgi.md")[1], tmp_path, monkeypatch)["app"]
    client = TestClient(app)
    assert client.post("/cart/apple").json() == {"items": ["apple"]}
    assert client.get("/cart").json() == {"items": ["apple"]}


def test_wsgi_snippet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = run_snippet(snippets("wsgi.md")[0], tmp_path, monkeypatch)["app"]
    client = Client(app)

    def get(path: str) -> Any:
        # Closing the response is what a WSGI server does: it ends the request.
        with client.get(path) as response:
            return response.headers.get("Set-Cookie"), response.json

    assert get("/health") == (None, None)
    cookie, body = get("/add/apple")
    assert cookie is not None
    assert body == {"items": ["apple"], "count": 1, "status": "Item added"}
    assert get("/")[1] == {"items": ["apple"], "count": 1, "status": "Item added"}
    assert get("/")[1] == {"items": ["apple"], "count": 1, "status": None}


def test_flask_snippet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = run_snippet(snippets("flask.md")[0], tmp_path, monkeypatch)["app"]
    client = app.test_client()
    reply = client.post("/cart/apple")
    assert reply.status_code == 303
    header = reply.headers["Set-Cookie"]
    assert header.startswith("shop_session=")
    assert "Max-Age=7200" in header
    assert "SameSite=Lax" in header
    assert client.get("/cart").json == {"items": ["apple"], "status": "Item added"}
    client.post("/logout")
    assert client.get("/cart").json == {"items": [], "status": None}


def extend_calls() -> list[tuple[str, str, str]]:
    """Each ``manager.extend(name, factory)`` in a Python snippet of the docs: page, name, factory."""
    found = []
    for page in sorted(ALL_DOCS.rglob("*.md")):
        for block in PYTHON_BLOCK.findall(page.read_text(encoding="utf-8")):
            found += [(page.name, name, factory) for name, factory in EXTEND_CALL.findall(block)]
    return found


def test_the_extend_snippets_are_found() -> None:
    assert ("session-api.md", "mongo", "MongoSessionHandler.from_config") in extend_calls()


@pytest.mark.parametrize(("page", "name", "factory"), extend_calls())
def test_an_extend_snippet_registers_a_factory_that_builds_the_handler(
    page: str, name: str, factory: str
) -> None:
    # The snippets' handler classes; `nox -s ci` installs every plugin, the core session none.
    satchel_mongo = pytest.importorskip("satchel_mongo")
    namespace = {"MongoSessionHandler": satchel_mongo.MongoSessionHandler}
    config = SessionConfig(driver=name, connection="mongodb://127.0.0.1:1/?connect=false")
    manager = SessionManager(config)
    manager.extend(name, eval(factory, namespace))
    handler = manager.handler()
    assert isinstance(handler, SessionHandler)
    handler.close()
