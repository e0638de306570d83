"""Satterthwaite degrees of freedom for fixed-effects contrasts (as lmerTest).

For a contrast ``l``, ``var(l'beta) = l' C(v) l`` with ``C(v) = sigma^2 (X'V^{-1}X)^{-1}`` a function
of the variance parameters ``v = (theta, sigma)``. With ``A = 2 H^{-1}`` the asymptotic covariance
of ``v`` (``H`` the Hessian of the deviance in ``v``, beta profiled) and ``g = d var / d v``:

    df = 2 var^2 / (g' A g)        (Kuznetsova, Brockhoff & Christensen 2017, JSS 82(13))

lmerTest differentiates numerically; here ``H`` and ``dC/dv`` are exact (autodiff).
"""
from __future__ import annotations

import warnings

import jax
import numpy as np
import pandas as pd

from ..base.lazy import scipy  # submodules imported on first use
from ..base.config import jit
from ..engine._legacy_pls import beta_and_cov, objective_vp
from ..base.errors import JaxhlmWarning

__all__ = ["satterthwaite_parts", "satterthwaite_df", "coef_table"]


@jit(static_argnames=("struct", "reml"))
def _vp_derivatives(varpar, stats, struct, reml):
    H = jax.hessian(objective_vp)(varpar, stats, struct, reml)
    cov = lambda vp: beta_and_cov(vp[:-1], vp[-1], stats, struct)[1]  # noqa: E731
    J = jax.jacfwd(cov)(varpar)  # (p, p, m+1)
    return H, J, cov(varpar)


def satterthwaite_parts(model) -> dict:
    """Hessian of the deviance in (theta, sigma), ``A = 2 H^{-1}``, and the Jacobian of vcov."""
    varpar = np.concatenate([model.theta.to_numpy(), [model.sigma]])
    from ..base import programcache  # (a new process reuses the traced program)

    args = (np.asarray(varpar, dtype=np.float64), model._stats)
    H, J, C = jax.device_get(programcache.call(_vp_derivatives, "vp_derivatives", args,
                                               {"struct": model._struct, "reml": bool(model.reml)}))
    H = 0.5 * (H + H.T)
    w, V = np.linalg.eigh(H)
    note = None
    if not np.all(w > 1e-8 * max(1.0, np.max(np.abs(w)))):
        note = (
            "Hessian of the deviance in (theta, sigma) is not positive definite "
            f"(smallest eigenvalue {w.min():.3g}); Satterthwaite df use its positive part"
        )
        warnings.warn(note, JaxhlmWarning, stacklevel=3)
    winv = np.where(w > 1e-8 * max(1.0, np.max(np.abs(w))), 1.0 / np.where(w == 0, 1, w), 0.0)
    A = 2.0 * (V * winv) @ V.T
    return {"H": H, "A": A, "J": np.asarray(J), "C": np.asarray(C), "note": note}


def satterthwaite_df(model, L) -> np.ndarray:
    """Satterthwaite df of each row of the contrast matrix ``L`` (shape (k, p) or (p,))."""
    parts = model._satterthwaite
    L = np.atleast_2d(np.asarray(L, dtype=np.float64))
    C, J, A = parts["C"], parts["J"], parts["A"]
    var = np.einsum("ki,ij,kj->k", L, C, L)
    g = np.einsum("ki,ijm,kj->km", L, J, L)
    den = np.einsum("km,mn,kn->k", g, A, g)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, 2.0 * var**2 / den, np.inf)


def coef_table(model) -> pd.DataFrame:
    """Estimate, Std. Error, df, t value, Pr(>|t|) (Satterthwaite)."""
    beta = model.fixef
    se = model.se
    df = satterthwaite_df(model, np.eye(model.p))
    t = beta.to_numpy() / se.to_numpy()
    pval = 2.0 * scipy.stats.t.sf(np.abs(t), df)
    return pd.DataFrame(
        {"Estimate": beta.to_numpy(), "Std. Error": se.to_numpy(), "df": df, "t value": t, "Pr(>|t|)": pval},
        index=beta.index,
    )
