"""The worked examples of docs/migrating/ run as written, before and after alike.

Each "before" app (on the library being left) and its "after" app (on
satchel) go through the same requests and give the same answers, so the
migration keeps the app's behaviour. (docs/migrating/django.md is run in
tests/django, where Django is configured.)
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

DOCS = Path(__file__).resolve().parents[2] / "docs" / "migrating"
PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
COOKIE = "shop_session"


def snippets(page: str) -> list[str]:
    return PYTHON_BLOCK.findall((DOCS / page).read_text(encoding="utf-8"))


def app_of(code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.chdir(tmp_path)  # the snippets keep sessions in folders of the working directory
    namespace: dict[str, Any] = {"__name__": "docs_snippet"}
    exec(compile(code, "<docs snippet>", "exec"), namespace)
    return namespace["app"]


def test_each_page_has_its_snippets() -> None:
    assert len(snippets("flask-session.md")) == 2
    assert len(snippets("starsessions.md")) == 2
    assert len(snippets("laravel.md")) == 1


def shop(post: Callable[[str], Any], get: Callable[[str], Any], cookie: Callable[[], str]) -> None:
    """The same visit to a before or an after app: fill a cart, sign in, sign out."""
    assert post("/cart/apple") == {"items": ["apple"]}
    assert post("/cart/pear") == {"items": ["apple", "pear"]}
    assert get("/cart") == {"items": ["apple", "pear"]}
    before = cookie()
    assert post("/login") == {"user": "ada", "items": ["apple", "pear"]}
    assert cookie() != before  # a new id on sign-in
    assert get("/cart") == {"items": ["apple", "pear"]}
    assert post("/logout") == {"items": []}
    assert get("/cart") == {"items": []}


@pytest.mark.parametrize("which", ["before", "after"])
def test_the_flask_session_example(
    which: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before, after = snippets("flask-session.md")
    app = app_of(before if which == "before" else after, tmp_path, monkeypatch)
    client = app.test_client()

    def cookie() -> str:
        found = client.get_cookie(COOKIE)
        assert found is not None
        return str(found.value)

    shop(
        lambda path: client.post(path).json,
        lambda path: client.get(path).json,
        cookie,
    )


@pytest.mark.parametrize("which", ["before", "after"])
def test_the_starsessions_example(
    which: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before, after = snippets("starsessions.md")
    app = app_of(before if which == "before" else after, tmp_path, monkeypatch)
    with TestClient(app) as client:
        shop(
            lambda path: client.post(path).json(),
            lambda path: client.get(path).json(),
            lambda: str(client.cookies[COOKIE]),
        )


def test_the_laravel_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SESSION_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SESSION_DRIVER", "file")
    monkeypatch.setenv("SESSION_FILES", str(tmp_path / "sessions"))
    monkeypatch.setenv("SESSION_LIFETIME", "120")
    (code,) = snippets("laravel.md")
    client = app_of(code, tmp_path, monkeypatch).test_client()
    assert client.post("/cart/apple").status_code == 303
    assert client.get("/cart").json == {"items": ["apple"], "status": "Item added"}
    assert client.get("/cart").json == {"items": ["apple"], "status": None}
    before = client.get_cookie("satchel_session")
    assert before is not None
    client.post("/login")
    after = client.get_cookie("satchel_session")
    assert after is not None
    assert after.value != before.value
    assert client.get("/cart").json == {"items": ["apple"], "status": None}
    client.post("/logout")
    assert client.get("/cart").json == {"items": [], "status": None}
