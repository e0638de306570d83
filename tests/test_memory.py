"""base/memory.py: aligned host arrays, and the premise that XLA on the CPU reads them in place."""
from __future__ import annotations

import jax
import numpy as np
import pandas as pd
import pytest

from jaxhlm._src.base.memory import ALIGN, SMALL_BYTES, aligned_empty, aligned_full, as_aligned, is_aligned, padded
from jaxhlm._src.model.pipeline import lformula, mk_devfun


@pytest.mark.parametrize("dtype", [np.float64, np.int32, np.int64, np.uint8])
@pytest.mark.parametrize("shape", [(SMALL_BYTES,), (3, SMALL_BYTES // 3 + 5), (5,)])
def test_aligned_full_values_and_alignment(dtype, shape):
    for _ in range(4):  # several allocations: whatever offset NumPy's allocator hands out
        a = aligned_full(shape, 7, dtype)
        assert a.shape == shape and a.dtype == np.dtype(dtype) and a.flags.c_contiguous
        assert np.all(a == 7)
        e = aligned_empty(shape, dtype)
        assert e.shape == shape and e.dtype == np.dtype(dtype) and e.flags.c_contiguous
        if a.nbytes >= SMALL_BYTES:
            assert a.__array_interface__["data"][0] % ALIGN == 0
            assert e.__array_interface__["data"][0] % ALIGN == 0


def test_as_aligned_copies_only_when_needed():
    small = np.arange(10.0)
    assert as_aligned(small) is small
    a = aligned_full((SMALL_BYTES,), 1.5)
    assert as_aligned(a) is a
    b = a[1:]  # 8 bytes past a 64-byte boundary
    assert not is_aligned(b)
    c = as_aligned(b)
    assert c is not b and is_aligned(c) and np.array_equal(c, b)
    assert as_aligned([1, 2]) == [1, 2]


def test_padded_extends_the_last_axis():
    a = np.arange(6, dtype=np.int32).reshape(2, 3)
    np.testing.assert_array_equal(padded(a, 5, -1), [[0, 1, 2, -1, -1], [3, 4, 5, -1, -1]])
    assert padded(a, 5, -1).dtype == np.int32 and padded(a, 5, 0, np.int64).dtype == np.int64
    assert padded(a, 3) is a  # nothing to pad (and small)
    big = np.arange(SMALL_BYTES // 4, dtype=np.int32)
    out = padded(big, len(big) + 3, 9, np.int64)
    assert is_aligned(out) and out.dtype == np.int64 and list(out[-4:]) == [len(big) - 1, 9, 9, 9]


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the premise is about the CPU backend")
def test_cpu_backend_reads_aligned_arrays_in_place():
    """Why the statistics are allocated aligned: device_put of an aligned array shares its memory
    (no copy), of a NumPy-aligned one it copies. If JAX changes this the allocation is moot."""
    a = aligned_full((SMALL_BYTES,), 2.0)
    assert jax.device_put(a).unsafe_buffer_pointer() == a.ctypes.data


def test_crossed_statistics_are_aligned():
    rng = np.random.default_rng(0)
    n = 200_000
    df = pd.DataFrame({"u": rng.integers(0, 4000, n), "i": rng.integers(0, 300, n)})
    df["y"] = rng.normal(size=4000)[df["u"]] + rng.normal(size=300)[df["i"]] + rng.normal(size=n)
    _, st = mk_devfun(lformula("y ~ 1 + (1 | u) + (1 | i)", df))
    big = [(k, x) for k, x in jax.tree_util.tree_flatten_with_path(st)[0]
           if isinstance(x, np.ndarray) and x.nbytes >= SMALL_BYTES]
    assert big  # the fill map at least
    for path, x in big:
        assert is_aligned(x), jax.tree_util.keystr(path)
