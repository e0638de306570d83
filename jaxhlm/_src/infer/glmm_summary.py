"""The printed summary of a glmer fit, line for line as lme4's ``summary(glmerMod)``.

The same pieces and number formatting as the linear model's summary (:mod:`.summary`,
:mod:`.rprint`), with glmer's differences: the title names the approximation (Laplace or
adaptive Gauss-Hermite quadrature with ``nAGQ`` nodes) and the class ``glmerMod``, a
`` Family: binomial  ( logit )`` line, the "deviance" column of the criterion line is
``-2 logLik`` (as lme4's ``AICtab``; not ``deviance(m)``), the scaled residuals are the Pearson
residuals, the random-effects table has no residual row, and the fixed effects have Wald z
tests (``Estimate, Std. Error, z value, Pr(>|z|)``).
"""
from __future__ import annotations

import html
import math

import numpy as np

from . import rprint
from .rprint import signif_stars
from .summary import Summary

__all__ = ["GlmmSummary"]

CLASS = "glmerMod"


class GlmmSummary(Summary):
    """Summary of a glmer fit: ``str()`` gives lme4's text.

    Parameters
    ----------
    model : GeneralizedLinearMixedModel
    correlation : bool, optional
        Show the correlation of the fixed effects (default: up to 12 of them, as lme4).
    data_name : str, optional
        Shown as ``Data: <data_name>``.
    digits : int
        Significant digits (lme4's default 4).
    """

    def __init__(self, model, correlation: bool | None = None, data_name: str | None = None, digits: int = 4):
        super().__init__(model, correlation=correlation, data_name=data_name, digits=digits)

    @property
    def coef_table(self):
        """Estimate, Std. Error, z value, Pr(>|z|)."""
        return self.model.coef_table

    def _scaled_residuals(self):
        r = self.model.residuals("pearson").to_numpy()
        return np.quantile(r, [0.0, 0.25, 0.5, 0.75, 1.0]) if r.size else None

    def _title(self) -> list:
        m = self.model
        how = ("Laplace Approximation" if m.nagq <= 1 else
               f"Adaptive Gauss-Hermite Quadrature, nAGQ = {m.nagq}")
        mtit = f"Generalized linear mixed model fit by maximum likelihood ({how})"
        if len(mtit) + 5 + len(CLASS) > rprint.WIDTH:
            head = rprint.cat_fill(rprint.strwrap(mtit, rprint.WIDTH - 2, exdent=2) + [" [", CLASS, "]"], sep="")
        else:
            head = [f"{mtit} [{CLASS}]"]
        return head + [f" Family: {m.family.family}  ( {m.family.link} )"]

    def lines(self) -> list:
        """The summary as text (lme4's layout; ``Weights:`` under ``Data:`` for a weights column)."""
        out = super().lines()
        w = getattr(self.model, "design_args", {}).get("weights")
        if isinstance(w, str):
            k = next(i for i, ln in enumerate(out) if ln.startswith("Formula:"))
            while out[k + 1].startswith(("   Data:", "  ")) and out[k + 1].strip():
                k += 1
            out.insert(k + 1, f"Weights: {w}")
        return out

    def _criterion(self) -> tuple:
        m = self.model
        vals = [round(v, 1) for v in (m.aic, m.bic, m.loglik, -2.0 * m.loglik)]
        cells = rprint.format_real(vals, 7)
        return ["AIC", "BIC", "logLik", "deviance", "df.resid"], cells + rprint.format_real([float(m.df_resid)], 7)

    def _random_cells(self, variance: bool = True) -> tuple:
        terms = self._terms()
        var = [v for t in terms for v in t[2]]
        sd = [v for t in terms for v in t[3]]
        fv, fs = rprint.format_real(var, self.digits), rprint.format_real(sd, self.digits)
        maxlen = max([len(t[1]) for t in terms] + [1])
        rows, k = [], 0
        for grp, names, _, _, R in terms:
            cc = np.asarray(rprint.format_real(np.round(R.ravel(), 2), 7, nsmall=2), dtype=object).reshape(R.shape)
            for i, nm in enumerate(names):
                cor = [cc[i, j] if j < i else "" for j in range(maxlen - 1)] if maxlen > 1 else []
                rows.append([grp if i == 0 else "", nm] + ([fv[k]] if variance else []) + [fs[k]] + cor)
                k += 1
        header = ["Groups", "Name"] + (["Variance"] if variance else []) + ["Std.Dev."]
        if maxlen > 1:
            header += ["Corr"] + [""] * (maxlen - 2)
        return header, rows

    def _coef_cells(self) -> tuple:
        """R's ``printCoefmat`` of the z table: ``(header, rows, stars shown)``."""
        ct = self.coef_table
        d = self.digits
        cs = ct[["Estimate", "Std. Error"]].to_numpy(float)
        acs = np.abs(cs[np.isfinite(cs) & (cs != 0)])
        digmin = 1 + (math.floor(math.log10(acs.min())) if acs.size else 0)
        dec = max(1, d - digmin)
        flat = [round(float(v), dec) if np.isfinite(v) else float("nan") for v in cs.ravel()]
        cells = np.asarray(rprint.format_real(flat, d), dtype=object).reshape(cs.shape)
        for (i, j), v in np.ndenumerate(cs):
            if np.isfinite(v) and v != 0 and float(cells[i, j]) == 0:
                cells[i, j] = rprint.format_real([v], max(1, d - 1))[0]
            elif not np.isfinite(v):
                cells[i, j] = "NaN" if np.isnan(v) else ("Inf" if v > 0 else "-Inf")
        dig_tst = max(1, min(5, d - 1))
        z = ct["z value"].to_numpy(float)
        zc = rprint.format_real([round(float(v), dig_tst) if np.isfinite(v) else float("nan") for v in z], d)
        p = ct["Pr(>|z|)"].to_numpy(float)
        pc = rprint.format_pval(p, dig_tst)
        stars = bool(np.any(p[np.isfinite(p)] < 0.1))
        rows = []
        for i in range(len(ct)):
            r = list(cells[i]) + [zc[i], pc[i]]
            if stars:
                r.append(signif_stars(p[i]).ljust(3))
            rows.append(r)
        header = ["Estimate", "Std. Error", "z value", "Pr(>|z|)"] + ([""] if stars else [])
        return header, rows, stars

    def _repr_html_(self) -> str:
        """The text summary in a ``<pre>`` block (Jupyter)."""
        return f"<pre>{html.escape(str(self))}</pre>"
