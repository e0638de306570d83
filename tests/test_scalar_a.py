"""Several factors with a scalar first factor: the Q(w) fill-in equals the general pairs of pairs."""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from jaxhlm._src.engine.pls import conditional_modes, objective
from jaxhlm._src.design.build import build_design
from jaxhlm._src.stats.suffstats import build_structure, compute_stats

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def _crossed_with_slopes(seed=0):
    rng = np.random.default_rng(seed)
    n = 600
    a = rng.integers(0, 60, n)
    b = rng.integers(0, 12, n)
    x = rng.normal(size=n)
    y = 1 + 0.5 * x + rng.normal(size=60)[a] + rng.normal(size=12)[b] + rng.normal(size=12)[b] * x + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "a": a, "b": b})


CASES = [
    ("Penicillin.csv", "diameter ~ 1 + (1 | plate) + (1 | sample)"),
    ("Pastes.csv", "strength ~ 1 + (1 | batch/cask)"),
    (None, "y ~ x + (1 | a) + (x | b)"),
    (None, "y ~ x + (1 | a) + (1 | b) + (0 + x | b)"),
]


@pytest.mark.parametrize("fname, formula", CASES)
@pytest.mark.parametrize("reml", [True, False])
def test_scalar_a_fill_in_equals_pairs_of_pairs(fname, formula, reml):
    df = _crossed_with_slopes() if fname is None else pd.read_csv(os.path.join(DATA, fname))
    import dataclasses

    d = build_design(formula, df)
    s = dataclasses.replace(build_structure(d), b_diag=False)  # (Pastes is nested: use the general layout)
    assert s.q[0] == 1 and s.nfactors > 1
    fast = compute_stats(d, s)
    general = compute_stats(d, s, scalar_a=False)
    assert "Qd" in fast and "Qd" not in general
    _assert_same_engine(fast, s, general, s, reml, seed=1)


def _assert_same_engine(stats1, s1, stats2, s2, reml, seed, scale=1.0):
    """Criterion, gradient and conditional modes agree at a few random theta."""
    vg = jax.jit(jax.value_and_grad(objective), static_argnums=(2, 3))
    cm = jax.jit(conditional_modes, static_argnums=2)
    rng = np.random.default_rng(seed)
    for _ in range(3):
        th = jnp.asarray(np.abs(rng.normal(size=s1.ntheta)) * scale + 0.1)
        v1, g1 = vg(th, stats1, s1, reml)
        v2, g2 = vg(th, stats2, s2, reml)
        assert abs(float(v1) - float(v2)) <= 1e-9 * abs(float(v2))
        np.testing.assert_allclose(g1, g2, rtol=1e-7, atol=1e-8)
        c1, c2 = cm(th, stats1, s1), cm(th, stats2, s2)
        np.testing.assert_allclose(c1["uA"], c2["uA"], rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(c1["uB"], c2["uB"], rtol=1e-8, atol=1e-10)


def _nested_with_slopes(seed=0):
    rng = np.random.default_rng(seed)
    n, ncls, nsch = 900, 90, 15
    cls = rng.integers(0, ncls, n)
    sch = cls % nsch  # every class in one school
    x = rng.normal(size=n)
    y = 1 + 0.5 * x + rng.normal(size=ncls)[cls] + rng.normal(size=nsch)[sch] * (1 + 0.5 * x) + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "cls": cls, "sch": sch})


@pytest.mark.parametrize("formula", ["y ~ x + (1 | sch/cls)", "y ~ x + (x | cls) + (x | sch)",
                                     "y ~ x + (x | cls) + (1 | sch)"])
def test_nested_block_diagonal_equals_dense(formula):
    """Classes in schools: the batched B block gives the dense block's criterion, gradient and modes."""
    import dataclasses

    d = build_design(formula, _nested_with_slopes())
    s = build_structure(d)
    assert s.b_diag
    dense_s = dataclasses.replace(s, b_diag=False)
    nested, dense = compute_stats(d, s), compute_stats(d, dense_s, scalar_a=False)
    _assert_same_engine(nested, s, dense, dense_s, True, seed=2, scale=0.5)


def test_nested_condvar_equals_dense():
    import dataclasses

    import jaxhlm
    from jaxhlm._src.infer.condvar import ranef_condvar

    m = jaxhlm.lmer("y ~ x + (x | cls) + (1 | sch)", _nested_with_slopes(1))
    assert m._struct.b_diag
    cv = ranef_condvar(m)
    s2 = dataclasses.replace(m._struct, b_diag=False)
    m._struct, m._stats = s2, compute_stats(m._design, s2, scalar_a=False)
    cv2 = ranef_condvar(m)
    for k in cv:
        np.testing.assert_allclose(cv[k], cv2[k], rtol=1e-7, atol=1e-12)
