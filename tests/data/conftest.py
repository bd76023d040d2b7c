"""The toy dataset (tests/datasets/_toy.py) and the engine's tiny run helpers
(tests/engine/_engine_tiny.py), for the augmentation tests."""

import sys
from pathlib import Path

for folder in ("datasets", "engine"):
    path = Path(__file__).resolve().parents[1] / folder
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
