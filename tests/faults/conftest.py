"""The fault-injection suite (docs/reliability.md): one test file per item of the hardening issue,
each case a fault that once ended in a traceback, a hang, an orphan process or a broken model.

The engine tests' tiny prepared frames, model and loss (``tests/engine/_engine_tiny.py``) are
reused; this folder's ``_faults.py`` adds the fault-specific pieces.
"""

from __future__ import annotations

import sys
from pathlib import Path

ENGINE_TESTS = Path(__file__).resolve().parents[1] / "engine"
if str(ENGINE_TESTS) not in sys.path:
    sys.path.insert(0, str(ENGINE_TESTS))
