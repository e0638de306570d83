"""Predictions from a fitted model, for its own rows or for new data (lme4's ``predict.merMod``).

    population level (``re_form="~0"`` or ``"NA"``):   X_new beta
    conditional (``re_form=None``, the default):       X_new beta + Z_new b

New data are encoded with the formulaic specs stored at fit time (same contrasts, same
dropped aliased columns). A row whose grouping level was not seen in the fit gets the
population prediction for that term (lme4's ``allow.new.levels = TRUE``); how many rows did
so is reported in ``result.attrs["new_levels"]`` and by a :class:`NewLevelsWarning`.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from ..base.errors import ArgumentError, ColumnNotFoundError, DataError, NewLevelsWarning, warn
from ..stats.layout import factor_columns

__all__ = ["predict", "new_design"]

_NONE_FORMS = {"~0", "~-1", "na", "~0+0", "0", "none_re"}


def _wants_no_re(re_form) -> bool:
    if re_form is None:
        return False
    if isinstance(re_form, float) and math.isnan(re_form):
        return True
    if re_form is pd.NA:
        return True
    if isinstance(re_form, str):
        return re_form.replace(" ", "").lower() in _NONE_FORMS
    return False


def _selected_terms(model, re_form) -> list:
    """Indices (into ``design.terms``) of the random terms to include."""
    terms = model.design.terms
    if re_form is None:
        return list(range(len(terms)))
    if _wants_no_re(re_form):
        return []
    if not isinstance(re_form, str):
        raise ArgumentError(f"re_form must be None, '~0', 'NA' or a formula string of random terms, got {re_form!r}")
    from ..formula.terms import parse_formula

    rhs = re_form.strip()
    rhs = rhs[1:] if rhs.startswith("~") else rhs
    try:
        parsed = parse_formula(f"__y__ ~ 0 + {rhs}")
    except Exception as exc:
        raise ArgumentError(f"cannot read re_form {re_form!r}: {exc}") from None

    def key(t):
        return (t.group, t.expr.replace(" ", ""))

    have = {key(td.term): i for i, td in enumerate(terms)}
    out = []
    for t in parsed.random:
        if key(t) not in have:
            known = ", ".join(str(td.term) for td in terms)
            raise ArgumentError(f"random term {t} in re_form is not in the model (terms: {known})")
        out.append(have[key(t)])
    return sorted(set(out))


def _model_matrix(spec, newdata, what: str) -> np.ndarray:
    from formulaic.errors import FormulaicError

    try:
        from formulaic.transforms.contrasts import DataMismatchWarning
    except Exception:  # pragma: no cover - older formulaic
        DataMismatchWarning = UserWarning  # noqa: N806
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DataMismatchWarning)
            mm = spec.get_model_matrix(newdata, na_action="ignore")
    except DataMismatchWarning as exc:
        raise DataError(f"new data for the {what}: {exc}; a fixed-effects factor cannot take levels unseen in the fit") from None
    except (FormulaicError, KeyError, NameError, ValueError, TypeError) as exc:
        msg = str(exc)
        for col in getattr(spec, "required_variables", ()):
            if col not in newdata.columns:
                raise ColumnNotFoundError(col, newdata.columns, what) from None
        raise DataError(f"cannot encode the new data for the {what}: {msg}") from None
    arr = np.asarray(mm, dtype=np.float64)
    return arr[:, None] if arr.ndim == 1 else arr


def _int_labels(newdata: pd.DataFrame, cols: tuple) -> np.ndarray:
    def one(v):
        if isinstance(v, (float, np.floating)) and np.isfinite(v) and float(v).is_integer():
            return str(int(v))
        return str(v)

    parts = [newdata[c].map(one).astype(str) for c in cols]
    lab = parts[0]
    for p in parts[1:]:
        lab = lab + ":" + p
    return lab.to_numpy()


def _group_codes(fac, cols: tuple, newdata: pd.DataFrame) -> np.ndarray:
    """Index of each new row's level among the fitted levels (-1: unseen or missing)."""
    for c in cols:
        if c not in newdata.columns:
            raise ColumnNotFoundError(c, newdata.columns, f"grouping factor {fac.name!r}")
    if len(cols) == 1:
        vals = newdata[cols[0]]
        missing = vals.isna().to_numpy()
        try:
            codes = np.asarray(fac.levels.get_indexer(vals.astype(fac.levels.dtype) if not missing.any() else vals))
        except (TypeError, ValueError):
            codes = np.full(len(vals), -1)
        lab = vals.astype(str).to_numpy()
    else:
        missing = newdata[list(cols)].isna().any(axis=1).to_numpy()
        lab = newdata[cols[0]].astype(str)
        for c in cols[1:]:
            lab = lab + ":" + newdata[c].astype(str)
        lab = lab.to_numpy()
        codes = np.full(len(lab), -1)
    # second chance: match on the labels as strings (e.g. 12 vs "12"), then with integral
    # floats written as integers (a column with a missing value is read as float: 1.0 vs 1)
    as_str = pd.Index([str(v) for v in fac.levels])
    todo = (codes < 0) & ~missing
    if todo.any():
        codes = codes.copy()
        codes[todo] = as_str.get_indexer(lab[todo])
    todo = (codes < 0) & ~missing
    if todo.any():
        alt = _int_labels(newdata, cols)
        codes[todo] = as_str.get_indexer(alt[todo])
    codes = np.where(missing, -1, codes)
    return codes.astype(np.int64)


