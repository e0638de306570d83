"""Printed summaries in the layout of lme4/lmerTest's ``summary()`` (text and HTML)."""
from __future__ import annotations

import html

import numpy as np
import pandas as pd

__all__ = ["Summary", "signif_stars", "format_pvalue"]


def signif_stars(p: float) -> str:
    if not np.isfinite(p):
        return ""
    for cut, s in ((0.001, "***"), (0.01, "**"), (0.05, "*"), (0.1, ".")):
        if p < cut:
            return s
    return ""


def format_pvalue(p: float, digits: int = 3) -> str:
    """R's ``format.pval`` with ``eps = 2e-16``."""
    if not np.isfinite(p):
        return "NA"
    if p < 2e-16:
        return "<2e-16"
    return f"{p:.{digits}g}" if p >= 1e-4 else f"{p:.{digits - 1}e}"


def _sig(x: float, digits: int = 4) -> str:
    if not np.isfinite(x):
        return "NA"
    return f"{x:.{digits}g}" if abs(x) < 1e6 else f"{x:.{digits - 1}e}"


def _format_column(values, sig: int = 5) -> list:
    """Common decimals for a column, as R's ``printCoefmat``: the smallest magnitude keeps
    ``sig`` significant digits; scientific notation when the range is extreme."""
    v = np.asarray(values, dtype=float)
    fin = v[np.isfinite(v) & (v != 0)]
    if fin.size == 0:
        return [f"{x:.{sig - 1}g}" if np.isfinite(x) else "NA" for x in v]
    lo, hi = np.min(np.abs(fin)), np.max(np.abs(fin))
    dec = int(max(0, sig - 1 - np.floor(np.log10(lo))))
    if dec > 8 or hi >= 1e8:
        return [f"{x:.{sig - 2}e}" if np.isfinite(x) else "NA" for x in v]
    return [f"{x:.{dec}f}" if np.isfinite(x) else "NA" for x in v]


def _table(rows, header, align_left=(0,)):
    cols = list(zip(*([header] + rows)))
    widths = [max(len(str(c)) for c in col) for col in cols]
    out = []
    for r in [header] + rows:
        cells = []
        for j, c in enumerate(r):
            cells.append(str(c).ljust(widths[j]) if j in align_left else str(c).rjust(widths[j]))
        out.append(" " + " ".join(cells).rstrip())
    return out


