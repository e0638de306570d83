"""BLAS threads while jaxhlm's programs run: one (unless ``JAXHLM_BLAS_THREADS`` says otherwise).

XLA runs its LAPACK calls (Cholesky factors, triangular solves) and jaxhlm's host callbacks for
large dense blocks through scipy's OpenBLAS. On a machine whose cores are busy, OpenBLAS's own
threads oversubscribe them and spin: measured here, a 128 x 128 Cholesky took 100 ms of CPU
with the default two threads under a competing load and 0.5 ms with one (a kb07-shaped crossed
fit: 120 against 3.5 ms per gradient), and an InstEval fit 15-44 s against 1.4 s (ENGINE-NOTES).

So while a jaxhlm program runs, BLAS is held to one thread (:func:`limited`). The one
exception is a large dense block's factorisation on the host (:func:`dense_block`, crossed
designs): it gets the second core when, at that moment, no other task is runnable on the
machine (``/proc/loadavg``'s count of running tasks less this process's own running threads,
read at every call, so a load that starts during a fit is seen at the next evaluation):
InstEval's 1128-column inverse takes 22-24 ms instead of 36-40 ms on a quiet machine. It is set
through the library's own setter, since the callback runs on one of XLA's threads and
threadpoolctl ignores limits set from any Python thread but the first (:func:`_setter`).
Giving it the cores that the 1-minute load *average* said were idle was tried earlier: that
average lags a new load by a minute, and the block then ran 2 threads against two busy
processes, one warm fit taking 20.8 s instead of 2.1 s. The limits are set through
threadpoolctl's view of the libraries (when it is installed; otherwise nothing is changed) and
restored on exit: BLAS calls of your own outside jaxhlm keep their thread count.
``JAXHLM_BLAS_THREADS=k`` sets the count (for a machine of your own).
"""
from __future__ import annotations

import contextlib
import functools
import os
import threading
import time

__all__ = ["limited", "one_blas_thread", "side_by_side", "in_parallel", "dense_block", "idle_cores"]

_LOCK = threading.Lock()
_STATE = {"depth": 0, "saved": None, "libs": None, "parallel": 0}


def _libs():
    if _STATE["libs"] is None:
        try:
            # XLA's CPU LAPACK kernels call scipy's OpenBLAS, loaded by jax's first linear
            # algebra: load it first, or the controller never sees it (nor limits it)
            import scipy.linalg.cython_lapack  # noqa: F401
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


def _setter(lib):
    """The library's own thread-count setter. threadpoolctl (3.6+) lets only the first Python
    thread that sets an OpenBLAS limit change it and silently ignores the others; the dense
    block's callback runs on one of XLA's threads, so its second thread was never granted (an
    InstEval gradient ran its LAPACK at one thread's speed, 37 ms instead of 22). OpenBLAS's
    count is process-wide either way: jaxhlm's own lock and depth count order the changes."""
    real = getattr(lib, "_real_set_num_threads", None)
    if real is not None and getattr(lib, "threading_layer", "") != "openmp":
        return real
    return lib.set_num_threads


def _set(n: int, libs=None) -> None:
    for lib in _libs() if libs is None else libs:
        try:
            _setter(lib)(int(n))
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
                    _set(k, [lib])
                _STATE["saved"] = None


def _own_running() -> int:
    """Threads of this process that the kernel shows running, the caller included (at least 1)."""
    n = 0
    try:
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/stat", "rb") as fh:
                    st = fh.read()
            except OSError:
                continue
            if st[st.rfind(b")") + 2:st.rfind(b")") + 3] == b"R":
                n += 1
    except OSError:
        return 1
    return max(n, 1)


def _others() -> int:
    """Running tasks of other processes (``/proc/loadavg``'s count less this process's threads)."""
    own = _own_running()
    with open("/proc/loadavg") as fh:
        running = int(fh.read().split()[3].split("/")[0])
    return max(0, running - max(own, _own_running()))


def idle_cores() -> int:
    """Cores of this process's affinity set that no other process is using right now: the set
    minus the tasks ``/proc/loadavg`` counts as running, this process's own running threads
    excepted (the caller, OpenBLAS's workers still spinning after the last block, XLA's pool:
    counting them halved the blocks that got their second thread), read twice a moment apart
    (a task that runs for an instant is not a competing load); 0 where it cannot be read."""
    try:
        cores = len(os.sched_getaffinity(0))
        others = _others()
        if others and cores > 1:
            time.sleep(0.0002)
            others = min(others, _others())
    except (OSError, ValueError, IndexError, AttributeError):
        return 0
    return max(0, cores - 1 - others)


TWO_THREADS_MIN = 512  # dense blocks this wide or wider may get a second thread


@contextlib.contextmanager
def dense_block(size: int = TWO_THREADS_MIN):
    """Inside :func:`limited`: BLAS gets one thread more for each idle core (at most 2 in all)
    for the block (a dense factorisation of ``size`` columns, at least :data:`TWO_THREADS_MIN`:
    below, the block takes about as long as the 0.2-0.5 ms check) and not while
    :func:`in_parallel` runs calls side by side (they hold the cores), then one again.
    ``JAXHLM_BLAS_THREADS`` fixes the count instead; outside :func:`limited` nothing is changed."""
    quiet = _fixed() or _STATE["depth"] == 0 or size < TWO_THREADS_MIN or _STATE["parallel"] > 0
    extra = 0 if quiet else min(1, idle_cores())
    if not extra:
        yield
        return
    with _LOCK:
        _set(1 + extra)
    try:
        yield
    finally:
        with _LOCK:
            _set(1)


def one_blas_thread(fn):
    """Run ``fn`` inside :func:`limited` (a whole fit: the statistics' NumPy products, every
    compiled program and its callbacks). Limiting only the compiled programs left OpenBLAS's
    worker threads of the host code spinning: InstEval under two busy processes took 4.0-4.3 s
    per warm fit (outliers 8-13 s) against 1.8-2.1 s with one thread throughout."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with limited():
            return fn(*args, **kwargs)

    return wrapper


def side_by_side() -> int:
    """How many compiled calls of replicate chunks run at once: the cores this process may
    use, at most 2 (``JAXHLM_WORKERS=k`` sets it); 1 off the CPU, where the device runs them.

    A chunk's program runs its replicates one after another on one core (``lax.map``, ENGINE-
    NOTES pitfall 6), so on a quiet 2-core machine a second chunk at the same time nearly halves
    the run; on busy cores it costs nothing but the time slice it gets.
    """
    v = os.environ.get("JAXHLM_WORKERS")
    try:
        if v:
            return max(1, int(v))
    except ValueError:
        pass
    import jax

    if jax.default_backend() != "cpu":
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, min(2, cores))


def in_parallel(fn, items: list) -> list:
    """``[fn(x) for x in items]``, :func:`side_by_side` of them at a time (threads: XLA runs
    each call without the GIL); results in the order of ``items``."""
    workers = min(len(items), side_by_side())
    if workers <= 1:
        return [fn(x) for x in items]
    from concurrent.futures import ThreadPoolExecutor

    with _LOCK:
        _STATE["parallel"] += 1  # the cores are this process's calls': no dense block takes a second
    try:
        with ThreadPoolExecutor(workers) as ex:
            return list(ex.map(fn, items))
    finally:
        with _LOCK:
            _STATE["parallel"] -= 1
