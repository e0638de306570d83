"""jaxhlm's compiled programs, and a disk cache of them that no other JAX code shares.

Every program of jaxhlm is a :class:`CachedJit` (made with :func:`jit`, a drop-in for
``jax.jit``). Its first call with a new combination of static arguments and argument shapes
traces, lowers and compiles the function once (``jitted.lower(...).compile()``) and keeps the
compiled executable; later calls in the process run it directly. The executable is also saved
(``jax.experimental.serialize_executable``) under ``<JAXHLM_CACHE_DIR>/programs`` (default
``~/.cache/jaxhlm/jax/programs``), so a new process neither traces nor compiles a program an
earlier one has built: the first fit of a model shape seen before costs the time to read a file.

Nothing here changes a global JAX setting: JAX's own persistent compilation cache
(``jax_compilation_cache_dir``) is neither enabled nor changed, so your own ``jax.jit``
functions are cached exactly as you configured (or not at all), and jaxhlm's files hold only
jaxhlm's programs.

The file of an entry is named by a hash of its *key*, a text naming

* the function (module and qualified name) and its static arguments (the model
  :class:`~jaxhlm._src.stats.suffstats.Structure`, REML, ...),
* the tree, shapes, dtypes and weak types of its array arguments,
* the backend, device kind and platform version (on the CPU also a digest of the CPU model
  and its instruction-set flags), the JAX and jaxlib versions, jaxhlm's XLA options, a digest of jaxhlm's own source files (a changed engine never reuses an old
  program) and the trace-relevant JAX settings (x64, default matmul precision).

Each file holds a fixed magic string, a JSON header with the full key text, the payload's
length and its SHA-256 digest, then the payload (the pickled ``serialize_executable`` triple,
zlib-compressed: about 70-700 kB per program before, a quarter of that after). A file is used only when all of these check
out; a damaged file (flipped bytes, truncated, emptied), a file of another entry (two files
swapped: a key mismatch) or one of an older format is ignored, and the program is traced and
compiled again and the file rewritten. Files are written under a temporary name and renamed
into place (atomic), so a reader never sees half a file; temporary files left by a killed
writer are removed after :data:`STALE_TMP_SECONDS`. Deleting the folder is always safe.

Programs that cannot be serialised (those with host callbacks, e.g. the LAPACK dense block of
large crossed designs), calls from inside another trace, and arguments placed on several
devices or a non-default device (sharded fits) are run by the plain ``jax.jit`` object.
``JAXHLM_NO_CACHE=1`` turns the disk cache off (programs are then compiled in every process).

jaxhlm's programs are compiled with per-program XLA options (:func:`compiler_options`, never
through ``XLA_FLAGS``, so other JAX code in the process is not affected). On the CPU that is
``xla_cpu_use_fusion_emitters=False``: XLA's newer MLIR fusion emitters took twice as long to
compile jaxhlm's fit (2.4 s against 1.5 s for the nels random-slope model, 2.2 s against 1.0 s at
1M rows) for run times within noise (measured with JAX 0.10.2 on a 2-core machine).
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import pickle
import threading
import time
import zlib

import jax
import numpy as np

from . import threads

__all__ = ["CachedJit", "jit", "call", "cache_base", "compiler_options", "cache_directory", "STALE_TMP_SECONDS"]

FORMAT = 2
MAGIC = b"JAXHLM-PROGRAM2\n"  # 16 bytes
STALE_TMP_SECONDS = 120.0  # a temporary file older than this is a killed write (writes take ms)

_MEMO: dict = {}  # (name, static, signature) -> compiled executable, or None (use plain jit)
_LOCK = threading.Lock()
_KEY_LOCKS: dict = {}
_CLEANED: set = set()


# --------------------------------------------------------------------------------------------
# settings
# --------------------------------------------------------------------------------------------
def cache_base() -> str:
    """jaxhlm's cache folder: ``JAXHLM_CACHE_DIR``, or ``~/.cache/jaxhlm/jax``.

    Returns
    -------
    str
        The folder; the executables are kept in its ``programs`` subfolder.
    """
    return os.environ.get("JAXHLM_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "jaxhlm", "jax"))


# XLA options for jaxhlm's programs, per backend (see the module docstring)
_COMPILER_OPTIONS = {"cpu": {"xla_cpu_use_fusion_emitters": False}}


def compiler_options(backend: str | None = None) -> dict | None:
    """The XLA compile options jaxhlm uses on ``backend``.

    Parameters
    ----------
    backend : str, optional
        ``"cpu"``, ``"gpu"``, ``"tpu"``; default JAX's default backend.

    Returns
    -------
    dict or None
        A fresh copy of the options (changing it changes nothing), or None for none.
    """
    opts = _COMPILER_OPTIONS.get(backend or jax.default_backend())
    return dict(opts) if opts else None


def cache_directory() -> str | None:
    """The folder of the executables, created if needed.

    The first call per folder and process removes stale temporary files there.

    Returns
    -------
    str or None
        ``<cache_base()>/programs``; None when the disk cache is off (``JAXHLM_NO_CACHE`` set
        to anything but ``""``/``"0"``) or the folder cannot be created.
    """
    if os.environ.get("JAXHLM_NO_CACHE", "") not in ("", "0"):
        return None
    path = os.path.join(cache_base(), "programs")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return None
    if path not in _CLEANED:
        _CLEANED.add(path)
        _remove_stale_tmp(path)
    return path


def _remove_stale_tmp(path: str) -> None:
    now = time.time()
    try:
        entries = list(os.scandir(path))
    except OSError:
        return
    for e in entries:
        if e.name.endswith(".tmp"):
            try:
                if now - e.stat().st_mtime > STALE_TMP_SECONDS:
                    os.remove(e.path)
            except OSError:  # removed by another process meanwhile, or not ours to remove
                pass


@functools.lru_cache(maxsize=1)
def _source_digest() -> str:
    """Digest of every ``.py`` file under ``jaxhlm/_src`` (all subpackages)."""
    h = hashlib.sha256()
    top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # jaxhlm/_src
    for folder, dirs, files in os.walk(top):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path, "rb") as fh:
                    h.update(os.path.relpath(path, top).encode() + b"\0" + fh.read())
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def _host_cpu() -> str:
    """A digest of the host CPU's model and instruction-set flags: an executable compiled for
    one CPU is never loaded on another (a cache folder shared by different machines)."""
    import platform

    text = platform.machine() + platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            info = fh.read().splitlines()
        text += "".join(ln for ln in info if ln.split(":")[0].strip() in ("model name", "flags", "Features"))[:20000]
    except OSError:
        pass
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=8)
def _platform(backend: str) -> tuple:
    import jaxlib

    dev = jax.devices(backend)[0]
    cpu = _host_cpu() if backend == "cpu" else ""
    return (backend, dev.device_kind, dev.client.platform_version, jax.__version__, jaxlib.__version__, cpu)


# --------------------------------------------------------------------------------------------
# keys
# --------------------------------------------------------------------------------------------
_TRACED = "traced"  # _signature of arguments that are tracers of an enclosing transformation


def _signature(args) -> tuple | str | None:
    """``(treedef, leaf specs)`` of the array arguments; :data:`_TRACED` for tracers of an
    enclosing transformation; None for other arguments that cannot be cached (arrays on several
    or non-default devices, leaves that are not arrays or Python numbers)."""
    if jax.config.jax_default_device is not None:  # programs are loaded for the backend's first device
        return None
    leaves, tree = jax.tree_util.tree_flatten(args)
    spec = []
    default = None
    for x in leaves:
        if isinstance(x, jax.core.Tracer):
            return _TRACED
        if isinstance(x, jax.Array):
            devs = x.sharding.device_set
            if len(devs) != 1:
                return None
            if default is None:
                default = jax.devices()[0]
            if next(iter(devs)) != default:
                return None
            spec.append((x.shape, str(x.dtype), bool(x.weak_type)))
        elif isinstance(x, (np.ndarray, np.generic)):
            spec.append((x.shape, str(x.dtype), False))
        elif isinstance(x, (bool, int, float, complex)):
            spec.append(((), type(x).__name__, True))
        else:
            return None
    return tree, tuple(spec)


def _key_text(name: str, static: tuple, sig: tuple, backend: str) -> str:
    cfg = (bool(jax.config.jax_enable_x64), str(jax.config.jax_default_matmul_precision))
    return repr((FORMAT, name, static, str(sig[0]), sig[1], _platform(backend), compiler_options(backend),
                 cfg, _source_digest()))


def _key(name: str, static: tuple, sig: tuple, backend: str | None = None) -> str:
    """The file name (without extension) of an entry: a hash of its key text."""
    text = _key_text(name, static, sig, backend or jax.default_backend())
    return hashlib.sha256(text.encode()).hexdigest()[:40]


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------
class CorruptEntry(Exception):
    """A cache file that fails validation (internal: it is then rebuilt)."""


def _encode(key_text: str, payload: bytes) -> bytes:
    header = json.dumps({"format": FORMAT, "key": key_text, "size": len(payload),
                         "sha256": hashlib.sha256(payload).hexdigest()}).encode()
    return MAGIC + len(header).to_bytes(8, "little") + header + payload


def _decode(data: bytes, key_text: str) -> bytes:
    """The payload of a file's bytes, after every check (raises :class:`CorruptEntry`)."""
    n = len(MAGIC)
    if len(data) < n + 8 or data[:n] != MAGIC:
        raise CorruptEntry("not a jaxhlm program file (empty, truncated or another format)")
    hlen = int.from_bytes(data[n:n + 8], "little")
    if hlen > len(data) - n - 8:
        raise CorruptEntry("truncated header")
    try:
        header = json.loads(data[n + 8:n + 8 + hlen].decode())
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorruptEntry(f"damaged header: {exc}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CorruptEntry("another format")
    if header.get("key") != key_text:
        raise CorruptEntry("the file belongs to another program (key mismatch)")
    payload = data[n + 8 + hlen:]
    if header.get("size") != len(payload):
        raise CorruptEntry(f"payload of {len(payload)} bytes, header says {header.get('size')}")
    if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
        raise CorruptEntry("checksum mismatch")
    return payload


@functools.lru_cache(maxsize=8)
def _runtime_ready(backend: str) -> bool:
    """Prepare the runtime to run executables that were not lowered in this process.

    On the CPU, JAX fills in the LAPACK kernels' function pointers when it first lowers a
    linear-algebra operation; an executable loaded from disk skips lowering, and running it
    before that would crash the process. ``jax.export`` does the same preparation. False if
    this JAX version offers no way to do it (the disk cache is then off on the CPU).
    """
    if backend != "cpu":
        return True
    try:
        from jax._src.lax import linalg

        linalg.initialize_lapack()
    except Exception:  # pragma: no cover - a JAX without it
        return False
    return True


def _load(path: str, key_text: str, tree, backend: str):
    """The executable stored at ``path`` (raises :class:`CorruptEntry` or ``OSError``)."""
    from jax.experimental import serialize_executable

    with open(path, "rb") as fh:
        data = fh.read()
    payload = _decode(data, key_text)
    try:
        serialized, in_tree, out_tree = pickle.loads(zlib.decompress(payload))
    except Exception as exc:  # checksum fine but unreadable: written by an incompatible writer
        raise CorruptEntry(f"unreadable payload: {exc}") from None
    if in_tree != tree:
        raise CorruptEntry("argument tree differs")
    try:
        return serialize_executable.deserialize_and_load(serialized, in_tree, out_tree, backend=backend,
                                                         execution_devices=jax.devices(backend)[:1])
    except Exception as exc:
        raise CorruptEntry(f"XLA could not load the executable: {exc}") from None


def _store(path: str, key_text: str, compiled) -> bool:
    """Write ``compiled`` to ``path`` atomically; False when it cannot be serialised or written."""
    from jax.experimental import serialize_executable

    try:
        payload = zlib.compress(pickle.dumps(serialize_executable.serialize(compiled),
                                             protocol=pickle.HIGHEST_PROTOCOL), 1)
    except Exception:  # host callbacks and other unpicklable parts
        return False
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        with open(tmp, "wb") as fh:
            fh.write(_encode(key_text, payload))
        os.replace(tmp, path)
    except OSError:
        try:
            os.remove(tmp)
        except OSError:
            pass
        return False
    return True


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
    a JAX backend); one ``jax.jit`` object is kept per backend. Calls with static arguments
    given by name (``static_argnames``) go through the cache; other calls, or a function with
    ``static_argnums``, use the ``jax.jit`` object.
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
        static = {k: v for k, v in kwargs.items() if k in self._static}
        dyn = {k: v for k, v in kwargs.items() if k not in self._static}
        return _cached_call(j, self._nested, self._name, args, dyn, static)

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
