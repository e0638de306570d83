"""Confidence and prediction intervals for predictions of a linear mixed model.

Analytic (``method="analytic"``), given the variance parameters ``(theta, sigma)``. In the
spherical scale ``b = Lambda u`` the mixed-model equations have the matrix
``C = [[X'X, B], [B', D]]`` with ``B = X'Z Lambda`` and ``D = Lambda'Z'Z Lambda + I``, and
``sigma^2 C^{-1}`` is the covariance of the prediction errors ``(beta_hat - beta, u_hat - u)``
(Henderson 1975). For a new row with fixed-effects row ``x`` and random-effects row ``z`` at
levels seen in the fit, ``w = Lambda'z``, the error of ``x'beta_hat + z'b_hat`` has variance

    PEV = sigma^2 w'D^{-1}w + (x - B D^{-1} w)' V (x - B D^{-1} w),     V = vcov(beta_hat),

(the block inverse of ``C``): lme4's conditional variance of the random effects plus the
fixed-effects part, with ``x`` corrected for the correlation of ``beta_hat`` and ``b_hat``.
Terms whose level is new (``allow_new_levels``) add their full variance ``z' G_f z``
(``G_f = sigma^2 T_f T_f'``); for ``interval="prediction"`` the random terms left out by
``re_form`` add theirs too (treated as independent of the estimates), and the residual
variance ``sigma^2`` is added. Limits ``fit -+ z_{(1+level)/2} sqrt(var)``: normal, since
``theta`` and ``sigma`` are taken as known (the intervals do not widen for their uncertainty).

With one grouping factor ``D`` is block diagonal by level and the cost is O(levels); with
several, ``D`` is formed densely (``Q`` random effects, ``Q <= MAX_Q``).

Simulation (``method="simulate"``), as merTools' ``predictInterval``: ``n_sims`` draws of
``beta ~ N(beta_hat, V)``, of every seen level's random effects from ``N(b_hat_l, condVar_l)``
independently, new levels from ``N(0, G_f)`` (merTools uses 0 there), and for prediction
intervals a residual ``N(0, sigma_s^2)`` with ``sigma_s^2 = pwrss / chi2_{n - npar}`` (merTools'
inverse gamma); limits are the empirical quantiles. It ignores the correlation of ``beta_hat``
and ``b_hat`` (as merTools), so its intervals differ slightly from the analytic ones.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..base.lazy import scipy  # submodules imported on first use
from ..base.errors import ArgumentError, InferenceError
from ..stats.layout import factor_columns
from .kenward_roger import MAX_Q, _full_z, _lambda, _z_layout, factor_T
from .predict import _as_frame, _selected_terms, new_design
from ..base import dist

__all__ = ["predict_interval"]


def term_offsets(design) -> list:
    """Column offset of every random term inside its factor's block."""
    offs = [0] * len(design.terms)
    for cols in factor_columns(design):
        for i, o in cols:
            offs[i] = o
    return offs


def _rows_by_factor(model, X, terms, n):
    """Per factor: (codes, z rows (n, q_f)) for the selected terms (columns of others are 0)."""
    d = model.design
    qf = [0] * len(d.factors)
    for td in d.terms:
        qf[td.factor] += td.p
    offs = term_offsets(d)
    zf = [np.zeros((n, q)) for q in qf]
    codes = [None] * len(d.factors)
    for i, Z, c in terms:
        td = d.terms[i]
        zf[td.factor][:, offs[i]:offs[i] + td.p] = Z
        codes[td.factor] = c
    return zf, codes


def _excluded_rows(model, newdata, sel) -> list:
    """z rows of the random terms not in ``sel`` (for their variance in prediction intervals)."""
    d = model.design
    others = [i for i in range(len(d.terms)) if i not in sel]
    if not others:
        return []
    _, terms, _ = new_design(model, newdata, others, True)
    zf, _ = _rows_by_factor(model, None, terms, len(newdata))
    return zf


