"""Likelihood-ratio tests of the random-effect terms (lmerTest's ``ranova``).

Each random-effect term (after lme4's expansion of ``||`` and ``/``) is reduced and the model
refitted; the table compares each reduced fit with the full one:

    LRT = 2 (logLik_full - logLik_reduced),  Df = npar_full - npar_reduced,  P(chi2_Df > LRT).

Reduction rules (lmerTest, ``reduce_terms=True``): a term whose left side has no variable
(``(1 | g)``, ``(0 + 1 | g)``) is removed (row ``(1 | g)``); otherwise, for every variable term
``x`` of the left side that is not part of a higher-order one (R's ``drop.scope``), ``x`` is
dropped with its variances and covariances: ``(x | g)`` becomes ``(1 | g)``, ``(x + z | g)``
becomes ``(z | g)``; when ``x`` is the only variable term the reduced term is ``(1 | g)``, also
for ``(0 + x | g)`` (row ``x in (expr | g)``). A reduced term identical to one already in the
model merges with it (as R's formula algebra does). With ``reduce_terms=False`` every term is
removed whole. REML fits are compared by their REML log-likelihoods (the fixed effects are the
same), ML fits by the likelihood. A model left without random effects is a linear model; its
(REML) log-likelihood is that of R's ``logLik.lm`` with ``npar = p + 1``.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..base.errors import InferenceError
from ..formula.update import formula_terms, update_formula
from .ftests import FTable
from .update import refit_formula
from ..base import dist

__all__ = ["ranova", "lm_loglik"]


def _bar(expr: str, group: str) -> str:
    return f"({expr} | {group})"


def lm_loglik(X: np.ndarray, y: np.ndarray, reml: bool, weights=None, offset=None) -> float:
    """Log-likelihood of the linear model ``y ~ X`` (R's ``logLik.lm``, ``REML=`` as given), with
    prior weights (``lm(weights=)``: ``(sum log w - N (log 2 pi + 1 - log N + log sum w r^2)) / 2``,
    the QR of ``sqrt(w) X`` in the REML term) and an offset subtracted from ``y``."""
    n, p = X.shape
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    yo = y if offset is None else y - offset
    sw = np.sqrt(w)
    Q, R = np.linalg.qr(X * sw[:, None])
    ys = yo * sw
    resid = ys - Q @ (Q.T @ ys)
    wrss = float(resid @ resid)
    N = n - p if reml else n
    val = 0.5 * (float(np.sum(np.log(w))) - N * (math.log(2 * math.pi) + 1 - math.log(N) + math.log(wrss)))
    if reml:
        val -= float(np.sum(np.log(np.abs(np.diag(R)))))
    return val


def _reductions(expr: str) -> list:
    """``[(row label suffix, new expr or None)]`` for one random term's left side."""
    terms, icpt, order, text = formula_terms(expr)
    if not terms:
        return [(None, None)]
    label = lambda t: ":".join(text[k] for k in sorted(t, key=lambda k: order[k]))  # noqa: E731
    scope = [t for t in terms if not any(u != t and t <= u for u in terms)]
    out = []
    for t in scope:
        if set(terms) == {t}:
            new = "1"
        else:
            new = update_formula(f"~ {expr}", f"~ . - {label(t)}").lstrip("~").strip()
        out.append((label(t), new))
    return out


def _reduced_formulas(model, reduce_terms: bool) -> tuple:
    # lme4 orders the terms by number of levels; R's ranova keeps the formula's order (findbars)
    parsed = model.design.formula
    formula_order = []
    for t in parsed.random:
        key = (t.expr, t.group_name, ":".join(t.group))
        if key not in formula_order:
            formula_order.append(key)
    bars = formula_order
    fixed = parsed.fixed
    full = update_formula(model.formula, ". ~ " + " + ".join([fixed] + [_bar(e, g) for e, _, g in bars]))
    heading = update_formula(model.formula, ". ~ " + " + ".join([fixed] + [_bar(e, lab) for e, lab, _ in bars]))
    rows = []
    for expr, lab, grp in bars:
        reds = _reductions(expr) if reduce_terms else [(None, None)]
        for what, new in reds:
            rm = f"~ . - {_bar(expr, grp)}"
            if what is None or new is None:
                rows.append((_bar(expr, lab), update_formula(full, rm)))
            else:
                rows.append((f"{what} in {_bar(expr, lab)}", update_formula(full, f"{rm} + {_bar(new, grp)}")))
    return full, heading, rows


def _has_bars(formula: str) -> bool:
    return "|" in formula.split("~", 1)[1]


def _fit_loglik(model, formula: str) -> tuple:
    if _has_bars(formula):
        m = refit_formula(model, formula)
        if m.nobs != model.nobs:
            raise InferenceError(f"the number of rows in use changed from {model.nobs} to {m.nobs} "
                                 f"when fitting {formula!r}: remove missing values first")
        return m.npar, m.loglik
    d = model.design
    return d.p + 1, lm_loglik(d.X, d.y, model.reml, d.weights, d.offset)


def ranova(model, reduce_terms: bool = True) -> FTable:
    """lmerTest's ``ranova``: one likelihood-ratio test per random-effect term.

    Parameters
    ----------
    model : LinearMixedModel
        Fitted with :func:`jaxhlm.lmer` (the data are refitted, so the model must hold them).
    reduce_terms : bool, default True
        Reduce terms with random slopes (``(x | g)`` -> ``(1 | g)``) rather than removing them.

    Returns
    -------
    FTable
        Rows ``<none>`` (the model) and one per reduction; columns ``npar, logLik, AIC, LRT,
        Df, Pr(>Chisq)``; ``attrs["formulae"]`` the reduced models' formulas.
    """
    full, heading, rows = _reduced_formulas(model, reduce_terms)
    names, npar, ll = ["<none>"], [model.npar], [model.loglik]
    formulae = {}
    for lab, form in rows:
        k, l_ = _fit_loglik(model, form)
        names.append(lab)
        npar.append(k)
        ll.append(l_)
        formulae[lab] = form
    npar = np.asarray(npar, dtype=float)
    ll = np.asarray(ll, dtype=float)
    lrt = np.concatenate([[np.nan], 2 * (ll[0] - ll[1:])])
    df = np.concatenate([[np.nan], npar[0] - npar[1:]])
    with np.errstate(invalid="ignore"):
        p = np.where(df > 0, dist.chi2_sf(lrt, np.where(df > 0, df, 1)), np.nan)
    tab = FTable({"npar": npar, "logLik": ll, "AIC": -2 * ll + 2 * npar, "LRT": lrt, "Df": df, "Pr(>Chisq)": p},
                 index=pd.Index(names))
    tab.attrs["heading"] = ["ANOVA-like table for random-effects: Single term deletions", "", "Model:", heading]
    tab.attrs["formulae"] = formulae
    return tab
