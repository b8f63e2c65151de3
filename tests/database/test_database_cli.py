"""The database driver's ``satchel`` commands, end to end against the real databases."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from fixtures.database_support import drop_table, sync_url

from satchel import RequestMetadata, SessionConfig
from satchel.cli import main
from satchel.testing import new_storage_id
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


def test_migrate_creates_the_table_once(
    config_file: Path, database_url: str, table_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate", "--config", str(config_file)]) == 0
    assert f"created table '{table_name}'" in capsys.readouterr().out
    assert main(["migrate", "--config", str(config_file)]) == 0
    assert "already exists" in capsys.readouterr().out
    assert {("user_id",), ("last_activity",)} <= indexed_columns(database_url, table_name)
    assert table_exists(database_url, f"{table_name}_locks")


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
    assert main(["migrate", "--config", str(path)]) == 2
    assert "needs driver 'database'" in capsys.readouterr().err


def test_gc_prunes_through_cores_command_with_progress(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate", "--config", str(config_file)]) == 0
    handler = handler_of(config_file)
    now = handler.clock()
    handler.clock = lambda: now - 10_000  # these writes happened long ago
    expired = [new_storage_id() for _ in range(30)]
    for key in expired:
        handler.write(key, "old")
    handler.clock = lambda: now
    live = new_storage_id()
    handler.write(live, "live")
    capsys.readouterr()
    assert main(["gc", "--config", str(config_file)]) == 0
    out = capsys.readouterr().out
    assert "30/30" in out
    assert "removed 30 expired session(s)" in out
    assert handler.read(live) == "live"
    assert handler.count_expired(handler.lifetime_seconds) == 0
    handler.close()


def test_sessions_lists_and_revokes_a_users_sessions(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate", "--config", str(config_file)]) == 0
    handler = handler_of(config_file)
    keys = [new_storage_id() for _ in range(2)]
    for key in keys:
        handler.write_with_metadata(
            key, "p", RequestMetadata("203.0.113.9", "Mozilla/5.0 (X11)", {"user_id": 7})
        )
    other = new_storage_id()
    handler.write_with_metadata(other, "p", RequestMetadata(values={"user_id": 8}))
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


def alembic_config(folder: Path, url: str) -> AlembicConfig:
    config = AlembicConfig(str(folder.parent / "alembic.ini"))
    config.set_main_option("script_location", str(folder))
    config.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    return config


def test_the_written_migration_runs_under_alembic(
    tmp_path: Path, database_url: str, table_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "migrations"
    config = alembic_config(folder, database_url)
    command.init(config, str(folder))
    versions = folder / "versions"
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
        engine = sa.create_engine(sync_url(database_url), poolclass=sa.pool.NullPool)
        with engine.begin() as connection:
            connection.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))
        engine.dispose()


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


def test_drivers_lists_the_database_driver_and_its_distribution() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "satchel", "drivers"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    line = next(line for line in result.stdout.splitlines() if line.startswith("database "))
    assert "satchel-database" in line
    assert "(sync + async)" in line
