"""``satchel.testing`` needs pytest, which only the ``testing`` extra installs."""

from __future__ import annotations

from pathlib import Path

from fixtures.command import run_python


def test_without_pytest_the_import_names_the_extra(tmp_path: Path) -> None:
    result = run_python(
        """
        try:
            import satchel.testing
        except ImportError as error:
            print(error)
        """,
        tmp_path,
        blocked=("pytest", "_pytest"),
    )
    assert result.returncode == 0, result.stderr
    assert 'pip install "satchel[testing]"' in result.stdout


def test_with_pytest_it_imports(tmp_path: Path) -> None:
    result = run_python(
        "import satchel.testing; print(satchel.testing.DriverConformance)", tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "DriverConformance" in result.stdout
