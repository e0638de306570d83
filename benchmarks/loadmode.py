"""Run conditions for the benchmarks: competing CPU load, load-average sampling, core pinning.

* :class:`CompetingLoad` (``run.py --load N``) starts ``N`` CPU-bound busy processes for the
  whole run and stops them at the end (also on Ctrl-C or an error), each in its own process
  group and stopped by its own id.  ``kind="spin"`` is a pure-Python loop (an ALU-bound
  ``yes > /dev/null``); ``kind="matmul"`` multiplies 256 x 256 float64 matrices with numpy, one
  BLAS thread each (it also loads the caches and the memory bus).
* :class:`LoadSampler` reads the 1-minute load average (``os.getloadavg``) every few seconds in
  a background thread, so each case can report the load it ran under (min / median / max of
  the samples taken while it ran, plus the values at its start and end).
* :func:`pin_env` and :func:`pin_preexec` (``run.py --pin``) restrict a tool's subprocess to one
  core: ``os.sched_setaffinity(0, {core})`` in the child before it starts (inherited by every
  thread and child it makes; XLA and OpenBLAS size their thread pools from the affinity mask)
  and 1 thread for OpenBLAS / OpenMP / MKL / BLIS / numexpr / rayon (the Rust peers) / polars.

The load average counts runnable processes, so on this 2-core machine a value of 2 already
means every core is busy; the busy processes of ``--load`` add about 1 each.
"""
from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import threading
import time

THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "RAYON_NUM_THREADS",
               "POLARS_MAX_THREADS")

_SPIN = "x = 0\nwhile True:\n    x = (x + 1) % 1000003\n"
_MATMUL = ("import numpy as np\nrng = np.random.default_rng(0)\na = rng.random((256, 256))\n"
           "b = rng.random((256, 256))\nwhile True:\n    a = (a @ b) / 256.0\n")


def loadavg() -> float | None:
    """The 1-minute load average, rounded to 0.01 (None where the OS has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def pin_env(n_threads: int = 1) -> dict:
    """Environment variables that cap the threads of the numeric libraries the tools use."""
    return {k: str(n_threads) for k in THREAD_VARS}


def pick_core(requested: int | None) -> int:
    """The core to pin to: ``requested`` if allowed, else the last core this process may use."""
    allowed = sorted(os.sched_getaffinity(0))
    if requested is not None and requested >= 0:
        if requested not in allowed:
            raise ValueError(f"--pin {requested}: core not available (allowed: {allowed})")
        return requested
    return allowed[-1]


def pin_preexec(core: int):
    """A ``preexec_fn`` for ``subprocess.Popen`` that restricts the child to ``core``."""

    def _pin():
        os.sched_setaffinity(0, {core})

    return _pin


class CompetingLoad:
    """``n`` busy processes, started by :meth:`start` and stopped by :meth:`stop` (idempotent).

    Use as a context manager.  The processes are plain ``python -c`` loops with 1 BLAS thread
    each; they are not pinned (the OS spreads them over the cores).
    """

    def __init__(self, n: int, kind: str = "spin"):
        if n < 0:
            raise ValueError("--load must be >= 0")
        if kind not in ("spin", "matmul"):
            raise ValueError(f"unknown load kind {kind!r} (spin or matmul)")
        self.n, self.kind = int(n), kind
        self.procs: list[subprocess.Popen] = []

    def start(self) -> "CompetingLoad":
        env = dict(os.environ, **pin_env(1))
        code = _SPIN if self.kind == "spin" else _MATMUL
        for _ in range(self.n):
            self.procs.append(subprocess.Popen([sys.executable, "-c", code], env=env,
                                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL, start_new_session=True))
        return self

    def alive(self) -> int:
        return sum(p.poll() is None for p in self.procs)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)  # its own session: only this process
                except ProcessLookupError:
                    pass
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        self.procs = []

    def describe(self) -> str:
        if not self.n:
            return "no competing load"
        what = "pure-Python busy loops" if self.kind == "spin" else "numpy 256x256 matmul loops (1 thread each)"
        return f"{self.n} competing CPU-bound processes ({what})"

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


class LoadSampler:
    """Samples the 1-minute load average every ``every_s`` seconds in a daemon thread."""

    def __init__(self, every_s: float = 5.0):
        self.every_s = float(every_s)
        self.samples: list[tuple[float, float]] = []  # (monotonic time, load average)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            la = loadavg()
            if la is not None:
                self.samples.append((time.monotonic(), la))
            self._stop.wait(self.every_s)

    def start(self) -> "LoadSampler":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def summary(self, t0: float, t1: float | None = None) -> dict:
        """min / median / max of the samples taken in ``[t0, t1]`` (t1 None: until now)."""
        t1 = time.monotonic() if t1 is None else t1
        vals = [v for t, v in list(self.samples) if t0 <= t <= t1]
        if not vals:
            la = loadavg()
            vals = [la] if la is not None else []
        if not vals:
            return {}
        return {"min": min(vals), "median": round(statistics.median(vals), 2), "max": max(vals),
                "n_samples": len(vals)}