def _pev_blocked(model, Xn, w, codes):
    """PEV pieces with one grouping factor: per-level blocks of D and B."""
    d = model.design
    s2 = model.sigma ** 2
    T = factor_T(model)[0]
    J = d.factors[0].nlevels
    q = T.shape[0]
    Zd = np.zeros((d.n, q))
    offs = term_offsets(d)
    for i, td in enumerate(d.terms):
        Zd[:, offs[i]:offs[i] + td.p] = td.Z
    c0 = d.factors[0].codes
    wt = np.ones(d.n) if d.weights is None else np.asarray(d.weights, dtype=np.float64)  # prior weights
    S = np.zeros((J, q, q))
    np.add.at(S, c0, wt[:, None, None] * Zd[:, :, None] * Zd[:, None, :])
    R = np.zeros((J, q, d.p))
    np.add.at(R, c0, wt[:, None, None] * Zd[:, :, None] * d.X[:, None, :])
    seen = codes >= 0
    cond = np.zeros(len(w))
    adj = np.zeros_like(Xn)
    if seen.any():
        cs = codes[seen]
        Dl = np.einsum("ki,jkl,lm->jim", T, S[cs], T) + np.eye(q)
        m = np.linalg.solve(Dl, w[seen][:, :, None])[:, :, 0]
        cond[seen] = s2 * np.einsum("ij,ij->i", w[seen], m)
        Bl = np.einsum("jkp,kl->jpl", R[cs], T)  # (rows, p, q): X_l'Z_l T
        adj[seen] = np.einsum("jpl,jl->jp", Bl, m)
    return cond, adj


def _pev_dense(model, Xn, wfull, max_q):
    d = model.design
    Z = _full_z(d)
    Q = Z.shape[1]
    if Q > max_q:
        raise InferenceError(
            f"analytic intervals with several grouping factors need dense {Q} x {Q} matrices (above "
            f"max_q={max_q}); use method='simulate' or pass a larger max_q"
        )
    s2 = model.sigma ** 2
    Lam = _lambda(model, Q)
    ZW = Z.T if d.weights is None else Z.T.multiply(np.asarray(d.weights, dtype=np.float64)[None, :]).tocsr()
    S = np.asarray((ZW @ Z).todense())  # Z'WZ (prior weights)
    D = Lam.T @ S @ Lam + np.eye(Q)
    B = np.asarray(ZW @ d.X).T @ Lam  # (p, Q)
    cf = scipy.linalg.cho_factor(D, lower=True)
    M = scipy.linalg.cho_solve(cf, wfull.T)  # (Q, m)
    cond = s2 * np.einsum("qm,qm->m", wfull.T, M)
    adj = (B @ M).T
    return cond, adj


def _analytic_var(model, newdata, sel, terms, Xn, max_q):
    d = model.design
    n = len(Xn)
    s2 = model.sigma ** 2
    Ts = factor_T(model)
    zf, codes = _rows_by_factor(model, Xn, terms, n)
    newvar = np.zeros(n)
    w_of = []
    for f, T in enumerate(Ts):
        c = codes[f]
        if c is None:
            w_of.append((None, None))
            continue
        w = zf[f] @ T  # rows of w' = z'T
        unseen = c < 0
        G = s2 * T @ T.T
        newvar += np.where(unseen, np.einsum("ij,jk,ik->i", zf[f], G, zf[f]), 0.0)
        w_of.append((np.where(unseen[:, None], 0.0, w), c))
    if len(Ts) == 1:
        w, c = w_of[0]
        if w is None:
            cond, adj = np.zeros(n), np.zeros_like(Xn)
        else:
            cond, adj = _pev_blocked(model, Xn, w, c)
    else:
        offs, qf, Q = _z_layout(d)
        wfull = np.zeros((n, Q))
        for f, (w, c) in enumerate(w_of):
            if w is None:
                continue
            ok = c >= 0
            rows = np.nonzero(ok)[0]
            for j in range(qf[f]):
                wfull[rows, offs[f] + c[ok] * qf[f] + j] = w[ok, j]
        cond, adj = _pev_dense(model, Xn, wfull, max_q)
    V = model.vcov.to_numpy()
    xa = Xn - adj
    fixed = np.einsum("ij,jk,ik->i", xa, V, xa)
    return fixed + cond + newvar


