"""Attacks on the file driver's folder, replayed through real servers and the real command.

* ``satchel gc`` and the GC lottery of a real request, pointed at a folder that
  holds more than sessions, remove only what satchel wrote;
* a folder others can write to, or that another user owns, is refused;
* thousands of requests with made-up ids, under ``block = true``, through
  werkzeug's threaded server and uvicorn, leave the folder as it was;
* a symbolic link planted where a lock file or a session file belongs is
  never followed: its target keeps its content and its mtime.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import httpx
import pytest
from fixtures.command import run_satchel
from fixtures.live_servers import SERVERS, get_many, serve_wsgi
from web.web_support import build_starlette, build_wsgi

from satchel import ConfigError, SessionConfig, SessionManager
from satchel.drivers import FileSessionHandler
from satchel.ids import generate_id, storage_digest
from satchel.testing.concurrency import seed_session

COOKIE = "satchel_session"
TEN_DAYS_AGO = -10 * 86400
# What a project folder holds: none of it is a session, whatever its age.
PROJECT_FILES = {
    "Makefile": "all:\n\ttrue\n",
    "LICENSE": "MIT\n",
    "Dockerfile": "FROM python:3.12\n",
    "id_rsa": "-----BEGIN OPENSSH PRIVATE KEY-----\n",
    "authorized_keys": "ssh-ed25519 AAAA admin@host\n",
    "README": "read me\n",
    # Near misses of the names satchel writes.
    storage_digest("x", None).upper(): "a digest in upper case\n",
    storage_digest("y", None)[:63]: "63 hex digits\n",
    storage_digest("z", None) + "0": "65 hex digits\n",
    ".lock-README": "not a digest after the lock prefix\n",
    ".tmp-notes": "not a temporary file of a write\n",
    ".tmp-123-abcdefgh.bak": "not a temporary file of a write either\n",
}


def make_old(path: Path) -> None:
    when = path.stat().st_mtime + TEN_DAYS_AGO
    os.utime(path, (when, when))


def project_folder(folder: Path) -> None:
    """``folder`` with a project's files in it, all ten days old."""
    folder.mkdir(mode=0o700, exist_ok=True)
    for name, text in PROJECT_FILES.items():
        (folder / name).write_text(text)
        make_old(folder / name)


def assert_project_files_survive(folder: Path) -> None:
    for name, text in PROJECT_FILES.items():
        assert (folder / name).read_text() == text, f"{name} was removed or changed"


def idle_session(manager: SessionManager) -> Path:
    """A session of ``manager`` made ten days idle: the file gc must remove."""
    cookie = seed_session(manager, {"idle": True})
    path = Path(manager.config.files) / manager.storage_key(cookie)
    make_old(path)
    return path


# -- gc removes only what satchel wrote ----------------------------------------------------


def test_satchel_gc_pointed_at_a_project_folder_removes_only_sessions(tmp_path: Path) -> None:
    folder = tmp_path / "project"
    project_folder(folder)
    idle = idle_session(SessionManager(SessionConfig(files=str(folder))))
    result = run_satchel("gc", env={"SESSION_DRIVER": "file", "SESSION_FILES": str(folder)})
    assert result.returncode == 0, result.stderr
    assert "removed 1 expired session(s)" in result.stdout
    assert not idle.exists()
    assert_project_files_survive(folder)


def test_the_gc_lottery_of_a_real_request_removes_only_sessions(tmp_path: Path) -> None:
    folder = tmp_path / "project"
    project_folder(folder)
    manager = SessionManager(SessionConfig(files=str(folder), lottery=(1, 1)))
    idle = idle_session(manager)
    with serve_wsgi(build_wsgi(manager)) as url:
        # The request loads its session, so it draws the lottery, which always wins here.
        assert get_many(f"{url}/put?key=a&value=1", [f"{COOKIE}={generate_id()}"]) == [200]
    assert not idle.exists()  # the lottery did run gc
    assert_project_files_survive(folder)


# -- a folder others can write to is refused -----------------------------------------------


@pytest.mark.parametrize("mode", [0o770, 0o720, 0o702, 0o777, 0o1777], ids=oct)
def test_a_folder_others_can_write_to_is_refused(tmp_path: Path, mode: int) -> None:
    folder = tmp_path / "shared"
    project_folder(folder)
    folder.chmod(mode)
    with pytest.raises(ConfigError) as info:
        SessionManager(SessionConfig(files=str(folder))).handler()
    assert info.value.key == "files"
    assert str(folder) in str(info.value)
    assert "writable" in str(info.value)
    # The command says so too, and touches nothing.
    result = run_satchel("gc", env={"SESSION_DRIVER": "file", "SESSION_FILES": str(folder)})
    assert result.returncode == 1
    assert "'files'" in result.stderr
    assert str(folder) in result.stderr
    assert_project_files_survive(folder)


@pytest.mark.skipif(
    os.geteuid() != 0, reason="giving a folder to another user needs root (CI runs as root)"
)
def test_a_folder_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "theirs"
    folder.mkdir(mode=0o700)
    os.chown(folder, 4242, 4242)
    with pytest.raises(ConfigError) as info:
        FileSessionHandler(folder, 3600)
    assert info.value.key == "files"
    assert str(folder) in str(info.value)
    assert "4242" in str(info.value)


