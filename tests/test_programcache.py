"""The cache of exported programs: reused across processes, same numbers, safe fallbacks."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np

from jaxhlm._src.base import programcache as programcache

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = r"""
import json, sys, time
import pandas as pd
import jaxhlm
df = pd.read_csv(sys.argv[1])
m = jaxhlm.lmer("Reaction ~ Days + (Days | Subject)", df)
print(json.dumps({"objective": m.objective, "theta": list(m.theta), "fixef": list(m.fixef)}))
"""


def _run(cache_dir):
    env = dict(os.environ, JAXHLM_CACHE_DIR=str(cache_dir))
    env.pop("JAXHLM_NO_CACHE", None)
    out = subprocess.run([sys.executable, "-c", SCRIPT, os.path.join(HERE, "data", "sleepstudy.csv")],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_program_written_by_one_process_is_reused_by_the_next(tmp_path):
    first = _run(tmp_path)
    files = os.listdir(tmp_path / "programs")
    assert len(files) == 1 and files[0].endswith(".bin")
    mtime = os.path.getmtime(tmp_path / "programs" / files[0])
    second = _run(tmp_path)
    assert os.listdir(tmp_path / "programs") == files  # read, not rewritten
    assert os.path.getmtime(tmp_path / "programs" / files[0]) == mtime
    assert first == second


def test_key_depends_on_static_arguments_and_shapes():
    a = (np.zeros(3), {"x": np.zeros((2, 5))})
    b = (np.zeros(3), {"x": np.zeros((2, 6))})
    sa, sb = programcache._signature(a), programcache._signature(b)
    assert programcache._key("f", (("reml", True),), sa) != programcache._key("f", (("reml", False),), sa)
    assert programcache._key("f", (), sa) != programcache._key("f", (), sb)
    assert programcache._key("f", (), sa) == programcache._key("f", (), programcache._signature(a))


def test_unexportable_program_falls_back_to_jit(tmp_path, monkeypatch):
    monkeypatch.setattr(programcache, "_directory", lambda: str(tmp_path))

    def host(x):
        return np.asarray(x) * 2.0

    @jax.jit
    def f(x):
        return jax.pure_callback(host, jax.ShapeDtypeStruct(x.shape, x.dtype), x) + 1.0

    out = programcache.call(f, "callback_test", (jnp.arange(3.0),), {})
    np.testing.assert_allclose(out, [1.0, 3.0, 5.0])


def test_no_cache_means_plain_jit(monkeypatch):
    monkeypatch.setenv("JAXHLM_NO_CACHE", "1")
    assert programcache._directory() is None