class Summary:
    """Summary of a fitted model; ``str()`` gives lme4's text layout, Jupyter shows HTML.

    Parameters
    ----------
    model : LinearMixedModel
    ddf : {"satterthwaite", "kenward-roger"}, optional
        Degrees-of-freedom method for the fixed-effects t tests.
    correlation : bool
        Print the correlation of the fixed effects.
    """

    def __init__(self, model, ddf: str = "satterthwaite", correlation: bool = True):
        self.model = model
        self.ddf = ddf.lower()
        self.correlation = correlation

    @property
    def coef_table(self) -> pd.DataFrame:
        if self.ddf in ("kenward-roger", "kr", "kenward_roger"):
            return self.model.coef_table_kr() if hasattr(self.model, "coef_table_kr") else self.model.coef_table
        return self.model.coef_table

    def _random_rows(self):
        m = self.model
        rows = []
        for grp, names, S in m.term_covariances():
            sd = np.sqrt(np.diag(S))
            with np.errstate(divide="ignore", invalid="ignore"):
                corr = S / np.outer(sd, sd)
            for i, nm in enumerate(names):
                cors = [f"{corr[i, j]:.2f}" if np.isfinite(corr[i, j]) else "NaN" for j in range(i)]
                rows.append([grp if i == 0 else "", nm, _sig(S[i, i]), _sig(sd[i])] + cors)
        rows.append(["Residual", "", _sig(m.sigma**2), _sig(m.sigma)])
        ncor = max(len(r) - 4 for r in rows)
        for r in rows:
            r.extend([""] * (4 + ncor - len(r)))
        header = ["Groups", "Name", "Variance", "Std.Dev."] + (["Corr"] + [""] * (ncor - 1) if ncor else [])
        return header, rows

    def lines(self) -> list:
        m = self.model
        out = []
        kind = "REML" if m.reml else "maximum likelihood"
        method = "Kenward-Roger" if self.ddf in ("kenward-roger", "kr", "kenward_roger") else "Satterthwaite"
        out.append(f"Linear mixed model fit by {kind}. t-tests use {method}'s method [jaxhlm]")
        out.append(f"Formula: {m.formula}")
        if m.n_dropped:
            out.append(f"   ({m.n_dropped} observations deleted due to missingness)")
        out.append("")
        if m.reml:
            out.append(f"REML criterion at convergence: {m.objective:.1f}")
        else:
            out += _table(
                [[f"{m.aic:.1f}", f"{m.bic:.1f}", f"{m.loglik:.1f}", f"{m.deviance:.1f}", str(m.df_resid)]],
                ["AIC", "BIC", "logLik", "deviance", "df.resid"],
                align_left=(),
            )
        out.append("")
        try:
            resid = m.resid.to_numpy()
        except Exception:  # out-of-core fits keep no rows
            resid = None
        if resid is not None:
            out.append("Scaled residuals: ")
            q = np.quantile(resid / m.sigma, [0, 0.25, 0.5, 0.75, 1.0])
            out += _table([[f"{v:.4f}" for v in q]], ["Min", "1Q", "Median", "3Q", "Max"], align_left=())
            out.append("")
        out.append("Random effects:")
        header, rows = self._random_rows()
        out += _table(rows, header, align_left=(0, 1))
        grp = "; ".join(f"{k}, {v}" for k, v in m.ngroups.items())
        out.append(f"Number of obs: {m.nobs}, groups:  {grp}")
        out.append("")
        out.append("Fixed effects:")
        ct = self.coef_table
        est, se, df = (_format_column(ct[c].to_numpy()) for c in ("Estimate", "Std. Error", "df"))
        rows = []
        for k, (name, r) in enumerate(ct.iterrows()):
            rows.append([
                name, est[k], se[k], df[k],
                f"{r['t value']:.2f}", format_pvalue(r["Pr(>|t|)"]), signif_stars(r["Pr(>|t|)"]),
            ])
        out += _table(rows, ["", "Estimate", "Std. Error", "df", "t value", "Pr(>|t|)", ""], align_left=(0, 6))
        out.append("---")
        out.append("Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1")
        if self.correlation and m.p > 1:
            out.append("")
            out.append("Correlation of Fixed Effects:")
            V = m.vcov.to_numpy()
            sd = np.sqrt(np.diag(V))
            R = V / np.outer(sd, sd)
            names = list(m.fixef.index)
            abbrev = [n.replace("(Intercept)", "(Intr)")[:6] for n in names]
            rows = [[names[i]] + [f"{R[i, j]:.3f}" for j in range(i)] for i in range(1, len(names))]
            for r in rows:
                r.extend([""] * (len(names) - len(r)))
            out += _table(rows, [""] + abbrev[:-1], align_left=(0,))
        msgs = m.optinfo["messages"]
        if msgs:
            out.append("")
            out += msgs
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())

    __repr__ = __str__

    def _repr_html_(self) -> str:
        m = self.model
        parts = [f"<p><b>Linear mixed model</b> fit by {'REML' if m.reml else 'ML'}: <code>{html.escape(m.formula)}</code></p>"]
        info = {"nobs": m.nobs, "logLik": round(m.loglik, 2), "AIC": round(m.aic, 1), "BIC": round(m.bic, 1)}
        if m.reml:
            info["REML criterion"] = round(m.objective, 2)
        else:
            info["deviance"] = round(m.deviance, 2)
        parts.append(pd.DataFrame([info]).to_html(index=False))
        parts.append("<p>Random effects</p>" + m.varcorr.fillna("").to_html(index=False))
        ct = self.coef_table.copy()
        ct[""] = [signif_stars(p) for p in ct["Pr(>|t|)"]]
        parts.append("<p>Fixed effects (Satterthwaite df)</p>" + ct.to_html(float_format=lambda v: f"{v:.5g}"))
        if m.optinfo["messages"]:
            parts.append("<p>" + "<br>".join(html.escape(s) for s in m.optinfo["messages"]) + "</p>")
        return "\n".join(parts)
