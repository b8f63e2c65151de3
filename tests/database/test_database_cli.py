"""The database driver's ``satchel`` commands, end to end against the real databases."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from fixtures.database_support import (
    alembic_project,
    drop_alembic_version_table,
    drop_table,
    sync_url,
)
from fixtures.terminal import run_in_terminal

from satchel import RequestMetadata, SessionConfig
from satchel.cli import main
from satchel.testing import new_storage_id
from satchel.testing.plugin import check_driver_listed
from satchel_database import DatabaseSessionHandler, create_handler


def write_config(path: Path, url: str, table: str, **extra: Any) -> Path:
    lines = [
        'driver = "database"',
        f'connection = "{url}"',
        f'table = "{table}"',
        *(f"{key} = {value}" for key, value in extra.items()),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def config_file(tmp_path: Path, database_url: str, table_name: str) -> Any:
    path = write_config(tmp_path / "session.toml", database_url, table_name)
    yield path
    drop_table(database_url, table_name)


def handler_of(path: Path) -> DatabaseSessionHandler:
    return create_handler(SessionConfig.from_toml(path))


def indexed_columns(url: str, table: str) -> set[tuple[str, ...]]:
    engine = sa.create_engine(sync_url(url), poolclass=sa.pool.NullPool)
    try:
        return {tuple(ix["column_names"]) for ix in sa.inspect(engine).get_indexes(table)}
    finally:
        engine.dispose()


def table_exists(url: str, table: str) -> bool:
    engine = sa.create_engine(sync_url(url), poolclass=sa.pool.NullPool)
    try:
        return sa.inspect(engine).has_table(table)
    finally:
        engine.dispose()


def test_migrate_creates_the_tables_once_and_says_which(
    config_file: Path, database_url: str, table_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate", "--config", str(config_file)]) == 0
    assert capsys.readouterr().out == (
        f"created table '{table_name}' with its indexes\ncreated table '{table_name}_locks'\n"
    )
    assert main(["migrate", "--config", str(config_file)]) == 0
    assert capsys.readouterr().out == (
        f"table '{table_name}' already exists\ntable '{table_name}_locks' already exists\n"
    )
    assert {("user_id",), ("last_activity",)} <= indexed_columns(database_url, table_name)
    assert table_exists(database_url, f"{table_name}_locks")


def test_migrate_over_a_table_without_its_lock_table_says_it_created_only_that(
    tmp_path: Path,
    database_url: str,
    make_table: Callable[..., str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    table = make_table(database_url)  # migrated before session blocking had a lock table
    config = write_config(tmp_path / "session.toml", database_url, table)
    assert main(["migrate", "--config", str(config)]) == 0
    assert capsys.readouterr().out == (
        f"table '{table}' already exists\ncreated table '{table}_locks'\n"
    )
    assert table_exists(database_url, f"{table}_locks")


def test_migrate_reads_session_environment_variables(
    sqlite_url: str, table_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SESSION_DRIVER", "database")
    monkeypatch.setenv("SESSION_CONNECTION", sqlite_url)
    monkeypatch.setenv("SESSION_TABLE", table_name)
    assert main(["migrate"]) == 0
    assert table_exists(sqlite_url, table_name)


def test_migrate_refuses_another_driver(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "file.toml"
    path.write_text('driver = "file"\n', encoding="utf-8")
    assert main(["migrate", "--config", str(path)]) == 1
    assert "needs driver 'database'" in capsys.readouterr().err


def write_expired_and_live(handler: DatabaseSessionHandler, expired: int) -> str:
    """``expired`` rows idle for hours and one live row; the live row's id."""
    now = handler.clock()
    handler.clock = lambda: now - 10_000  # these writes happened long ago
    for _ in range(expired):
        handler.write(new_storage_id(), "old")
    handler.clock = lambda: now
    live = new_storage_id()
    handler.write(live, "live")
    return live


