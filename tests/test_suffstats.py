"""stats.suffstats: typed statistics from one pass over the rows (weights included), and the
storage each design gets (block_description)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from conftest import fit_case, load_data

from jaxhlm._src.design.build import build_design
from jaxhlm._src.stats.layout import Plan, build_layout
from jaxhlm._src.stats.response import base_y_stats, with_y, y_operator, y_stats
from jaxhlm._src.stats.suffstats import compute_stats, transform_xy


def _dense_Z(d, f):
    fac = d.factors[f]
    Zf = np.concatenate([td.Z for td in d.terms if td.factor == f], axis=1)
    q = Zf.shape[1]
    Z = np.zeros((d.n, fac.nlevels * q))
    for j in range(q):
        Z[np.arange(d.n), fac.codes * q + j] = Zf[:, j]
    return Z


def test_statistics_equal_dense_cross_products_with_weights():
    df = load_data("Penicillin.csv").copy()
    df["w"] = np.random.default_rng(0).uniform(0.5, 2.0, len(df))
    d = build_design("diameter ~ 1 + (1 | plate) + (1 | sample)", df)
    d.weights = df["w"].to_numpy()  # prior weights, as build_design(weights=) sets them
    w = d.weights
    for plan in [Plan("crossed", "dense", "dense"), Plan("crossed", "sparse", "scalar")]:
        lay = dataclasses.replace(build_layout(d), plan=plan)
        st = compute_stats(d, lay, precondition=False)
        Xy = np.column_stack([d.X, d.y])
        np.testing.assert_allclose(st.XytXy, Xy.T @ (w[:, None] * Xy), rtol=1e-12)
        assert float(st.logw) == pytest.approx(np.sum(np.log(w)))
        ZA, ZD = _dense_Z(d, 0), _dense_Z(d, 1)
        np.testing.assert_allclose(st.levels[0].ZtZ[0, 0, :24], np.diag(ZA.T @ (w[:, None] * ZA)), rtol=1e-12)
        np.testing.assert_allclose(st.dense.ZtZ, ZD.T @ (w[:, None] * ZD), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(st.dense.ZtXy, ZD.T @ (w[:, None] * Xy), rtol=1e-12)
        if plan.coupling == "dense":
            np.testing.assert_allclose(st.coupling.C[0, :24], ZA.T @ (w[:, None] * ZD), rtol=1e-12)


def test_response_statistics_of_many_responses_equal_recomputation():
    d = build_design("y ~ x + (x | g) + (1 | h)", pd.DataFrame({
        "y": np.arange(40.0) % 7, "x": np.sin(np.arange(40.0)), "g": np.arange(40) % 8, "h": np.arange(40) % 3}))
    lay = build_layout(d)
    Y = np.random.default_rng(1).normal(size=(40, 3)) * 10 + 50
    for pc in (False, True):  # raw statistics; preconditioned ones (X_c = X A, y -> (y - X g) / s)
        st = compute_stats(d, lay, precondition=pc)
        G = y_operator(d, lay, st.xform)
        ys = y_stats(G, Y, lay)
        base = base_y_stats(st, lay)
        np.testing.assert_allclose(base.X, y_stats(G, d.y[:, None], lay).X, rtol=1e-12, atol=1e-12)
        for b in range(3):
            one = type(ys)(tuple(v[b] for v in ys.levels), ys.X[b], ys.yy[b], None if ys.dense is None else ys.dense[b])
            got = with_y(st, one)
            if pc:  # the statistics of the base fit's map of the new response
                xf = st.xform
                dc = dataclasses.replace(d, X=d.X @ xf.A, y=(Y[:, b] - d.X @ xf.g) / xf.s)
            else:
                dc = dataclasses.replace(d, y=Y[:, b])
            want = compute_stats(dc, lay, precondition=False)
            np.testing.assert_allclose(got.XytXy, want.XytXy, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(got.levels[0].ZtXy, want.levels[0].ZtXy, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(got.dense.ZtXy, want.dense.ZtXy, rtol=1e-12, atol=1e-12)


def test_transform_xy_equals_transformed_columns():
    d = build_design("Reaction ~ Days + (Days | Subject)", load_data("sleepstudy.csv"))
    lay = build_layout(d)
    st = compute_stats(d, lay, precondition=False)
    M = np.array([[1.0, 0.0, 0.5], [2.0, 1.0, -1.0], [0.0, 0.0, 1.0]])
    got = transform_xy(st, M, xp=np)
    Xy = np.column_stack([d.X, d.y]) @ M
    np.testing.assert_allclose(got.XytXy, Xy.T @ Xy, rtol=1e-12)


def test_block_description_names_the_storage_of_every_block():
    bd = fit_case("sleepstudy_rs_reml").block_description
    assert list(bd["storage"]) == ["BlkDiag", "Dense"]
    assert bd["size"].iloc[0] == "18 blocks of 2x2"
    bd = fit_case("pastes_reml").block_description  # nested: both factors batched
    assert list(bd["rows"][:3]) == ["cask:batch", "batch", "batch"]
    assert list(bd["storage"][:3]) == ["BlkDiag", "Sparse", "BlkDiag"]
    assert bd["size"].iloc[1] == "30 blocks of 1x1 (nested: one per level)"
    bd = fit_case("penicillin_reml").block_description  # crossed: every plate meets every sample
    assert bd["storage"].iloc[1] == "Dense" and bd["size"].iloc[1] == "6x24"
    assert bd["storage"].iloc[2] == "Dense"


def test_preconditioned_statistics_are_those_of_the_centred_scaled_columns():
    """``compute_stats`` forms the statistics of ``[X A, (y - X g) / s]``: columns centred about
    the intercept, unit root mean square, also where the raw ones would overflow or underflow."""
    from jaxhlm._src.stats.xform import preconditioner

    df = load_data("sleepstudy.csv").copy()
    for xs, xo, ys, yo in [(1.0, 0.0, 1.0, 0.0), (1.0, 1e6, 1.0, 1e10), (1e155, 0.0, 1e150, 0.0), (1e-170, 0.0, 1e-3, 0.0)]:
        df["x"] = df["Days"] * xs + xo
        df["y"] = df["Reaction"] * ys + yo
        d = build_design("y ~ x + (1 | Subject)", df)
        lay = build_layout(d)
        st = compute_stats(d, lay, precondition=True)
        xf = st.xform
        Xc = d.X @ xf.A
        yc = (d.y - d.X @ xf.g) / xf.s
        np.testing.assert_allclose(Xc[:, 0], 1.0)
        assert abs(Xc[:, 1].mean()) < 1e-9 and abs(np.sqrt(np.mean(Xc[:, 1] ** 2)) - 1) < 1e-9
        assert abs(yc.mean()) < 1e-6 and abs(np.sqrt(np.mean(yc**2)) - 1) < 1e-9
        Xy = np.column_stack([Xc, yc])
        np.testing.assert_allclose(st.XytXy, Xy.T @ Xy, rtol=1e-12, atol=1e-9)
        assert np.all(np.isfinite(st.XytXy))
        assert float(xf.yy) == pytest.approx(float(np.sum((d.y / np.abs(d.y).max()) ** 2)) * np.abs(d.y).max() ** 2,
                                             rel=1e-12)
        assert float(xf.logdetA) == pytest.approx(np.log(abs(np.linalg.det(xf.A))), rel=1e-12, abs=1e-12)
    raw = compute_stats(d, lay, precondition=False)
    assert raw.xform is None
    xf = preconditioner(np.ones((5, 1)), np.zeros(5))  # a zero response: no scaling
    assert float(xf.s) == 1.0


def test_default_preconditions_exactly_where_raw_statistics_lose_digits():
    """By default the response is always scaled (and centred when it has a large mean), the
    columns of ``X`` only where one has a large mean about the intercept or an extreme magnitude;
    well-scaled columns keep their raw statistics (the same numbers to rounding, fewer products)."""
    from jaxhlm._src.stats.xform import needs_preconditioning

    df = load_data("sleepstudy.csv").copy()
    for xs, xo, ys, yo, want in [(1.0, 0.0, 1.0, 0.0, False), (1.0, 30.0, 1.0, 0.0, False), (1.0, 1e4, 1.0, 0.0, True),
                                 (1.0, 0.0, 1.0, 1e5, False), (1e35, 0.0, 1.0, 0.0, True), (1e-35, 0.0, 1.0, 0.0, True),
                                 (1.0, 0.0, 1e-3, 0.0, False)]:
        df["x"] = df["Days"] * xs + xo
        df["y"] = df["Reaction"] * ys + yo
        d = build_design("y ~ x + (1 | Subject)", df)
        assert needs_preconditioning(d.X) is want, (xs, xo, ys, yo)
        xf = compute_stats(d, build_layout(d)).xform
        assert np.array_equal(xf.A, np.eye(2)) is (not want)
        yc = (d.y - d.X @ xf.g) / xf.s  # the response is always scaled, centred when shifted
        assert abs(np.sqrt(np.mean(yc**2)) - 1) < 1e-9
        assert bool(abs(yc.mean()) < 1e-6) == (yo != 0.0 or want)
    d = build_design("y ~ 0 + x + (1 | Subject)", df.assign(x=df["Days"] + 1e6))  # no intercept: no centring
    assert not needs_preconditioning(d.X)


@pytest.mark.parametrize("unit", [True, False])
def test_scalar_fill_map_equals_the_dense_fill(unit):
    """The sorted fill map of a scalar first factor crossed with two dense factors (one with two
    columns): ``sum_m v_m W[a_m] e_{d_m}`` is the upper triangle of ``Z_D'Z_A W Z_A'Z_D``,
    destinations sorted, ties in level order; unit columns store no products."""
    rng = np.random.default_rng(3)
    n = 400
    df = pd.DataFrame({"a": rng.integers(0, 60, n).astype(str), "f": rng.integers(0, 7, n).astype(str),
                       "g": rng.integers(0, 5, n).astype(str), "x": rng.normal(size=n), "y": rng.normal(size=n)})
    form = "y ~ 1 + (1 | a) + (1 | f) + (1 + x | g)" if not unit else "y ~ 1 + (1 | a) + (1 | f) + (1 | g)"
    d = build_design(form, df)
    lay = dataclasses.replace(build_layout(d), plan=Plan("crossed", "sparse", "scalar"))
    if not unit:
        d.weights = rng.uniform(0.5, 2.0, n)  # non-unit pair values
    st = compute_stats(d, lay, precondition=False)
    fm = st.fill
    D, A, V = (np.asarray(v) for v in (fm.d, fm.a, fm.v))
    assert np.all(np.diff(D) >= 0)
    m = int(np.count_nonzero(V))  # the padding at the end has value 0
    assert np.all(V[m:] == 0) and m > 1000
    same = np.flatnonzero(np.diff(D[:m]) == 0)
    assert len(same) and np.all(A[same + 1] > A[same])  # ties: distinct levels, in order
    W = rng.uniform(0.1, 1.0, lay.nlev[0])
    QD = lay.QD
    U = np.bincount(D, weights=V * W[A], minlength=QD * QD)[:QD * QD].reshape(QD, QD)
    ZA = _dense_Z(d, 0)
    ZD = np.concatenate([_dense_Z(d, f) for f in lay.dense_factors], axis=1)
    w = np.ones(n) if d.weights is None else d.weights
    C = ZD.T @ (w[:, None] * ZA)  # (QD, J)
    full = (C * W[None, :ZA.shape[1]]) @ C.T
    np.testing.assert_allclose(U, np.triu(full), rtol=1e-12, atol=1e-12)


def test_fill_sort_fallback_equals_the_packed_sort():
    from jaxhlm._src.stats.suffstats import _sort_fill

    rng = np.random.default_rng(0)
    d = rng.integers(0, 50, 1000)
    lev = np.zeros(1000, np.int64)
    for k in np.unique(d):  # distinct levels per destination, increasing in generation order
        idx = np.flatnonzero(d == k)
        lev[idx] = np.sort(rng.choice(300, len(idx), replace=False))
    val = rng.normal(size=1000)
    packed = _sort_fill(d, lev, val, 50, 300, np.int32)
    wide = _sort_fill(d, lev, val, 2**62, 300, np.int32)  # too wide to pack: argsort
    order = np.argsort(d, kind="stable")
    for got in (packed, wide):
        np.testing.assert_array_equal(got[0], d[order])
        np.testing.assert_array_equal(got[1], lev[order])
        np.testing.assert_array_equal(got[2], val[order])
