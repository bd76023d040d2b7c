"""The benchmark scripts' own modules (``benchmarks/compare.py``, ``benchmarks/synth_preview.py``,
...) are not part of the library: put ``benchmarks/`` on the import path as the scripts do, and
``tests/engine`` for its tiny model and loss (``_engine_tiny``)."""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
for folder in (REPO / "benchmarks", REPO / "tests" / "engine"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
