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

import html
import math

import numpy as np
import pandas as pd

from ..base.errors import ArgumentError, JaxhlmWarning, ModelComparisonError, warn
from . import rprint
from .rprint import SIGNIF_LEGEND, signif_stars
from ..base import dist

__all__ = ["lrt", "AnovaTable", "chibar_pvalue"]

COLUMNS = ["npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "Pr(>Chisq)"]


def chibar_pvalue(chisq, df):
    """p-value of the 50:50 mixture of chi2(df - 1) and chi2(df) (chi2(0) = point mass at 0)."""
    chisq = np.asarray(chisq, dtype=np.float64)
    df = np.asarray(df, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        hi = dist.chi2_sf(chisq, df)
        lo = np.where(df - 1 > 0, dist.chi2_sf(chisq, np.maximum(df - 1, 1)), np.where(chisq > 0, 0.0, 1.0))
        out = 0.5 * lo + 0.5 * hi
    return np.where(np.isfinite(chisq) & (df >= 1), out, np.nan)


_HEADERS = {"Pr(>Chisq) boundary": "Pr(>Chibar2)"}  # printed header of a column (one word)
_BOUNDARY_NOTE = "Pr(>Chibar2): p-value of the 50:50 mixture of chi2(Df-1) and chi2(Df)"


def _model_line(label, formula) -> str:
    """``label: formula`` of the "Models:" block; just the formula when it is the label."""
    f = rprint.deparse_formula(formula)
    same = "".join(str(label).split()) == "".join(str(formula).split())
    return f if same else f"{label}: {f}"


class AnovaTable(pd.DataFrame):
    """The comparison table (a DataFrame); ``print()`` gives R's layout, Jupyter an HTML table.

    Columns ``npar, AIC, BIC, logLik, deviance, Chisq, Df, Pr(>Chisq)`` (and
    ``Pr(>Chisq) boundary`` with ``boundary=True``, printed as ``Pr(>Chibar2)``), one row per
    model in test order. ``attrs["formulas"]`` maps row labels to formulas.

    The text is R's ``print.anova``: npar, AIC, BIC, logLik and deviance with 5 significant
    digits of their largest value (``zapsmall``), Chisq rounded to 4 decimals, Df as
    integers, p-values as ``format.pval`` (``<2e-16``), the first row's empty cells blank,
    significance stars and their legend only when a p-value is below 0.1.
    """

    @property
    def _constructor(self):
        return pd.DataFrame

    def _cells(self) -> tuple:
        """``(columns, header, rows of text, stars shown)`` in R's formatting."""
        digits = 5
        cols = list(self.columns)
        cells = {}
        for c in cols:
            x = self[c].to_numpy(dtype=float)
            ok = np.isfinite(x)
            if c.startswith("Pr("):
                cells[c] = ["" if not k else v for k, v in zip(ok, rprint.format_pval(x, digits - 1))]
            elif c == "Chisq":
                vals = [round(float(v), digits - 1) if k else None for v, k in zip(x, ok)]
                cells[c] = rprint.format_real(vals, digits, na="")
            elif c == "Df":
                cells[c] = rprint.format_real([float(v) if k else None for v, k in zip(x, ok)], digits, na="")
            else:
                z = rprint.zapsmall(x, digits)
                cells[c] = rprint.format_real([float(v) if k else None for v, k in zip(z, ok)], digits, na="")
        p = self["Pr(>Chisq)"].to_numpy(dtype=float) if "Pr(>Chisq)" in self.columns else np.full(len(self), np.nan)
        stars = bool(np.any(p[np.isfinite(p)] < 0.1))
        header = [_HEADERS.get(c, c) for c in cols] + ([""] if stars else [])
        rows = []
        for i in range(len(self)):
            r = [cells[c][i] for c in cols]
            if stars:
                r.append(signif_stars(p[i]).ljust(3))
            rows.append(r)
        return cols, header, rows, stars

    def lines(self) -> list:
        """The table as R's ``print.anova`` writes it.

        Returns
        -------
        list of str
            ``Models:`` and each row's formula, the table, the significance legend when
            there are stars, and the note on ``Pr(>Chibar2)`` when that column is there.
        """
        out = []
        if self.attrs.get("data_name"):
            out.append(f"Data: {self.attrs['data_name']}")
        out.append("Models:")
        out += [_model_line(lab, f) for lab, f in self.attrs.get("formulas", {}).items()]
        cols, header, rows, stars = self._cells()
        out += rprint.print_matrix(rows, header, rownames=[str(i) for i in self.index], right=True)
        if stars:
            out += ["---", SIGNIF_LEGEND]
        if "Pr(>Chisq) boundary" in cols:
            out.append(_BOUNDARY_NOTE)
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def __repr__(self) -> str:
        return self.__str__()

    def _repr_html_(self) -> str:
        """HTML table with R's rounding (no NaN cells; Df as integers), the models' formulas
        above it and the significance legend below it when there are stars."""
        esc = html.escape
        cols, header, rows, stars = self._cells()
        parts = ['<div class="jaxhlm-anova"><style>.jaxhlm-anova {font-family: var(--jp-ui-font-family,'
                 ' sans-serif); font-size: 13px;} .jaxhlm-anova td.r, .jaxhlm-anova th.r {text-align: right;'
                 ' font-family: var(--jp-code-font-family, monospace);} .jaxhlm-anova table {border-collapse:'
                 ' collapse;} .jaxhlm-anova td, .jaxhlm-anova th {padding: 2px 8px; border: none; text-align:'
                 ' left;} .jaxhlm-anova thead th {border-bottom: 1px solid #999;}</style>']
        forms = self.attrs.get("formulas", {})
        if forms:
            parts.append("<p><b>Models</b><br>" + "<br>".join(
                (f"{esc(str(k))}: " if _model_line(k, f) != rprint.deparse_formula(f) else "")
                + f"<code>{esc(rprint.deparse_formula(f))}</code>" for k, f in forms.items()) + "</p>")
        head = "<th></th>" + "".join(f"<th class='r'>{esc(h)}</th>" for h in header)
        nnum = len(cols)  # the stars column (last, when shown) is left-aligned
        body = "".join("<tr><th>" + esc(str(lab)) + "</th>" + "".join(
            f"<td class='{'r' if j < nnum else ''}'>{esc(c.strip())}</td>" for j, c in enumerate(r)) + "</tr>"
            for lab, r in zip(self.index, rows))
        parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        if stars:
            parts.append(f"<p style='color:#555;font-size:11px'>{esc(SIGNIF_LEGEND)}</p>")
        if "Pr(>Chisq) boundary" in cols:
            parts.append(f"<p style='color:#555;font-size:11px'>{esc(_BOUNDARY_NOTE)}</p>")
        parts.append("</div>")
        return "\n".join(parts)


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


def _response_ss(model) -> float:
    """``y'W y`` of the raw response: kept by the preconditioner (``Stats.xform.yy``); the last
    entry of ``[X y]'W[X y]`` when the statistics are not preconditioned."""
    xf = getattr(model.stats, "xform", None)
    if xf is not None:
        return float(xf.yy)
    return float(model.stats.XytXy[-1, -1])


def _same_response(a, b) -> bool:
    """Same rows and response. Out-of-core fits keep no rows: their response's (weighted) sum
    of squares, from the statistics, must agree to rounding."""
    da, db = a.design, b.design
    if da.index is None or db.index is None:
        ya, yb = _response_ss(a), _response_ss(b)
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
        Add ``Pr(>Chibar2)``: the p-value from the 50:50 mixture of chi2(Df - 1) and chi2(Df),
        appropriate when the larger model adds one variance component (a random intercept, or
        a random slope with its covariances) to the smaller one.

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
        p = np.where(df > 0, dist.chi2_sf(chisq, np.where(df > 0, df, 1)), np.nan)
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
