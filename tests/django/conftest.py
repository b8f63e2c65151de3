"""Django, configured for the session engine's tests, and the drivers they run on.

Django's settings are process-wide and can be configured once: this conftest
does it when pytest collects this folder, so only the worker running these
files ever imports Django; each test then picks its driver with
``override_settings(SATCHEL_SESSION=...)``, which makes the engine build a
new manager. The auth tables live in a SQLite file of this worker.
"""

from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import django
import pytest
from django.conf import settings
from django.test.utils import override_settings

# The web tests' spy driver (the array driver, recording each call it gets).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "web"))
from web_support import SpyHandler

SECRET_KEY = "satchel-django-tests-secret-key-0123456789abcdef"
DRIVERS = ["file", "redis", "sqlite", "postgresql"]

_database_folder = tempfile.mkdtemp(prefix="satchel-django-")
atexit.register(shutil.rmtree, _database_folder, ignore_errors=True)

if not settings.configured:
    settings.configure(
        SECRET_KEY=SECRET_KEY,
        DEBUG=False,
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "django.contrib.sessions",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
        ],
        ROOT_URLCONF="django_app",
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": str(Path(_database_folder) / "django.sqlite3"),
            }
        },
        SESSION_ENGINE="satchel.django",
        SATCHEL_SESSION={"driver": "array"},
        USE_TZ=True,
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        LOGGING_CONFIG=None,
    )
    django.setup()


@pytest.fixture(scope="session")
def django_tables() -> None:
    """The auth and contenttypes tables in this worker's SQLite file."""
    from django.core.management import call_command  # noqa: PLC0415 - after setup

    call_command("migrate", verbosity=0, interactive=False)


@pytest.fixture
def user(django_tables: None) -> Iterator[Any]:
    """A user who can sign in with the password ``secret``."""
    from django.contrib.auth.models import User  # noqa: PLC0415 - needs the app registry

    made = User.objects.create_user(username=f"ada-{id(object())}", password="secret")
    yield made
    made.delete()


@pytest.fixture(params=DRIVERS)
def driver(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def driver_config(
    driver: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    unique_prefix: str,
) -> dict[str, Any]:
    """``SATCHEL_SESSION`` for the parametrized driver, on the test's own folder, prefix or table."""
    return satchel_settings(driver, request, tmp_path, unique_prefix)


def satchel_settings(
    driver: str, request: pytest.FixtureRequest, tmp_path: Path, prefix: str
) -> dict[str, Any]:
    if driver == "file":
        return {"driver": "file", "files": str(tmp_path / "sessions")}
    if driver == "redis":
        return {
            "driver": "redis",
            "connection": request.getfixturevalue("redis_url"),
            "prefix": prefix,
        }
    url_fixture = {"sqlite": "sqlite_url", "postgresql": "postgres_url", "mysql": "mysql_url"}[
        driver
    ]
    url = str(request.getfixturevalue(url_fixture))
    make_table: Callable[[str], str] = request.getfixturevalue("make_table")
    return {"driver": "database", "connection": url, "table": make_table(url)}


@pytest.fixture
def engine(driver_config: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The Django settings of the test, with ``SATCHEL_SESSION`` set to the driver's config."""
    with override_settings(SATCHEL_SESSION=driver_config):
        yield driver_config


@pytest.fixture
def spy() -> Iterator[SpyHandler]:
    """The engine on the spy driver, which records every call the store gets."""
    from satchel.django import session_manager  # noqa: PLC0415 - after setup

    handler = SpyHandler(settings.SESSION_COOKIE_AGE)
    with override_settings(SATCHEL_SESSION={"driver": "spy"}):
        session_manager().extend("spy", lambda config: handler)
        yield handler
