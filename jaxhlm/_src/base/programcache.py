"""A disk cache of traced and lowered programs, so that a new process skips tracing.

JAX's persistent compilation cache (:mod:`config`) saves the XLA compile of a program, but every
new process still traces the Python code and lowers it to StableHLO before it can look the
compiled program up: for a fit that is about 0.3-0.5 s, more than the fit. This module keeps the
lowered program itself (``jax.export``, serialised) under ``<JAXHLM_CACHE_DIR>/programs``
(default ``~/.cache/jaxhlm/jax/programs``), keyed by

* the function's name and its static arguments (the model :class:`~suffstats.Structure`, REML),
* the tree, shapes and dtypes of its array arguments,
* the JAX version and a digest of jaxhlm's own source files (a changed engine never reuses an
  old program).

A program that cannot be exported (one with a host callback, e.g. the LAPACK dense block of
large crossed designs) or a missing ``flatbuffers`` package simply falls back to ``jax.jit``.
``JAXHLM_NO_CACHE=1`` turns this cache off together with the compilation cache.
"""
from __future__ import annotations

import functools
import hashlib
import os
import threading

import jax

__all__ = ["call"]

_MEMO: dict = {}
_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def _source_digest() -> str:
    """Digest of the JAX version and of every ``.py`` file under ``jaxhlm/_src`` (all subpackages)."""
    h = hashlib.sha256(jax.__version__.encode())
    top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # jaxhlm/_src
    for folder, dirs, files in os.walk(top):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path, "rb") as fh:
                    h.update(os.path.relpath(path, top).encode() + fh.read())
    return h.hexdigest()


def _directory():
    if os.environ.get("JAXHLM_NO_CACHE"):
        return None
    from .config import cache_base

    base = cache_base()  # jaxhlm's own folder, also when the user set up JAX's cache elsewhere
    try:
        from jax._src.export import serialization  # noqa: F401  (needs flatbuffers)
    except ImportError:
        return None
    path = os.path.join(base, "programs")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return None
    return path


def _signature(args: tuple) -> tuple:
    leaves, tree = jax.tree_util.tree_flatten(args)
    return tree, tuple((getattr(x, "shape", ()), getattr(x, "dtype", type(x))) for x in leaves)


def _key(name: str, static: tuple, sig: tuple) -> str:
    text = repr((name, static, str(sig[0]), sig[1], jax.default_backend(), _source_digest()))
    return hashlib.sha256(text.encode()).hexdigest()[:40]


_REGISTERED: set = set()


def _register_namedtuples(treedef) -> None:
    """Register every NamedTuple type in ``treedef`` for ``jax.export`` serialisation (once)."""
    from jax import export

    stack = [treedef]
    while stack:
        td = stack.pop()
        data = td.node_data()
        if data is not None:
            typ = data[0]
            if isinstance(typ, type) and issubclass(typ, tuple) and hasattr(typ, "_fields") and typ not in _REGISTERED:
                try:
                    export.register_namedtuple_serialization(typ, serialized_name=f"{typ.__module__}.{typ.__qualname__}")
                except ValueError:  # registered elsewhere already
                    pass
                _REGISTERED.add(typ)
        stack.extend(td.children())


def _exported(jitted, name: str, static: tuple, args: tuple, static_kwargs: dict, sig: tuple):
    """The exported program (wrapped in ``jax.jit`` for fast dispatch), or None.

    ``jitted`` is a ``jax.jit`` object or a :func:`jaxhlm._src.config.jit` wrapper; the program
    is compiled with :func:`~jaxhlm._src.config.compiler_options` (they are not part of it).
    """
    directory = _directory()
    if directory is None:
        return None
    key = _key(name, static, sig)
    from jax import export

    exp = None
    path = os.path.join(directory, key + ".bin")
    try:
        _register_namedtuples(sig[0])
        if os.path.exists(path):
            with open(path, "rb") as fh:
                exp = export.deserialize(bytearray(fh.read()))
        else:
            exp = export.export(getattr(jitted, "jitted", lambda: jitted)())(*args, **static_kwargs)
            tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
            with open(tmp, "wb") as fh:
                fh.write(exp.serialize())
            os.replace(tmp, path)
    except Exception:  # not exportable (host callbacks), unreadable file: plain jit
        return None
    from .config import compiler_options

    return jax.jit(exp.call, compiler_options=compiler_options())


def call(jitted, name: str, args: tuple, static_kwargs: dict):
    """``jitted(*args, **static_kwargs)``, through a cached exported program when possible.

    ``static_kwargs`` are ``jitted``'s static arguments (hashable); ``args`` its array pytrees.
    """
    static = tuple(sorted((k, v) for k, v in static_kwargs.items()))
    sig = _signature(args)
    memo = (name, static, sig)
    with _LOCK:
        found = memo in _MEMO
        prog = _MEMO.get(memo)
    if not found:
        prog = _exported(jitted, name, static, args, static_kwargs, sig)
        with _LOCK:
            _MEMO[memo] = prog
    if prog is None:
        return jitted(*args, **static_kwargs)
    return prog(*args)
