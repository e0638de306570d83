"""Likelihood-ratio tests of nested models (lme4's ``anova(m1, m2, ...)``).

The models are ordered by their number of parameters (stable, as R's ``order``); each row
after the first is tested against the row before it:

    Chisq = 2 max(0, logLik_k - logLik_{k-1}),   Df = npar_k - npar_{k-1},
    Pr(>Chisq) = P(chi2_Df > Chisq).

REML fits are refitted by maximum likelihood first (lme4's ``refit = TRUE``; a likelihood
ratio of REML fits with different fixed effects is meaningless).

For a test of one variance component (adding a random effect together with its covariances,
e.g. a random slope), the null value lies on the boundary of the parameter space and the
likelihood-ratio statistic follows a 50:50 mixture of chi2(Df - 1) and chi2(Df) rather than
chi2(Df) (Self & Liang 1987; Stram & Lee 1994). ``boundary=True`` adds this p-value.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from ..base.lazy import scipy  # submodules imported on first use
from ..base.errors import ArgumentError, JaxhlmWarning, ModelComparisonError, warn
from .summary import format_pvalue, signif_stars

__all__ = ["lrt", "AnovaTable", "chibar_pvalue"]

COLUMNS = ["npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "Pr(>Chisq)"]


def chibar_pvalue(chisq, df):
    """p-value of the 50:50 mixture of chi2(df - 1) and chi2(df) (chi2(0) = point mass at 0)."""
    chisq = np.asarray(chisq, dtype=np.float64)
    df = np.asarray(df, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        hi = scipy.stats.chi2.sf(chisq, df)
        lo = np.where(df - 1 > 0, scipy.stats.chi2.sf(chisq, np.maximum(df - 1, 1)), np.where(chisq > 0, 0.0, 1.0))
        out = 0.5 * lo + 0.5 * hi
    return np.where(np.isfinite(chisq) & (df >= 1), out, np.nan)


def _r_format_column(x: np.ndarray, digits: int) -> list:
    """R's ``format(x, digits=)`` for a numeric column: common decimals, NaN as ''."""
    fin = x[np.isfinite(x)]
    dec = 0
    for v in fin:
        if v == 0:
            continue
        mag = math.floor(math.log10(abs(v)))
        s = f"{v:.{max(digits - 1 - mag, 0)}f}"
        # digits needed: strip trailing zeros of the rounded value
        need = len(s.split(".")[1].rstrip("0")) if "." in s else 0
        dec = max(dec, need)
    return [f"{v:.{dec}f}" if np.isfinite(v) else "" for v in x]


class AnovaTable(pd.DataFrame):
    """The comparison table (a DataFrame); ``print()`` gives R's layout.

    Columns ``npar, AIC, BIC, logLik, deviance, Chisq, Df, Pr(>Chisq)`` (and
    ``Pr(>Chisq) boundary`` with ``boundary=True``), one row per model in test order.
    ``attrs["formulas"]`` maps row labels to formulas.
    """

    @property
    def _constructor(self):
        return pd.DataFrame

    def lines(self) -> list:
        out = ["Models:"]
        for lab, f in self.attrs.get("formulas", {}).items():
            out.append(f"{lab}: {f}")
        cols = [c for c in self.columns]
        cells = {}
        cells["npar"] = [f"{int(v)}" for v in self["npar"]]
        for c in ("AIC", "BIC", "logLik", "deviance"):
            cells[c] = _r_format_column(self[c].to_numpy(dtype=float), 5)
        cells["Chisq"] = _r_format_column(self["Chisq"].to_numpy(dtype=float), 5)
        cells["Df"] = ["" if not np.isfinite(v) else f"{int(v)}" for v in self["Df"].to_numpy(dtype=float)]
        pcols = [c for c in cols if c.startswith("Pr(")]
        for c in pcols:
            cells[c] = ["" if not np.isfinite(v) else format_pvalue(v, 4) for v in self[c].to_numpy(dtype=float)]
        p = self["Pr(>Chisq)"].to_numpy(dtype=float)
        stars = [signif_stars(v) if np.isfinite(v) else "" for v in p]
        header = [""] + cols + [""]
        rows = [[str(lab)] + [cells[c][i] for c in cols] + [stars[i]] for i, lab in enumerate(self.index)]
        widths = [max(len(r[j]) for r in [header] + rows) for j in range(len(header))]
        for r in [header] + rows:
            parts = [r[0].ljust(widths[0])] + [r[j].rjust(widths[j]) for j in range(1, len(r) - 1)]
            parts.append(r[-1].ljust(widths[-1]))
            out.append(" ".join(parts))
        out.append("---")
        out.append("Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1")
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def __repr__(self) -> str:
        return self.__str__()


