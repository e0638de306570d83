"""Out-of-core fits (Dask DataFrame, Parquet / CSV files): identical to the in-memory fit."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import jaxhlm
from jaxhlm._src.design.chunkmoments import pseudo_rows
from jaxhlm._src.facade.entry import _lmer_out_of_core

from conftest import load_data

dd = pytest.importorskip("dask.dataframe")
pytest.importorskip("pyarrow")

NELS_RS = "mathscore ~ 1 + family_inc + (family_inc | sch_id)"


def assert_same_fit(a, b, tol=1e-10):
    """Estimates equal to ``tol`` (relative to the parameters' scale)."""
    assert a.nobs == b.nobs and a.n_dropped == b.n_dropped
    assert list(a.fixef.index) == list(b.fixef.index)
    np.testing.assert_allclose(a.fixef, b.fixef, rtol=tol, atol=tol)
    np.testing.assert_allclose(a.theta, b.theta, rtol=tol, atol=tol)
    np.testing.assert_allclose(a.sigma, b.sigma, rtol=tol)
    np.testing.assert_allclose(a.vcov, b.vcov, rtol=1e-8, atol=tol)
    assert a.objective == pytest.approx(b.objective, rel=tol, abs=0)
    for k in a.ranef:
        assert list(a.ranef[k].index) == list(b.ranef[k].index)
        np.testing.assert_allclose(a.ranef[k], b.ranef[k], rtol=1e-8, atol=1e-8)


@pytest.fixture(scope="module")
def nels():
    dat = load_data("nels_like.csv")
    # shuffled, with a text predictor and a few missing values
    dat = dat.sample(frac=1.0, random_state=1).reset_index(drop=True)
    dat["area"] = np.where(dat["urban"] == 1, "urban", "rural")
    dat.loc[[5, 17, 400], "family_inc"] = np.nan
    return dat


@pytest.fixture(scope="module")
def nels_ref(nels):
    return jaxhlm.lmer(NELS_RS, nels, reml=False)


def test_pseudo_rows_reproduce_second_moments():
    rng = np.random.default_rng(0)
    V = rng.normal(size=(7, 4)) * np.array([1.0, 100.0, 1e-3, 5.0])
    M = V.T @ V
    iu, ju = np.triu_indices(4)
    R, cell = pseudo_rows(np.zeros((1, 1), np.int64), M[iu, ju][None], 4)
    np.testing.assert_allclose(R.T @ R, M, rtol=1e-12, atol=1e-15 * np.abs(M).max())
    V2 = V[:2]  # fewer rows than columns: rank 2, two pseudo-rows
    R2, _ = pseudo_rows(np.zeros((1, 1), np.int64), (V2.T @ V2)[iu, ju][None], 4)
    assert R2.shape[0] == 2


def test_dask_dataframe_fit_equals_in_memory(nels, nels_ref):
    ddf = dd.from_pandas(nels, npartitions=5)
    m = jaxhlm.lmer(NELS_RS, ddf, reml=False)  # lmer dispatches to the out-of-core path
    assert m.n_dropped == 3
    assert_same_fit(m, nels_ref)
    np.testing.assert_allclose(m.coef_table["df"], nels_ref.coef_table["df"], rtol=1e-8)
    with pytest.raises(jaxhlm.DataError, match="out of core"):
        m.resid
    with pytest.raises(jaxhlm.DataError):
        m.simulate(2)


def test_parquet_and_csv_files_equal_in_memory(nels, tmp_path):
    formula = "mathscore ~ ses + area + (1 | sch_id)"
    ref = jaxhlm.lmer(formula, nels, reml=True)
    # sorted by area: the first files hold only one category of the text predictor
    srt = nels.sort_values("area", kind="stable").reset_index(drop=True)
    pq, csv = [], []
    for i, part in enumerate(np.array_split(np.arange(len(srt)), 3)):
        pq.append(tmp_path / f"part{i}.parquet")
        csv.append(str(tmp_path / f"part{i}.csv"))
        srt.iloc[part].to_parquet(pq[-1])
        srt.iloc[part].to_csv(csv[-1], index=False)
    a = _lmer_out_of_core(formula, pq, True, chunk_rows=1000)
    b = jaxhlm.lmer(formula, csv, reml=True)
    assert list(a.fixef.index) == ["(Intercept)", "ses", "areaurban"]
    assert_same_fit(a, ref)
    assert_same_fit(b, ref)


@pytest.mark.parametrize("fname, formula", [
    ("Penicillin.csv", "diameter ~ 1 + (1 | plate) + (1 | sample)"),
    ("Pastes.csv", "strength ~ 1 + (1 | batch/cask)"),
])
def test_several_grouping_factors(fname, formula):
    dat = load_data(fname)
    ref = jaxhlm.lmer(formula, dat, reml=True)
    m = jaxhlm.lmer(formula, dd.from_pandas(dat.sample(frac=1, random_state=2), npartitions=3), reml=True)
    assert_same_fit(m, ref)


def test_local_cluster(nels, nels_ref):
    distributed = pytest.importorskip("distributed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                           dashboard_address=None)
        client = distributed.Client(cluster)
    try:
        m = jaxhlm.lmer(NELS_RS, dd.from_pandas(nels, npartitions=4), reml=False)
    finally:
        client.close()
        cluster.close()
    assert_same_fit(m, nels_ref)


def test_refused_inputs(nels, tmp_path):
    ddf = dd.from_pandas(nels, npartitions=2)
    with pytest.raises(jaxhlm.FormulaError):  # a transformation that learns from the data
        jaxhlm.lmer("mathscore ~ center(ses) + (1 | sch_id)", ddf)
    with pytest.raises(jaxhlm.ColumnNotFoundError):
        jaxhlm.lmer("mathscore ~ sesx + (1 | sch_id)", ddf)
    with pytest.raises(jaxhlm.ArgumentError, match="does not exist"):
        jaxhlm.lmer(NELS_RS, [str(tmp_path / "missing.parquet")])
    with pytest.raises(jaxhlm.ArgumentError, match="format"):
        p = tmp_path / "x.json"
        p.write_text("{}")
        jaxhlm.lmer(NELS_RS, [str(p)])
