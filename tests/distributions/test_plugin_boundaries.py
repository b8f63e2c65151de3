"""What the plugin distributions promise at their boundaries with core and each other.

* They import nothing from core outside the documented API (``satchel``'s
  exports, ``satchel.toolkit``, ``satchel.hookspecs``, ``satchel.commands``), so a
  third-party driver can do all that they do; the example driver of
  ``docs/examples`` keeps the same rule.
* Resolving one driver imports no other plugin's client library: a ``file``
  app with every plugin installed loads neither SQLAlchemy, redis-py, pymongo
  nor pymemcache.
* A plugin whose client library is missing is reported by ``satchel drivers``,
  naming its distribution and what to install, while the others keep working.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

import pytest
from fixtures.command import run_python

import satchel
import satchel.commands
import satchel.hookspecs
import satchel.toolkit

ROOT = Path(__file__).resolve().parents[2]
PLUGIN_SOURCES = sorted(ROOT.glob("plugins/*/src/*/**/*.py")) + sorted(
    ROOT.glob("docs/examples/*/src/*/**/*.py")
)
DOCUMENTED = {
    "satchel": set(satchel.__all__),
    "satchel.toolkit": set(satchel.toolkit.__all__),
    "satchel.hookspecs": {"hookimpl", "hookspec", "register_drivers", "register_commands"},
    "satchel.commands": {
        "Command",
        "CommandError",
        "CommandRegistrar",
        "add_config_argument",
        "config_from_args",
    },
}
CLIENT_LIBRARIES = {
    "redis": "redis",
    "memcached": "pymemcache",
    "database": "sqlalchemy",
    "mongo": "pymongo",
}
DISTRIBUTIONS = {
    "redis": "satchel-redis",
    "memcached": "satchel-memcached",
    "database": "satchel-database",
    "mongo": "satchel-mongo",
}


def core_imports(path: Path) -> list[tuple[int, str, str | None]]:
    """Every import of core in ``path``: (line, module, name or None for ``import module``)."""
    found: list[tuple[int, str, str | None]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "satchel" or node.module.startswith("satchel."):
                found += [(node.lineno, node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [
                (node.lineno, alias.name, None)
                for alias in node.names
                if alias.name == "satchel" or alias.name.startswith("satchel.")
            ]
    return found


def test_the_plugin_sources_are_found() -> None:
    packages = {path.relative_to(ROOT).parts[:4] for path in PLUGIN_SOURCES}
    assert len(packages) == 5  # four plugins and the example driver


@pytest.mark.parametrize("path", PLUGIN_SOURCES, ids=lambda path: str(path.relative_to(ROOT)))
def test_a_plugin_imports_only_the_documented_api_of_core(path: Path) -> None:
    outside = [
        f"{path.relative_to(ROOT)}:{line}: {module}{'' if name is None else ' ' + name}"
        for line, module, name in core_imports(path)
        if name is None or name not in DOCUMENTED.get(module, set())
    ]
    assert outside == [], "imports outside satchel's documented API"


def test_the_boundary_check_catches_an_undocumented_import(tmp_path: Path) -> None:
    source = tmp_path / "handler.py"
    source.write_text(
        "import satchel.store\n"
        "from satchel import SessionHandler\n"
        "from satchel.locking import wait_for_lock\n"
        "from satchel.toolkit import TokenLock\n",
        encoding="utf-8",
    )
    assert [
        (module, name)
        for _, module, name in core_imports(source)
        if name is None or name not in DOCUMENTED.get(module, set())
    ] == [("satchel.store", None), ("satchel.locking", "wait_for_lock")]


def test_a_file_app_imports_no_plugins_client_library(tmp_path: Path) -> None:
    result = run_python(
        """
        from satchel import SessionConfig, SessionManager
        from satchel.plugins import installed_plugins

        manager = SessionManager(SessionConfig(driver="file", files="sessions"))
        session = manager.start(None)
        session.put("cart", ["apple"])
        session.save()
        assert manager.start(session.cookie_value()).get("cart") == ["apple"]
        assert {"redis", "memcached", "database", "mongo"} <= set(installed_plugins().registry.names())
        """,
        tmp_path,
        report_loaded=[*CLIENT_LIBRARIES.values(), "greenlet"],
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"


@pytest.mark.parametrize("driver", sorted(CLIENT_LIBRARIES))
def test_resolving_one_driver_imports_no_other_plugins_client_library(
    tmp_path: Path, driver: str
) -> None:
    connection = {
        "redis": "redis://127.0.0.1:1/0",
        "memcached": "127.0.0.1:1",
        "database": "sqlite:///sessions.db",
        "mongo": "mongodb://127.0.0.1:1/?connect=false",
    }[driver]
    others = [library for name, library in CLIENT_LIBRARIES.items() if name != driver]
    result = run_python(
        f"""
        from satchel import SessionConfig, SessionManager

        manager = SessionManager(SessionConfig(driver={driver!r}, connection={connection!r}))
        manager.handler()  # built, not used: no server is needed
        """,
        tmp_path,
        report_loaded=[CLIENT_LIBRARIES[driver], *others],
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == repr([CLIENT_LIBRARIES[driver]])


@pytest.mark.parametrize("driver", sorted(CLIENT_LIBRARIES))
def test_a_plugin_whose_client_library_is_missing_is_reported(tmp_path: Path, driver: str) -> None:
    library = CLIENT_LIBRARIES[driver]
    result = run_python(
        """
        from satchel.cli import main
        sys.exit(main(["drivers"]))
        """,
        tmp_path,
        blocked=(library,),
    )
    distribution = DISTRIBUTIONS[driver]
    failures = [line for line in result.stdout.splitlines() if line.startswith("failed:")]
    assert result.returncode == 1
    assert failures == [
        f"failed: plugin '{driver} = satchel_{driver}.plugin' of distribution '{distribution}' "
        f"failed to load: ImportError: the Python module '{library}' is not installed; "
        f'install it with: pip install "{distribution}"'
    ]
    listed = {line.split()[0] for line in result.stdout.splitlines()[1:] if line[:1].isalpha()}
    assert set(CLIENT_LIBRARIES) - {driver} <= listed
    assert driver not in listed


DISTRIBUTION_FOLDERS = [
    *sorted(ROOT.glob("plugins/*/")),
    ROOT / "docs" / "examples" / "satchel-sqlite",
]
README_SECTIONS = ["## Install", "## Configure", "## How it works", "## Tests"]


@pytest.mark.parametrize("folder", DISTRIBUTION_FOLDERS, ids=lambda folder: folder.name)
def test_every_driver_distribution_has_the_same_layout(folder: Path) -> None:
    (package,) = (folder / "src").iterdir()
    for module in ("__init__.py", "plugin.py", "options.py", "handler.py", "py.typed"):
        assert (package / module).is_file(), f"{package.name}/{module}"
    project = tomllib.loads((folder / "pyproject.toml").read_text(encoding="utf-8"))
    (entry_point,) = project["project"]["entry-points"]["satchel"].values()
    assert entry_point == f"{package.name}.plugin"
    readme = (folder / "README.md").read_text(encoding="utf-8")
    sections = [line for line in readme.splitlines() if line.startswith("## ")]
    assert sections == README_SECTIONS