def test_a_file_where_the_folder_belongs_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "sessions"
    path.write_text("not a folder")
    with pytest.raises(ConfigError) as info:
        FileSessionHandler(path, 3600)
    assert info.value.key == "files"
    assert str(path) in str(info.value)


def test_the_folder_satchel_makes_is_private_whatever_the_umask(tmp_path: Path) -> None:
    folder = tmp_path / "var" / "sessions"
    previous = os.umask(0)
    try:
        FileSessionHandler(folder, 3600).write(storage_digest(generate_id(), None), "x")
    finally:
        os.umask(previous)
    assert folder.stat().st_mode & 0o7777 == 0o700
    FileSessionHandler(folder, 3600)  # and it passes its own check the next time


# -- unknown ids create nothing under block ------------------------------------------------

UNKNOWN_ID_REQUESTS = 2000


@pytest.mark.parametrize("server", list(SERVERS))
def test_thousands_of_unknown_ids_under_block_leave_the_folder_as_it_was(
    tmp_path: Path, server: str
) -> None:
    folder = tmp_path / "sessions"
    manager = SessionManager(SessionConfig(files=str(folder), block=True, lottery=(0, 1)))
    known = seed_session(manager, {"user": "alice"})
    before = sorted(path.name for path in folder.iterdir())
    app = build_wsgi(manager) if server == "werkzeug" else build_starlette(manager)
    cookies = [f"{COOKIE}={generate_id()}" for _ in range(UNKNOWN_ID_REQUESTS)]
    with SERVERS[server](app) as url:
        statuses = get_many(f"{url}/untouched", cookies)
    assert statuses == [200] * UNKNOWN_ID_REQUESTS
    assert sorted(path.name for path in folder.iterdir()) == before == [manager.storage_key(known)]


# -- symbolic links in the folder are never followed ----------------------------------------


def planted_target(tmp_path: Path, text: str) -> tuple[Path, float]:
    """A file outside the sessions folder, written a minute ago: what a planted link points to.

    Recent enough to pass for a live session, so only the link decides what is read.
    """
    target = tmp_path / "elsewhere" / "precious"
    target.parent.mkdir()
    target.write_text(text)
    a_minute_ago = target.stat().st_mtime - 60
    os.utime(target, (a_minute_ago, a_minute_ago))
    return target, a_minute_ago


def assert_untouched(target: Path, text: str, mtime: float) -> None:
    assert target.read_text() == text
    assert target.stat().st_mtime == mtime


def build_app(server: str, manager: SessionManager) -> object:
    return build_wsgi(manager) if server == "werkzeug" else build_starlette(manager)


@pytest.mark.parametrize("server", list(SERVERS))
def test_a_link_where_a_lock_file_belongs_is_replaced_never_followed(
    tmp_path: Path, server: str, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "sessions"
    manager = SessionManager(SessionConfig(files=str(folder), block=True, lottery=(0, 1)))
    cookie = seed_session(manager, {"user": "alice"})
    target, mtime = planted_target(tmp_path, "the only copy of something\n")
    lock_file = folder / f".lock-{manager.storage_key(cookie)}"
    lock_file.unlink(missing_ok=True)
    lock_file.symlink_to(target)
    with (
        caplog.at_level(logging.WARNING, logger="satchel"),
        SERVERS[server](build_app(server, manager)) as url,
    ):
        assert get_many(f"{url}/put?key=cart&value=pear", [f"{COOKIE}={cookie}"]) == [200]
    assert_untouched(target, "the only copy of something\n", mtime)
    assert not lock_file.is_symlink()  # the link itself was replaced
    assert manager.start(cookie).all() == {"user": "alice", "cart": "pear"}
    assert "symbolic link" in caplog.text
    assert cookie not in caplog.text
    assert manager.storage_key(cookie) not in caplog.text


@pytest.mark.parametrize("action", ["get", "put"])
@pytest.mark.parametrize("server", list(SERVERS))
def test_a_link_where_a_session_file_belongs_is_no_session_and_never_followed(
    tmp_path: Path, server: str, action: str, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "sessions"
    manager = SessionManager(SessionConfig(files=str(folder), block=True, lottery=(0, 1)))
    # The link points at a real session's payload (an administrator's, say).
    admin = seed_session(manager, {"user": "admin"})
    payload = (folder / manager.storage_key(admin)).read_text()
    target, mtime = planted_target(tmp_path, payload)
    made_up = generate_id()
    (folder / manager.storage_key(made_up)).symlink_to(target)
    path = "/get?key=user" if action == "get" else "/put?key=cart&value=pear"
    with (
        caplog.at_level(logging.WARNING, logger="satchel"),
        SERVERS[server](build_app(server, manager)) as url,
        httpx.Client() as client,
    ):
        reply = client.get(f"{url}{path}", headers={"Cookie": f"{COOKIE}={made_up}"})
    assert reply.status_code == 200
    if action == "get":
        assert reply.text == "null"  # not the administrator's session
    else:
        issued = reply.cookies[COOKIE]
        assert issued != made_up  # a fresh session, as for any unknown id
        assert manager.start(issued).all() == {"cart": "pear"}
    assert_untouched(target, payload, mtime)
    assert "symbolic link" in caplog.text
    assert made_up not in caplog.text
    assert manager.storage_key(made_up) not in caplog.text
