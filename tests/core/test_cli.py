"""The ``satchel`` command: ``drivers`` and ``gc``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from satchel import SessionConfig, SessionManager


def run_satchel(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "satchel", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )


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


def test_gc_prunes_idle_sessions_of_the_configured_driver(tmp_path: Path) -> None:
    folder = tmp_path / "sessions"
    manager = SessionManager(SessionConfig(files=str(folder), lifetime=1))
    for index in range(3):
        session = manager.start(None)
        session.put("n", index)
        session.save()
    old = time.time() - 3600
    for path in list(folder.iterdir())[:2]:
        os.utime(path, (old, old))
    config = tmp_path / "session.toml"
    config.write_text(f'driver = "file"\nfiles = "{folder}"\nlifetime = 1\n')
    result = run_satchel("gc", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "removed 2 expired session(s)" in result.stdout
    assert len(list(folder.iterdir())) == 1


def test_gc_reads_session_environment_variables(tmp_path: Path) -> None:
    result = run_satchel("gc", env={"SESSION_DRIVER": "array"})
    assert result.returncode == 0
    assert "removed 0 expired session(s) from driver 'array'" in result.stdout


def test_a_bad_config_is_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    result = run_satchel("gc", env={"SESSION_LIFETIME": "forever"})
    assert result.returncode == 1
    assert "'lifetime'" in result.stderr
    assert "Traceback" not in result.stderr
