"""jaxhlm's compiled programs, and a disk cache of them that no other JAX code shares.

Every program of jaxhlm is a :class:`CachedJit` (made with :func:`jit`, a drop-in for
``jax.jit``). Its first call with a new combination of static arguments and argument shapes
traces, lowers and compiles the function once (``jitted.lower(...).compile()``) and keeps the
compiled executable; later calls in the process run it directly. The executable is also saved
(``jax.experimental.serialize_executable``) under ``<JAXHLM_CACHE_DIR>/programs`` (default
``~/.cache/jaxhlm/jax/programs``), so a new process neither traces nor compiles a program an
earlier one has built: the first fit of a model shape seen before costs the time to read a file.

The folder, the key of an entry and the file format (magic string, JSON header, SHA-256
checksum; damaged or foreign files are ignored and rebuilt) are in
:mod:`jaxhlm._src.base.programstore`, together with jaxhlm's per-program XLA options; its
public names are re-exported here.

Nothing here changes a global JAX setting: JAX's own persistent compilation cache
(``jax_compilation_cache_dir``) is neither enabled nor changed, so your own ``jax.jit``
functions are cached exactly as you configured (or not at all), and jaxhlm's files hold only
jaxhlm's programs.

Programs that cannot be serialised (those with host callbacks, e.g. the LAPACK dense block of
large crossed designs), calls from inside another trace, and arguments placed on several
devices or a non-default device (sharded fits) are run by the plain ``jax.jit`` object.
``JAXHLM_NO_CACHE=1`` turns the disk cache off (programs are then compiled in every process).
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import os
import threading

import jax

from . import threads
from .programstore import STALE_TMP_SECONDS
from .programstore import cache_base
from .programstore import cache_directory
from .programstore import compiler_options
from .programstore import _TRACED, CorruptEntry, _key_text, _load, _runtime_ready, _signature, _store

__all__ = ["CachedJit", "jit", "call", "cache_base", "compiler_options", "cache_directory", "STALE_TMP_SECONDS"]

_MEMO: dict = {}  # (name, static, signature) -> compiled executable, or None (use plain jit)
_LOCK = threading.Lock()
_KEY_LOCKS: dict = {}


# --------------------------------------------------------------------------------------------
# calls
# --------------------------------------------------------------------------------------------
def _key_lock(memo) -> threading.Lock:
    with _LOCK:
        lock = _KEY_LOCKS.get(memo)
        if lock is None:
            lock = _KEY_LOCKS[memo] = threading.Lock()
        return lock


def _build(jitted, name, static, sig, args, dyn_kwargs, static_kwargs, backend):
    """The executable for one key: from the disk cache if a valid file is there, else compiled
    (and written). None when the disk cache is off: the caller then uses plain ``jax.jit``."""
    directory = cache_directory()
    if directory is None or not _runtime_ready(backend):
        return None
    key_text = _key_text(name, static, sig, backend)
    path = os.path.join(directory, hashlib.sha256(key_text.encode()).hexdigest()[:40] + ".bin")
    if os.path.exists(path):
        try:
            return _load(path, key_text, sig[0], backend)
        except (CorruptEntry, OSError):
            pass  # rebuilt and rewritten below
    compiled = jitted.lower(*args, **dyn_kwargs, **static_kwargs).compile()
    if " at 0x" not in key_text:  # a static argument without a stable repr would never hit again
        _store(path, key_text, compiled)
    return compiled


def _cached_call(jitted, nested, name: str, args: tuple, dyn_kwargs: dict, static_kwargs: dict):
    """``jitted(*args, **dyn_kwargs, **static_kwargs)`` through the cache; ``nested`` is the
    function to call inside an enclosing trace (XLA options only apply to top-level programs)."""
    sig = _signature((args, dyn_kwargs))
    if sig is _TRACED:
        return nested(*args, **dyn_kwargs, **static_kwargs)
    with threads.limited():  # one BLAS thread while the program runs (see base/threads.py)
        return jax.block_until_ready(_run(jitted, name, args, dyn_kwargs, static_kwargs, sig))


def _run(jitted, name, args, dyn_kwargs, static_kwargs, sig):
    if sig is None:
        return jitted(*args, **dyn_kwargs, **static_kwargs)
    backend = jax.default_backend()
    static = tuple(sorted(static_kwargs.items()))
    memo = (name, static, sig, backend)
    try:
        found = memo in _MEMO
    except TypeError:  # an unhashable static argument: jax.jit will say so
        return jitted(*args, **dyn_kwargs, **static_kwargs)
    if not found:
        with _key_lock(memo):  # two threads needing the same new program compile it once
            if memo not in _MEMO:
                _MEMO[memo] = _build(jitted, name, static, sig, args, dyn_kwargs, static_kwargs, backend)
    prog = _MEMO[memo]
    if prog is None:
        return jitted(*args, **dyn_kwargs, **static_kwargs)
    return prog(*args, **dyn_kwargs)


def call(jitted, name: str, args: tuple, static_kwargs: dict):
    """``jitted(*args, **static_kwargs)`` through the cache of compiled programs.

    Parameters
    ----------
    jitted : CachedJit or jax.jit object
        The program; a :class:`CachedJit` caches itself (``name`` is then unused).
    name : str
        A name for the program in the cache key (plain ``jax.jit`` objects).
    args : tuple
        The array arguments (pytrees).
    static_kwargs : dict
        The static arguments, by name (hashable).

    Returns
    -------
    The program's outputs (JAX arrays, in its output tree).
    """
    if isinstance(jitted, CachedJit):
        return jitted(*args, **static_kwargs)
    return _cached_call(jitted, jitted, name, tuple(args), {}, dict(static_kwargs))


class CachedJit:
    """``jax.jit(fun, **kw)`` with jaxhlm's XLA options and its disk cache of executables.

    The backend is looked up at the first call, not at import (importing jaxhlm does not start
    a JAX backend); one ``jax.jit`` object is kept per backend. Calls whose static arguments
    (``static_argnames``) are given by name, or by position after all the array arguments, go
    through the cache; other calls, or a function with ``static_argnums``, use the ``jax.jit``
    object.
    """

    def __init__(self, fun, kwargs):
        kwargs = dict(kwargs)
        self._extra = dict(kwargs.pop("cpu_options", None) or {})  # this program's own CPU options
        self._fun, self._kwargs, self._by_backend = fun, kwargs, {}
        self._nested = jax.jit(fun, **kwargs)  # inside another trace (no XLA options there)
        names = kwargs.get("static_argnames") or ()
        self._static = frozenset([names] if isinstance(names, str) else names)
        self._cacheable = not kwargs.get("static_argnums") and not kwargs.get("donate_argnums")
        self._name = f"{getattr(fun, '__module__', '?')}.{getattr(fun, '__qualname__', repr(fun))}"
        try:  # positions of the static arguments, so that positional static arguments are cached too
            params = list(inspect.signature(fun).parameters)
            self._static_pos = tuple((i, nm) for i, nm in enumerate(params) if nm in self._static)
        except (TypeError, ValueError):
            self._static_pos = ()
        if self._extra:  # the same function with other options is another program
            self._name += repr(sorted(self._extra.items()))
        functools.update_wrapper(self, fun)

    def jitted(self, backend: str | None = None):
        """The ``jax.jit`` object with jaxhlm's XLA options of a backend.

        Parameters
        ----------
        backend : str, optional
            Default: JAX's current default backend.

        Returns
        -------
        jax.stages.Wrapped
        """
        backend = backend or jax.default_backend()
        j = self._by_backend.get(backend)
        if j is None:
            opts = compiler_options(backend)
            if self._extra and backend == "cpu":
                opts = {**(opts or {}), **self._extra}
            j = jax.jit(self._fun, compiler_options=opts, **self._kwargs)
            self._by_backend[backend] = j
        return j

    def __call__(self, *args, **kwargs):
        j = self.jitted()
        if not self._cacheable:
            return j(*args, **kwargs)
        if self._static_pos and len(args) > self._static_pos[0][0]:
            # static arguments given by position (f(x, layout)) are passed by name, so the call
            # is cached (they reached the plain jax.jit and compiled in every new process)
            first, pos = self._static_pos[0][0], dict(self._static_pos)
            if not all(i in pos for i in range(first, len(args))):
                return j(*args, **kwargs)  # a static argument among array ones: plain jax.jit
            kwargs = {**kwargs, **{pos[i]: args[i] for i in range(first, len(args))}}
            args = args[:first]
        static = {k: v for k, v in kwargs.items() if k in self._static}
        dyn = {k: v for k, v in kwargs.items() if k not in self._static}
        return _cached_call(j, self._nested, self._name, args, dyn, static)

    def executable(self, *args, **kwargs):
        """The compiled program for these arguments (built or read from the disk cache once, as a
        call would), as a function of the array arguments alone: for loops that call one
        program many times (no per-call key, no wait for each result: call it with arguments of
        the same shapes and ``jax.block_until_ready`` the last output). With the disk cache off,
        the ``jax.jit`` object with the static arguments bound.

        Parameters
        ----------
        *args, **kwargs
            Arguments as for a call (static ones by name).

        Returns
        -------
        callable
        """
        j = self.jitted()
        static = {k: v for k, v in kwargs.items() if k in self._static}
        dyn = {k: v for k, v in kwargs.items() if k not in self._static}
        sig = _signature((args, dyn)) if self._cacheable and not self._static_pos_args(args) else None
        if sig is None or sig is _TRACED:
            return functools.partial(j, **static)
        backend = jax.default_backend()
        memo = (self._name, tuple(sorted(static.items())), sig, backend)
        with _key_lock(memo):
            if memo not in _MEMO:
                with threads.limited():
                    _MEMO[memo] = _build(j, self._name, memo[1], sig, args, dyn, static, backend)
        prog = _MEMO[memo]
        return functools.partial(j, **static) if prog is None else prog

    def _static_pos_args(self, args) -> bool:
        return bool(self._static_pos) and len(args) > self._static_pos[0][0]

    def lower(self, *args, **kwargs):
        """The lowered program (``jax.jit(...).lower``; not cached).

        Parameters
        ----------
        *args, **kwargs
            The function's arguments, as for a call.

        Returns
        -------
        jax.stages.Lowered
        """
        return self.jitted().lower(*args, **kwargs)


def jit(fun=None, **kwargs):
    """``jax.jit`` for jaxhlm's programs: same arguments, plus jaxhlm's XLA options and cache.

    Parameters
    ----------
    fun : callable, optional
        The function; without it, a decorator is returned.
    **kwargs
        Passed to :func:`jax.jit` (``static_argnames=...``); ``cpu_options`` (a dict) adds XLA
        options of this program on the CPU (e.g. ``{"xla_backend_optimization_level": 0}`` for
        programs whose compile time outweighs their run time).

    Returns
    -------
    CachedJit, or a decorator making one

    Examples
    --------
    ``jit(f, static_argnames=("struct",))`` or ``@jit(static_argnames=("struct",))``.
    """
    if fun is None:
        return lambda f: CachedJit(f, kwargs)
    return CachedJit(fun, kwargs)


def clear_memory() -> None:
    """Forget the executables held in this process (the files stay); for tests."""
    with _LOCK:
        _MEMO.clear()
        _KEY_LOCKS.clear()
