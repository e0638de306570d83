"""stats.suffstats: typed statistics from one pass over the rows (weights included), and the
storage each design gets (block_description)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from conftest import dense_Z, fit_case, load_data

from jaxhlm._src.design.build import build_design
from jaxhlm._src.stats.layout import Plan, build_layout
from jaxhlm._src.stats.response import base_y_stats, with_y, y_operator, y_stats
from jaxhlm._src.stats.suffstats import compute_stats, transform_xy



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
        ZA, ZD = dense_Z(d, 0), dense_Z(d, 1)
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
