"""Numerical configuration: float64 and the persistent compilation cache.

jaxhlm computes in float64 only (ENGINE-NOTES: float32 loses up to 0.9 deviance units through
cancellation in the penalised residual sum of squares). JAX's x64 mode is a process-wide
switch; jaxhlm turns it on when it is imported (``jax.config.update("jax_enable_x64", True)``)
and never turns it off. This is the only global JAX setting jaxhlm changes. Code of yours that
relies on JAX's default float32 should create arrays with an explicit ``dtype=jnp.float32``.

The persistent compilation cache (``JAXHLM_CACHE_DIR``, default ``~/.cache/jaxhlm/jax``) is
enabled only if the user has not configured one; set ``JAXHLM_NO_CACHE=1`` to leave it alone.
"""
from __future__ import annotations

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


ensure_configured()
