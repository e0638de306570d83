"""Printed summaries in the layout of lme4/lmerTest's ``summary()``, as text and as HTML.

``print(m.summary())`` gives, line for line, what ``summary(m)`` prints in R with lmerTest
loaded: the title, ``Formula:`` (deparsed as R writes it) and ``Data:`` (when a ``data_name`` is
given), the REML criterion or the AIC/BIC/logLik/deviance/df.resid line, the scaled
residuals, the random-effects table, the numbers of observations and groups, the fixed
effects with Satterthwaite (or Kenward-Roger) df and R's number formatting (``printCoefmat``:
estimate, SE and df with common decimals, ``<2e-16``, stars and their legend only when some
p < 0.1), the correlation of the fixed effects (up to 12 of them, as lme4), and the optimizer
and convergence lines where lme4 prints them. In Jupyter the same content is shown as HTML.
The number formatting is :mod:`jaxhlm._src.infer.rprint`.
"""
from __future__ import annotations

import html
import math

import numpy as np
import pandas as pd

from ..base.errors import ArgumentError
from . import rprint
from .rprint import SIGNIF_LEGEND, signif_stars

__all__ = ["Summary", "signif_stars", "format_pvalue"]

COR_MAX = 12  # lme4's getOption("lme4.summary.cor.max")
CLASS = "LinearMixedModel"
_KR = ("kenward-roger", "kr", "kenward_roger")


def format_pvalue(p: float, digits: int = 3) -> str:
    """One p-value as R's ``format.pval(p, digits, eps = 2.2e-16)`` writes it.

    Parameters
    ----------
    p : float
    digits : int
        Significant digits.

    Returns
    -------
    str
        E.g. ``"0.123"``, ``"1.65e-06"``, ``"<2e-16"``; ``"NA"`` for a missing value.
    """
    return rprint.format_pval([p], digits)[0]


