"""Raudenbush & Bryk's chi-square test that a random coefficient varies (HLM's variance test).

Raudenbush & Bryk (2002), *Hierarchical Linear Models*, 2nd ed., pp. 63-64 (eq. 3.103): for a
level-1 coefficient ``beta_q`` with a random effect, and each group ``j`` with enough data,

    chi2_q = sum_j (beta_hat_qj - sum_s gamma_hat_qs W_sj)^2 / V_hat_qqj,    df = J_q - S_q - 1,

where ``beta_hat_j = (X_j'X_j)^{-1} X_j'y_j`` is the group's own OLS fit of the level-1 model,
``V_hat_j = sigma_hat^2 (X_j'X_j)^{-1}`` its sampling covariance (``sigma_hat^2`` the model's
residual variance), ``sum_s gamma_hat_qs W_sj`` the fixed-effects prediction of the coefficient
from the level-2 predictors, ``J_q`` the number of groups used and ``S_q`` the number of
level-2 predictors of ``beta_q``. Groups with fewer rows than level-1 coefficients, or with a
singular ``X_j'X_j``, are omitted (and counted).

Reading an lme4 formula as a two-level model: the level-1 coefficients are the columns of the
random-effects terms of the grouping factor, plus every fixed-effects column that varies within
groups and is not a group-constant multiple of one of them (level-1 predictors with fixed
slopes). A fixed-effects column ``x_k`` that equals ``c_kj z_q`` within every group ``j``
(``c_kj`` constant in the group; e.g. a level-2 variable for the intercept ``z = 1``, or a
cross-level interaction ``x:w`` for the slope of ``x``) is a level-2 predictor of ``beta_q``
with ``W_kj = c_kj``. With several grouping factors each is tested on its own (the other
factors' random effects are ignored, as in a two-level HLM).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..stats.layout import factor_columns
from ..base import dist

__all__ = ["ranef_chisq"]

_REL_TOL = 1e-8
_SING_TOL = 1e-10


def _seg_sum(codes, J, v):
    return np.bincount(codes, weights=v, minlength=J)[:J]


def _group_multiple(x, z, codes, J):
    """If ``x = c_j z`` within every group, return ``c`` (J,), else None."""
    zz = _seg_sum(codes, J, z * z)
    xz = _seg_sum(codes, J, x * z)
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.where(zz > 0, xz / zz, 0.0)
    res = x - c[codes] * z
    scale = max(np.max(np.abs(x)), 1e-300)
    if np.max(np.abs(res)) <= _REL_TOL * scale * 10:
        return c
    return None


def _level1_structure(design, f):
    """Level-1 columns for factor ``f`` and the map fixed column -> (level-1 column, c_kj)."""
    codes = design.factors[f].codes
    J = design.factors[f].nlevels
    zcols, znames = [], []
    for i, _ in factor_columns(design)[f]:
        td = design.terms[i]
        for c in range(td.p):
            zcols.append(td.Z[:, c])
            znames.append(td.names[c])
    nrand = len(zcols)
    cols = list(zcols)
    names = list(znames)
    mapping = {}  # fixed column index -> (level-1 column index, W (J,))
    # main effects before interactions, so that x:w finds its level-1 base x
    order = sorted(range(design.p), key=lambda k: design.fixef_names[k].count(":"))
    for k in order:
        x = design.X[:, k]
        found = None
        for q in range(len(cols)):
            c = _group_multiple(x, cols[q], codes, J)
            if c is not None:
                found = (q, c)
                break
        if found is None:  # a new level-1 predictor with a fixed slope
            cols.append(x)
            names.append(design.fixef_names[k])
            found = (len(cols) - 1, np.ones(J))
        mapping[k] = found
    return np.column_stack(cols), names, nrand, mapping


def _group_ols(Xl, y, codes, J):
    """Per group: X_j'X_j (J,K,K), X_j'y_j (J,K) and row counts, by segment sums."""
    K = Xl.shape[1]
    XtX = np.empty((J, K, K))
    for a in range(K):
        for b in range(a, K):
            XtX[:, a, b] = XtX[:, b, a] = _seg_sum(codes, J, Xl[:, a] * Xl[:, b])
    Xty = np.column_stack([_seg_sum(codes, J, Xl[:, a] * y) for a in range(K)])
    nj = np.bincount(codes, minlength=J)[:J]
    return XtX, Xty, nj


def ranef_chisq(model) -> pd.DataFrame:
    """HLM's chi-square tests that each random coefficient varies between groups.

    Parameters
    ----------
    model : LinearMixedModel

    Returns
    -------
    pandas.DataFrame
        Indexed by (grouping factor, coefficient), one row per random coefficient, with columns
        ``chi2``, ``df``, ``p-value``, ``groups used``, ``groups omitted`` (too few rows or a
        singular ``X_j'X_j``) and ``level-2 predictors`` (the fixed effects predicting it).
    """
    d = model.design
    gamma = model.fixef.to_numpy()
    s2 = model.sigma**2
    rows = []
    index = []
    for f, fac in enumerate(d.factors):
        codes, J = fac.codes, fac.nlevels
        Xl, names, nrand, mapping = _level1_structure(d, f)
        K = Xl.shape[1]
        XtX, Xty, nj = _group_ols(Xl, d.y, codes, J)
        dg = np.sqrt(np.maximum(np.einsum("jii->ji", XtX), 0.0))
        ok = (nj >= K) & np.all(dg > 0, axis=1)
        Rn = XtX / np.where(dg > 0, dg, 1.0)[:, :, None] / np.where(dg > 0, dg, 1.0)[:, None, :]
        ev = np.linalg.eigvalsh(np.where(ok[:, None, None], Rn, np.eye(K)))
        ok &= ev[:, 0] > _SING_TOL * np.maximum(ev[:, -1], 1.0)
        used = np.nonzero(ok)[0]
        inv = np.linalg.inv(XtX[used])
        bhat = np.einsum("jab,jb->ja", inv, Xty[used])
        for q in range(nrand):
            preds = [k for k, (qq, _) in mapping.items() if qq == q]
            fitted = np.zeros(len(used))
            for k in preds:
                fitted += gamma[k] * mapping[k][1][used]
            chi2 = float(np.sum((bhat[:, q] - fitted) ** 2 / (s2 * inv[:, q, q])))
            df = len(used) - len(preds)
            p = float(dist.chi2_sf(chi2, df)) if df > 0 else np.nan
            index.append((fac.name, names[q]))
            rows.append({"chi2": chi2, "df": df, "p-value": p, "groups used": len(used),
                         "groups omitted": J - len(used),
                         "level-2 predictors": [d.fixef_names[k] for k in preds]})
    out = pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(index, names=["group", "coefficient"]))
    return out
