"""Where and how jaxhlm's compiled programs are kept on disk: folder, keys, file format.

This module holds the storage half of :mod:`jaxhlm._src.base.programcache` (which holds the
``jit`` wrapper and the in-process memo): the cache folder (:func:`cache_base`,
:func:`cache_directory`), jaxhlm's per-program XLA options (:func:`compiler_options`), the key
of an entry, and the reading and writing of its file.

Executables are saved (``jax.experimental.serialize_executable``) under
``<JAXHLM_CACHE_DIR>/programs`` (default ``~/.cache/jaxhlm/jax/programs``).
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
swapped: a key mismatch) or one of an older format is ignored (:class:`CorruptEntry`), and the
program is traced and compiled again and the file rewritten. Files are written under a
temporary name and renamed into place (atomic), so a reader never sees half a file; temporary
files left by a killed writer are removed after :data:`STALE_TMP_SECONDS`. Deleting the folder
is always safe. ``JAXHLM_NO_CACHE=1`` turns the disk cache off.

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

__all__ = ["cache_base", "compiler_options", "cache_directory", "STALE_TMP_SECONDS"]

FORMAT = 2
MAGIC = b"JAXHLM-PROGRAM2\n"  # 16 bytes
STALE_TMP_SECONDS = 120.0  # a temporary file older than this is a killed write (writes take ms)

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
            spec.append((x.shape, x.dtype, bool(x.weak_type)))
        elif isinstance(x, (np.ndarray, np.generic)):
            spec.append((x.shape, x.dtype, False))  # dtype objects: str() of each cost 0.1 ms a call
        elif isinstance(x, (bool, int, float, complex)):
            spec.append(((), type(x).__name__, True))
        else:
            return None
    return tree, tuple(spec)


def _key_text(name: str, static: tuple, sig: tuple, backend: str) -> str:
    cfg = (bool(jax.config.jax_enable_x64), str(jax.config.jax_default_matmul_precision))
    leaves = tuple((shape, str(dt) if isinstance(dt, np.dtype) else dt, weak) for shape, dt, weak in sig[1])
    return repr((FORMAT, name, static, str(sig[0]), leaves, _platform(backend), compiler_options(backend),
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