def _simulate(model, terms, Xn, interval, level, n_sims, seed, excl):
    d = model.design
    rng = np.random.default_rng(seed)
    n = len(Xn)
    beta = model.fixef.to_numpy()
    V = model.vcov.to_numpy()
    sims = rng.multivariate_normal(beta, V, size=n_sims, method="cholesky") @ Xn.T  # (S, n)
    s2 = model.sigma ** 2
    Ts = factor_T(model)
    zf, codes = _rows_by_factor(model, Xn, terms, n)
    blocks = model.factor_modes
    condvar = model.ranef_condvar
    for f, T in enumerate(Ts):
        c = codes[f]
        if c is None:
            continue
        q = T.shape[0]
        cv = condvar[d.factors[f].name]
        G = s2 * T @ T.T
        for lev in np.unique(c):
            rows = np.nonzero(c == lev)[0]
            mean, cov = (blocks[f][lev], cv[lev]) if lev >= 0 else (np.zeros(q), G)
            b = rng.multivariate_normal(mean, cov, size=n_sims, method="eigh")  # (S, q)
            sims[:, rows] += b @ zf[f][rows].T
    if interval == "prediction":
        for f, z in enumerate(excl):
            G = s2 * Ts[f] @ Ts[f].T
            sd = np.sqrt(np.einsum("ij,jk,ik->i", z, G, z))
            sims += rng.standard_normal((n_sims, n)) * sd
        r2 = s2 * (d.n - d.p if model.reml else d.n)  # penalised residual sum of squares
        resid_df = d.n - model.npar
        sig = np.sqrt(r2 / rng.chisquare(resid_df, size=n_sims))
        sims += rng.standard_normal((n_sims, n)) * sig[:, None]
    a = (1 - level) / 2
    return np.quantile(sims, a, axis=0), np.quantile(sims, 1 - a, axis=0), sims.std(axis=0, ddof=1)


def predict_interval(model, newdata=None, re_form=None, allow_new_levels: bool = True, interval="prediction",
                     level: float = 0.95, method: str = "analytic", n_sims: int = 1000, seed=None,
                     max_q: int = MAX_Q) -> pd.DataFrame:
    """Predictions with confidence or prediction intervals (see the module docstring).

    Parameters
    ----------
    model : LinearMixedModel
    newdata : DataFrame, optional
        Default: the rows of the fit (its data must be held by the model).
    re_form, allow_new_levels
        As :func:`jaxhlm._src.infer.predict.predict`.
    interval : {"confidence", "prediction"}
        ``"confidence"``: for the (conditional) mean ``x'beta + z'b``; ``"prediction"``: for a new
        observation (adds the residual variance and the variance of random terms left out).
    level : float
    method : {"analytic", "simulate"}
    n_sims, seed
        Simulation size and seed (``method="simulate"``).

    Returns
    -------
    DataFrame
        ``fit`` (the prediction), ``se`` (standard deviation of the prediction error; for
        ``"simulate"`` the simulations' SD), ``lwr``, ``upr``; indexed like ``newdata``.
    """
    interval = str(interval).lower()
    if interval not in ("confidence", "prediction"):
        raise ArgumentError(f"interval must be 'confidence' or 'prediction', got {interval!r}")
    if not 0 < level < 1:
        raise ArgumentError(f"level must be between 0 and 1, got {level!r}")
    method = str(method).lower()
    if method not in ("analytic", "simulate"):
        raise ArgumentError(f"method must be 'analytic' or 'simulate', got {method!r}")
    if newdata is None:
        from .fixed_terms import model_frame

        newdata = model_frame(model)
    newdata = _as_frame(newdata)
    from .predict import predict

    fit = predict(model, newdata=newdata, re_form=re_form, allow_new_levels=allow_new_levels)
    sel = _selected_terms(model, re_form)
    Xn, terms, _ = new_design(model, newdata, sel, allow_new_levels)
    excl = _excluded_rows(model, newdata, sel) if interval == "prediction" else []
    if method == "analytic":
        var = _analytic_var(model, newdata, sel, terms, Xn, max_q)
        if interval == "prediction":
            s2 = model.sigma ** 2
            for f, z in enumerate(excl):
                T = factor_T(model)[f]
                var = var + np.einsum("ij,jk,ik->i", z, s2 * T @ T.T, z)
            var = var + s2
        se = np.sqrt(var)
        zq = dist.norm_ppf(0.5 + level / 2)
        lwr, upr = fit.to_numpy() - zq * se, fit.to_numpy() + zq * se
    else:
        if int(n_sims) < 2:
            raise ArgumentError(f"n_sims must be at least 2, got {n_sims!r}")
        lwr, upr, se = _simulate(model, terms, Xn, interval, level, int(n_sims), seed, excl)
    out = pd.DataFrame({"fit": fit.to_numpy(), "se": se, "lwr": lwr, "upr": upr}, index=newdata.index)
    out.attrs["new_levels"] = fit.attrs.get("new_levels", {})
    out.attrs["interval"], out.attrs["level"], out.attrs["method"] = interval, level, method
    return out
