"""The distribution functions of p-values and intervals, from ``scipy.special``.

Arguments in ``scipy.stats``' order (``t_sf(x, df)`` is ``scipy.stats.t.sf(x, df)``), the same
values (to the last bits: they are the same Cephes routines), and ``nan`` where
``scipy.stats`` gives ``nan`` (degrees of freedom <= 0 or ``nan``; F with infinite
denominator degrees of freedom is ``nan`` here). ``scipy.stats`` takes
0.6-1.5 s to import; ``scipy.special`` is already loaded with JAX, so a first summary, anova
or power analysis in a new process does not pay for it.
"""
from __future__ import annotations

import numpy as np

from .lazy import scipy

__all__ = ["t_sf", "t_ppf", "norm_sf", "norm_ppf", "chi2_sf", "f_sf", "beta_ppf"]


def _valid(*dfs):
    ok = True
    for d in dfs:
        ok = ok & (np.asarray(d, dtype=np.float64) > 0)
    return ok


def _out(value, ok):
    value = np.where(ok, value, np.nan)
    return value[()] if np.ndim(value) == 0 else value


def t_sf(x, df):
    """``P(T > x)``, T Student's t with ``df`` degrees of freedom."""
    return _out(scipy.special.stdtr(df, -np.asarray(x, dtype=np.float64)), _valid(df))


def t_ppf(q, df):
    """The ``q`` quantile of Student's t with ``df`` degrees of freedom."""
    q = np.asarray(q, dtype=np.float64)
    v = np.where(q == 0.0, -np.inf, scipy.special.stdtrit(df, q))  # stdtrit(df, 0) is +inf
    return _out(v, _valid(df))


def norm_sf(x):
    """``P(Z > x)``, Z standard normal."""
    return _out(scipy.special.ndtr(-np.asarray(x, dtype=np.float64)), True)


def norm_ppf(q):
    """The ``q`` quantile of the standard normal."""
    return _out(scipy.special.ndtri(q), True)


def chi2_sf(x, df):
    """``P(X > x)``, X chi-squared with ``df`` degrees of freedom."""
    return _out(scipy.special.chdtrc(df, x), _valid(df))


def f_sf(x, dfn, dfd):
    """``P(F > x)``, F with ``(dfn, dfd)`` degrees of freedom."""
    return _out(scipy.special.fdtrc(dfn, dfd, x), _valid(dfn, dfd))


def beta_ppf(q, a, b):
    """The ``q`` quantile of the beta distribution with shapes ``a``, ``b``."""
    return _out(scipy.special.betaincinv(a, b, q), _valid(a, b))
