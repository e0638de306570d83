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
        st = compute_stats(d, lay)
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
    st = compute_stats(d, lay)
    Y = np.random.default_rng(1).normal(size=(40, 3))
    ys = y_stats(y_operator(d, lay), Y, lay)
    base = base_y_stats(st, lay)
    np.testing.assert_allclose(base.X, y_stats(y_operator(d, lay), d.y[:, None], lay).X, rtol=1e-12)
    for b in range(3):
        one = type(ys)(tuple(v[b] for v in ys.levels), ys.X[b], ys.yy[b], None if ys.dense is None else ys.dense[b])
        got = with_y(st, one)
        want = compute_stats(dataclasses.replace(d, y=Y[:, b]), lay)
        np.testing.assert_allclose(got.XytXy, want.XytXy, rtol=1e-12)
        np.testing.assert_allclose(got.levels[0].ZtXy, want.levels[0].ZtXy, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(got.dense.ZtXy, want.dense.ZtXy, rtol=1e-12, atol=1e-13)


def test_transform_xy_equals_transformed_columns():
    d = build_design("Reaction ~ Days + (Days | Subject)", load_data("sleepstudy.csv"))
    lay = build_layout(d)
    st = compute_stats(d, lay)
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
