"""Tests of linear contrasts of the fixed effects (lmerTest's ``contest``).

One contrast ``l`` (a vector): ``t = (l'beta - rhs) / sqrt(l' C l)`` with ``C = vcov(beta)`` and
Satterthwaite df (:func:`~jaxhlm._src.satterthwaite.satterthwaite_df`), or Kenward-Roger
(adjusted ``C`` and df, REML fits only).

Several contrasts ``L`` (q rows) tested jointly (lmerTest's ``contestMD``): with the
eigendecomposition ``L C L' = P diag(d) P'`` (eigenvalues below ``sqrt(eps) d_max`` dropped, q
the number kept),

    F = (1/q) sum_m (p_m' (L beta - rhs))^2 / d_m,        p_m' L the m-th rotated contrast,
    nu_m = 2 d_m^2 / (g_m' A g_m)                          (Satterthwaite df of each),
    DenDF = 2 E / (E - q),  E = sum_m nu_m / (nu_m - 2)    (2 if any nu_m <= 2)

(Kuznetsova, Brockhoff & Christensen 2017, JSS 82(13), sect. 3.3). With
``ddf="kenward-roger"``: pbkrtest's scaled F and df (:func:`~jaxhlm._src.kenward_roger.kr_test`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..base.errors import ArgumentError
from .satterthwaite import satterthwaite_parts
from ..base import dist

__all__ = ["contest", "contrast_matrix", "fstat_ddf"]


def contrast_matrix(model, L) -> tuple:
    """``L`` as a float array of shape (k, p), and whether it was given as one contrast."""
    names = list(model.fixef.index)
    p = len(names)

    def from_mapping(mp):
        row = np.zeros(p)
        for k, v in mp.items():
            if k not in names:
                raise ArgumentError(f"contrast names coefficient {k!r}, which is not a fixed effect of the model ({names})")
            row[names.index(k)] = float(v)
        return row

    if isinstance(L, dict):
        return from_mapping(L)[None, :], True
    if isinstance(L, pd.Series):
        return from_mapping(L.to_dict())[None, :], True
    if isinstance(L, pd.DataFrame):
        rows = [from_mapping(r.to_dict()) for _, r in L.iterrows()]
        return np.array(rows).reshape(len(rows), p), False
    try:
        arr = np.asarray(L, dtype=np.float64)
    except (TypeError, ValueError):
        raise ArgumentError(f"L must be numeric (a vector, matrix, dict or DataFrame of coefficients), got {type(L).__name__}") from None
    single = arr.ndim == 1
    arr = np.atleast_2d(arr)
    if arr.ndim != 2 or arr.shape[1] != p:
        raise ArgumentError(f"L must have {p} columns, one per fixed effect ({names}); got shape {np.shape(L)}")
    if not np.all(np.isfinite(arr)):
        raise ArgumentError("L has missing or infinite entries")
    return arr, single


def fstat_ddf(nu, tol: float = 1e-8) -> float:
    """Denominator df of an F statistic from the df of its independent t statistics (lmerTest)."""
    nu = np.asarray(nu, dtype=np.float64)
    if nu.size == 1:
        return float(nu[0])
    if np.all(np.abs(np.diff(nu)) < tol):
        return float(np.mean(nu))
    if np.any(nu <= 2):
        return 2.0
    E = float(np.sum(nu / (nu - 2)))
    return 2 * E / (E - nu.size)


def _t_table(model, L, rhs, ddf, level):
    beta = model.fixef.to_numpy()
    if ddf == "kenward-roger":
        from .kenward_roger import _cached_parts, kr_df

        C = _cached_parts(model)["PhiA"]
        df = kr_df(model, L)
    else:
        from .satterthwaite import satterthwaite_df

        C = model.vcov.to_numpy()
        df = satterthwaite_df(model, L)
    est = L @ beta - rhs
    se = np.sqrt(np.einsum("ki,ij,kj->k", L, C, L))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = est / se
    q = dist.t_ppf(0.5 + level / 2, df)
    return pd.DataFrame(
        {"Estimate": est, "Std. Error": se, "df": df, "t value": t, "lower": est - q * se, "upper": est + q * se,
         "Pr(>|t|)": 2 * dist.t_sf(np.abs(t), df)}
    )


def _f_table(model, L, rhs, ddf):
    sigma2 = model.sigma**2
    if ddf == "kenward-roger":
        from .kenward_roger import kr_test

        r = kr_test(model, L, rhs)
        F, q, den, p = r["F"], r["ndf"], r["ddf"], r["p"]
        ms = r["F_unscaled"] * sigma2  # lmerTest reports the unscaled Wald mean square
    else:
        parts = satterthwaite_parts(model)
        C, J, A = parts["C"], parts["J"], parts["A"]
        beta = model.fixef.to_numpy()
        d, P = np.linalg.eigh(L @ C @ L.T)
        order = np.argsort(d)[::-1]
        d, P = d[order], P[:, order]
        keep = d > max(np.sqrt(np.finfo(float).eps) * d[0], 0.0)
        q = int(keep.sum())
        if q == 0:
            raise ArgumentError("the contrasts in L have zero variance (L C L' is 0); nothing to test")
        PtL = (P.T @ L)[:q]
        Ptr = (P.T @ rhs)[:q]
        t2 = (PtL @ beta - Ptr) ** 2 / d[:q]
        F = float(np.sum(t2) / q)
        g = np.einsum("mi,ijk,mj->mk", PtL, J, PtL)
        nu = 2 * d[:q] ** 2 / np.einsum("mk,kl,ml->m", g, A, g)
        den = fstat_ddf(nu)
        p = float(dist.f_sf(F, q, den))
        ms = F * sigma2
    return pd.DataFrame(
        {"Sum Sq": [ms * q], "Mean Sq": [ms], "NumDF": [q], "DenDF": [den], "F value": [F], "Pr(>F)": [p]}
    )


def contest(model, L, rhs=0.0, joint: bool = True, ddf: str = "satterthwaite", level: float = 0.95) -> pd.DataFrame:
    """Test linear contrasts ``L beta = rhs`` of the fixed effects (lmerTest's ``contest``).

    Parameters
    ----------
    model : LinearMixedModel
    L : array-like (p,) or (k, p), dict, pandas.Series or DataFrame
        One contrast (a vector, or a dict/Series of coefficient name -> weight) gives a t test;
        a matrix (or DataFrame with coefficient-name columns) of several rows gives one F test
        of all rows jointly (``joint=True``) or a t test per row (``joint=False``).
    rhs : float or array-like, default 0
        Hypothesised value(s) of ``L beta``.
    joint : bool, default True
    ddf : {"satterthwaite", "kenward-roger"}
        Denominator degrees of freedom; Kenward-Roger needs a REML fit.
    level : float
        Confidence level of the ``lower``/``upper`` columns of t tests.

    Returns
    -------
    pandas.DataFrame
        t tests: ``Estimate, Std. Error, df, t value, lower, upper, Pr(>|t|)``, one row per
        contrast; F test: ``Sum Sq, Mean Sq, NumDF, DenDF, F value, Pr(>F)``
        (``Mean Sq = F sigma^2``, as lmerTest).
    """
    ddf = str(ddf).lower().replace("_", "-")
    if ddf in ("kr", "kenward-roger", "kenwardroger"):
        ddf = "kenward-roger"
    elif ddf != "satterthwaite":
        raise ArgumentError(f"ddf must be 'satterthwaite' or 'kenward-roger', got {ddf!r}")
    if not 0 < level < 1:
        raise ArgumentError(f"level must be between 0 and 1, got {level!r}")
    Lm, single = contrast_matrix(model, L)
    rhs = np.broadcast_to(np.asarray(rhs, dtype=np.float64), (Lm.shape[0],)).copy()
    if single or not joint:
        out = _t_table(model, Lm, rhs, ddf, level)
        if isinstance(L, pd.DataFrame):
            out.index = L.index
        return out
    return _f_table(model, Lm, rhs, ddf)
