"""The ``satchel`` command: ``drivers``, ``gc`` and ``key:generate``."""

from __future__ import annotations

import io
import os
import re
import string
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.command import run_satchel
from fixtures.terminal import run_in_terminal

from satchel import SessionConfig, SessionManager
from satchel.cli import run_gc
from satchel.drivers import ArraySessionHandler
from satchel.handler import SupportsBatchedGc


def test_drivers_lists_builtins_with_their_distribution_and_version() -> None:
    result = run_satchel("drivers")
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["DRIVER", "PROVIDED", "BY"]
    listed = {
        line.split()[0]: line.split()[1:3]
        for line in lines[1:]
        if not line.startswith(("failed", "conflict"))
    }
    for name in ("file", "cookie", "array", "null"):
        assert listed[name][0] == "satchel"
        assert listed[name][1][0].isdigit()


def test_drivers_reports_a_disabled_builtin_as_gone() -> None:
    result = run_satchel("drivers", env={"SATCHEL_DISABLE_PLUGINS": "builtin"})
    assert "file" not in {line.split()[0] for line in result.stdout.splitlines()[1:]}


def file_sessions(tmp_path: Path, count: int, idle: int) -> tuple[Path, Path]:
    """``count`` file-driver sessions, ``idle`` of them idle for an hour: the folder and a config."""
    folder = tmp_path / "sessions"
    manager = SessionManager(SessionConfig(files=str(folder), lifetime=1))
    for index in range(count):
        session = manager.start(None)
        session.put("n", index)
        session.save()
    old = time.time() - 3600
    for path in list(folder.iterdir())[:idle]:
        os.utime(path, (old, old))
    config = tmp_path / "session.toml"
    config.write_text(f'driver = "file"\nfiles = "{folder}"\nlifetime = 1\n')
    return folder, config


