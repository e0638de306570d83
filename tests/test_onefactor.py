"""The hand-derived reverse pass of the one-factor deviance equals JAX's own derivative."""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import jaxhlm
from jaxhlm._src.optim.batch import pls_one_factor
from jaxhlm._src.engine.pls import _criterion
from jaxhlm._src.engine.onefactor import level_sums

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


@pytest.mark.parametrize(
    "fname, formula, reml",
    [
        ("sleepstudy.csv", "Reaction ~ Days + (Days | Subject)", True),
        ("sleepstudy.csv", "Reaction ~ Days + (Days || Subject)", False),
        ("Dyestuff.csv", "Yield ~ 1 + (1 | Batch)", True),
        ("nels_like.csv", "mathscore ~ family_inc + ses + (family_inc + ses | sch_id)", False),
        ("nels_like.csv", "mathscore ~ 0 + family_inc + (1 | sch_id) + (0 + ses | sch_id)", True),
    ],
)
@pytest.mark.filterwarnings("ignore::jaxhlm.SingularFitWarning")  # two of the fits are singular; only their structure is used
def test_hand_gradient_equals_autodiff(fname, formula, reml):
    m = jaxhlm.lmer(formula, pd.read_csv(os.path.join(DATA, fname)), reml=reml)
    struct, st = m._struct, jax.device_put(m._stats)

    def f_autodiff(th):
        d = pls_one_factor(th, st, struct)
        return _criterion(d["ldL2"], d["Lxx"], st["n"], struct.p, reml)

    def f_hand(th):
        ld, Ssub = level_sums(th, st["A_ZtZ"], st["A_ZtXy"], struct)
        return _criterion(ld, jnp.linalg.cholesky(st["XytXy"] - Ssub), st["n"], struct.p, reml)

    rng = np.random.default_rng(0)
    opt = np.asarray(m._fit["theta"])
    for th in [opt, opt + 0.2 * rng.normal(size=opt.size), rng.normal(size=opt.size)]:
        v1, g1 = jax.value_and_grad(f_autodiff)(jnp.asarray(th))
        v2, g2 = jax.value_and_grad(f_hand)(jnp.asarray(th))
        assert abs(float(v1) - float(v2)) <= 1e-10 * abs(float(v1))
        np.testing.assert_allclose(np.asarray(g2), np.asarray(g1), rtol=1e-7, atol=1e-7 * (1 + abs(float(v1))) * 1e-3)
