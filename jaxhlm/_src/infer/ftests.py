"""F tests of the fixed-effects terms of one model: lmerTest's ``anova(m, type=)`` and ``drop1(m)``.

For each term, the hypothesis matrix ``L`` of the requested type
(:func:`~jaxhlm._src.infer.hypotheses.hypotheses`) is tested with
:func:`~jaxhlm._src.infer.contest.contest`'s multi-df F test:

* ``ddf="satterthwaite"``: ``F = (1/q) sum_m (p_m' L beta)^2 / d_m`` over the eigenpairs of
  ``L C L'`` and the denominator df from the Satterthwaite df ``nu_m`` of the rotated contrasts
  (``DenDF = 2E / (E - q)``, ``E = sum nu_m / (nu_m - 2)``), with exact derivatives of ``C``
  in ``(theta, sigma)``;
* ``ddf="kenward-roger"``: pbkrtest's F with the adjusted covariance, its scaling and df.

``Mean Sq = F_unscaled sigma^2`` and ``Sum Sq = NumDF Mean Sq``, as lmerTest prints.

``drop1``: for each term that can be dropped without violating marginality (R's
``drop.scope``), the F test of all its coefficients being 0. When aliased columns were dropped
at fit time, the hypothesis is instead the part of ``X``'s column space not spanned by the
model without the term (lmerTest's ``get_Ldiffmat2``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..base.errors import ArgumentError, InferenceError
from .contest import _f_table
from .fixed_terms import fixed_structure, model_frame
from .hypotheses import hypotheses, zapsmall

__all__ = ["FTable", "anova_table", "drop1"]

COLUMNS = ["Sum Sq", "Mean Sq", "NumDF", "DenDF", "F value", "Pr(>F)"]
_ROMAN = {"1": "I", "2": "II", "3": "III", "marginal": "Marginal"}


def _ddf_name(ddf) -> str:
    key = str(ddf).lower().replace("_", "-").replace(" ", "-")
    if key in ("satterthwaite", "satterth", "s"):
        return "satterthwaite"
    if key in ("kenward-roger", "kr", "kenwardroger", "kenward"):
        return "kenward-roger"
    raise ArgumentError(f"ddf must be 'satterthwaite' or 'kenward-roger', got {ddf!r}")


def _format_p(p: float) -> str:
    if not np.isfinite(p):
        return ""
    if p < 2.2e-16:
        return "< 2.2e-16"
    return f"{p:.4g}" if p >= 1e-4 else f"{p:.3e}".replace("e-0", "e-")


class FTable(pd.DataFrame):
    """A test table (a DataFrame); ``print()`` shows it with its heading, as R.

    ``attrs``: ``heading`` (list of lines), ``hypotheses`` (term -> DataFrame of ``L``),
    ``ddf``.
    """

    @property
    def _constructor(self):
        return pd.DataFrame

    def __str__(self) -> str:
        lines = list(self.attrs.get("heading", []))
        body = pd.DataFrame(index=self.index)
        for c in self.columns:
            v = self[c].to_numpy(dtype=float)
            if c in ("NumDF", "npar", "Df"):
                body[c] = [f"{x:.0f}" if np.isfinite(x) else "" for x in v]
            elif c.startswith("Pr("):
                body[c] = [_format_p(x) for x in v]
            else:
                body[c] = [f"{x:.5g}" if np.isfinite(x) else "" for x in v]
        lines.append(body.to_string())
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.__str__()


def _test_rows(model, Ls: dict, ddf: str, names) -> FTable:
    rows = []
    for lab, L in Ls.items():
        L = np.asarray(L, dtype=np.float64)
        if L.shape[0] == 0 or not np.any(L):
            rows.append(pd.DataFrame({c: [np.nan] for c in COLUMNS}))
            continue
        try:
            rows.append(_f_table(model, L, np.zeros(L.shape[0]), ddf))
        except ArgumentError:  # zero variance: nothing estimable to test
            rows.append(pd.DataFrame({c: [np.nan] for c in COLUMNS}))
    tab = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame({c: [] for c in COLUMNS})
    tab.index = pd.Index(list(Ls.keys()))
    out = FTable(tab[COLUMNS])
    out.attrs["hypotheses"] = {lab: pd.DataFrame(np.asarray(L), columns=list(names)) for lab, L in Ls.items()}
    out.attrs["ddf"] = ddf
    return out


def anova_table(model, type=3, ddf: str = "satterthwaite", data=None) -> FTable:
    """lmerTest's ``anova(m, type=, ddf=)``: one F test per fixed-effects term.

    Parameters
    ----------
    model : LinearMixedModel
    type : {1, 2, 3} or "I", "II", "III", "marginal"
        Type I (sequential), II (each term adjusted for all terms not containing it) or III
        (lmerTest's coding-independent hypotheses); see :mod:`~jaxhlm._src.infer.hypotheses`.
    ddf : {"satterthwaite", "kenward-roger"}
        Denominator df; Kenward-Roger needs a REML fit.
    data : DataFrame, optional
        The data of the fit (type III); default the data :func:`jaxhlm.lmer` kept.

    Returns
    -------
    FTable
        Index: the terms; columns ``Sum Sq, Mean Sq, NumDF, DenDF, F value, Pr(>F)``;
        ``attrs["hypotheses"]`` the matrices tested.
    """
    ddf = _ddf_name(ddf)
    if ddf == "kenward-roger" and not model.reml:
        raise InferenceError("Kenward-Roger's method is only available for REML fits; refit with reml=True "
                             "or use ddf='satterthwaite'")
    Ls = hypotheses(model, type=type, data=data)
    out = _test_rows(model, Ls, ddf, model.fixef.index)
    key = str(type).strip().upper()
    kind = {"I": "1", "II": "2", "III": "3"}.get(key, key.lower() if key == "MARGINAL" else key)
    method = "Satterthwaite's" if ddf == "satterthwaite" else "Kenward-Roger's"
    name = _ROMAN.get(kind, str(type))
    prefix = "Marginal" if kind == "marginal" else f"Type {name}"
    out.attrs["heading"] = [f"{prefix} Analysis of Variance Table with {method} method"]
    out.attrs["type"] = kind
    return out


def _ldiff(X0: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Rows spanning the part of ``X``'s column space that ``X0`` does not span (lmerTest)."""
    coef, *_ = np.linalg.lstsq(X0, X, rcond=None) if X0.shape[1] else (np.zeros((0, X.shape[1])),)
    R = X - X0 @ coef
    R = R[:, np.sum(np.abs(R), axis=0) > 1e-8]
    if R.shape[1] == 0:
        return np.zeros((0, X.shape[1]))
    Lt = X.T @ R
    Q, Rr = np.linalg.qr(Lt)
    rank = int(np.sum(np.abs(np.diag(Rr)) > 1e-10 * max(1.0, np.max(np.abs(np.diag(Rr))))))
    return zapsmall(Q[:, :rank]).T


def drop1(model, scope=None, ddf: str = "satterthwaite") -> FTable:
    """lmerTest's ``drop1``: F tests of the terms that can be dropped (marginality respected).

    Parameters
    ----------
    model : LinearMixedModel
    scope : list of str, optional
        Terms to test; each must be droppable (not part of a higher-order term). Default all.
    ddf : {"satterthwaite", "kenward-roger"}
    """
    ddf = _ddf_name(ddf)
    if ddf == "kenward-roger" and not model.reml:
        raise InferenceError("Kenward-Roger's method is only available for REML fits")
    fs = fixed_structure(model)
    marg = fs.droppable()
    if scope is None:
        chosen = marg
    else:
        scope = [scope] if isinstance(scope, str) else list(scope)
        chosen = []
        for s in scope:
            t = fs.term(s)
            if t not in marg:
                raise ArgumentError(f"term {s!r} cannot be dropped without violating marginality: only "
                                    f"{[u.label for u in marg]} can be")
            chosen.append(t)
    d = model.design
    X = d.X
    p = X.shape[1]
    X_full = None
    if d.dropped_fixef:  # aliased columns: the reduced model may keep columns the full one dropped
        X_full = np.asarray(d.fixed_spec.get_model_matrix(model_frame(model), na_action="ignore"), dtype=np.float64)
    Ls = {}
    for t in chosen:
        if X_full is not None:
            keep = np.ones(X_full.shape[1], bool)
            keep[list(t.cols_full)] = False
            Ls[t.label] = _ldiff(X_full[:, keep], X)
        else:
            Ls[t.label] = np.eye(p)[list(t.cols), :]
    out = _test_rows(model, Ls, ddf, model.fixef.index)
    method = "Satterthwaite's" if ddf == "satterthwaite" else "Kenward-Roger's"
    out.attrs["heading"] = [f"Single term deletions using {method} method:", "", "Model:", model.formula]
    return out
