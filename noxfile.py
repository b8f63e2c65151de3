"""Every developer task of the satchel workspace: ``nox -l`` lists them.

``nox -s ci`` runs what CI runs: lint, types, every test suite and the docs build.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
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
# mkdocstrings reads the API reference's docstrings from the source (no install of
# satchel needed; ruff lays out the long signatures); pymdownx.snippets pulls the
# benchmark table into docs/benchmarks.md.
DOCS_REQUIREMENTS = [
    "mkdocs>=1.6",
    "mkdocstrings[python]>=0.26",
    "pymdown-extensions>=10.0",
    *LINT_REQUIREMENTS,
]
BENCH_REQUIREMENTS = ["-r", "benchmarks/requirements.txt"]

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
    """The source folders mypy checks: core, every plugin and the example driver."""
    targets = ["core/src/satchel", str(EXAMPLE_DRIVER / "src" / "satchel_sqlite")]
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
    """The benchmarks in benchmarks/: the peers' table writes benchmarks/results/ and its
    chart to docs/assets/ (``nox -s bench -- --quick`` checks shape and counts only)."""
    install_workspace(session, *PLUGINS, extra=BENCH_REQUIREMENTS)
    session.run("python", "-m", "benchmarks", *session.posargs)


# --- every distribution from its wheel, alone ---------------------------------------------

EXAMPLE_DRIVER = ROOT / "docs" / "examples" / "satchel-sqlite"
CHECK_INSTALL = ROOT / "tests" / "wheels" / "check_install.py"
REDIS_URL = os.environ.get("SATCHEL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
MEMCACHED = os.environ.get("SATCHEL_TEST_MEMCACHED", "127.0.0.1:11211")
POSTGRES = "postgres@127.0.0.1:5432/test"
MARIADB = "root@127.0.0.1:3306/test"


@dataclass(frozen=True)
class WheelCheck:
    """One fresh environment: core's wheel and one plugin's wheel with ``extra``, and its checks.

    Attributes:
        extra: The plugin's extra to install, or None for its default dependencies only.
        connection: Where a sync session round trip goes, or None for none.
        async_connection: Where an async one goes (through the async twin), or None.
        missing_extra: With ``async_connection``: the twin must refuse, naming this extra.
        unreachable: A connection with no server, whose use must fail naming the driver.
    """

    extra: str | None = None
    connection: str | None = None
    async_connection: str | None = None
    missing_extra: str | None = None
    unreachable: str | None = None

    def arguments(self) -> list[str]:
        """The check script's options."""
        options = {
            "--connection": self.connection,
            "--async-connection": self.async_connection,
            "--missing-extra": self.missing_extra,
            "--unreachable": self.unreachable,
        }
        return [part for name, value in options.items() if value for part in (name, value)]


# Each documented extra, installed alone, enables what it promises.
WHEEL_CHECKS: dict[str, list[WheelCheck]] = {
    "redis": [WheelCheck(connection=REDIS_URL, async_connection=REDIS_URL)],
    "memcached": [WheelCheck(connection=MEMCACHED, async_connection=MEMCACHED)],
    "database": [
        WheelCheck(
            connection="sqlite:///sessions.db",
            async_connection="sqlite+aiosqlite:///sessions.db",
            missing_extra="aiosqlite",
        ),
        WheelCheck(
            extra="postgresql",
            connection=f"postgresql+psycopg://{POSTGRES}",
            async_connection=f"postgresql+asyncpg://{POSTGRES}",
            missing_extra="asyncpg",
        ),
        WheelCheck(extra="mysql", connection=f"mysql+pymysql://{MARIADB}"),
        WheelCheck(extra="asyncpg", async_connection=f"postgresql+asyncpg://{POSTGRES}"),
        WheelCheck(
            extra="psycopg-async",
            connection=f"postgresql+psycopg://{POSTGRES}",
            async_connection=f"postgresql+psycopg_async://{POSTGRES}",
        ),
        WheelCheck(extra="aiosqlite", async_connection="sqlite+aiosqlite:///sessions.db"),
        WheelCheck(extra="aiomysql", async_connection=f"mysql+aiomysql://{MARIADB}"),
    ],
    "mongo": [WheelCheck(unreachable="mongodb://127.0.0.1:1/")],
}


