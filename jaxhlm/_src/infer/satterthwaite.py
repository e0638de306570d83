"""Satterthwaite degrees of freedom for fixed-effects contrasts (as lmerTest).

For a contrast ``l``, ``var(l'beta) = l' C(v) l`` with ``C(v) = sigma^2 (X'V^{-1}X)^{-1}`` a function
of the variance parameters ``v = (theta, sigma)``. With ``A = 2 H^{-1}`` the asymptotic covariance
of ``v`` (``H`` the Hessian of the deviance in ``v``, beta profiled) and ``g = d var / d v``:

    df = 2 var^2 / (g' A g)        (Kuznetsova, Brockhoff & Christensen 2017, JSS 82(13))

lmerTest differentiates numerically; here ``H`` comes from the exact gradient of the engine's
criterion and ``dC/dv`` from ``C``, both by Richardson-extrapolated central differences
(:func:`jaxhlm._src.engine.pls.vp_derivatives`; within 1e-10 of forward-over-reverse autodiff,
which compiled 2-3x longer). This module is the one place the
formula lives: single fits (:func:`coef_table`, contrasts, F tests) and batched refits
(:mod:`jaxhlm._src.optim.batch`) both call :func:`df_from_parts`.
"""
from __future__ import annotations

import jax
import numpy as np
import pandas as pd

from ..base.config import jit
from ..base.errors import JaxhlmWarning, warn
from ..base.lazy import scipy  # submodules imported on first use
from ..engine.pls import vp_derivatives

__all__ = ["positive_inverse", "df_from_parts", "original_parts", "centred_contrasts", "satterthwaite_parts", "satterthwaite_df",
           "coef_table"]


_vp_program = jit(vp_derivatives, static_argnames=("layout", "reml"))


def positive_inverse(H):
    """``A = 2 H^+`` on the positive eigenvalues of ``H`` (batched over leading axes), and whether
    ``H`` was positive definite."""
    H = 0.5 * (H + np.swapaxes(H, -1, -2))
    w, V = np.linalg.eigh(H)
    scale = np.maximum(1.0, np.max(np.abs(w), axis=-1, keepdims=True))
    pos = w > 1e-8 * scale
    winv = np.where(pos, 1.0 / np.where(w == 0, 1.0, w), 0.0)
    return 2.0 * np.einsum("...ij,...j,...kj->...ik", V, winv, V), np.all(pos, axis=-1)


def df_from_parts(A, J, C, L) -> np.ndarray:
    """Satterthwaite df ``2 var^2 / (g' A g)`` of each row of ``L (k, p)``; ``A (..., m, m)``,
    ``J (..., p, p, m)``, ``C (..., p, p)`` may carry leading batch axes."""
    L = np.atleast_2d(np.asarray(L, dtype=np.float64))
    var = np.einsum("ki,...ij,kj->...k", L, C, L)
    g = np.einsum("ki,...ijm,kj->...km", L, J, L)
    with np.errstate(divide="ignore", invalid="ignore"):
        # 2 / (h'A h) with h = g / var: the same number, without squaring var (which overflows
        # for a response scaled by 1e151)
        h = np.where((var != 0)[..., None], g / np.where(var != 0, var, 1.0)[..., None], g)
        den = np.einsum("...km,...mn,...kn->...k", h, A, h)
        return np.where(var != 0, np.where(den > 0, 2.0 / den, np.inf),
                        np.where(den > 0, 0.0, np.inf))


def original_parts(xf, H_c, J_c, C_c, A_c=None):
    """The Satterthwaite ingredients of the original columns from those of the preconditioned
    statistics (:class:`~jaxhlm._src.stats.suffstats.Xform`; leading batch axes allowed).

    The engine works with ``X_c = X A``, ``y_c = (y - X g) / s``: the variance parameters are
    ``(theta, sigma_c = sigma / s)`` and ``C = s^2 A C_c A'``, so with ``D = diag(1, ..., 1, 1/s)``

        H = D H_c D,   A = D^{-1} A_c D^{-1},   dC/dtheta = s^2 A (dC_c/dtheta) A',
        dC/dsigma = s A (dC_c/dsigma_c) A'.

    ``A_c = 2 H_c^+`` is best formed before the transform (it is then better conditioned).
    """
    s = float(xf.s)
    Am = np.asarray(xf.A, dtype=np.float64)
    H_c, J_c, C_c = (np.asarray(v, dtype=np.float64) for v in (H_c, J_c, C_c))
    m1 = H_c.shape[-1]
    d = np.ones(m1)
    d[-1] = 1.0 / s
    H = H_c * d[:, None] * d[None, :]
    C = s**2 * np.einsum("ij,...jk,lk->...il", Am, C_c, Am)
    J = np.einsum("ij,...jkm,lk->...ilm", Am, J_c, Am) * (s**2 * d)
    if A_c is None:
        return H, J, C
    return H, np.asarray(A_c) / d[:, None] / d[None, :], J, C


