"""Run the benchmarks: ``python -m benchmarks [name ...]`` (default: all of them).

Each benchmark is a script of its own (``python benchmarks/<name>.py --help``
for its options); this runs them one after another and fails if any does.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
BENCHMARKS = {
    "peers": "satchel beside Flask-Session, starsessions, Starlette's cookie sessions and Django's",
    "redis_round_trips": "Redis commands per untouched, read-only and modified request",
    "database_gc": "pruning 1,000,000 expired rows from PostgreSQL in batches",
}


def main(argv: list[str]) -> int:
    names = argv or list(BENCHMARKS)
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; known: {', '.join(BENCHMARKS)}")
    failed = []
    for name in names:
        print(f"\n== {name}: {BENCHMARKS[name]}", flush=True)
        result = subprocess.run([sys.executable, str(HERE / f"{name}.py")], check=False)
        if result.returncode != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
