"""docs/writing-drivers.md: its tutorial shows the example driver's files as they are, and
its reference has an entry for every public helper of ``satchel.toolkit``."""

from __future__ import annotations

import re
from pathlib import Path

import satchel.toolkit

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "writing-drivers.md"
EXAMPLE = ROOT / "docs" / "examples" / "satchel-sqlite"
# A code block whose first line names the file it shows: "# src/satchel_sqlite/plugin.py".
FILE_BLOCK = re.compile(r"```(?:python|toml)\n# ([\w./-]+)\n(.*?)```", re.DOTALL)


def test_the_tutorial_shows_every_file_of_the_example_driver_as_it_is() -> None:
    text = PAGE.read_text(encoding="utf-8")
    tutorial = text[text.index("## Tutorial") : text.index("## The contract")]
    shown = dict(FILE_BLOCK.findall(tutorial))
    files = {
        str(path.relative_to(EXAMPLE))
        for path in EXAMPLE.rglob("*")
        if path.suffix in (".py", ".toml")
    }
    assert files == set(shown)
    for name, block in shown.items():
        assert block == (EXAMPLE / name).read_text(encoding="utf-8"), name


def test_every_toolkit_helper_has_a_reference_entry() -> None:
    headings = re.findall(r"^#### (.+)$", PAGE.read_text(encoding="utf-8"), re.MULTILINE)
    documented = {name for heading in headings for name in re.findall(r"`(\w+)`", heading)}
    assert set(satchel.toolkit.__all__) - documented == set()
