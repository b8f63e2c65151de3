"""Every install line of the docs and READMEs works today: until the distributions are
published, a command that installs one by its published name has the from-checkout
form beside it (``pip install "satchel[flask]"`` fails while satchel is not on the
package index)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted(
    [
        *ROOT.glob("docs/**/*.md"),
        ROOT / "README.md",
        *ROOT.glob("*/README.md"),
        *ROOT.glob("plugins/*/README.md"),
    ]
)
CONSOLE_BLOCK = re.compile(r"```console\n(.*?)```", re.DOTALL)
# A published requirement: satchel, satchel[extra] or satchel-<plugin>, quoted or not.
PUBLISHED = re.compile(
    r"""pip install [^#\n]*?(?<![./\w-])["']?satchel(?:-[a-z]+)?(?:\[[\w,-]+\])?["']?(?:\s|$)"""
)
FROM_CHECKOUT = re.compile(r"pip install [^#\n]*\./")


def install_blocks(page: Path) -> list[str]:
    return [
        block
        for block in CONSOLE_BLOCK.findall(page.read_text(encoding="utf-8"))
        if PUBLISHED.search(block)
    ]


def test_the_install_lines_are_found() -> None:
    assert len([page for page in PAGES if install_blocks(page)]) >= 8


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_a_published_install_line_has_the_from_checkout_form_beside_it(page: Path) -> None:
    for block in install_blocks(page):
        assert FROM_CHECKOUT.search(block), (
            f"{page.relative_to(ROOT)}: no from-checkout form in\n{block}"
        )
