"""Sharding the group axis over devices: the same fit as on one device."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import jaxhlm

from conftest import DATA, load_data

NELS_RS = "mathscore ~ 1 + family_inc + (family_inc | sch_id)"

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np, pandas as pd
    import jax
    import jaxhlm
    out = {"ndev": len(jax.devices())}
    data = os.environ["JAXHLM_TEST_DATA"]
    cases = [("nels_like.csv", "mathscore ~ 1 + family_inc + (family_inc | sch_id)", False)]
    for fname, formula, reml in cases:
        d = pd.read_csv(os.path.join(data, fname))
        one = jaxhlm.lmer(formula, d, reml=reml)
        many = jaxhlm.lmer_sharded(formula, d, reml=reml)
        a = many.stats.levels[0].ZtZ
        out[fname] = {
            "shards": len(a.addressable_shards),
            "spec": str(a.sharding.spec),
            "nlev": int(many.layout.nlev[0]),
            "d_fixef": float(np.max(np.abs(one.fixef.to_numpy() - many.fixef.to_numpy()))),
            "d_theta": float(np.max(np.abs(one.theta.to_numpy() - many.theta.to_numpy()))),
            "d_obj": float(abs(one.objective - many.objective)),
        }
    print("RESULT" + json.dumps(out))
    """
)


def test_sharded_fit_on_four_cpu_devices_equals_one_device():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["JAXHLM_TEST_DATA"] = DATA
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT"))
    res = json.loads(line[len("RESULT"):])
    assert res["ndev"] == 4
    for fname in ("nels_like.csv",):
        r = res[fname]
        assert r["shards"] == 4 and "groups" in r["spec"]
        assert r["nlev"] % 4 == 0
        assert r["d_fixef"] < 1e-8 and r["d_theta"] < 1e-8 and r["d_obj"] < 1e-7


def test_one_device_mesh_in_process():
    dat = load_data("nels_like.csv")
    a = jaxhlm.lmer(NELS_RS, dat, reml=False)
    b = jaxhlm.lmer_sharded(NELS_RS, dat, reml=False, devices=1)
    assert b.timings["devices"] == 1
    np.testing.assert_allclose(b.fixef, a.fixef, rtol=1e-10)
    assert b.objective == pytest.approx(a.objective, rel=1e-12)
    with pytest.raises(jaxhlm.ArgumentError):
        jaxhlm.lmer_sharded(NELS_RS, dat, devices=10_000)
