"""Exact float32 arithmetic of the GPU kernel that made the released NYU files.

The released TorchSSC NYU files were computed by a CUDA kernel in float32, where the compiler
*fuses* ``a * b + c`` into one fused multiply-add (one rounding instead of two). NumPy has no
fused multiply-add, so :func:`fma32` computes it exactly: the product of two float32 numbers is
exact in float64, the float64 sum is rounded *to odd* (its rounding error is recovered exactly
by the TwoSum algorithm), and a round-to-odd float64 (53 bits) rounds correctly to float32
(24 bits), since 53 >= 2 * 24 + 2 (Boldo & Melquiond, "Emulation of FMA and correctly rounded
sums: proved algorithms using rounding to odd", IEEE Trans. Computers 2008).

Plain float32 ``+ - * /`` and ``sqrt`` in NumPy are IEEE float32 operations already.
"""

from __future__ import annotations

import numpy as np


def fma32(a, b, c) -> np.ndarray:
    """``a * b + c`` with a single float32 rounding (round to nearest, ties to even).

    Args:
        a, b, c: float32 arrays (or values cast to float32), broadcastable.
    Returns:
        ``float32`` array of the broadcast shape.
    """
    a = np.asarray(a, np.float32).astype(np.float64)
    b = np.asarray(b, np.float32).astype(np.float64)
    c = np.asarray(c, np.float32).astype(np.float64)
    p = a * b  # exact: 24 + 24 significant bits fit in 53
    s = p + c
    # TwoSum: e = (p + c) - s exactly
    bv = s - p
    e = (p - (s - bv)) + (c - bv)
    s = np.atleast_1d(s)
    # round to odd: an inexact sum whose last bit is even moves one ulp towards the exact value
    even = (s.view(np.int64) & 1) == 0
    fix = np.atleast_1d(e != 0) & even
    if fix.any():
        toward = np.where(np.atleast_1d(e) > 0, np.inf, -np.inf)
        s = np.where(fix, np.nextafter(s, toward), s)
    return s.astype(np.float32).reshape(np.shape(p))


def roundf(x: np.ndarray) -> np.ndarray:
    """C's ``roundf`` of float32 values (half away from zero), exactly, as ``int64``.

    The ``+ 0.5`` is done in float64, where it is exact for every float32 below 2^29.
    """
    x = np.asarray(x, np.float32).astype(np.float64)
    return (np.sign(x) * np.floor(np.abs(x) + 0.5)).astype(np.int64)
