"""The cache of compiled programs: reused across processes, same numbers, and no damaged,
swapped or half-written file ever breaks (or changes) a fit."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxhlm._src.base import programcache as programcache
from jaxhlm._src.base import programstore as programstore

HERE = os.path.dirname(os.path.abspath(__file__))
SLEEP = os.path.join(HERE, "data", "sleepstudy.csv")
# REML and ML fits of one model: two programs of identical shapes (a swap is only seen by the key)
SCRIPT = r"""
import json, sys
import pandas as pd
import jaxhlm
df = pd.read_csv(sys.argv[1])
out = {}
for reml in (True, False):
    m = jaxhlm.lmer("Reaction ~ Days + (Days | Subject)", df, reml=reml)
    out[str(reml)] = {"objective": m.objective, "theta": list(m.theta), "fixef": list(m.fixef),
                      "df": list(m.coef_table["df"]), "ranef": m.ranef["Subject"].to_numpy().ravel().tolist()}
print(json.dumps(out))
"""


def _run(cache_dir):
    env = dict(os.environ, JAXHLM_CACHE_DIR=str(cache_dir))
    env.pop("JAXHLM_NO_CACHE", None)
    out = subprocess.run([sys.executable, "-c", SCRIPT, SLEEP], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _programs(cache_dir):
    d = os.path.join(cache_dir, "programs")
    return sorted(os.path.join(d, f) for f in os.listdir(d))


def _header(path):
    data = open(path, "rb").read()
    n = len(programstore.MAGIC)
    assert data[:n] == programstore.MAGIC
    hlen = int.from_bytes(data[n:n + 8], "little")
    return json.loads(data[n + 8:n + 8 + hlen]), data[n + 8 + hlen:]


def _valid(path):
    header, payload = _header(path)
    return programstore._decode(open(path, "rb").read(), header["key"]) == payload


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    """A cache filled by one process, and that process's answers."""
    d = tmp_path_factory.mktemp("filled")
    return d, _run(d)


def test_program_written_by_one_process_is_reused_by_the_next(filled, tmp_path):
    d, first = filled
    files = _programs(d)
    assert len(files) >= 4 and all(f.endswith(".bin") and _valid(f) for f in files)
    names = sorted(_header(f)[0]["key"].split(",")[1].strip(" '") for f in files)
    assert "jaxhlm._src.optim.fit.fit_program" in names
    shutil.copytree(d, tmp_path / "c")
    mtimes = {f: os.path.getmtime(f) for f in _programs(tmp_path / "c")}
    second = _run(tmp_path / "c")
    assert {f: os.path.getmtime(f) for f in _programs(tmp_path / "c")} == mtimes  # read, not rewritten
    assert first == second


def _flip_middle(path):
    data = bytearray(open(path, "rb").read())
    mid = len(data) // 2
    for i in range(mid, min(mid + 16, len(data))):
        data[i] ^= 0xFF
    open(path, "wb").write(bytes(data))


def _truncate(path):
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])


def _empty(path):
    open(path, "wb").close()


def _flip_header(path):  # a byte of the key text in the header
    data = bytearray(open(path, "rb").read())
    data[len(programstore.MAGIC) + 40] ^= 0x01
    open(path, "wb").write(bytes(data))


def _swap_pairs(files):
    """Swap the files of the programs whose keys differ only by REML (same shapes)."""
    by_key = {f: _header(f)[0]["key"] for f in files}
    swapped = 0
    for f, k in by_key.items():
        if "('reml', True)" in k:
            g = next(g for g, kg in by_key.items() if kg == k.replace("('reml', True)", "('reml', False)"))
            tmp = f + ".swap"
            os.replace(f, tmp)
            os.replace(g, f)
            os.replace(tmp, g)
            swapped += 1
    assert swapped >= 2  # fit_program and the Satterthwaite derivatives


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "header", "swap"])
def test_damaged_entries_never_break_or_change_a_fit(filled, tmp_path, damage):
    d, want = filled
    c = tmp_path / "c"
    shutil.copytree(d, c)
    files = _programs(c)
    if damage == "swap":
        _swap_pairs(files)
    else:
        for f in files:
            {"flip": _flip_middle, "truncate": _truncate, "empty": _empty, "header": _flip_header}[damage](f)
    assert _run(c) == want  # traced and compiled again: the same numbers
    assert all(_valid(f) for f in _programs(c))  # every entry rewritten whole
    if damage == "swap":
        assert {_header(f)[0]["key"] for f in _programs(c)} == {_header(f)[0]["key"] for f in _programs(d)}
    mtimes = {f: os.path.getmtime(f) for f in _programs(c)}
    assert _run(c) == want and {f: os.path.getmtime(f) for f in _programs(c)} == mtimes  # and reused


