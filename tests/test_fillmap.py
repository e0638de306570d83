"""stats.fillmap: the crossed designs' fill-in maps equal the dense fill, sorted as the engine
needs them."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from conftest import dense_Z

from jaxhlm._src.design.build import build_design
from jaxhlm._src.stats.fillmap import sort_fill
from jaxhlm._src.stats.layout import Plan, build_layout
from jaxhlm._src.stats.suffstats import compute_stats



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
    ZA = dense_Z(d, 0)
    ZD = np.concatenate([dense_Z(d, f) for f in lay.dense_factors], axis=1)
    w = np.ones(n) if d.weights is None else d.weights
    C = ZD.T @ (w[:, None] * ZA)  # (QD, J)
    full = (C * W[None, :ZA.shape[1]]) @ C.T
    np.testing.assert_allclose(U, np.triu(full), rtol=1e-12, atol=1e-12)


def test_fill_sort_fallback_equals_the_packed_sort():
    rng = np.random.default_rng(0)
    d = rng.integers(0, 50, 1000)
    lev = np.zeros(1000, np.int64)
    for k in np.unique(d):  # distinct levels per destination, increasing in generation order
        idx = np.flatnonzero(d == k)
        lev[idx] = np.sort(rng.choice(300, len(idx), replace=False))
    val = rng.normal(size=1000)
    counted = sort_fill(d, lev, val, 50, 300, np.int32)  # few destinations: a counting sort
    packed = sort_fill(d, lev, val, 2**30, 300, np.int32)  # many: the packed keys
    wide = sort_fill(d, lev, val, 2**62, 300, np.int32)  # too wide to pack: argsort
    order = np.argsort(d, kind="stable")
    for got in (counted, packed, wide):
        np.testing.assert_array_equal(got[0], d[order])
        np.testing.assert_array_equal(got[1], lev[order])
        np.testing.assert_array_equal(got[2], val[order])
        assert got[0].dtype == got[1].dtype == np.int32
    for got in (sort_fill(d, lev, None, 50, 300, np.int32), sort_fill(d, lev, None, 2**30, 300, np.int32)):
        np.testing.assert_array_equal(got[0], d[order])  # unit values: none to gather
        np.testing.assert_array_equal(got[1], lev[order])
        np.testing.assert_array_equal(got[2], np.ones(1000))
