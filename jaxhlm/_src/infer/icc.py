"""Intraclass correlations.

* :func:`icc` is merTools' ``ICC(outcome, group, data)``: the REML null model
  ``outcome ~ 1 + (1 | group)`` and ``tau00 / (tau00 + sigma^2)``.
* :func:`model_icc` (``fit.icc()``) gives the adjusted and conditional ICC of any fitted model
  as the R package *performance* defines them (Nakagawa, Johnson & Schielzeth 2017):

      adjusted    = var_random / (var_random + sigma^2)
      conditional = var_random / (var_fixed + var_random + sigma^2)

  with ``var_fixed`` the sample variance (denominator n - 1) of ``X beta`` over the rows and
  ``var_random`` the sum over random terms of the mean over rows of ``z_i' Sigma_t z_i``
  (Johnson 2014; for a random intercept this is just its variance ``tau00``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..base.errors import ArgumentError, ColumnNotFoundError

__all__ = ["icc", "model_icc", "variance_components"]


def _quote(name: str) -> str:
    return name if name.replace("_", "a").replace(".", "a").isalnum() and not name[0].isdigit() else f"`{name}`"


def icc(data, outcome: str, group: str) -> float:
    """merTools' ICC: share of the variance between the levels of ``group``.

    Parameters
    ----------
    data : pandas.DataFrame
    outcome : str
        Response column.
    group : str
        Grouping column.

    Returns
    -------
    float
        ``tau00 / (tau00 + sigma^2)`` of the REML fit of ``outcome ~ 1 + (1 | group)``.
    """
    from ..model.pipeline import fit_design, lformula, mk_devfun

    if not isinstance(data, pd.DataFrame):
        raise ArgumentError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    for col, what in ((outcome, "outcome"), (group, "group")):
        if not isinstance(col, str):
            raise ArgumentError(f"{what} must be a column name (str), got {col!r}")
        if col not in data.columns:
            raise ColumnNotFoundError(col, data.columns, f"icc() {what}")
    design = lformula(f"{_quote(outcome)} ~ 1 + (1 | {_quote(group)})", data)
    fit = fit_design(design, *mk_devfun(design), True)
    tau00 = float(fit.varcorr["vcov"].iloc[0])
    return tau00 / (tau00 + fit.sigma**2)


def variance_components(model) -> dict:
    """``var_fixed``, ``var_random`` and ``var_residual`` as *performance* / *insight* compute them."""
    d = model.design
    xb = d.X @ model.fixef.to_numpy()
    var_fixed = float(np.var(xb, ddof=1)) if d.n > 1 else 0.0
    var_random = 0.0
    for td, (_, _, S) in zip(d.terms, model.term_covariances()):
        # mean over rows of diag(Z_t Sigma_t Z_t')
        var_random += float(np.mean(np.einsum("ij,jk,ik->i", td.Z, S, td.Z)))
    return {"var_fixed": var_fixed, "var_random": var_random, "var_residual": model.sigma**2}


def model_icc(model) -> pd.Series:
    """Adjusted and conditional ICC of a fitted model (R's ``performance::icc``).

    Returns
    -------
    pandas.Series with ``adjusted`` and ``conditional``.
        Without fixed effects beyond the intercept both are equal. For a single random
        intercept, ``adjusted`` is ``tau00 / (tau00 + sigma^2)``.
    """
    vc = variance_components(model)
    vr, vf, ve = vc["var_random"], vc["var_fixed"], vc["var_residual"]
    return pd.Series(
        {"adjusted": vr / (vr + ve), "conditional": vr / (vf + vr + ve)},
        name="icc",
    )