def _fresh(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXHLM_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("JAXHLM_NO_CACHE", raising=False)
    programcache.clear_memory()


def test_damaged_entry_in_process_is_rebuilt(tmp_path, monkeypatch):
    _fresh(tmp_path, monkeypatch)
    f = jax.jit(lambda x, y: jnp.cumsum(x) * y["w"])
    args = (jnp.arange(5.0), {"w": np.float64(2.0)})
    want = np.asarray(f(*args))
    np.testing.assert_array_equal(programcache.call(f, "cumsum_test", args, {}), want)
    (path,) = _programs(tmp_path)
    for damage in (_flip_middle, _truncate, _empty, _flip_header):
        damage(path)
        programcache.clear_memory()
        np.testing.assert_array_equal(programcache.call(f, "cumsum_test", args, {}), want)
        assert _valid(path)
    programcache.clear_memory()


def test_file_of_another_key_is_not_used(tmp_path, monkeypatch):
    """Two programs of the same shapes; each one's file copied over the other's: both rebuilt."""
    _fresh(tmp_path, monkeypatch)
    add, sub = jax.jit(lambda x: x + 1.0), jax.jit(lambda x: x - 1.0)
    x = np.zeros(3)
    programcache.call(add, "plus_test", (x,), {})
    programcache.call(sub, "minus_test", (x,), {})
    a, b = _programs(tmp_path)
    da, db = open(a, "rb").read(), open(b, "rb").read()
    open(a, "wb").write(db)
    open(b, "wb").write(da)
    programcache.clear_memory()
    np.testing.assert_array_equal(programcache.call(add, "plus_test", (x,), {}), [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(programcache.call(sub, "minus_test", (x,), {}), [-1.0, -1.0, -1.0])
    programcache.clear_memory()


def test_stale_temporary_files_are_removed(tmp_path, monkeypatch):
    _fresh(tmp_path, monkeypatch)
    d = tmp_path / "programs"
    d.mkdir()
    old, new, keep = d / "abc.bin.123.456.tmp", d / "def.bin.124.457.tmp", d / "0123.bin"
    for p in (old, new, keep):
        p.write_bytes(b"partial")
    t = time.time() - programstore.STALE_TMP_SECONDS - 10
    os.utime(old, (t, t))
    programstore._CLEANED.discard(str(d))
    assert programcache.cache_directory() == str(d)
    assert not old.exists() and new.exists() and keep.exists()  # a write under way is left alone


def test_key_depends_on_static_arguments_and_shapes():
    a = (np.zeros(3), {"x": np.zeros((2, 5))})
    b = (np.zeros(3), {"x": np.zeros((2, 6))})
    c = (np.zeros(3, np.float32), {"x": np.zeros((2, 5))})
    sa, sb, sc = (programstore._signature(v) for v in (a, b, c))
    assert programstore._key("f", (("reml", True),), sa) != programstore._key("f", (("reml", False),), sa)
    assert len({programstore._key("f", (), s) for s in (sa, sb, sc)}) == 3
    assert programstore._key("f", (), sa) == programstore._key("f", (), programstore._signature(a))
    assert programstore._key("f", (), sa) != programstore._key("g", (), sa)
    # weak types are part of the key (a Python float and a float64 array compile differently)
    assert programstore._signature((1.0,)) != programstore._signature((np.float64(1.0),))


def test_tracers_are_not_cached():
    assert programstore._signature((jnp.zeros(2),)) is not None
    seen = []

    def f(x):
        seen.append(programstore._signature((x,)))
        return x

    jax.jit(f)(jnp.zeros(2))
    assert seen == [programstore._TRACED]


def test_cached_jit_inside_another_jit(tmp_path, monkeypatch):
    _fresh(tmp_path, monkeypatch)
    inner = programcache.jit(lambda x, k: x**k, static_argnames=("k",))
    outer = jax.jit(lambda x: inner(x, k=3) + 1.0)
    np.testing.assert_allclose(outer(jnp.arange(3.0)), [1.0, 2.0, 9.0])
    np.testing.assert_allclose(jax.grad(lambda x: inner(x, k=2))(3.0), 6.0)
    np.testing.assert_allclose(inner(jnp.arange(3.0), k=2), [0.0, 1.0, 4.0])
    programcache.clear_memory()


def test_unexportable_program_falls_back_to_jit(tmp_path, monkeypatch):
    _fresh(tmp_path, monkeypatch)

    def host(x):
        return np.asarray(x) * 2.0

    @jax.jit
    def f(x):
        return jax.pure_callback(host, jax.ShapeDtypeStruct(x.shape, x.dtype), x) + 1.0

    out = programcache.call(f, "callback_test", (jnp.arange(3.0),), {})
    np.testing.assert_allclose(out, [1.0, 3.0, 5.0])
    assert _programs(tmp_path) == []  # a host callback cannot be stored: nothing written
    programcache.clear_memory()


def test_no_cache_means_plain_jit(tmp_path, monkeypatch):
    _fresh(tmp_path, monkeypatch)
    monkeypatch.setenv("JAXHLM_NO_CACHE", "1")
    assert programcache.cache_directory() is None
    f = jax.jit(lambda x: x * 2.0)
    np.testing.assert_array_equal(programcache.call(f, "nocache_test", (np.ones(2),), {}), [2.0, 2.0])
    assert not (tmp_path / "programs").exists()
    programcache.clear_memory()


def test_static_arguments_given_by_position_are_cached(tmp_path, monkeypatch):
    """``f(x, 3)`` for ``jit(f, static_argnames=("k",))`` is stored and reused like ``f(x, k=3)``
    (batched refits passed their layout by position and compiled in every new process)."""
    _fresh(tmp_path, monkeypatch)

    def power_sum(x, k, scale=1.0):
        return jnp.sum(x ** k) * scale

    f = programcache.jit(power_sum, static_argnames=("k",))
    x = np.arange(4.0)
    assert float(f(x, 3)) == 36.0
    (path,) = _programs(tmp_path)
    assert float(f(x, k=3)) == 36.0 and _programs(tmp_path) == [path]  # the same entry
    assert float(f(x, 2)) == 14.0 and len(_programs(tmp_path)) == 2
    programcache.clear_memory()
    mtime = os.path.getmtime(path)
    assert float(f(x, 3)) == 36.0 and os.path.getmtime(path) == mtime  # read back, not rebuilt
    g = programcache.jit(lambda x, k, y: jnp.sum(x ** k) + y, static_argnames=("k",))
    assert float(g(x, 2, np.float64(1.0))) == 15.0  # a dynamic argument after a static one: plain jit
    programcache.clear_memory()


def test_executable_is_the_program_a_call_uses(tmp_path, monkeypatch):
    """``CachedJit.executable`` hands out the executable a call builds (once; loops call it
    directly), and with the cache off the jit object with the static arguments bound."""
    _fresh(tmp_path, monkeypatch)

    def scaled(x, k):
        return x * k

    f = programcache.jit(scaled, static_argnames=("k",))
    x = np.arange(3.0)
    np.testing.assert_array_equal(f(x, k=2.0), [0.0, 2.0, 4.0])
    (path,) = _programs(tmp_path)
    ex = f.executable(x, k=2.0)
    assert ex is f.executable(np.ones(3), k=2.0) and _programs(tmp_path) == [path]  # no new program
    np.testing.assert_array_equal(ex(np.ones(3)), [2.0, 2.0, 2.0])
    ex3 = f.executable(x, k=3.0)
    assert ex3 is not ex and len(_programs(tmp_path)) == 2
    programcache.clear_memory()
    monkeypatch.setenv("JAXHLM_NO_CACHE", "1")
    np.testing.assert_array_equal(f.executable(x, k=2.0)(x), [0.0, 2.0, 4.0])
    programcache.clear_memory()
