"""Run the benchmarks: ``python -m benchmarks [--quick] [name ...]`` (default: all of them).

Each benchmark is a module of this package, run as ``python -m benchmarks.<name>``
(``--help`` for its options); this runs them one after another, from the
repository's root, and fails if any does. ``--quick`` passes each benchmark its
quick arguments: a few requests or rows, enough to check the shape and the
counts of what it measures, not its times. Adding a benchmark is one entry in
``BENCHMARKS``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Benchmark:
    """One entry of the runner.

    Attributes:
        description: What it measures, printed before it runs.
        quick: Its arguments under ``--quick``.
        full: Its arguments otherwise.
    """

    description: str
    quick: list[str] = field(default_factory=list)
    full: list[str] = field(default_factory=list)


BENCHMARKS = {
    "peers": Benchmark(
        "satchel beside its peers and the raw clients, every backend (writes benchmarks/results/)",
        quick=["--quick", "--out", str(ROOT / "benchmarks" / "results" / "quick")],
    ),
    "async_path": Benchmark(
        "satchel's ASGI and WSGI cost per request over the raw client: file, memcached, Redis, cookie",
        quick=["--rounds", "2", "--requests", "10"],
        full=["--json", str(ROOT / "benchmarks" / "results" / "async_path.json")],
    ),
    "cpu_ratio": Benchmark(
        "satchel's own CPU per request (array driver) over a JSON round trip, and beside "
        "Starlette's and Flask's own sessions",
        quick=["--quick"],
        full=["--json", str(ROOT / "benchmarks" / "results" / "cpu_ratio.json")],
    ),
    "redis_round_trips": Benchmark("Redis commands per untouched, read-only and modified request"),
    # After the three above: it reads what they wrote (under --quick, the results committed).
    "budget": Benchmark(
        "DESIGN's performance budget, target by target (writes benchmarks/results/budget.md)",
        quick=["--print"],
    ),
    "database_gc": Benchmark(
        "pruning 1,000,000 expired rows from PostgreSQL in batches",
        quick=["--expired", "20000", "--live", "2000"],
    ),
}


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    names = [name for name in argv if name != "--quick"] or list(BENCHMARKS)
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; known: {', '.join(BENCHMARKS)}")
    failed = []
    started = time.monotonic()
    for name in names:
        benchmark = BENCHMARKS[name]
        print(f"\n== {name}: {benchmark.description}", flush=True)
        arguments = benchmark.quick if quick else benchmark.full
        command = [sys.executable, "-m", f"benchmarks.{name}", *arguments]
        if subprocess.run(command, cwd=ROOT, check=False).returncode != 0:
            failed.append(name)
    print(f"\n{len(names)} benchmark(s) in {time.monotonic() - started:.0f} s")
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