def new_design(model, newdata: pd.DataFrame, sel: list, allow_new_levels: bool) -> tuple:
    """``(X, terms, new_levels)`` for new data: the fixed-effects rows and, per selected random
    term, ``(term index, Z rows, level codes)`` (code -1: a level unseen in the fit, or missing)."""
    d = model.design
    n = len(newdata)
    d.ensure_specs()
    Xf = _model_matrix(d.fixed_spec, newdata, "fixed-effects part")
    if Xf.shape[0] != n:
        raise DataError(f"the fixed-effects model matrix has {Xf.shape[0]} rows for {n} rows of new data")
    X = Xf[:, np.asarray(d.fixed_keep, bool)]
    new_levels: dict = {}
    codes_of: dict = {}
    terms = []
    for i in sel:
        td = d.terms[i]
        fac = d.factors[td.factor]
        if td.factor not in codes_of:
            codes = _group_codes(fac, td.term.group, newdata)
            codes_of[td.factor] = codes
            nnew = int((codes < 0).sum())
            if nnew:
                if not allow_new_levels:
                    col = " : ".join(td.term.group)
                    raise DataError(
                        f"{nnew} rows of new data have levels of {col!r} not seen in the fit "
                        "(or missing); use allow_new_levels=True for population-level predictions"
                    )
                new_levels[fac.name] = nnew
        Z = _model_matrix(d.term_specs[i], newdata, f"random-effect term {td.term}")
        terms.append((i, Z, codes_of[td.factor]))
    return X, terms, new_levels


def _as_frame(newdata) -> pd.DataFrame:
    if isinstance(newdata, dict):
        newdata = pd.DataFrame(newdata)
    if not isinstance(newdata, pd.DataFrame):
        raise ArgumentError(f"newdata must be a pandas DataFrame, got {type(newdata).__name__}")
    return newdata


def predict(model, newdata=None, re_form=None, allow_new_levels: bool = True):
    """Predicted responses (intervals: :func:`jaxhlm._src.infer.intervals.predict_interval`).

    Parameters
    ----------
    model : LinearMixedModel
    newdata : pandas.DataFrame, optional
        Rows to predict for (needs the predictor and grouping columns, not the response).
        Default: the rows used in the fit.
    re_form : None, "~0", "NA" or str
        ``None`` (default): conditional predictions with all random effects (lme4's
        ``re.form = NULL``); ``"~0"`` / ``"NA"`` (or ``float("nan")``): population level,
        ``X beta`` (lme4's ``re.form = NA``); a formula of some of the model's random terms,
        e.g. ``"~ (1 | Subject)"``, includes only those.
    allow_new_levels : bool, default True
        Rows whose grouping level is unseen (or missing) get a random effect of 0 for that
        factor (lme4's ``allow.new.levels = TRUE``); with False they raise :class:`DataError`.

    Returns
    -------
    pandas.Series or pandas.DataFrame
        Indexed like ``newdata`` (or the fitted rows). ``attrs["new_levels"]`` maps each
        grouping factor to the number of rows predicted at an unseen level. Rows with missing
        predictor values give NaN.
    """
    d = model.design
    beta = model.fixef.to_numpy()
    sel = _selected_terms(model, re_form)
    if newdata is None:
        X, index = d.X, d.index
        pred = X @ beta
        if getattr(d, "offset", None) is not None:  # lme4 predicts with the formula's offset
            pred = pred + d.offset
        if sel:
            blocks = model.factor_modes
            offs = {i: o for lst in factor_columns(d) for i, o in lst}
            for i in sel:
                td = d.terms[i]
                b = blocks[td.factor][:, offs[i]:offs[i] + td.p]
                pred = pred + np.einsum("ij,ij->i", td.Z, b[d.factors[td.factor].codes])
        out = pd.Series(pred, index=index, name="predict")
        out.attrs["new_levels"] = {}
        return out

    newdata = _as_frame(newdata)
    X, terms, new_levels = new_design(model, newdata, sel, allow_new_levels)
    pred = X @ beta
    off = d.fixed_spec.offset(newdata) if hasattr(d.fixed_spec, "offset") else None
    if off is not None:  # lme4 predicts with the formula's offset
        pred = pred + off
    if terms:
        blocks = model.factor_modes
        offs = {i: o for lst in factor_columns(d) for i, o in lst}
        for i, Z, codes in terms:
            td = d.terms[i]
            b = blocks[td.factor][:, offs[i]:offs[i] + td.p]
            bb = np.where((codes >= 0)[:, None], b[np.maximum(codes, 0)], 0.0)
            pred = pred + np.einsum("ij,ij->i", Z, bb)
    if new_levels:
        desc = ", ".join(f"{k}: {v} rows" for k, v in new_levels.items())
        warn(
            f"levels not seen in the fit get population-level predictions for their factor ({desc})",
            NewLevelsWarning,
        )
    out = pd.Series(pred, index=newdata.index, name="predict")
    out.attrs["new_levels"] = new_levels
    return out
