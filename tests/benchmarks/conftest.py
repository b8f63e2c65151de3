"""The benchmarks are a package of the repository's root, beside tests/."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