class Summary:
    """Summary of a fitted model: ``str()`` gives lmerTest's text, Jupyter shows HTML.

    Parameters
    ----------
    model : LinearMixedModel
    ddf : {"satterthwaite", "kenward-roger"}
        Degrees-of-freedom method of the fixed-effects t tests (``"kr"`` also accepted).
    correlation : bool, optional
        Show the correlation of the fixed effects; default: when there are at most 12 of
        them (lme4's ``lme4.summary.cor.max``).
    data_name : str, optional
        Shown as ``Data: <data_name>`` under the formula (R prints the name of the data
        frame). Default: the model's ``data_name`` attribute if it has one; else no line.
    digits : int
        Significant digits, as R's ``print(summary(m), digits = )`` (lme4's default 4).

    Attributes
    ----------
    model : LinearMixedModel
    coef_table : pandas.DataFrame
        The fixed-effects table (numbers, not text).
    """

    def __init__(self, model, ddf: str = "satterthwaite", correlation: bool | None = None,
                 data_name: str | None = None, digits: int = 4):
        if not isinstance(ddf, str) or ddf.lower() not in ("satterthwaite",) + _KR:
            raise ArgumentError(f"ddf must be 'satterthwaite' or 'kenward-roger', got {ddf!r}")
        if isinstance(digits, bool) or not isinstance(digits, (int, np.integer)) or not 1 <= digits <= 15:
            raise ArgumentError(f"digits must be an integer from 1 to 15, got {digits!r}")
        self.model = model
        self.ddf = "kenward-roger" if ddf.lower() in _KR else "satterthwaite"
        self.correlation = correlation
        self.data_name = data_name if data_name is not None else getattr(model, "data_name", None)
        self.digits = int(digits)
        self._coef = None

    # ------------------------------------------------------------------ numbers
    @property
    def coef_table(self) -> pd.DataFrame:
        """Estimate, Std. Error, df, t value, Pr(>|t|) with the chosen df method."""
        if self._coef is None:
            m = self.model
            self._coef = m.coef_table_kr() if self.ddf == "kenward-roger" else m.coef_table
        return self._coef

    def _terms(self):
        """Per random-effects term: ``(group, names, variances, sds, correlation matrix)``."""
        vc = self.model.varcorr
        out = []
        for grp in dict.fromkeys(vc["grp"]):
            if grp == "Residual":
                continue
            block = vc[vc["grp"] == grp]
            diag = block[block["var2"].isna()]
            names = list(diag["var1"])
            R = np.eye(len(names))
            for _, r in block[block["var2"].notna()].iterrows():
                i, j = names.index(r["var2"]), names.index(r["var1"])
                R[i, j] = R[j, i] = r["sdcor"]
            out.append((grp, names, diag["vcov"].to_numpy(float), diag["sdcor"].to_numpy(float), R))
        return out

    def _scaled_residuals(self):
        m = self.model
        try:
            r = np.asarray(m.resid.to_numpy(), dtype=float)
        except Exception:  # out-of-core fits keep no rows
            return None
        if r.size == 0:
            return None
        return np.quantile(r / m.sigma, [0.0, 0.25, 0.5, 0.75, 1.0])

    def _show_correlation(self) -> bool:
        p = self.model.p
        return (p <= COR_MAX) if self.correlation is None else bool(self.correlation)

    # ------------------------------------------------------------------ formatted pieces
    def _title(self) -> list:
        kind = "REML" if self.model.reml else "maximum likelihood"
        method = "Kenward-Roger" if self.ddf == "kenward-roger" else "Satterthwaite"
        mtit = f"Linear mixed model fit by {kind}. t-tests use {method}'s method"
        if len(mtit) + 5 + len(CLASS) > rprint.WIDTH:  # lme4's rule: wrap, then " [class]"
            return rprint.cat_fill(rprint.strwrap(mtit, rprint.WIDTH - 2, exdent=2) + [" [", CLASS, "]"], sep="")
        return [f"{mtit} ['{CLASS}']"]

    def _criterion(self) -> tuple:
        """``(names, values)`` of the criterion line(s)."""
        m = self.model
        if m.reml:
            return ["REML criterion at convergence:"], [rprint.format_real([round(m.objective, 1)], 7, pad=False)[0]]
        vals = [round(v, 1) for v in (m.aic, m.bic, m.loglik, m.deviance)]
        cells = rprint.format_real(vals + [float(m.df_resid)], 7)
        cells[-1] = rprint.format_real([float(m.df_resid)], 7)[0]
        return ["AIC", "BIC", "logLik", "deviance", "df.resid"], cells

    def _residual_cells(self):
        q = self._scaled_residuals()
        if q is None:
            return None
        return rprint.format_real(rprint.zapsmall(q, self.digits + 1), self.digits)

    def _random_cells(self, variance: bool = True) -> tuple:
        """Header and rows of the random-effects table (lme4's ``formatVC``)."""
        m = self.model
        terms = self._terms()
        var = [v for t in terms for v in t[2]] + [m.sigma**2]
        sd = [v for t in terms for v in t[3]] + [m.sigma]
        fv, fs = rprint.format_real(var, self.digits), rprint.format_real(sd, self.digits)
        maxlen = max([len(t[1]) for t in terms] + [1])
        rows, k = [], 0
        for grp, names, _, _, R in terms:
            cc = rprint.format_real(np.round(R.ravel(), 2), 7, nsmall=2)
            cc = np.asarray(cc, dtype=object).reshape(R.shape)
            for i, nm in enumerate(names):
                cor = [cc[i, j] if j < i else "" for j in range(maxlen - 1)] if maxlen > 1 else []
                rows.append([grp if i == 0 else "", nm] + ([fv[k]] if variance else []) + [fs[k]] + cor)
                k += 1
        rows.append(["Residual", ""] + ([fv[k]] if variance else []) + [fs[k]] + [""] * (maxlen - 1))
        header = ["Groups", "Name"] + (["Variance"] if variance else []) + ["Std.Dev."]
        if maxlen > 1:
            header += ["Corr"] + [""] * (maxlen - 2)
        return header, rows

    def _groups_line(self) -> list:
        m = self.model
        grp = "; ".join(f"{k}, {v}" for k, v in m.ngroups.items())
        return rprint.cat_fill([f"Number of obs: {m.nobs}, groups: ", grp])

    def _coef_cells(self) -> tuple:
        """R's ``printCoefmat(digits = 4)`` of the fixed effects: ``(header, rows, stars shown)``."""
        ct = self.coef_table
        d = self.digits
        cs = ct[["Estimate", "Std. Error", "df"]].to_numpy(float)
        acs = np.abs(cs[np.isfinite(cs) & (cs != 0)])
        digmin = 1 + (math.floor(math.log10(acs.min())) if acs.size else 0)
        dec = max(1, d - digmin)
        flat = [round(float(v), dec) if np.isfinite(v) else float("nan") for v in cs.ravel()]
        cells = np.asarray(rprint.format_real(flat, d), dtype=object).reshape(cs.shape)
        for (i, j), v in np.ndenumerate(cs):  # shown as 0 but not 0: fewer digits, its own format
            if np.isfinite(v) and v != 0 and float(cells[i, j]) == 0:
                cells[i, j] = rprint.format_real([v], max(1, d - 1))[0]
            elif not np.isfinite(v):
                cells[i, j] = "NaN" if np.isnan(v) else ("Inf" if v > 0 else "-Inf")
        dig_tst = max(1, min(5, d - 1))
        t = ct["t value"].to_numpy(float)
        tc = rprint.format_real([round(float(v), dig_tst) if np.isfinite(v) else float("nan") for v in t], d)
        p = ct["Pr(>|t|)"].to_numpy(float)
        pc = rprint.format_pval(p, dig_tst)
        stars = bool(np.any(p[np.isfinite(p)] < 0.1))
        rows = []
        for i in range(len(ct)):
            r = list(cells[i]) + [tc[i], pc[i]]
            if stars:
                r.append(signif_stars(p[i]).ljust(3))
            rows.append(r)
        header = ["Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"] + ([""] if stars else [])
        return header, rows, stars

    def _correlation_cells(self):
        """``(colnames, rownames, rows)`` of lme4's correlation of fixed effects, or None."""
        m = self.model
        p = m.p
        if p < 2 or not self._show_correlation():
            return None
        V = m.vcov.to_numpy()
        sd = np.sqrt(np.diag(V))
        with np.errstate(divide="ignore", invalid="ignore"):
            R = V / np.outer(sd, sd)
        cc = np.asarray(rprint.format_real(np.round(R.ravel(), 3), 7, nsmall=3), dtype=object).reshape(R.shape)
        names = list(m.fixef.index)
        rn, cn = rprint.abbreviate(names, 11), rprint.abbreviate(names, 6)
        rows = [[cc[i, j] if j < i else "" for j in range(p - 1)] for i in range(1, p)]
        return cn[:-1], rn[1:], rows

    def _optimizer_lines(self) -> list:
        m = self.model
        msgs = list(m.optinfo.get("messages", []))
        if not msgs and m.converged:
            return []
        code = 0 if m.converged else 1
        return [f"optimizer (BFGS) convergence code: {code} ({'OK' if code == 0 else 'see the message below'})"] + msgs

    # ------------------------------------------------------------------ text
    def lines(self) -> list:
        """The summary as text.

        Returns
        -------
        list of str
            The lines (no trailing blanks), as ``str(summary)`` joins them.
        """
        m = self.model
        out = self._title()
        out += rprint.cat_fill(["Formula:", rprint.deparse_formula(m.formula)])
        if self.data_name:
            out += rprint.cat_fill(["   Data:", str(self.data_name)])
        out.append("")
        names, cells = self._criterion()
        out += [f"{names[0]} {cells[0]}"] if m.reml else rprint.print_named(cells, names)
        out.append("")
        rc = self._residual_cells()
        if rc is not None:
            out.append("Scaled residuals:")
            out += rprint.print_named(rc, ["Min", "1Q", "Median", "3Q", "Max"])
            out.append("")
        out.append("Random effects:")
        header, rows = self._random_cells()
        out += rprint.print_matrix(rows, header, rownames=[""] * len(rows))
        out += self._groups_line()
        if getattr(m, "n_dropped", 0):
            out.append(f"   ({m.n_dropped} observations deleted due to missingness)")
        if m.p > 0:
            out += ["", "Fixed effects:"]
            header, rows, stars = self._coef_cells()
            out += rprint.print_matrix(rows, header, rownames=list(self.coef_table.index), right=True)
            if stars:
                out += ["---", SIGNIF_LEGEND]
            cor = self._correlation_cells()
            if cor is not None:
                out += ["", "Correlation of Fixed Effects:"]
                out += rprint.print_matrix(cor[2], cor[0], rownames=cor[1])
            elif self.correlation is None and m.p > COR_MAX:
                out += ["", f"Correlation matrix not shown by default, as p = {m.p} > {COR_MAX}.",
                        "Use summary(correlation=True) or the model's vcov if you need it."]
        out += self._optimizer_lines()
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())

    __repr__ = __str__

    # ------------------------------------------------------------------ HTML
    def _repr_html_(self) -> str:
        """The summary as HTML (Jupyter): the same content and number formatting as the text."""
        m = self.model
        esc = html.escape
        kind = "REML" if m.reml else "maximum likelihood"
        method = "Kenward-Roger" if self.ddf == "kenward-roger" else "Satterthwaite"
        parts = [_STYLE, '<div class="jaxhlm-summary">',
                 f"<p class='jh-title'><b>Linear mixed model fit by {kind}</b>; t-tests use {method}'s method</p>",
                 "<table class='jh-kv'>",
                 f"<tr><th>Formula</th><td><code>{esc(rprint.deparse_formula(m.formula))}</code></td></tr>"]
        if self.data_name:
            parts.append(f"<tr><th>Data</th><td><code>{esc(str(self.data_name))}</code></td></tr>")
        grp = "; ".join(f"{esc(str(k))}: {v}" for k, v in m.ngroups.items())
        parts.append(f"<tr><th>Observations</th><td>{m.nobs}"
                     + (f" ({m.n_dropped} deleted due to missingness)" if getattr(m, "n_dropped", 0) else "")
                     + f"</td></tr><tr><th>Groups</th><td>{grp}</td></tr></table>")
        names, cells = self._criterion()
        if m.reml:
            parts.append(f"<p>REML criterion at convergence: <span class='jh-num'>{esc(cells[0])}</span></p>")
        else:
            parts.append(_html_table(names, [[c.strip() for c in cells]], right=range(5)))
        rc = self._residual_cells()
        if rc is not None:
            parts.append("<p class='jh-h'>Scaled residuals</p>")
            parts.append(_html_table(["Min", "1Q", "Median", "3Q", "Max"], [[c.strip() for c in rc]], right=range(5)))
        header, rows = self._random_cells()
        parts.append("<p class='jh-h'>Random effects</p>")
        parts.append(_html_table(header, [[c.strip() for c in r] for r in rows], right=range(2, len(header))))
        if m.p > 0:
            header, rows, stars = self._coef_cells()
            parts.append("<p class='jh-h'>Fixed effects</p>")
            body = [[str(n)] + [c.strip() for c in r] for n, r in zip(self.coef_table.index, rows)]
            parts.append(_html_table([""] + header, body, right=range(1, 6), rowhead=True))
            if stars:
                parts.append(f"<p class='jh-legend'>{esc(SIGNIF_LEGEND)}</p>")
            cor = self._correlation_cells()
            if cor is not None:
                parts.append("<p class='jh-h'>Correlation of fixed effects</p>")
                body = [[rn] + [c.strip() for c in r] for rn, r in zip(cor[1], cor[2])]
                parts.append(_html_table([""] + list(cor[0]), body, right=range(1, len(cor[0]) + 1), rowhead=True))
        opt = self._optimizer_lines()
        if opt:
            parts.append("<p class='jh-warn'>" + "<br>".join(esc(s) for s in opt) + "</p>")
        parts.append("</div>")
        return "\n".join(parts)

    def short_html(self) -> str:
        """The short display of a fitted model (R's ``print(m)``), Jupyter's view of a model.

        Returns
        -------
        str
            HTML: the criterion, the random-effect standard deviations and correlations, the
            numbers of observations and groups, the fixed-effect estimates.
        """
        m = self.model
        esc = html.escape
        kind = "REML" if m.reml else "maximum likelihood"
        parts = [_STYLE, '<div class="jaxhlm-summary">',
                 f"<p class='jh-title'><b>Linear mixed model fit by {kind}</b></p><table class='jh-kv'>",
                 f"<tr><th>Formula</th><td><code>{esc(rprint.deparse_formula(m.formula))}</code></td></tr>"]
        if self.data_name:
            parts.append(f"<tr><th>Data</th><td><code>{esc(str(self.data_name))}</code></td></tr>")
        crit = "REML criterion at convergence" if m.reml else "log-likelihood"
        val = m.objective if m.reml else m.loglik
        grp = "; ".join(f"{esc(str(k))}: {v}" for k, v in m.ngroups.items())
        parts.append(f"<tr><th>{crit}</th><td class='jh-num'>{rprint.format_real([val], 7, pad=False)[0]}</td></tr>"
                     f"<tr><th>Observations</th><td>{m.nobs}</td></tr><tr><th>Groups</th><td>{grp}</td></tr></table>")
        header, rows = self._random_cells(variance=False)
        parts.append("<p class='jh-h'>Random effects</p>")
        parts.append(_html_table(header, [[c.strip() for c in r] for r in rows], right=range(2, len(header))))
        if m.p > 0:
            fe = m.fixef
            parts.append("<p class='jh-h'>Fixed effects</p>")
            parts.append(_html_table([str(n) for n in fe.index], [rprint.format_real(fe.to_numpy(), 5, pad=False)],
                                     right=range(len(fe))))
        opt = self._optimizer_lines()
        if opt:
            parts.append("<p class='jh-warn'>" + "<br>".join(esc(s) for s in opt) + "</p>")
        parts.append("<p class='jh-legend'>summary() shows standard errors, df and p-values.</p></div>")
        return "\n".join(parts)


