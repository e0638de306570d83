"""base.dist: the distribution functions of p-values and intervals equal scipy.stats'."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.stats as st

from jaxhlm._src.base import dist

X = np.array([-40.0, -3.0, -0.5, 0.0, 0.7, 2.5, 9.0, 1e3, np.inf, -np.inf, np.nan])
DF = [0.3, 1.0, 2.0, 3.7, 25.0, 1e4, 1e12, np.inf, 0.0, -1.0, np.nan]


@pytest.mark.parametrize("df", DF)
def test_t_and_chi2_equal_scipy_stats(df):
    np.testing.assert_allclose(dist.t_sf(X, df), st.t.sf(X, df), rtol=1e-13, equal_nan=True)
    q = np.array([1e-12, 0.025, 0.5, 0.975, 1 - 1e-10, 0.0, 1.0, np.nan])
    np.testing.assert_allclose(dist.t_ppf(q, df), st.t.ppf(q, df), rtol=1e-12, equal_nan=True)
    xx = np.abs(X)
    if np.isinf(df):  # chi-squared with infinite df: not a case of jaxhlm's (scipy.stats: 0 at inf)
        xx = xx[np.isfinite(xx)]
    np.testing.assert_allclose(dist.chi2_sf(xx, df), st.chi2.sf(xx, df), rtol=1e-12, equal_nan=True)


def test_normal_f_beta_equal_scipy_stats():
    np.testing.assert_allclose(dist.norm_sf(X), st.norm.sf(X), rtol=1e-14, equal_nan=True)
    q = np.array([1e-300, 1e-12, 0.025, 0.5, 0.975, 1.0, 0.0, np.nan])
    np.testing.assert_allclose(dist.norm_ppf(q), st.norm.ppf(q), rtol=1e-14, equal_nan=True)
    for dfn, dfd in [(1, 1), (2, 7.5), (3.3, 1e3), (0, 5), (2, -1)]:
        x = np.array([0.0, 0.3, 1.0, 4.0, 1e4, np.nan])
        np.testing.assert_allclose(dist.f_sf(x, dfn, dfd), st.f.sf(x, dfn, dfd), rtol=1e-12, equal_nan=True)
    for a, b in [(1, 1), (3, 10), (0.5, 200), (999, 2), (0, 3)]:
        q = np.array([0.0, 0.025, 0.5, 0.975, 1.0])
        np.testing.assert_allclose(dist.beta_ppf(q, a, b), st.beta.ppf(q, a, b), rtol=1e-10, atol=1e-300,
                                   equal_nan=True)


def test_scalars_in_scalars_out():
    assert isinstance(dist.t_sf(2.0, 5.0), float) or np.ndim(dist.t_sf(2.0, 5.0)) == 0
    assert np.ndim(dist.chi2_sf(3.0, 0.0)) == 0 and np.isnan(dist.chi2_sf(3.0, 0.0))
    assert float(dist.beta_ppf(0.5, 2, 2)) == pytest.approx(0.5)
