"""The snippets of docs/web/django.md and docs/migrating/django.md run as written."""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.test.utils import override_settings

from satchel.drivers.file import LOCK_PREFIX

DOCS = Path(__file__).resolve().parents[2] / "docs"
PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def snippets(page: str) -> list[str]:
    return PYTHON_BLOCK.findall((DOCS / page).read_text(encoding="utf-8"))


def settings_of(code: str) -> dict[str, Any]:
    """The upper-case names a settings snippet defines, as Django reads a settings module."""
    namespace: dict[str, Any] = {}
    exec(compile(code, "<settings snippet>", "exec"), namespace)
    return {name: value for name, value in namespace.items() if name.isupper()}


@pytest.fixture
def as_module(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Run a snippet as an importable module (a urlconf, a session engine)."""
    made: list[str] = []

    def load(code: str, name: str) -> types.ModuleType:
        module = types.ModuleType(name)
        exec(compile(code, f"<{name}>", "exec"), module.__dict__)
        sys.modules[name] = module
        made.append(name)
        return module

    yield load
    for name in made:
        sys.modules.pop(name, None)


def records(folder: Path) -> list[str]:
    """The session files in ``folder`` (the file driver's lock files, ".lock-…", aside)."""
    return [path.name for path in folder.iterdir() if not path.name.startswith(LOCK_PREFIX)]


def test_each_page_has_its_snippets() -> None:
    assert len(snippets("web/django.md")) == 3
    assert len(snippets("migrating/django.md")) == 3


def test_the_django_page_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, as_module: Any, user: Any
) -> None:
    monkeypatch.chdir(tmp_path)  # the snippet keeps sessions in ./storage/sessions
    config, views = snippets("web/django.md")[:2]
    as_module(views, "docs_django_views")
    with override_settings(ROOT_URLCONF="docs_django_views", **settings_of(config)):
        client = Client()
        assert client.get("/cart").json() == {"items": []}
        reply = client.get("/cart/add/apple")
        cookie = reply.cookies["shop_session"]
        assert cookie["max-age"] == 7200
        assert cookie["samesite"] == "Lax"
        before = cookie.value
        reply = client.post("/login", {"username": user.username, "password": "secret"})
        assert reply.json() == {"user": user.username, "items": ["apple"]}
        assert client.cookies["shop_session"].value != before
        assert client.get("/async/cart").json() == {"items": ["apple"]}
        assert client.get("/logout").json() == {"items": []}
        assert client.get("/cart").json() == {"items": []}
    assert records(tmp_path / "storage" / "sessions") == []


def test_the_blocking_settings_are_what_the_engine_wants(redis_url: str) -> None:
    from satchel.django import MIDDLEWARE, session_manager  # noqa: PLC0415

    blocking = settings_of(snippets("web/django.md")[2])
    assert blocking["MIDDLEWARE"][0] == MIDDLEWARE
    blocking["SATCHEL_SESSION"]["connection"] = redis_url  # this run's Redis
    with override_settings(**blocking):
        assert session_manager().config.block is True
        Client().get("/add/apple")  # the middleware is built and the driver can lock


def test_the_migration_from_djangos_sessions_moves_a_session_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, as_module: Any, django_tables: None
) -> None:
    from django.contrib.sessions.backends.db import SessionStore  # noqa: PLC0415 - after setup

    monkeypatch.chdir(tmp_path)
    before, after, engine = snippets("migrating/django.md")
    as_module(engine, "docs_django_sessions")
    as_module(snippets("web/django.md")[1], "docs_django_views")
    with override_settings(ROOT_URLCONF="docs_django_views", **settings_of(before)):
        old_client = Client()
        old_client.get("/cart/add/apple")
        old_key = old_client.cookies[settings.SESSION_COOKIE_NAME].value
        assert SessionStore(old_key)["cart"] == ["apple"]
    moving = {**settings_of(after), "SESSION_ENGINE": "docs_django_sessions"}
    with override_settings(ROOT_URLCONF="docs_django_views", **moving):
        client = Client()
        client.cookies = old_client.cookies
        # The first request under satchel finds the session in Django's table and moves it.
        reply = client.get("/cart/add/pear")
        assert reply.json() == {"items": ["apple", "pear"]}
        new_key = reply.cookies[settings.SESSION_COOKIE_NAME].value
        assert new_key != old_key
        assert client.get("/cart").json() == {"items": ["apple", "pear"]}
        assert len(records(tmp_path / "storage" / "sessions")) == 1
    assert SessionStore().exists(old_key) is False