def build_wheel(session: nox.Session, project: Path, out: Path) -> Path:
    """Build ``project``'s sdist, then its wheel from that sdist; the wheel's path."""
    before = set(out.glob("*.whl"))
    session.run("uv", "build", "--quiet", "--out-dir", str(out), str(project))
    (wheel,) = set(out.glob("*.whl")) - before
    name = wheel.name.split("-")[0]
    if not list(out.glob(f"{name}-*.tar.gz")):
        session.error(f"no sdist of {project} in {out}")
    return wheel


def fresh_environment(session: nox.Session, folder: Path, *requirements: str) -> Path:
    """A new virtual environment in ``folder`` with only ``requirements``; its Python."""
    shutil.rmtree(folder, ignore_errors=True)
    session.run("uv", "venv", "--quiet", "--python", sys_python(session), str(folder))
    python = folder / "bin" / "python"
    session.run("uv", "pip", "install", "--quiet", "--python", str(python), *requirements)
    return python


def sys_python(session: nox.Session) -> str:
    """The session's interpreter, which the fresh environments copy."""
    python = shutil.which("python", path=session.bin)
    if python is None:
        session.error("the session has no python")
    return python


def wheel_requirement(distribution: str, wheel: Path, extra: str | None = None) -> str:
    """A PEP 508 requirement on a built wheel, with an extra."""
    return f"{distribution}{f'[{extra}]' if extra else ''} @ {wheel.as_uri()}"


WHEEL_DISTRIBUTIONS = [*PLUGINS, "example"]


@nox.session
@nox.parametrize("distribution", WHEEL_DISTRIBUTIONS)
def wheels(session: nox.Session, distribution: str) -> None:
    """A plugin's wheel installed alone beside core's, checked in fresh environments.

    ``satchel drivers`` lists it and a session round trip works with its
    default dependencies; then each documented extra in turn enables what it
    promises. ``example`` installs the third-party driver of docs/examples and
    runs its own tests on it: an outside driver is added like the built-ins.
    """
    session.install("uv")
    work = Path(session.create_tmp()).resolve()
    out = work / "dist"
    shutil.rmtree(out, ignore_errors=True)
    core = wheel_requirement("satchel", build_wheel(session, ROOT / "core", out))
    session.chdir(work)
    if distribution == "example":
        example = build_wheel(session, EXAMPLE_DRIVER, out)
        python = fresh_environment(
            session, work / "venv", core, wheel_requirement("satchel-sqlite", example), "pytest>=8"
        )
        session.run(
            str(python),
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            str(EXAMPLE_DRIVER / "tests"),
            external=True,
        )
        return
    plugin = build_wheel(session, ROOT / "plugins" / distribution, out)
    for check in WHEEL_CHECKS[distribution]:
        python = fresh_environment(
            session,
            work / f"venv-{check.extra or 'default'}",
            core,
            wheel_requirement(f"satchel-{distribution}", plugin, check.extra),
        )
        session.run(
            str(python),
            str(CHECK_INSTALL),
            "--driver",
            distribution,
            "--distribution",
            f"satchel-{distribution}",
            *check.arguments(),
            external=True,
        )


@nox.session
def ci(session: nox.Session) -> None:
    """What CI runs, in one environment: lint, types, every test suite, the docs.

    Then every distribution from its wheel, alone (``wheels``), in fresh environments.
    """
    # The benchmarks' requirements: tests/benchmarks runs the peers' table in quick mode.
    install_workspace(
        session,
        *PLUGINS,
        extra=[*LINT_REQUIREMENTS, *TYPE_REQUIREMENTS, *DOCS_REQUIREMENTS, *BENCH_REQUIREMENTS],
    )
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy", *type_targets())
    session.run("mkdocs", "build", "--strict", "--site-dir", str(ROOT / "site"))
    run_pytest(session, "tests")
    for distribution in WHEEL_DISTRIBUTIONS:
        session.notify(f"wheels(distribution={distribution!r})", posargs=[])
