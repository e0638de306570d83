"""BLAS threads while jaxhlm's programs run: one, unless a large dense block has the cores free.

XLA runs its LAPACK calls (Cholesky factors, triangular solves) and jaxhlm's host callbacks for
large dense blocks through scipy's OpenBLAS. On a machine whose cores are busy, OpenBLAS's own
threads oversubscribe them and spin: measured here, a 128 x 128 Cholesky took 100 ms of CPU
with the default two threads under a competing load and 0.5 ms with one (a kb07-shaped crossed
fit: 120 against 3.5 ms per gradient), and an InstEval fit 15-44 s against 1.4 s (ENGINE-NOTES).

So while a jaxhlm program runs, BLAS is held to one thread (:func:`limited`); a host callback on
a dense block of at least :data:`DENSE_PARALLEL` columns (:func:`dense_threads`) uses every
core that the 1-minute load average says is idle. The limits are set through threadpoolctl
(when it is installed; otherwise nothing is changed) and restored on exit: BLAS calls of your
own outside jaxhlm keep their thread count. ``JAXHLM_BLAS_THREADS=k`` fixes the count instead.
"""
from __future__ import annotations

import contextlib
import os
import threading

__all__ = ["limited", "dense_threads", "DENSE_PARALLEL"]

DENSE_PARALLEL = 512  # dense blocks from this size may use several BLAS threads

_LOCK = threading.Lock()
_STATE = {"depth": 0, "saved": None, "libs": None}


def _libs():
    if _STATE["libs"] is None:
        try:
            from threadpoolctl import ThreadpoolController

            _STATE["libs"] = [lib for lib in ThreadpoolController().lib_controllers if lib.user_api == "blas"]
        except Exception:  # threadpoolctl missing or failing: leave BLAS alone
            _STATE["libs"] = []
    return _STATE["libs"]


def _fixed() -> int | None:
    v = os.environ.get("JAXHLM_BLAS_THREADS")
    try:
        return max(1, int(v)) if v else None
    except ValueError:
        return None


def _set(n: int) -> None:
    for lib in _libs():
        try:
            lib.set_num_threads(int(n))
        except Exception:  # pragma: no cover
            pass


@contextlib.contextmanager
def limited(n: int | None = None):
    """Hold BLAS to ``n`` threads (default 1, or ``JAXHLM_BLAS_THREADS``) inside the block.

    Re-entrant and thread-safe: the first entry saves the libraries' counts, the last exit
    restores them.
    """
    n = n or _fixed() or 1
    with _LOCK:
        if _STATE["depth"] == 0:
            libs = _libs()
            _STATE["saved"] = [lib.get_num_threads() for lib in libs]
            _set(n)
        _STATE["depth"] += 1
    try:
        yield
    finally:
        with _LOCK:
            _STATE["depth"] -= 1
            if _STATE["depth"] == 0 and _STATE["saved"] is not None:
                for lib, k in zip(_libs(), _STATE["saved"]):
                    try:
                        lib.set_num_threads(k)
                    except Exception:  # pragma: no cover
                        pass
                _STATE["saved"] = None


def dense_threads(size: int) -> int:
    """BLAS threads for a dense block of ``size`` columns: 1 below :data:`DENSE_PARALLEL`,
    else the cores the 1-minute load average leaves idle (at least 1)."""
    fixed = _fixed()
    if fixed:
        return fixed
    if size < DENSE_PARALLEL:
        return 1
    ncpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        load = os.getloadavg()[0]
    except OSError:  # pragma: no cover
        return 1
    # this process's own work counts about one; other processes' beyond that take cores
    return int(max(1, min(ncpu, round(ncpu - max(load - 1.0, 0.0)))))


@contextlib.contextmanager
def for_dense(size: int):
    """Inside :func:`limited`: BLAS at :func:`dense_threads` for one dense-block LAPACK call."""
    k = dense_threads(size)
    if k == 1 or not _libs():
        yield
        return
    with _LOCK:
        before = [lib.get_num_threads() for lib in _libs()]
        _set(k)
    try:
        yield
    finally:
        with _LOCK:
            for lib, b in zip(_libs(), before):
                try:
                    lib.set_num_threads(b)
                except Exception:  # pragma: no cover
                    pass