def test_gc_prunes_idle_sessions_of_the_configured_driver(tmp_path: Path) -> None:
    folder, config = file_sessions(tmp_path, count=3, idle=2)
    result = run_satchel("gc", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "removed 2 expired session(s)" in result.stdout
    assert len(list(folder.iterdir())) == 1


def test_gc_reads_session_environment_variables(tmp_path: Path) -> None:
    result = run_satchel("gc", env={"SESSION_DRIVER": "array"})
    assert result.returncode == 0
    # Not a terminal: the count alone, on a line of its own, no carriage returns.
    assert result.stdout == "removed 0 expired session(s) from driver 'array'\n"


class BatchedHandler(ArraySessionHandler):
    """Prunes in the given batches, as the database driver does with ``gc_batch_size``."""

    def __init__(self, batches: list[int], total: int | None) -> None:
        super().__init__(lifetime_seconds=7200)
        self.batches = batches
        self.total = total

    def count_expired(self, lifetime: int) -> int | None:
        return self.total

    def gc(self, lifetime: int) -> int:
        return sum(self.gc_batches(lifetime))

    def gc_batches(self, lifetime: int) -> Iterator[int]:
        yield from self.batches
        self.batches = []  # pruned: a second run finds nothing


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def batched_manager(batches: list[int], total: int | None) -> SessionManager:
    manager = SessionManager(SessionConfig(driver="batched"))
    handler = BatchedHandler(batches, total)
    assert isinstance(handler, SupportsBatchedGc)
    manager.extend("batched", lambda config: handler)
    return manager


def test_gc_on_a_terminal_draws_a_bar_per_batch_then_ends_its_line() -> None:
    out = Terminal()
    assert run_gc(batched_manager([10, 10, 5], total=25), out) == 0
    assert out.getvalue() == (
        "\r[############..................] 10/25"
        "\r[########################......] 20/25"
        "\r[##############################] 25/25\n"
        "removed 25 expired session(s) from driver 'batched'\n"
    )


def test_gc_on_a_terminal_with_an_unknown_total_counts_up() -> None:
    out = Terminal()
    run_gc(batched_manager([3, 4], total=None), out)
    assert out.getvalue() == (
        "\rremoved 3 so far\rremoved 7 so far\nremoved 7 expired session(s) from driver 'batched'\n"
    )


def test_gc_on_a_terminal_with_nothing_expired_draws_no_bar() -> None:
    out = Terminal()
    run_gc(SessionManager(SessionConfig(driver="array")), out)
    assert out.getvalue() == "removed 0 expired session(s) from driver 'array'\n"


@pytest.mark.parametrize(("batches", "total"), [([10, 10, 5], 25), ([3, 4], None)])
def test_gc_into_a_pipe_or_log_prints_only_the_count(batches: list[int], total: int | None) -> None:
    out = io.StringIO()
    run_gc(batched_manager(batches, total), out)
    assert out.getvalue() == (f"removed {sum(batches)} expired session(s) from driver 'batched'\n")


def test_a_failing_batch_still_ends_the_bar_line() -> None:
    class FailingHandler(BatchedHandler):
        def gc_batches(self, lifetime: int) -> Iterator[int]:
            yield 5
            raise OSError("disk gone")

    manager = SessionManager(SessionConfig(driver="failing"))
    manager.extend("failing", lambda config: FailingHandler([], total=10))
    out = Terminal()
    with pytest.raises(OSError, match="disk gone"):
        run_gc(manager, out)
    assert out.getvalue() == "\r[###############...............] 5/10\n"


def test_a_bad_config_is_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    result = run_satchel("gc", env={"SESSION_LIFETIME": "forever"})
    assert result.returncode == 1
    assert "'lifetime'" in result.stderr
    assert "Traceback" not in result.stderr


def test_gc_under_a_real_terminal_ends_the_bar_before_the_count(tmp_path: Path) -> None:
    _, config = file_sessions(tmp_path, count=2, idle=2)
    code, drawn, errors = run_in_terminal(
        [sys.executable, "-m", "satchel", "gc", "--config", str(config)], timeout=60
    )
    assert code == 0, errors
    # The terminal turns each "\n" into "\r\n".
    assert drawn == (
        "\r[##############################] 2/2\r\n"
        "removed 2 expired session(s) from driver 'file'\r\n"
    )


def test_key_generate_prints_a_fresh_key_that_satchel_accepts() -> None:
    keys = []
    for _ in range(3):
        result = run_satchel("key:generate")
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        (key,) = result.stdout.splitlines()
        assert result.stdout == key + "\n"  # one line, ready for SESSION_SECRET_KEY=$(...)
        assert len(key) == 43  # 32 random bytes, URL-safe base64 without padding
        assert set(key) <= set(string.ascii_letters + string.digits + "-_")
        keys.append(key)
    assert len(set(keys)) == 3
    config = SessionConfig.from_env({"SESSION_SECRET_KEY": keys[0], "SESSION_ENCRYPT": "true"})
    assert config.secret_key == keys[0]


BAD_CONFIGS = {
    "missing": (None, "cannot read the config file {path}: No such file or directory"),
    "a-folder": ("folder", "cannot read the config file {path}: Is a directory"),
    "not-toml": (b"driver = \n", "session config key '<file>': {path} is not valid TOML: "),
    "not-utf8": (b'driver = "\xff"\n', "session config key '<file>': {path} is not valid TOML: "),
    "bad-key": (b"lifetime = 'forever'\n", "session config key 'lifetime': "),
}


def bad_config(tmp_path: Path, case: str) -> Path:
    path = tmp_path / "session.toml"
    content = BAD_CONFIGS[case][0]
    if content == "folder":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    return path


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_a_bad_config_file_is_one_line_on_stderr_and_exit_code_1(tmp_path: Path, case: str) -> None:
    path = bad_config(tmp_path, case)
    result = run_satchel("gc", "--config", str(path))
    assert (result.returncode, result.stdout) == (1, "")
    (line,) = result.stderr.splitlines()
    assert line.startswith("satchel: error: " + BAD_CONFIGS[case][1].format(path=path))


DOCS = Path(__file__).resolve().parents[2] / "docs"
LOTTERY = re.compile(r"""["']?lottery["']?\s*[=:]\s*\[\s*(\d+)\s*,\s*(\d+)\s*\]""")


def test_the_docs_spell_a_lottery_that_never_runs_one_way() -> None:
    """Every page that turns the GC lottery off (for ``satchel gc`` from cron) writes ``[0, 100]``."""
    spellings = {
        (path.relative_to(DOCS).as_posix(), (int(chances), int(out_of)))
        for path in DOCS.rglob("*.md")
        for chances, out_of in LOTTERY.findall(path.read_text(encoding="utf-8"))
        if chances == "0"
    }
    pages = {page for page, _ in spellings}
    assert {"cli.md", "drivers/database.md"} <= pages
    assert {lottery for _, lottery in spellings} == {(0, 100)}, sorted(spellings)
    assert SessionConfig.from_dict({"lottery": [0, 100]}).lottery == (0, 100)