def test_gc_prunes_through_cores_command(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate", "--config", str(config_file)]) == 0
    handler = handler_of(config_file)
    live = write_expired_and_live(handler, 30)
    capsys.readouterr()
    assert main(["gc", "--config", str(config_file)]) == 0
    assert "removed 30 expired session(s) from driver 'database'" in capsys.readouterr().out
    assert handler.read(live) == "live"
    assert handler.count_expired(handler.lifetime_seconds) == 0
    handler.close()


def test_gc_in_a_terminal_draws_a_progress_bar_then_the_count_on_its_own_line(
    tmp_path: Path, sqlite_url: str, table_name: str, environment_of: EnvironmentOf
) -> None:
    config_file = write_config(
        tmp_path / "session.toml", sqlite_url, table_name, options="{ gc_batch_size = 7 }"
    )
    assert main(["migrate", "--config", str(config_file)]) == 0
    handler = handler_of(config_file)
    live = write_expired_and_live(handler, 30)
    code, drawn, errors = run_in_terminal(
        [sys.executable, "-m", "satchel", "gc", "--config", str(config_file)], environment_of()
    )
    assert (code, errors) == (0, "")
    lines = drawn.replace("\r\n", "\n").split("\n")
    bar, count = lines[-3], lines[-2]  # the output ends with a newline
    redraws = [part for part in bar.split("\r") if part]
    assert [redraw.rsplit(" ", 1)[1] for redraw in redraws] == [
        "7/30",
        "14/30",
        "21/30",
        "28/30",
        "30/30",
    ]
    assert redraws[-1] == "[" + "#" * 30 + "] 30/30"
    assert count == "removed 30 expired session(s) from driver 'database'"
    assert handler.read(live) == "live"
    handler.close()


def write_two_users_sessions(handler: DatabaseSessionHandler) -> tuple[list[str], str]:
    """Two sessions of user 7 (from 203.0.113.9, Firefox on X11) and one of user 8."""
    mine = [new_storage_id() for _ in range(2)]
    for key in mine:
        handler.write_with_metadata(
            key, "p", RequestMetadata("203.0.113.9", "Mozilla/5.0 (X11)", {"user_id": 7})
        )
    other = new_storage_id()
    handler.write_with_metadata(other, "p", RequestMetadata(values={"user_id": 8}))
    return mine, other


def test_sessions_lists_and_revokes_a_users_sessions(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate", "--config", str(config_file)]) == 0
    handler = handler_of(config_file)
    keys, other = write_two_users_sessions(handler)
    capsys.readouterr()

    assert main(["sessions", "--config", str(config_file), "--user", "7"]) == 0
    out = capsys.readouterr().out
    for key in keys:
        assert key[:12] in out
        assert key not in out  # only a prefix of the digest is shown
    assert other[:12] not in out
    assert "203.0.113.9" in out
    assert "Mozilla/5.0 (X11)" in out
    assert "2 session(s)" in out

    assert main(["sessions", "--config", str(config_file), "--user", "7", "--revoke"]) == 0
    assert "revoked 2 session(s) of user '7'" in capsys.readouterr().out
    assert [handler.read(key) for key in keys] == ["", ""]
    assert handler.read(other) == "p"
    assert main(["sessions", "--config", str(config_file), "--user", "7"]) == 0
    assert "no sessions of user '7'" in capsys.readouterr().out
    handler.close()


@pytest.mark.parametrize("dialect", ["postgresql", "mysql", "mariadb", "sqlite"])
def test_session_table_prints_the_ddl(dialect: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["session:table", "--sql", dialect]) == 0
    out = capsys.readouterr().out
    assert "CREATE TABLE sessions" in out
    assert "ip_address VARCHAR(45)" in out
    assert "CREATE INDEX ix_sessions_user_id ON sessions (user_id)" in out
    assert "CREATE INDEX ix_sessions_last_activity ON sessions (last_activity)" in out
    assert ("LONGTEXT" in out) == (dialect in ("mysql", "mariadb"))
    assert "CREATE TABLE sessions_locks" in out  # session blocking's lock table


def test_session_table_without_a_target_explains(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["session:table"]) == 2
    assert "versions folder" in capsys.readouterr().err


def test_the_written_migration_runs_under_alembic(
    tmp_path: Path, database_url: str, table_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config, versions = alembic_project(tmp_path / "migrations", database_url)
    first = write_config(tmp_path / "a.toml", database_url, table_name)
    second_table = f"{table_name}_b"
    second = write_config(tmp_path / "b.toml", database_url, second_table)
    try:
        assert main(["session:table", "--config", str(first), str(versions)]) == 0
        assert main(["session:table", "--config", str(second), str(versions)]) == 0
        written = {path.name.split("_")[0]: path.read_text() for path in versions.glob("*.py")}
        assert len(written) == 2
        (base,) = [rev for rev, text in written.items() if "down_revision = None" in text]
        (follower,) = [rev for rev in written if rev != base]
        assert f"'{table_name}'" in written[base]
        assert f"'{second_table}'" in written[follower]
        assert f"down_revision = '{base}'" in written[follower]

        command.upgrade(config, "head")
        assert table_exists(database_url, table_name)
        assert table_exists(database_url, f"{table_name}_locks")
        assert {("user_id",), ("last_activity",)} <= indexed_columns(database_url, table_name)
        handler = handler_of(first)
        key = new_storage_id()
        handler.write(key, "é" * 70_000)  # over 64 KiB: LONGTEXT on MySQL
        assert handler.read(key) == "é" * 70_000
        with handler.lock(key, lock_seconds=5, wait_seconds=1):
            pass
        handler.close()

        command.downgrade(config, "base")
        assert not table_exists(database_url, table_name)
        assert not table_exists(database_url, f"{table_name}_locks")
        assert not table_exists(database_url, second_table)
    finally:
        drop_table(database_url, table_name)
        drop_table(database_url, second_table)
        drop_alembic_version_table(config, database_url)


def test_session_table_refuses_a_folder_with_two_heads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    versions = tmp_path / "versions"
    versions.mkdir()
    for revision in ("aaa", "bbb"):
        (versions / f"{revision}_x.py").write_text(
            f'revision = "{revision}"\ndown_revision = None\n', encoding="utf-8"
        )
    assert main(["session:table", str(versions)]) == 1
    assert "several heads" in capsys.readouterr().err
    assert main(["session:table", str(versions), "--down-revision", "bbb"]) == 0
    assert "wrote" in capsys.readouterr().out


def test_session_table_refuses_a_second_migration_for_a_table_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    versions = tmp_path / "versions"
    versions.mkdir()
    assert main(["session:table", str(versions)]) == 0
    (first,) = versions.glob("*.py")
    capsys.readouterr()

    assert main(["session:table", str(versions)]) == 1
    assert capsys.readouterr().err == (
        f"satchel: error: {first} already creates table 'sessions'; not writing a second "
        "migration for it (--force writes one anyway)\n"
    )
    assert list(versions.glob("*.py")) == [first]

    assert main(["session:table", str(versions), "--force"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert len(list(versions.glob("*.py"))) == 2


@pytest.mark.parametrize(
    ("table", "created"),
    [("sessions", "sessions"), ("sessions", "sessions_locks"), ("other", None)],
    ids=["the-table", "its-lock-table", "another-table"],
)
def test_session_table_reads_what_an_autogenerated_migration_creates(
    tmp_path: Path, table: str, created: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    versions = tmp_path / "versions"
    versions.mkdir()
    (versions / "0001_users.py").write_text(
        "revision = '0001'\ndown_revision = None\n\n\ndef upgrade():\n"
        "    op.create_table('users', sa.Column('id', sa.Integer()))\n"
        + (f"    op.create_table(\n        '{created}',\n    )\n" if created else ""),
        encoding="utf-8",
    )
    config = tmp_path / "session.toml"
    config.write_text(f'table = "{table}"\n', encoding="utf-8")
    code = main(["session:table", "--config", str(config), str(versions)])
    if created is None:
        assert code == 0
        assert (
            "down_revision = '0001'"
            in next(versions.glob(f"*_create_{table}_table.py")).read_text()
        )
    else:
        assert code == 1
        assert f"0001_users.py already creates table '{created}'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [("migrate",), ("sessions", "--user", "7"), ("session:table", "--sql", "sqlite")],
    ids=["migrate", "sessions", "session-table"],
)
def test_a_missing_config_file_is_one_line_on_stderr(
    tmp_path: Path, argv: tuple[str, ...], environment_of: EnvironmentOf
) -> None:
    missing = tmp_path / "missing.toml"
    result = run_satchel(*argv, "--config", str(missing), env=environment_of())
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"satchel: error: cannot read the config file {missing}: No such file or directory\n"
    )


def test_drivers_lists_the_database_driver_and_its_distribution(
    satchel_drivers_listing: subprocess.CompletedProcess[str],
) -> None:
    check_driver_listed(satchel_drivers_listing, "database", "satchel-database", twin=True)


EnvironmentOf = Callable[..., dict[str, str]]
OTHER_PLUGINS = "satchel-redis,satchel-memcached,satchel-mongo"


@pytest.fixture(scope="session")
def bytecode_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pycache")


@pytest.fixture
def environment_of(bytecode_cache: Path) -> EnvironmentOf:
    """``environment_of(**session)``: this process's environment without any
    ``SESSION_*`` variable, plus ``session``.

    The commands' processes compile to a cache of this run, outside the tree
    (the machine runs with ``PYTHONDONTWRITEBYTECODE``, so each would compile
    SQLAlchemy afresh), and load only the database plugin.
    """

    def environment(**session: str) -> dict[str, str]:
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith("SESSION_") and name != "PYTHONDONTWRITEBYTECODE"
        }
        env["PYTHONPYCACHEPREFIX"] = str(bytecode_cache)
        env["SATCHEL_DISABLE_PLUGINS"] = OTHER_PLUGINS
        env.update(session)
        return env

    return environment


def run_satchel(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "satchel", *argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env=env,
    )


@pytest.fixture(params=["sqlite_url", "postgres_url"])
def cli_database(request: pytest.FixtureRequest, table_name: str) -> Any:
    """SQLite and PostgreSQL, the test's table dropped afterwards."""
    url = str(request.getfixturevalue(request.param))
    yield url
    drop_table(url, table_name)


@pytest.mark.parametrize("configured_by", ["environment", "--config"])
def test_the_commands_end_to_end_in_a_process_of_their_own(
    cli_database: str,
    table_name: str,
    tmp_path: Path,
    configured_by: str,
    environment_of: EnvironmentOf,
) -> None:
    """``satchel migrate``, ``gc`` and ``sessions`` as an operator runs them."""
    if configured_by == "environment":
        env = environment_of(
            SESSION_DRIVER="database",
            SESSION_CONNECTION=cli_database,
            SESSION_TABLE=table_name,
            SESSION_OPTIONS='{"gc_batch_size": 2}',
        )
        config_argv: tuple[str, ...] = ()
    else:
        path = write_config(
            tmp_path / "session.toml", cli_database, table_name, options="{ gc_batch_size = 2 }"
        )
        env = environment_of()
        config_argv = ("--config", str(path))

    def satchel(*argv: str) -> str:
        result = run_satchel(*argv, *config_argv, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stderr == ""
        return result.stdout

    assert satchel("migrate") == (
        f"created table '{table_name}' with its indexes\ncreated table '{table_name}_locks'\n"
    )
    assert satchel("migrate") == (
        f"table '{table_name}' already exists\ntable '{table_name}_locks' already exists\n"
    )
    assert table_exists(cli_database, table_name)

    handler = create_handler(
        SessionConfig(driver="database", connection=cli_database, table=table_name)
    )
    try:
        live = write_expired_and_live(handler, 5)
        mine, other = write_two_users_sessions(handler)

        # Not a terminal: no bar, only the count.
        assert satchel("gc") == "removed 5 expired session(s) from driver 'database'\n"
        assert handler.count_expired(handler.lifetime_seconds) == 0
        assert handler.read(live) == "live"

        listed = satchel("sessions", "--user", "7").splitlines()
        assert listed[0].startswith("ID DIGEST")
        assert sorted(line.split("…")[0] for line in listed[1:-1]) == sorted(
            key[:12] for key in mine
        )
        assert all("203.0.113.9" in line and "Mozilla/5.0 (X11)" in line for line in listed[1:-1])
        assert listed[-1] == "2 session(s)"
        assert not any(key in "\n".join(listed) for key in mine)  # only digest prefixes

        assert satchel("sessions", "--user", "7", "--revoke") == (
            "revoked 2 session(s) of user '7'\n"
        )
        assert [handler.read(key) for key in mine] == ["", ""]
        assert handler.read(other) == "p"
        assert satchel("sessions", "--user", "7") == "no sessions of user '7'\n"
    finally:
        handler.close()


def test_a_process_without_configuration_names_what_is_missing(
    environment_of: EnvironmentOf,
) -> None:
    """With no config at all the driver is the default ``file``: a config error, exit code 1."""
    result = run_satchel("migrate", env=environment_of())
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "satchel: error: this command needs driver 'database'; the config's driver is 'file'\n"
    )
