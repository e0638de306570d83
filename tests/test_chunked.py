"""The memory-bounded paths of big designs give the sums of the one-pass paths.

Above :data:`~jaxhlm._src.stats.xform.ROW_CHUNK` rows the statistics are summed a slice of rows
at a time (no product of full columns, no scaled copy of the response); above
:data:`~jaxhlm._src.engine.kernels.CHUNKED_FROM` levels a single factor is eliminated
:data:`~jaxhlm._src.engine.kernels.CHUNK_LEVELS` levels at a time (in the fit, its derivatives
and the moment start). The thresholds are lowered here so that small designs take those paths;
values, gradients and Hessians must equal the one-pass ones.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import jaxhlm
from jaxhlm._src.design.build import build_design
from jaxhlm._src.engine import kernels as K
from jaxhlm._src.engine import pls
from jaxhlm._src.optim.start import moment_start_one_factor
from jaxhlm._src.stats import suffstats as S
from jaxhlm._src.stats import xform
from jaxhlm._src.stats.layout import build_layout


def _data(n=900, J=70, seed=0, shift=0.0):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, J, n)
    x = rng.normal(size=n)
    z = rng.normal(size=n)
    y = 40.0 + shift + 0.5 * x + rng.normal(size=J)[g] + 0.4 * rng.normal(size=J)[g] * x + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "z": z, "g": g, "w": rng.uniform(0.5, 2.0, n)})


def _stats(formula, df, chunk=None, monkeypatch=None, **kw):
    design = build_design(formula, df, **kw)
    layout = build_layout(design)
    if chunk is not None:
        monkeypatch.setattr(S, "ROW_CHUNK", chunk)
        monkeypatch.setattr(xform, "ROW_CHUNK", chunk)
    try:
        return S.compute_stats(design, layout), layout
    finally:
        if chunk is not None:
            monkeypatch.undo()


def _leaves(stats):
    return [np.asarray(v, dtype=np.float64) for v in jax.tree_util.tree_leaves(stats)
            if np.asarray(v).dtype.kind == "f"]


@pytest.mark.parametrize("formula, kw", [
    ("y ~ x + z + (x | g)", {}),
    ("y ~ x + (1 + x + z | g)", {"weights": "w"}),
    ("y ~ x + (1 | g) + (0 + z | g)", {}),
])
def test_statistics_summed_by_slices_of_rows_equal_one_pass(formula, kw, monkeypatch):
    df = _data()
    whole, _ = _stats(formula, df, **kw)
    for chunk in (1, 7, 256):
        parts, _ = _stats(formula, df, chunk=chunk, monkeypatch=monkeypatch, **kw)
        for a, b in zip(_leaves(whole), _leaves(parts)):
            np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12 * np.max(np.abs(a), initial=1.0))


def test_the_scaled_response_is_never_copied_whole_and_has_the_same_bits(monkeypatch):
    y = np.random.default_rng(1).normal(size=1000) * 3.0
    col = xform.ScaledColumn(y, 2.5)
    np.testing.assert_array_equal(col.part(), y / 2.5)
    np.testing.assert_array_equal(col.part(slice(10, 20)), (y / 2.5)[10:20])
    # a fit's statistics with and without the lazy column: identical bits below ROW_CHUNK rows
    df = _data()
    design = build_design("y ~ x + (x | g)", df)
    layout = build_layout(design)
    a = S.compute_stats(design, layout)
    X = design.X
    _, _, ys = xform.precondition_xy(X, design.y, None, True)  # the eager form: y / s
    assert not isinstance(xform.precondition_xy(X, design.y, None, True, lazy=True)[2], xform.ScaledColumn)
    monkeypatch.setattr(xform, "ROW_CHUNK", 100)  # longer than a slice: lazy
    assert isinstance(xform.precondition_xy(X, design.y, None, True, lazy=True)[2], xform.ScaledColumn)
    np.testing.assert_array_equal(np.asarray(a.levels[0].ZtXy)[:, -1, :design.factors[0].nlevels],
                                  np.stack([np.bincount(design.factors[0].codes, weights=ys * X[:, j])
                                            for j in range(2)]))


def test_statistics_are_aligned_for_xla_to_read_in_place():
    st, _ = _stats("y ~ x + (x | g)", _data(n=100_000, J=40_000))
    for arr in (st.levels[0].ZtZ, st.levels[0].ZtXy):
        assert arr.ctypes.data % 64 == 0
    for shape in [(3, 5, 7), (2, 3, 1 << 16)]:
        z = S._zeros(shape)
        assert z.shape == shape and not z.any()
    assert z.ctypes.data % 64 == 0


@pytest.mark.parametrize("q", [1, 3])
def test_eliminate_sum_by_slices_equals_one_pass_with_derivatives(q, monkeypatch):
    rng = np.random.default_rng(q)
    L, m = 24, 4
    Z = rng.normal(size=(L, 6, q))
    A = jnp.asarray(np.moveaxis(np.einsum("lni,lnj->lij", Z, Z), 0, -1))
    R = jnp.asarray(np.moveaxis(np.einsum("lni,lnj->lij", Z, rng.normal(size=(L, 6, m))), 0, -1))
    entries = [(k, r, c) for k, (r, c) in enumerate((r, c) for c in range(q) for r in range(c, q))]
    spec = K.ElimSpec((q, tuple(entries)))
    theta = jnp.asarray(rng.uniform(0.3, 1.2, len(entries)))
    C = jnp.asarray(rng.normal(size=(m, m)))

    def whole(th):
        ld, W = K.eliminate(th, A, spec)
        return 0.3 * ld + jnp.sum(C * K.sandwich_sum(R, W))

    def sliced(th):
        ld, RWR = K.eliminate_sum(th, A, R, spec)
        return 0.3 * ld + jnp.sum(C * RWR)

    J = jax.jit
    ref = (J(whole)(theta), J(jax.grad(whole))(theta), J(jax.hessian(whole))(theta))
    monkeypatch.setattr(K, "CHUNK_LEVELS", 8)
    assert float(J(sliced)(theta)) == pytest.approx(float(ref[0]), rel=1e-13)
    np.testing.assert_allclose(J(jax.grad(sliced))(theta), ref[1], rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(J(jax.jacfwd(jax.grad(sliced)))(theta), ref[2], rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("formula, hessian", [("y ~ x + (x | g)", True), ("y ~ x + (1 + x + z | g)", False)])
def test_one_factor_criterion_and_moment_start_by_slices_of_levels(formula, hessian, monkeypatch):
    df = _data(n=1200, J=150)
    st, layout = _stats(formula, df)
    L = layout.nlev[0]
    theta = jnp.asarray(np.random.default_rng(2).uniform(0.2, 1.0, layout.ntheta))
    def crit(reml):
        return jax.jit(lambda t: pls.objective(t, st, layout, reml))

    def grad_reml():
        return jax.jit(jax.grad(lambda t: pls.objective(t, st, layout, True)))

    def hess_ml():
        return jax.jit(jax.hessian(lambda t: pls.objective(t, st, layout, False)))

    def start():
        return jax.jit(lambda: moment_start_one_factor(st, layout, jnp.ones(layout.ntheta)))

    ref = [crit(False)(theta), crit(True)(theta), grad_reml()(theta), hess_ml()(theta) if hessian else None,
           start()()]
    chunk = 8 if L % 8 == 0 else 4
    assert L % chunk == 0
    monkeypatch.setattr(K, "CHUNK_LEVELS", chunk)
    monkeypatch.setattr(K, "CHUNKED_FROM", 16)
    calls = []
    real = K.eliminate_sum
    monkeypatch.setattr(K, "eliminate_sum", lambda *a: calls.append(1) or real(*a))
    assert float(crit(False)(theta)) == pytest.approx(float(ref[0]), rel=1e-13)
    assert float(crit(True)(theta)) == pytest.approx(float(ref[1]), rel=1e-13)
    assert calls, "the sliced path was not taken"
    np.testing.assert_allclose(grad_reml()(theta), ref[2], rtol=1e-10, atol=1e-10)
    if hessian:
        np.testing.assert_allclose(hess_ml()(theta), ref[3], rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(start()(), ref[4], rtol=1e-10, atol=1e-12)


def test_a_fit_over_slices_equals_the_one_pass_fit(monkeypatch):
    df = _data(n=3000, J=300, shift=1e4)  # a shifted response: the preconditioned route too
    a = jaxhlm.lmer("y ~ x + (x | g)", df, reml=False)
    monkeypatch.setattr(S, "ROW_CHUNK", 500)
    monkeypatch.setattr(xform, "ROW_CHUNK", 500)
    monkeypatch.setattr(K, "CHUNK_LEVELS", 16)
    monkeypatch.setattr(K, "CHUNKED_FROM", 64)
    jax.clear_caches()
    from jaxhlm._src.base import programcache
    monkeypatch.setattr(programcache, "_MEMO", {})
    monkeypatch.setenv("JAXHLM_NO_CACHE", "1")
    b = jaxhlm.lmer("y ~ x + (x | g)", df, reml=False)
    assert b.deviance == pytest.approx(a.deviance, rel=1e-12)
    np.testing.assert_allclose(np.asarray(b.theta), np.asarray(a.theta), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(b.fixef.to_numpy(), a.fixef.to_numpy(), rtol=1e-8)
    np.testing.assert_allclose(b.coef_table.iloc[:, 1].to_numpy(), a.coef_table.iloc[:, 1].to_numpy(), rtol=1e-6)
