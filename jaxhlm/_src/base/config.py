"""Numerical configuration: float64, and the names of jaxhlm's program settings.

jaxhlm computes in float64 only (ENGINE-NOTES: float32 loses up to 0.9 deviance units through
cancellation in the penalised residual sum of squares). JAX's x64 mode is a process-wide
switch; jaxhlm turns it on when it is imported (``jax.config.update("jax_enable_x64", True)``)
and never turns it off. This is the only global JAX setting jaxhlm changes: JAX's persistent
compilation cache, XLA flags and every other option stay as you set them. Code of yours that
relies on JAX's default float32 should create arrays with an explicit ``dtype=jnp.float32``.

jaxhlm's compiled programs are cached on disk by jaxhlm itself, in a folder of its own that no
other JAX code uses (``JAXHLM_CACHE_DIR``, default ``~/.cache/jaxhlm/jax``; ``JAXHLM_NO_CACHE=1``
turns it off): see :mod:`jaxhlm._src.base.programcache`, which holds :func:`jit` (jaxhlm's
``jax.jit``), and :mod:`jaxhlm._src.base.programstore`, which holds the folder and
:func:`compiler_options` (jaxhlm's XLA options, per program); they are re-exported here.
"""
from __future__ import annotations

import jax

from .programcache import CachedJit, jit
from .programstore import cache_base, compiler_options

__all__ = ["ensure_configured", "cache_base", "compiler_options", "jit", "CachedJit"]

_DONE = False


def ensure_configured() -> None:
    """Enable float64 (``jax_enable_x64``); nothing else. Idempotent; run on import.

    Returns
    -------
    None
    """
    global _DONE
    if _DONE:
        return
    jax.config.update("jax_enable_x64", True)
    _DONE = True


ensure_configured()
