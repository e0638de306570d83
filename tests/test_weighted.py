"""stats.weighted: the statistics of reweighted rows inside compiled programs equal compute_stats of
the same design with those weights and that response, for every plan of the factor."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from conftest import load_data

from jaxhlm._src.design.build import build_design
from jaxhlm._src.engine import pls
from jaxhlm._src.stats.layout import Plan, build_layout
from jaxhlm._src.stats.suffstats import compute_stats
from jaxhlm._src.stats.weighted import build_weighted_op, linear_predictor_re, re_transpose, weighted_stats


def _crossed_frame(seed=0, n=300):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"y": rng.normal(size=n), "x": rng.normal(size=n), "g": rng.integers(0, 30, n),
                         "h": rng.integers(0, 12, n), "k": rng.integers(0, 7, n)})


CASES = {
    "one_intercept": ("Reaction ~ Days + (1 | Subject)", "sleepstudy.csv", None),
    "one_slope": ("Reaction ~ Days + (Days | Subject)", "sleepstudy.csv", None),
    "one_two_terms": ("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", "sleepstudy.csv", None),
    "chain": ("strength ~ 1 + (1 | batch/cask)", "Pastes.csv", Plan("chain")),
    "crossed_dense": ("diameter ~ 1 + (1 | plate) + (1 | sample)", "Penicillin.csv", Plan("crossed", "dense", "dense")),
    "crossed_scalar": ("diameter ~ 1 + (1 | plate) + (1 | sample)", "Penicillin.csv", Plan("crossed", "sparse", "scalar")),
    "crossed_three_scalar": ("y ~ x + (1 | g) + (1 | h) + (x | k)", None, Plan("crossed", "sparse", "scalar")),
    "crossed_three_dense": ("y ~ x + (1 | g) + (x | h) + (1 | k)", None, Plan("crossed", "dense", "dense")),
    "crossed_pairs": ("y ~ x + (x | g) + (1 | h) + (x | k)", None, Plan("crossed", "sparse", "pairs")),
    "crossed_pairs_dense": ("y ~ x + (x | g) + (x | h)", None, Plan("crossed", "dense", "dense")),
}


def _design(case):
    formula, data, plan = CASES[case]
    df = load_data(data) if data else _crossed_frame()
    d = build_design(formula, df)
    lay = build_layout(d)
    if plan is not None:
        lay = dataclasses.replace(lay, plan=plan)
    return d, lay


def _assert_same(got, want):
    gl, wl = jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)
    assert len(gl) == len(wl)
    assert jax.tree_util.tree_structure(jax.tree_util.tree_map(np.asarray, got)) == \
        jax.tree_util.tree_structure(jax.tree_util.tree_map(np.asarray, want))
    for a, b in zip(gl, wl):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape
        if np.issubdtype(b.dtype, np.integer):
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-10 * max(1.0, float(np.max(np.abs(b)))))


@pytest.mark.parametrize("case", sorted(CASES))
def test_weighted_statistics_equal_compute_stats(case):
    d, lay = _design(case)
    if CASES[case][2] is not None:
        assert lay.plan == CASES[case][2]
    rng = np.random.default_rng(3)
    op = build_weighted_op(d, lay)
    prog = jax.jit(weighted_stats, static_argnames=("layout", "fixed"))
    for _ in range(2):
        w = rng.uniform(0.2, 3.0, d.n)
        z = rng.normal(size=d.n) * 3 + 1
        want = compute_stats(dataclasses.replace(d, weights=w, y=z), lay, precondition=False)
        _assert_same(prog(op, jnp.asarray(w), jnp.asarray(z), layout=lay), want)


@pytest.mark.parametrize("case", ["one_slope", "chain", "crossed_dense", "crossed_pairs"])
def test_statistics_without_fixed_effects_are_the_layout_with_p_zero(case):
    d, lay = _design(case)
    op = build_weighted_op(d, lay)
    rng = np.random.default_rng(4)
    w, z = rng.uniform(0.5, 2.0, d.n), rng.normal(size=d.n)
    d0 = dataclasses.replace(d, X=np.zeros((d.n, 0)), fixef_names=[], weights=w, y=z)
    lay0 = dataclasses.replace(lay, p=0)
    _assert_same(weighted_stats(op, jnp.asarray(w), jnp.asarray(z), lay0, fixed=False), compute_stats(d0, lay0, precondition=False))


def test_solution_on_weighted_statistics_is_the_weighted_least_squares_solution():
    """pls.solve on the weighted statistics: the dense penalised weighted least-squares solution."""
    d, lay = _design("crossed_pairs")
    op = build_weighted_op(d, lay)
    rng = np.random.default_rng(5)
    w, z = rng.uniform(0.5, 2.0, d.n), rng.normal(size=d.n)
    theta = np.array([0.8, 0.3, 0.5, 1.1, 0.7, -0.2, 0.4])[:lay.ntheta]
    sol = pls.solve(jnp.asarray(theta), weighted_stats(op, jnp.asarray(w), jnp.asarray(z), lay), lay)
    # dense: Z Lambda, then min ||W^1/2 (z - X b - Z Lambda u)||^2 + ||u||^2
    Ts = lay.T_arrays(theta)
    cols = []
    for f, fac in enumerate(d.factors):
        q = lay.q[f]
        Zf = op.Z[f]
        Zd = np.zeros((d.n, fac.nlevels * q))
        for j in range(q):
            Zd[np.arange(d.n), fac.codes * q + j] = Zf[:, j]
        Lam = np.kron(np.eye(fac.nlevels), Ts[f])
        cols.append(Zd @ Lam)
    ZL = np.concatenate(cols, axis=1)
    A = np.concatenate([ZL, d.X], axis=1)
    Q = ZL.shape[1]
    M = A.T @ (w[:, None] * A)
    M[:Q, :Q] += np.eye(Q)
    sol_dense = np.linalg.solve(M, A.T @ (w * z))
    np.testing.assert_allclose(np.asarray(sol.beta), sol_dense[Q:], rtol=1e-9, atol=1e-10)
    u_engine = np.concatenate([np.asarray(u)[:, :fac.nlevels].T.ravel() for u, fac in zip(sol.u, d.factors)])
    np.testing.assert_allclose(u_engine, sol_dense[:Q], rtol=1e-9, atol=1e-10)
    # Z b and Z' v from the row operators
    zb = np.asarray(linear_predictor_re(op, sol.b))
    b_dense = np.concatenate([np.asarray(b)[:, :fac.nlevels].T.ravel() for b, fac in zip(sol.b, d.factors)])
    Zfull = np.concatenate([c for c in _dense_Zs(d, lay)], axis=1)
    np.testing.assert_allclose(zb, Zfull @ b_dense, rtol=1e-10, atol=1e-10)
    v = rng.normal(size=d.n)
    got = np.concatenate([np.asarray(t)[:, :fac.nlevels].T.ravel() for t, fac in zip(re_transpose(op, jnp.asarray(v), lay), d.factors)])
    np.testing.assert_allclose(got, Zfull.T @ v, rtol=1e-10, atol=1e-10)


def _dense_Zs(d, lay):
    out = []
    for f, fac in enumerate(d.factors):
        Zf = np.concatenate([td.Z for td in d.terms if td.factor == f], axis=1)
        q = Zf.shape[1]
        Zd = np.zeros((d.n, fac.nlevels * q))
        for j in range(q):
            Zd[np.arange(d.n), fac.codes * q + j] = Zf[:, j]
        out.append(Zd)
    return out
