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


def test_thread_count_policy(monkeypatch):
    """One thread by default, dense blocks included (a lagging load average oversubscribed the
    cores); JAXHLM_BLAS_THREADS sets the count."""
    if not threads._libs():
        pytest.skip("no BLAS library visible to threadpoolctl")
    with threads.limited():
        assert all(n == 1 for n in _blas_counts())
    monkeypatch.setenv("JAXHLM_BLAS_THREADS", "2")
    with threads.limited():
        assert all(n == 2 for n in _blas_counts())


def test_scipy_openblas_is_controlled_from_the_first_limit():
    """XLA's LAPACK kernels use scipy's OpenBLAS, loaded only by jax's first linear algebra: the
    controller must include it even when the first limit comes before that (a fresh process)."""
    import subprocess
    import sys

    code = ("from jaxhlm._src.base import threads\n"
            "with threads.limited():\n"
            "    print(sorted(lib.filepath.split('/')[-2] for lib in threads._libs()))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "scipy.libs" in out


def test_in_parallel_keeps_the_order_and_the_worker_setting(monkeypatch):
    monkeypatch.setenv("JAXHLM_WORKERS", "3")
    assert threads.side_by_side() == 3
    def f(x):
        return x * x

    assert threads.in_parallel(f, list(range(20))) == [x * x for x in range(20)]
    monkeypatch.setenv("JAXHLM_WORKERS", "1")
    assert threads.side_by_side() == 1
    assert threads.in_parallel(f, [3, 1, 2]) == [9, 1, 4]
    monkeypatch.setenv("JAXHLM_WORKERS", "junk")
    assert 1 <= threads.side_by_side() <= 2


def test_dense_block_takes_an_idle_core_only(monkeypatch):
    """A large dense factorisation gets a second BLAS thread when a core is idle right now, one
    otherwise; never outside limited() or against JAXHLM_BLAS_THREADS; back to one after."""
    if not threads._libs():
        pytest.skip("no BLAS library visible to threadpoolctl")
    monkeypatch.delenv("JAXHLM_BLAS_THREADS", raising=False)
    assert threads.idle_cores() >= 0
    with threads.limited():
        monkeypatch.setattr(threads, "idle_cores", lambda: 1)
        with threads.dense_block():
            assert all(n == 2 for n in _blas_counts())
        assert all(n == 1 for n in _blas_counts())
        with threads.dense_block(threads.TWO_THREADS_MIN - 1):  # too small to gain from it
            assert all(n == 1 for n in _blas_counts())
        monkeypatch.setattr(threads, "idle_cores", lambda: 0)  # a busy machine
        with threads.dense_block():
            assert all(n == 1 for n in _blas_counts())
        monkeypatch.setenv("JAXHLM_BLAS_THREADS", "1")
        monkeypatch.setattr(threads, "idle_cores", lambda: 1)
        with threads.dense_block():
            assert all(n == 1 for n in _blas_counts())
    before = _blas_counts()
    with threads.dense_block():  # outside limited(): nothing changed
        assert _blas_counts() == before


def test_dense_block_takes_its_core_from_a_callback_thread(monkeypatch):
    """The dense block's callback runs on one of XLA's threads, not the one that entered
    limited(): threadpoolctl ignores a limit set from a second Python thread, so the second
    BLAS thread must be set through the library itself (it never was before)."""
    if not threads._libs():
        pytest.skip("no BLAS library visible to threadpoolctl")
    import threading

    monkeypatch.delenv("JAXHLM_BLAS_THREADS", raising=False)
    monkeypatch.setattr(threads, "idle_cores", lambda: 1)
    seen = []

    def block(x):
        with threads.dense_block():
            seen.append((threading.current_thread() is threading.main_thread(), _blas_counts()))
        seen.append((None, _blas_counts()))
        return np.asarray(x)

    @jit
    def prog(x):
        return jax.pure_callback(block, jax.ShapeDtypeStruct(x.shape, x.dtype), x) * 2.0

    def worker(out):
        with threads.limited():  # a thread of its own enters limited(), as a callback's would not
            out.append(_blas_counts())
            block(np.zeros(2))

    with threads.limited():
        np.testing.assert_array_equal(np.asarray(prog(jnp.ones(2))), [2.0, 2.0])
    assert seen[0][1] and all(n == 2 for n in seen[0][1])
    assert all(n == 1 for n in seen[1][1])
    seen.clear()
    out = []
    t = threading.Thread(target=worker, args=(out,))
    t.start()
    t.join()
    assert seen[0][0] is False and all(n == 2 for n in seen[0][1]) and all(n == 1 for n in seen[1][1])


def test_no_second_thread_while_calls_run_side_by_side(monkeypatch):
    """in_parallel's calls hold the cores themselves: their dense blocks stay at one thread."""
    if not threads._libs():
        pytest.skip("no BLAS library visible to threadpoolctl")
    monkeypatch.delenv("JAXHLM_BLAS_THREADS", raising=False)
    monkeypatch.setenv("JAXHLM_WORKERS", "2")
    monkeypatch.setattr(threads, "idle_cores", lambda: 1)

    def block(_):
        with threads.dense_block():
            return _blas_counts()

    with threads.limited():
        seen = threads.in_parallel(block, [0, 1, 2])
        assert all(n == 1 for counts in seen for n in counts)
        assert all(n == 2 for n in block(0))  # alone again: the idle core is taken
    assert threads._STATE["parallel"] == 0


def test_idle_cores_counts_other_processes_only(monkeypatch):
    """This process's own running threads (the caller, BLAS workers still spinning) are not a
    competing load; other running tasks are."""
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    samples = iter([(3, 2), (3, 2)])
    monkeypatch.setattr(threads, "_others", lambda: (lambda r, o: max(0, r - o))(*next(samples)))
    assert threads.idle_cores() == 0  # one other task, twice
    samples = iter([(3, 2), (2, 2)])
    assert threads.idle_cores() == 1  # a task that ran for an instant
    samples = iter([(2, 2)])
    assert threads.idle_cores() == 1  # only this process's own threads
    assert threads._own_running() >= 1


def test_idle_cores_reads_the_running_tasks(monkeypatch, tmp_path):
    import builtins

    real_open = builtins.open
    fake = tmp_path / "loadavg"
    fake.write_text("2.00 1.50 1.00 3/400 12345\n")
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(builtins, "open", lambda p, *a, **k: real_open(fake if p == "/proc/loadavg" else p, *a, **k))
    assert threads.idle_cores() == 0  # three running tasks on two cores
    fake.write_text("0.10 0.20 0.30 1/400 12345\n")
    assert threads.idle_cores() == 1  # only the caller
