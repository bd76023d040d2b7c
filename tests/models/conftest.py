"""The toy dataset helpers (tests/datasets/_toy.py) for the every-model test."""

import sys
from pathlib import Path

DATASET_TESTS = Path(__file__).resolve().parents[1] / "datasets"
if str(DATASET_TESTS) not in sys.path:
    sys.path.insert(0, str(DATASET_TESTS))