def centred_contrasts(L, Am) -> np.ndarray:
    """The rows of ``L A`` (contrasts of the preconditioned coefficients), each divided by its
    largest absolute entry: the df do not depend on the scale of a contrast, and ``A`` holds
    ``1/sd`` of every column (1e170 for a column times 1e-170)."""
    Lc = np.atleast_2d(np.asarray(L, dtype=np.float64)) @ np.asarray(Am, dtype=np.float64)
    mx = np.max(np.abs(Lc), axis=1, keepdims=True) if Lc.shape[1] else np.ones((Lc.shape[0], 1))
    return Lc / np.where(mx > 0, mx, 1.0)


def satterthwaite_parts(model) -> dict:
    """``H``, ``A = 2 H^{-1}``, ``J`` and ``C`` at the fit, in the original columns (cached in
    ``model.cache``); ``"centred"``: ``(A_c, J_c, C_c, A)`` of the preconditioned statistics
    (:func:`original_parts`), from which :func:`satterthwaite_df` computes the df of ``L`` as
    those of ``L A`` (no overflow or cancellation for badly scaled columns)."""
    found = model.cache.get("satterthwaite")
    if found is not None:
        return found
    from ..base import programcache  # (a new process reuses the traced program)

    xf = model.xform  # the engine's variance parameters are (theta, sigma / s)
    theta, stats = model.search_point  # df do not depend on how the covariance is written
    varpar = np.concatenate([np.asarray(theta, dtype=np.float64), [model.sigma / float(xf.s)]])
    args = (varpar, stats)
    H_c, J_c, C_c = jax.device_get(programcache.call(_vp_program, "vp_derivatives", args,
                                                     {"layout": model.layout, "reml": bool(model.reml)}))
    H_c = 0.5 * (np.asarray(H_c) + np.asarray(H_c).T)
    A_c, pd_ok = positive_inverse(H_c)
    H, A, J, C = original_parts(xf, H_c, J_c, C_c, A_c)
    note = None
    if not pd_ok:
        note = ("Hessian of the deviance in (theta, sigma) is not positive definite "
                f"(smallest eigenvalue {np.linalg.eigvalsh(H).min():.3g}); Satterthwaite df use its positive part")
        warn(note, JaxhlmWarning)
    out = {"H": H, "A": A, "J": np.asarray(J), "C": np.asarray(C), "note": note,
           "centred": (A_c, np.asarray(J_c), np.asarray(C_c), np.asarray(xf.A, dtype=np.float64))}
    model.cache["satterthwaite"] = out
    return out


def satterthwaite_df(model, L) -> np.ndarray:
    """Satterthwaite df of each row of the contrast matrix ``L`` (shape (k, p) or (p,))."""
    parts = satterthwaite_parts(model)
    A_c, J_c, C_c, Am = parts["centred"]  # the df are invariant: L C L' = s^2 (L A) C_c (L A)'
    return df_from_parts(A_c, J_c, C_c, centred_contrasts(L, Am))


def coef_table(model) -> pd.DataFrame:
    """Estimate, Std. Error, df, t value, Pr(>|t|) (Satterthwaite), as lmerTest's summary."""
    beta = model.fixef
    se = model.se
    df = satterthwaite_df(model, np.eye(model.p))
    t = beta.to_numpy() / se.to_numpy()
    pval = 2.0 * scipy.special.stdtr(df, -np.abs(t))  # scipy.special: no scipy.stats import at first summary
    return pd.DataFrame(
        {"Estimate": beta.to_numpy(), "Std. Error": se.to_numpy(), "df": df, "t value": t, "Pr(>|t|)": pval},
        index=beta.index,
    )