def _check_same_data(models, labels):
    n0 = models[0].nobs
    for m, lab in zip(models[1:], labels[1:]):
        if m.nobs != n0:
            raise ModelComparisonError(
                f"models were not all fitted to the same size of data set: {labels[0]!r} has {n0} rows, "
                f"{lab!r} has {m.nobs} (rows with missing values are dropped per model; drop them "
                "from the data before fitting)"
            )
    for m, lab in zip(models[1:], labels[1:]):
        if not _same_response(models[0], m):
            raise ModelComparisonError(
                f"models {labels[0]!r} and {lab!r} were fitted to different data (different rows or "
                "response values); likelihood-ratio tests need the same observations"
            )


def _same_response(a, b) -> bool:
    """Same rows and response. Out-of-core fits keep no rows: their response's (weighted) sum
    of squares, from the statistics, must agree to rounding."""
    da, db = a.design, b.design
    if da.index is None or db.index is None:
        ya, yb = float(a.stats.XytXy[-1, -1]), float(b.stats.XytXy[-1, -1])
        return abs(ya - yb) <= 1e-12 * max(abs(ya), abs(yb))
    return bool(np.array_equal(da.index, db.index) and np.array_equal(da.y, db.y))


def _ml_version(model):
    from ..model.pipeline import refit_ml

    return refit_ml(model)


def lrt(*models, names=None, refit: bool = True, boundary: bool = False):
    """Likelihood-ratio tests of nested linear mixed models (lme4's ``anova(m1, m2, ...)``).

    Parameters
    ----------
    *models : LinearMixedModel
        Two or more models fitted to the same rows.
    names : list of str, optional
        Row labels. Default: each model's ``name`` (``lmer(..., name=)``), else its formula.
    refit : bool, default True
        Refit REML fits by maximum likelihood first (as lme4, which prints "refitting model(s)
        with ML (instead of REML)"; here a :class:`JaxhlmWarning`). With False, REML fits are
        compared as they are (only meaningful when the fixed effects are identical).
    boundary : bool, default False
        Add ``Pr(>Chisq) boundary``: the p-value from the 50:50 mixture of chi2(Df - 1) and
        chi2(Df), appropriate when the larger model adds one variance component (a random
        intercept, or a random slope with its covariances) to the smaller one.

    Returns
    -------
    AnovaTable
        A DataFrame, rows ordered by number of parameters.

    Raises
    ------
    ModelComparisonError
        Models fitted to different data or different numbers of rows.
    """
    from ..model.state import FitState

    if len(models) == 1 and isinstance(models[0], (list, tuple)):
        models = tuple(models[0])
    if len(models) < 2:
        raise ArgumentError("anova() needs at least two fitted models to compare")
    for i, m in enumerate(models):
        if not isinstance(m, FitState):
            raise ArgumentError(f"argument {i + 1} of anova() is a {type(m).__name__}, not a fitted model from lmer()")
    if names is None:
        labels = [m.name if m.name else m.formula for m in models]
    else:
        labels = [str(x) for x in names]
        if len(labels) != len(models):
            raise ArgumentError(f"names has {len(labels)} entries for {len(models)} models")
    seen: dict = {}
    for i, lab in enumerate(labels):
        if lab in seen:
            seen[lab] += 1
            labels[i] = f"{lab}.{seen[lab]}"
        else:
            seen[lab] = 0
    _check_same_data(models, labels)
    models = list(models)
    refitted = bool(refit and any(m.reml for m in models))
    if refitted:
        warn("refitting model(s) with ML (instead of REML)", JaxhlmWarning)
        models = [_ml_version(m) if m.reml else m for m in models]
    npar = np.array([m.npar for m in models])
    order = np.argsort(npar, kind="stable")
    models = [models[i] for i in order]
    labels = [labels[i] for i in order]
    npar = npar[order]
    ll = np.array([m.loglik for m in models])
    nobs = models[0].nobs
    aic = -2 * ll + 2 * npar
    bic = -2 * ll + math.log(nobs) * npar
    chisq = np.concatenate([[np.nan], 2.0 * np.maximum(0.0, np.diff(ll))])
    df = np.concatenate([[np.nan], np.diff(npar).astype(float)])
    with np.errstate(invalid="ignore"):
        p = np.where(df > 0, scipy.stats.chi2.sf(chisq, np.where(df > 0, df, 1)), np.nan)
    table = AnovaTable(
        {"npar": npar, "AIC": aic, "BIC": bic, "logLik": ll, "deviance": -2 * ll, "Chisq": chisq, "Df": df,
         "Pr(>Chisq)": p},
        index=pd.Index(labels),
    )
    if boundary:
        table["Pr(>Chisq) boundary"] = chibar_pvalue(chisq, df)
    table.attrs["formulas"] = {lab: m.formula for lab, m in zip(labels, models)}
    table.attrs["refitted_ml"] = refitted
    return table
