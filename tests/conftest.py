"""Suite-wide test settings and the fixtures that find the real data.

The real data (one raw NYU frame, ``nyu_sample/``, the released TorchSSC-format NYU files,
``nyu_torchssc/``, and three NYUCAD scenes, ``nyucad_sample/``) is never part of the repository. It is looked for in the folder named by the
environment variable ``TORCHSSC_DATA``, then in ``../shared/data`` beside the checkout; tests
that need it skip, saying why, when it is in neither.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

DATA_ENV = "TORCHSSC_DATA"
"""Environment variable naming a folder that holds ``nyu_sample/`` and/or ``nyu_torchssc/``."""


def pytest_configure(config):
    # Tests use tiny tensors: one intra-op thread is faster for them and immune to the
    # thread-contention stalls seen on shared 2-core machines.
    torch.set_num_threads(1)


def real_data_dir(name: str) -> Path | None:
    """``<data>/<name>`` from ``$TORCHSSC_DATA`` or ``../shared/data``, or None when absent."""
    roots = []
    if os.environ.get(DATA_ENV):
        roots.append(Path(os.environ[DATA_ENV]))
    roots.append(Path(__file__).resolve().parents[1].parent / "shared" / "data")
    for root in roots:
        if (root / name).is_dir():
            return root / name
    return None


def _require(name: str) -> Path:
    path = real_data_dir(name)
    if path is None:
        pytest.skip(f"real data '{name}' not found (set ${DATA_ENV} or put it in ../shared/data)")
    return path


@pytest.fixture(scope="session")
def nyu_sample() -> Path:
    """The raw NYU frame 0001 folder (``NYU0001_0000.bin/.png``); skips when absent."""
    return _require("nyu_sample")


@pytest.fixture(scope="session")
def nyu_release() -> Path:
    """The released TorchSSC-format NYU folder (``L/ T/ Mapping/ ...``); skips when absent."""
    return _require("nyu_torchssc")


@pytest.fixture(scope="session")
def nyucad_sample() -> Path:
    """The three real NYUCAD test scenes in the EdgeNet-style npz (``NYU0358_0000.npz`` ...);
    skips when absent."""
    return _require("nyucad_sample")