_STYLE = """<style>
.jaxhlm-summary {font-family: var(--jp-ui-font-family, sans-serif); font-size: 13px; line-height: 1.35;}
.jaxhlm-summary table {border-collapse: collapse; margin: 2px 0 8px 0;}
.jaxhlm-summary th, .jaxhlm-summary td {padding: 2px 10px 2px 4px; border: none; text-align: left;}
.jaxhlm-summary thead th {border-bottom: 1px solid #999; font-weight: 600;}
.jaxhlm-summary td.r, .jaxhlm-summary th.r {text-align: right;}
.jaxhlm-summary .jh-num, .jaxhlm-summary td.r {font-family: var(--jp-code-font-family, monospace); white-space: pre;}
.jaxhlm-summary table.jh-kv th {font-weight: 600; padding-right: 14px;}
.jaxhlm-summary .jh-h {font-weight: 600; margin: 8px 0 2px 0;}
.jaxhlm-summary .jh-legend {color: #555; font-size: 11px; margin: 0 0 6px 0;}
.jaxhlm-summary .jh-warn {color: #8a4b00; margin: 6px 0;}
</style>"""


def _html_table(header, rows, right=(), rowhead: bool = False) -> str:
    """A small HTML table; columns in ``right`` are right-aligned (numbers)."""
    right = set(right)
    esc = html.escape
    head = "".join(f"<th class='{'r' if j in right else ''}'>{esc(str(h))}</th>" for j, h in enumerate(header))
    body = []
    for r in rows:
        cells = []
        for j, c in enumerate(r):
            tag = "th" if rowhead and j == 0 else "td"
            cells.append(f"<{tag} class='{'r' if j in right else ''}'>{esc(str(c))}</{tag}>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
