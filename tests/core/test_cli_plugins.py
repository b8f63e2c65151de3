"""``satchel drivers`` end to end, with real (fake) distributions installed on ``PYTHONPATH``.

Each test builds a folder holding ``*.dist-info`` directories (METADATA and
``entry_points.txt`` for the ``satchel`` group) and the plugin modules, so
``importlib.metadata`` finds them exactly as it finds an installed wheel.
"""

from __future__ import annotations

import importlib.metadata
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

# Adds a command of its own, then one whose name core already uses.
CLASHING_COMMANDS_PLUGIN = """
from satchel import hookimpl
from satchel.commands import config_from_args


def hello(args):
    print(f"hello from acme; driver {config_from_args(args).driver}")
    return 0


@hookimpl
def register_commands(commands):
    commands.add("acme:hello", hello, help="say hello", config=True)
    commands.add("drivers", hello, help="a second drivers command")
"""

# A command whose hook still expects argparse's sub-parsers.
SUBPARSERS_COMMANDS_PLUGIN = """
from satchel import hookimpl


@hookimpl
def register_commands(subparsers):
    subparsers.add_parser("old:style")
"""

# Registers driver "acme", through a hook whose name is misspelt.
MISSPELT_HOOK_PLUGIN = """
from satchel import hookimpl
from satchel.drivers import ArraySessionHandler


@hookimpl
def register_driver(register):
    register("acme", ArraySessionHandler.from_config)
"""

# Registers driver "acme", but its hook is not marked with @hookimpl.
UNMARKED_HOOK_PLUGIN = """
from satchel.drivers import ArraySessionHandler


def register_drivers(register):
    register("acme", ArraySessionHandler.from_config)
"""

# Both mistakes at once: an unmarked function with a misspelt name.
UNMARKED_MISSPELT_PLUGIN = """
from satchel.drivers import ArraySessionHandler


def register_driver(register):
    register("acme", ArraySessionHandler.from_config)
"""

# Marks its command hook but forgets the marker on its driver hook.
HALF_MARKED_PLUGIN = """
from satchel import hookimpl
from satchel.drivers import ArraySessionHandler


def register_drivers(register):
    register("acme", ArraySessionHandler.from_config)


@hookimpl
def register_commands(commands):
    commands.add("acme:hello", lambda args: 0, help="say hello")
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


def failed_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("failed:")]


def single_plugin_site(tmp_path: Path, source: str, name: str = "acme-plugin") -> Path:
    root = tmp_path / "site"
    root.mkdir()
    install_fake_distribution(root, name, "0.3", "acme", "acme_plugin", source)
    return root


def test_a_plugin_command_clashing_with_another_is_a_failure_of_that_plugin_only(
    tmp_path: Path,
) -> None:
    root = single_plugin_site(tmp_path, CLASHING_COMMANDS_PLUGIN, "acme-cli")
    result = run_python(root, "-m", "satchel", "drivers")
    assert result.returncode == 1
    assert result.stderr == ""
    assert failed_lines(result.stdout) == [
        "failed: plugin 'acme = acme_plugin' of distribution 'acme-cli' failed in its "
        "register_commands hook: ValueError: command 'drivers' is already provided by satchel"
    ]
    assert table(result.stdout)["array"].startswith("satchel ")
    # What it added before the clash works, configured as every command is.
    config = tmp_path / "session.toml"
    config.write_text('driver = "array"\n')
    hello = run_python(root, "-m", "satchel", "acme:hello", "--config", str(config))
    assert (hello.returncode, hello.stdout, hello.stderr) == (
        0,
        "hello from acme; driver array\n",
        "",
    )


def test_a_command_name_claimed_by_two_plugins_names_the_first_owner(tmp_path: Path) -> None:
    root = tmp_path / "site"
    root.mkdir()
    for dist, module in (("acme-one", "acme_one"), ("acme-two", "acme_two")):
        source = f"""
from satchel import hookimpl


@hookimpl
def register_commands(commands):
    commands.add("acme:hello", lambda args: print("{dist}") or 0, help="say hello")
