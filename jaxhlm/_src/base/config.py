"""Numerical configuration: float64 and the persistent compilation cache.

jaxhlm computes in float64 only (ENGINE-NOTES: float32 loses up to 0.9 deviance units through
cancellation in the penalised residual sum of squares). JAX's x64 mode is a process-wide
switch; jaxhlm turns it on when it is imported (``jax.config.update("jax_enable_x64", True)``)
and never turns it off. This is the only global JAX setting jaxhlm changes. Code of yours that
relies on JAX's default float32 should create arrays with an explicit ``dtype=jnp.float32``.

The persistent compilation cache (``JAXHLM_CACHE_DIR``, default ``~/.cache/jaxhlm/jax``) is
enabled only if the user has not configured one; set ``JAXHLM_NO_CACHE=1`` to leave it alone.

jaxhlm's own programs are compiled with per-program XLA options (:func:`jit`, never through
``XLA_FLAGS``, so other JAX code in the process is not affected). On the CPU that is
``xla_cpu_use_fusion_emitters=False``: XLA's newer MLIR fusion emitters took twice as long to
compile jaxhlm's fit (2.4 s against 1.5 s for the nels random-slope model, 2.2 s against 1.0 s at
1M rows) for run times within noise (measured with JAX 0.10.2 on a 2-core machine).
"""
from __future__ import annotations

import functools
import os

import jax

_DONE = False


def cache_base() -> str:
    """jaxhlm's cache folder: ``JAXHLM_CACHE_DIR`` or ``~/.cache/jaxhlm/jax``."""
    return os.environ.get("JAXHLM_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "jaxhlm", "jax"))


def ensure_configured() -> None:
    """Enable float64 and (unless disabled) the persistent compilation cache. Idempotent."""
    global _DONE
    if _DONE:
        return
    jax.config.update("jax_enable_x64", True)
    if not os.environ.get("JAXHLM_NO_CACHE"):
        try:
            if not jax.config.jax_compilation_cache_dir:
                cache = cache_base()
                os.makedirs(cache, exist_ok=True)
                jax.config.update("jax_compilation_cache_dir", cache)
                jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
                jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
        except Exception:  # pragma: no cover - cache is an optimisation only
            pass
    _DONE = True


# XLA options for jaxhlm's programs, per backend (see the module docstring)
_COMPILER_OPTIONS = {"cpu": {"xla_cpu_use_fusion_emitters": False}}


def compiler_options(backend: str | None = None) -> dict | None:
    """The XLA compile options jaxhlm uses on ``backend`` (default: JAX's default backend)."""
    opts = _COMPILER_OPTIONS.get(backend or jax.default_backend())
    return dict(opts) if opts else None


class _BackendJit:
    """``jax.jit(fun, **kw)`` with :func:`compiler_options` of the backend in use at call time.

    The backend is looked up at the first call, not at import (importing jaxhlm does not start
    a JAX backend); one jitted function is kept per backend.
    """

    def __init__(self, fun, kwargs):
        self._fun, self._kwargs, self._by_backend = fun, kwargs, {}
        functools.update_wrapper(self, fun)

    def jitted(self, backend: str | None = None):
        """The ``jax.jit`` object for ``backend`` (default: the current default backend)."""
        backend = backend or jax.default_backend()
        j = self._by_backend.get(backend)
        if j is None:
            j = jax.jit(self._fun, compiler_options=compiler_options(backend), **self._kwargs)
            self._by_backend[backend] = j
        return j

    def __call__(self, *args, **kwargs):
        return self.jitted()(*args, **kwargs)

    def lower(self, *args, **kwargs):
        return self.jitted().lower(*args, **kwargs)


def jit(fun=None, **kwargs):
    """``jax.jit`` for jaxhlm's programs: same arguments, plus jaxhlm's XLA compile options.

    Usable as ``jit(f, static_argnames=...)`` or as a decorator ``@jit(static_argnames=...)``.
    """
    if fun is None:
        return lambda f: _BackendJit(f, kwargs)
    return _BackendJit(fun, kwargs)


ensure_configured()
