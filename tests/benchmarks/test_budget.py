"""The budget report reads the committed results and accounts for every target."""

from __future__ import annotations

from benchmarks.budget import RESULTS, markdown, targets


def test_every_target_of_the_committed_results_is_reported() -> None:
    found = targets(RESULTS)
    groups = {target.group for target in found}
    # Three CPU kinds; ASGI and Flask beside their frameworks; three drivers x three
    # kinds x two glues against the raw client; the cookie driver under ASGI; the peers.
    assert sum(t.group.startswith("CPU") for t in found) == 3
    assert sum(t.group.startswith(("ASGI glue", "Flask glue")) for t in found) == 6
    assert sum(t.group.startswith("x the raw client") for t in found) == 18
    assert sum(t.group.startswith("cookie driver") for t in found) == 3
    assert any(group.startswith("x the best peer") for group in groups)
    table = markdown(found)
    assert f"{sum(t.met for t in found)} of {len(found)} targets met" in table
    assert table.count("\n| ") == len(found) + 2  # header, rule, then one row per target


def test_a_target_is_met_at_its_limit_and_missed_above_it() -> None:
    found = targets(RESULTS)
    for target in found:
        assert target.met == (target.measured <= target.limit)
        assert (target.status == "met") == target.met


def test_the_committed_report_is_the_one_the_committed_results_give() -> None:
    # docs/benchmarks.md embeds budget.md: a result rewritten without it leaves the docs stale.
    committed = (RESULTS / "budget.md").read_text(encoding="utf-8")
    assert committed == markdown(targets(RESULTS)), "run: python -m benchmarks.budget"
