"""Satterthwaite degrees of freedom for fixed-effects contrasts (as lmerTest).

For a contrast ``l``, ``var(l'beta) = l' C(v) l`` with ``C(v) = sigma^2 (X'V^{-1}X)^{-1}`` a function
of the variance parameters ``v = (theta, sigma)``. With ``A = 2 H^{-1}`` the asymptotic covariance
of ``v`` (``H`` the Hessian of the deviance in ``v``, beta profiled) and ``g = d var / d v``:

    df = 2 var^2 / (g' A g)        (Kuznetsova, Brockhoff & Christensen 2017, JSS 82(13))

lmerTest differentiates numerically; here ``H`` and ``dC/dv`` are exact (reverse-over-reverse
autodiff of the engine's criterion, :func:`jaxhlm._src.engine.pls.vp_derivatives`). This module is the one place the
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

__all__ = ["positive_inverse", "df_from_parts", "satterthwaite_parts", "satterthwaite_df",
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
    den = np.einsum("...km,...mn,...kn->...k", g, A, g)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, 2.0 * var**2 / den, np.inf)


def satterthwaite_parts(model) -> dict:
    """``H``, ``A = 2 H^{-1}``, ``J`` and ``C`` at the fit (cached in ``model.cache``)."""
    found = model.cache.get("satterthwaite")
    if found is not None:
        return found
    from ..base import programcache  # (a new process reuses the traced program)

    varpar = np.concatenate([np.asarray(model.opt.theta, dtype=np.float64), [model.sigma]])
    args = (varpar, model.stats)
    H, J, C = jax.device_get(programcache.call(_vp_program, "vp_derivatives", args,
                                               {"layout": model.layout, "reml": bool(model.reml)}))
    H = 0.5 * (np.asarray(H) + np.asarray(H).T)
    A, pd_ok = positive_inverse(H)
    note = None
    if not pd_ok:
        note = ("Hessian of the deviance in (theta, sigma) is not positive definite "
                f"(smallest eigenvalue {np.linalg.eigvalsh(H).min():.3g}); Satterthwaite df use its positive part")
        warn(note, JaxhlmWarning)
    out = {"H": H, "A": A, "J": np.asarray(J), "C": np.asarray(C), "note": note}
    model.cache["satterthwaite"] = out
    return out


def satterthwaite_df(model, L) -> np.ndarray:
    """Satterthwaite df of each row of the contrast matrix ``L`` (shape (k, p) or (p,))."""
    parts = satterthwaite_parts(model)
    return df_from_parts(parts["A"], parts["J"], parts["C"], L)


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
