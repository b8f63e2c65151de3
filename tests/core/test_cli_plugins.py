"""``satchel drivers`` end to end, with real (fake) distributions installed on ``PYTHONPATH``.

Each test builds a folder holding ``*.dist-info`` directories (METADATA and
``entry_points.txt`` for the ``satchel`` group) and the plugin modules, so
``importlib.metadata`` finds them exactly as it finds an installed wheel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

DUPLICATING_PLUGIN = """
from satchel import hookimpl
from satchel.drivers import ArraySessionHandler


@hookimpl
def register_drivers(register):
    register("file", ArraySessionHandler.from_config)  # claims a built-in name
    register("acme", ArraySessionHandler.from_config)
"""

# Adds a command whose name core already uses, and one of its own.
CLASHING_COMMANDS_PLUGIN = """
from satchel import hookimpl


@hookimpl
def register_commands(subparsers):
    subparsers.add_parser("drivers")
"""

# Imports a client library that is not installed, as a plugin without its extra would.
BROKEN_PLUGIN = "import missing_client_lib_for_satchel_test\n"

CHECK_DRIVERS = """
import json
from satchel import DuplicateDriverError, SessionConfig, SessionManager

result = {}
for name in ("array", "acme"):
    manager = SessionManager(SessionConfig(driver=name))
    session = manager.start(None)
    session.put("cart", [1, 2])
    session.save()
    result[name] = manager.start(session.id).get("cart")
try:
    SessionManager(SessionConfig(driver="file")).handler()
except DuplicateDriverError as exc:
    result["file"] = str(exc)
print(json.dumps(result))
"""


def install_fake_distribution(
    root: Path, name: str, version: str, entry_point: str, module: str, source: str
) -> None:
    dist_info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    )
    (dist_info / "entry_points.txt").write_text(f"[satchel]\n{entry_point} = {module}\n")
    (root / f"{module}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A folder with two plugins: one duplicating ``file``, one failing to import."""
    root = tmp_path / "site"
    root.mkdir()
    install_fake_distribution(root, "acme-dup", "0.2", "dup", "acme_dup_plugin", DUPLICATING_PLUGIN)
    install_fake_distribution(
        root, "broken-plugin", "1.0", "broken", "broken_plugin", BROKEN_PLUGIN
    )
    return root


def run_python(
    site: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    pythonpath = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    # Nothing disabled unless the test says so, whatever the outer environment holds.
    inherited = {k: v for k, v in os.environ.items() if k != "SATCHEL_DISABLE_PLUGINS"}
    environ = {**inherited, "PYTHONPATH": pythonpath, **(env or {})}
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
        check=False,
    )


def table(stdout: str) -> dict[str, str]:
    """The driver rows of ``satchel drivers``: name -> provider."""
    rows = {}
    for line in stdout.splitlines()[1:]:
        if line.startswith(("conflict:", "failed:")):
            continue
        name, provider = line.split(None, 1)
        rows[name] = provider
    return rows


def test_drivers_reports_the_broken_plugin_and_the_conflict_and_lists_the_rest(
    site: Path,
) -> None:
    result = run_python(site, "-m", "satchel", "drivers")
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert "Traceback" not in result.stderr

    rows = table(result.stdout)
    assert "file" not in rows  # claimed twice: listed as a conflict, not as working
    assert rows["acme"] == "acme-dup 0.2"
    for name in ("array", "cookie", "null"):
        assert rows[name].startswith("satchel ")

    (conflict,) = [line for line in lines if line.startswith("conflict:")]
    assert conflict.startswith("conflict: file: session driver 'file' is registered twice: by ")
    assert "acme-dup 0.2" in conflict
    assert f"satchel {rows['array'].split()[1]}" in conflict

    failures = [line for line in lines if line.startswith("failed:")]
    assert failures == [
        "failed: plugin 'broken = broken_plugin' of distribution 'broken-plugin' failed to load: "
        "ModuleNotFoundError: No module named 'missing_client_lib_for_satchel_test'"
    ]
    # The built-in plugin registered everything after the clash: it did not fail.
    assert not [line for line in failures if "'satchel'" in line]


def test_the_other_drivers_still_resolve_in_that_environment(site: Path) -> None:
    result = run_python(site, "-c", CHECK_DRIVERS)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["array"] == [1, 2]
    assert outcome["acme"] == [1, 2]
    assert "'file' is registered twice" in outcome["file"]
    assert "acme-dup 0.2" in outcome["file"]
    assert "satchel " in outcome["file"]


@pytest.mark.parametrize(
    "disabled",
    ["acme-dup,broken-plugin", "dup, broken", "acme_dup,broken"],
    ids=["distributions", "entry-points", "mixed-spelling"],
)
def test_disabling_the_named_plugins_clears_the_report(site: Path, disabled: str) -> None:
    result = run_python(site, "-m", "satchel", "drivers", env={"SATCHEL_DISABLE_PLUGINS": disabled})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "conflict:" not in result.stdout
    assert "failed:" not in result.stdout
    rows = table(result.stdout)
    assert rows["file"].startswith("satchel ")
    assert "acme" not in rows


def test_a_plugin_command_clashing_with_another_leaves_the_command_working(
    tmp_path: Path,
) -> None:
    root = tmp_path / "site"
    root.mkdir()
    install_fake_distribution(
        root, "acme-cli", "0.1", "cli", "acme_cli_plugin", CLASHING_COMMANDS_PLUGIN
    )
    result = run_python(root, "-m", "satchel", "drivers")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "the commands of plugin 'acme-cli:cli' were not added" in result.stderr
    assert "conflicting subparser: drivers" in result.stderr
    assert table(result.stdout)["array"].startswith("satchel ")