"""
        install_fake_distribution(root, dist, "1.0", module, module, source)
    result = run_python(root, "-m", "satchel", "drivers")
    assert result.returncode == 1
    (failure,) = failed_lines(result.stdout)
    assert "of distribution 'acme-two' failed in its register_commands hook" in failure
    assert "command 'acme:hello' is already provided by acme-one" in failure
    hello = run_python(root, "-m", "satchel", "acme:hello")
    assert (hello.returncode, hello.stdout) == (0, "acme-one\n")


def test_a_command_hook_written_for_argparse_subparsers_is_reported(tmp_path: Path) -> None:
    root = single_plugin_site(tmp_path, SUBPARSERS_COMMANDS_PLUGIN)
    result = run_python(root, "-m", "satchel", "drivers")
    assert result.returncode == 1
    (failure,) = failed_lines(result.stdout)
    assert "'acme = acme_plugin' of distribution 'acme-plugin' failed to load" in failure
    assert "register_commands" in failure
    assert "subparsers" in failure


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            MISSPELT_HOOK_PLUGIN,
            "it implements hook 'register_driver', which satchel does not define "
            "(did you mean 'register_drivers'?) "
            "(satchel's hooks: register_commands, register_drivers)",
        ),
        (
            UNMARKED_HOOK_PLUGIN,
            "its function 'register_drivers' is not marked with @satchel.hookimpl",
        ),
        (
            UNMARKED_MISSPELT_PLUGIN,
            "it implements none of satchel's hooks (register_commands, register_drivers): "
            "each must be a function of that name marked with @satchel.hookimpl; "
            "its function 'register_driver' (did you mean 'register_drivers'?)",
        ),
        (
            HALF_MARKED_PLUGIN,
            "its function 'register_drivers' is not marked with @satchel.hookimpl",
        ),
    ],
    ids=["misspelt", "unmarked", "unmarked-and-misspelt", "one-hook-unmarked"],
)
def test_a_hook_mistake_is_a_failure_naming_the_plugin_and_the_hook(
    tmp_path: Path, source: str, expected: str
) -> None:
    root = single_plugin_site(tmp_path, source)
    result = run_python(root, "-m", "satchel", "drivers")
    assert result.returncode == 1, result.stdout
    assert failed_lines(result.stdout) == [
        f"failed: plugin 'acme = acme_plugin' of distribution 'acme-plugin' failed to load: {expected}"
    ]
    assert "acme" not in table(result.stdout)


RESOLVE_TWICE = """
import logging
from satchel import SessionConfig, SessionManager, UnknownDriverError

logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
for _ in range(2):
    try:
        SessionManager(SessionConfig(driver="acme")).start(None)
    except UnknownDriverError as exc:
        print(exc)
"""


def test_on_first_resolve_a_hook_mistake_is_logged_once_and_named_by_the_unknown_driver(
    tmp_path: Path,
) -> None:
    root = single_plugin_site(tmp_path, MISSPELT_HOOK_PLUGIN)
    result = run_python(root, "-c", RESOLVE_TWICE)
    assert result.returncode == 0, result.stderr
    expected = (
        "plugin 'acme = acme_plugin' of distribution 'acme-plugin' failed to load: "
        "it implements hook 'register_driver'"
    )
    assert result.stderr.count(expected) == 1
    assert result.stderr.startswith("WARNING satchel.plugins: ")
    errors = result.stdout.splitlines()
    assert len(errors) == 2
    for error in errors:
        assert error.startswith("unknown session driver 'acme'; available drivers: array, ")
        assert f"; it may belong to a plugin that failed: {expected}" in error


def test_drivers_prints_a_load_failure_once_on_stdout_and_nothing_on_stderr(site: Path) -> None:
    result = run_python(site, "-m", "satchel", "drivers")
    assert result.returncode == 1
    assert result.stderr == ""
    assert (result.stdout + result.stderr).count("missing_client_lib_for_satchel_test") == 1


def test_a_command_unconcerned_by_the_failed_plugin_does_not_mention_it(site: Path) -> None:
    result = run_python(site, "-m", "satchel", "gc", env={"SESSION_DRIVER": "array"})
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "removed 0 expired session(s) from driver 'array'\n"


def test_a_command_whose_driver_is_unknown_names_the_failed_plugin_in_one_line(
    site: Path,
) -> None:
    result = run_python(site, "-m", "satchel", "gc", env={"SESSION_DRIVER": "broken"})
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("satchel: error: unknown session driver 'broken'; available drivers: ")
    assert line.endswith(
        "; it may belong to a plugin that failed: plugin 'broken = broken_plugin' of "
        "distribution 'broken-plugin' failed to load: "
        "ModuleNotFoundError: No module named 'missing_client_lib_for_satchel_test'"
    )


def test_an_unknown_command_names_the_failed_plugin_that_may_provide_it(site: Path) -> None:
    result = run_python(site, "-m", "satchel", "broken:command")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith("usage: satchel")
    assert lines[1].startswith("satchel: error: argument COMMAND: invalid choice: 'broken:command'")
    assert lines[2:] == [
        "satchel: a plugin that failed may provide it: plugin 'broken = broken_plugin' of "
        "distribution 'broken-plugin' failed to load: "
        "ModuleNotFoundError: No module named 'missing_client_lib_for_satchel_test'"
    ]


def test_version_lists_core_and_every_plugin_distribution(site: Path) -> None:
    result = run_python(site, "-m", "satchel", "--version")
    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    assert lines[0] == f"satchel {importlib.metadata.version('satchel')}"
    assert "acme-dup 0.2" in lines
    assert "broken-plugin 1.0  (failed: see `satchel drivers`)" in lines
    # The plugins installed here besides the fakes (none when core is tested alone).
    for entry_point in importlib.metadata.entry_points(group="satchel"):
        assert entry_point.dist is not None
        name = entry_point.dist.metadata["Name"]
        if name != "satchel":
            assert f"{name} {entry_point.dist.version}" in lines
    assert lines[1:] == sorted(lines[1:])
    assert not [line for line in lines[1:] if line.startswith("satchel ")]


def test_version_marks_a_disabled_plugin(site: Path) -> None:
    result = run_python(
        site, "-m", "satchel", "--version", env={"SATCHEL_DISABLE_PLUGINS": "acme-dup"}
    )
    assert result.returncode == 0, result.stderr
    assert "acme-dup 0.2  (disabled by SATCHEL_DISABLE_PLUGINS)" in result.stdout.splitlines()
