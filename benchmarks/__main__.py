"""Run the benchmarks: ``python -m benchmarks [name ...]`` (default: all of them)."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = {"peers": "benchmarks.peers"}


def main(argv: list[str]) -> None:
    names = argv or list(BENCHMARKS)
    for name in names:
        if name not in BENCHMARKS:
            raise SystemExit(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
        importlib.import_module(BENCHMARKS[name]).main()


if __name__ == "__main__":
    main(sys.argv[1:])
