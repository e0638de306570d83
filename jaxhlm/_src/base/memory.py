"""Host arrays that XLA on the CPU can read in place.

JAX's CPU backend takes a NumPy array into a program, or ``jax.device_put``, without a copy
only when its data start on a 64-byte boundary; NumPy aligns to 16 bytes. For the statistics
of a large design the copy is the difference between holding them once and twice: the
MovieLens-shaped crossed fit (1M rows, 20k x 2k) copied 800 MB of fill map on every fit, and
a 1M-level random slope copied 80 MB into every program call. Arrays below
:data:`SMALL_BYTES` are left as NumPy makes them (a copy of them costs less than aligning).
"""
from __future__ import annotations

import numpy as np

__all__ = ["ALIGN", "SMALL_BYTES", "aligned_empty", "aligned_full", "as_aligned", "is_aligned", "padded"]

ALIGN = 64
SMALL_BYTES = 1 << 20


def is_aligned(a: np.ndarray) -> bool:
    """True when ``a``'s data start on an :data:`ALIGN`-byte boundary."""
    return a.__array_interface__["data"][0] % ALIGN == 0


def aligned_empty(shape, dtype=np.float64) -> np.ndarray:
    """``np.empty(shape, dtype)`` on an :data:`ALIGN`-byte boundary (when large)."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape))
    if n * dtype.itemsize < SMALL_BYTES:
        return np.empty(shape, dtype)
    buf = np.empty(n + ALIGN // dtype.itemsize, dtype)
    start = (-buf.__array_interface__["data"][0] % ALIGN) // dtype.itemsize
    return buf[start:start + n].reshape(shape)


def aligned_full(shape, value=0, dtype=np.float64) -> np.ndarray:
    """``np.full(shape, value, dtype)`` on an :data:`ALIGN`-byte boundary (when large)."""
    out = aligned_empty(shape, dtype)
    out.fill(value)
    return out


def as_aligned(a):
    """``a`` itself when small, aligned or not a NumPy array; else an aligned copy (C order)."""
    if not isinstance(a, np.ndarray) or a.nbytes < SMALL_BYTES or (is_aligned(a) and a.flags.c_contiguous):
        return a
    out = aligned_full(a.shape, 0, a.dtype)
    np.copyto(out, a)
    return out


def padded(a: np.ndarray, size: int, fill=0, dtype=None) -> np.ndarray:
    """``a`` extended along its last axis to ``size`` with ``fill`` (in ``dtype``, default
    ``a``'s), aligned when large: the statistics' arrays padded to a bucketed length."""
    a = np.asarray(a)
    m = a.shape[-1]
    if m == size and (dtype is None or a.dtype == dtype):
        return as_aligned(a)
    out = aligned_empty(a.shape[:-1] + (size,), a.dtype if dtype is None else dtype)
    out[..., :m] = a
    out[..., m:] = fill
    return out
