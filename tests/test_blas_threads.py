"""base.threads: BLAS held to one thread while jaxhlm's programs run, restored afterwards."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxhlm._src.base import threads
from jaxhlm._src.base.config import jit

threadpoolctl = pytest.importorskip("threadpoolctl")


def _blas_counts():
    return [lib.get_num_threads() for lib in threads._libs()]


def test_limited_sets_one_thread_and_restores():
    if not threads._libs():
        pytest.skip("no BLAS library visible to threadpoolctl")
    before = _blas_counts()
    with threads.limited():
        assert all(n == 1 for n in _blas_counts())
        with threads.limited():  # re-entrant
            assert all(n == 1 for n in _blas_counts())
        assert all(n == 1 for n in _blas_counts())
    assert _blas_counts() == before


def test_programs_run_with_one_blas_thread():
    if not threads._libs():
        pytest.skip("no BLAS library visible to threadpoolctl")
    seen = []

    def record(x):
        seen.append(_blas_counts())
        return np.asarray(x)

    @jit
    def prog(x):
        return jax.pure_callback(record, jax.ShapeDtypeStruct(x.shape, x.dtype), x) + 1.0

    before = _blas_counts()
    out = prog(jnp.arange(3.0))
    np.testing.assert_array_equal(np.asarray(out), [1.0, 2.0, 3.0])
    assert seen and all(n == 1 for n in seen[-1])
    assert _blas_counts() == before


def test_dense_threads_policy(monkeypatch):
    assert threads.dense_threads(10) == 1
    monkeypatch.setenv("JAXHLM_BLAS_THREADS", "3")
    assert threads.dense_threads(10) == 3
    monkeypatch.delenv("JAXHLM_BLAS_THREADS")
    n = threads.dense_threads(threads.DENSE_PARALLEL)
    assert 1 <= n <= (len(__import__("os").sched_getaffinity(0)))
