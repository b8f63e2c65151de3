"""Every developer task of the satchel workspace: ``nox -l`` lists them.

``nox -s ci`` runs what CI runs: lint, types, every test suite and the docs build.
"""

from __future__ import annotations

from pathlib import Path

import nox

ROOT = Path(__file__).parent
PLUGINS = sorted(
    path.name for path in (ROOT / "plugins").iterdir() if (path / "pyproject.toml").is_file()
)
CORE_EXTRAS = "core[starlette,flask,django]"
TEST_REQUIREMENTS = [
    "pytest>=8",
    "pytest-xdist>=3.5",
    "hypothesis>=6.100",
    "httpx>=0.27",
    "fastapi>=0.110",
    "uvicorn>=0.29",
    "playwright>=1.45",
    # The "before" apps of docs/migrating/ run in the docs tests.
    "flask-session>=0.8",
    "starsessions>=2.2",
]
CORE_TEST_FOLDERS = [
    "tests/core",
    "tests/conformance",
    "tests/web",
    "tests/security",
    "tests/reliability",
]
LINT_REQUIREMENTS = ["ruff>=0.6"]
# django-stubs types Django without its mypy plugin; its minor follows the Django it describes.
TYPE_REQUIREMENTS = ["mypy>=1.11", "django-stubs>=5.2,<5.3"]
DOCS_REQUIREMENTS = ["mkdocs>=1.6"]

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "typecheck", "tests", "django"]


def plugin_requirement(name: str) -> str:
    """The editable install of one plugin, with its test extra."""
    return f"plugins/{name}[test]"


def install_workspace(session: nox.Session, *plugins: str, extra: list[str] | None = None) -> None:
    """Install core (with its web extras), the given plugins and the test tools, editable."""
    editable = [CORE_EXTRAS, *(plugin_requirement(name) for name in plugins)]
    args: list[str] = []
    for requirement in editable:
        args += ["-e", requirement]
    session.install(*args, *TEST_REQUIREMENTS, *(extra or []))


# Most tests wait on servers, locks and expiry clocks rather than on the CPU, so
# four workers pay even on two cores; a file's tests stay on one worker, which
# keeps its fixtures' servers together (`-n 0` in the posargs runs serially).
# Tests marked `serial` run after, alone.
PYTEST_WORKERS = ["-n", "4", "--dist", "loadfile"]


def run_pytest(session: nox.Session, *paths: str) -> None:
    """Run pytest on the given test folders, passing through any extra arguments.

    Bytecode goes to a cache under .nox, not into the tree: the tests start many
    ``satchel`` processes, and without a cache each would compile SQLAlchemy and
    the other client libraries afresh.
    """
    env = {"PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": str(ROOT / ".nox" / "pycache")}
    session.run("pytest", *PYTEST_WORKERS, "-m", "not serial", *paths, *session.posargs, env=env)
    # Exit code 5: no serial test among these paths.
    session.run("pytest", "-m", "serial", *paths, *session.posargs, env=env, success_codes=[0, 5])


@nox.session
@nox.parametrize("package", ["core", *PLUGINS])
def tests(session: nox.Session, package: str) -> None:
    """The tests of one distribution (``nox -s "tests(package='redis')"``)."""
    if package == "core":
        install_workspace(session)
        plugin_reliability = [f"--ignore={path}" for path in map(reliability_tests, PLUGINS)]
        run_pytest(
            session,
            *CORE_TEST_FOLDERS,
            *plugin_reliability,
        )
    else:
        install_workspace(session, package)
        extra = reliability_tests(package)
        run_pytest(session, f"tests/{package}", *([extra] if (ROOT / extra).exists() else []))


@nox.session
def django(session: nox.Session) -> None:
    """The Django session engine's tests, on the file, Redis and database drivers."""
    install_workspace(session, "redis", "database")
    run_pytest(session, "tests/django")


def reliability_tests(plugin: str) -> str:
    """The plugin's module in tests/reliability (concurrency, resurrection, faults)."""
    return f"tests/reliability/test_{plugin}_reliability.py"


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.install(*LINT_REQUIREMENTS)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over core and every plugin."""
    install_workspace(session, *PLUGINS, extra=TYPE_REQUIREMENTS)
    session.run("mypy", *type_targets())


def type_targets() -> list[str]:
    """The source folders mypy checks."""
    targets = ["core/src/satchel"]
    for name in PLUGINS:
        targets += [
            str(path) for path in (ROOT / "plugins" / name / "src").iterdir() if path.is_dir()
        ]
    return targets


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site, failing on any warning."""
    session.install(*DOCS_REQUIREMENTS)
    session.run("mkdocs", "build", "--strict", "--site-dir", str(ROOT / "site"))


@nox.session
def bench(session: nox.Session) -> None:
    """The side-by-side benchmarks in benchmarks/."""
    install_workspace(session, *PLUGINS, extra=["-r", "benchmarks/requirements.txt"])
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session
def ci(session: nox.Session) -> None:
    """What CI runs, in one environment: lint, types, every test suite, the docs."""
    install_workspace(
        session, *PLUGINS, extra=[*LINT_REQUIREMENTS, *TYPE_REQUIREMENTS, *DOCS_REQUIREMENTS]
    )
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy", *type_targets())
    session.run("mkdocs", "build", "--strict", "--site-dir", str(ROOT / "site"))
    run_pytest(session, "tests")
