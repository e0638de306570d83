"""The term structure of the fixed effects, as R's ``terms`` object describes it.

What lmerTest's hypothesis matrices, drop1 and emmeans' reference grid need from a fit:

* the terms of the fixed part (``Variety``, ``nitro``, ``Variety:nitro``) with their factors
  (R's variable labels: ``x``, ``log(x)``, ``C(g, contr.sum)``), whether each
  factor is numeric or categorical (R's ``dataClasses``), and the columns of ``X`` each term
  owns (R's ``assign``; aliased columns dropped at fit time are not in ``X``);
* containment (lmerTest): term ``A`` is contained in ``B`` when ``B`` has all of ``A``'s
  factors and more, and both have the same numeric factors (so ``x`` is contained in ``x:f``
  but ``f`` is not);
* R's marginality for ``drop1`` (``drop.scope``): a term can be dropped when no other term
  has all of its factors;
* the rows of the data the fit used (the model frame), and from them the full-dummy matrix
  ``rdX`` (every categorical factor coded by indicators of all its levels) and the
  treatment-coded ``X`` (R's rule: a factor of a term is coded by contrasts when the term
  without it is in the model, by indicators otherwise) that lmerTest's type III hypotheses
  are defined with.
"""
from __future__ import annotations

import dataclasses
import re

import numpy as np
import pandas as pd

from ..base.errors import InferenceError
from ..design.build import _required_columns
from ..design.evaluate import Evaluator
from ..design.rvalues import Factor
from ..formula.plan import referenced_names

__all__ = ["FixedTerm", "FixedStructure", "fixed_structure", "model_frame", "factor_matrix",
           "dummy_matrices", "expr_columns"]


@dataclasses.dataclass(frozen=True)
class FixedTerm:
    """One term of the fixed part: its R-style label, factors and columns of ``X``."""

    label: str
    factors: tuple
    cols: tuple
    cols_full: tuple = ()  # columns before aliased ones were dropped
    codes: tuple = ()  # R's terms "factors" matrix column: 1 = margin present (contrasts), 2 = not

    @property
    def vars(self) -> set:
        """The factors coded 1 in R's ``factors`` matrix (what lmerTest's containment compares)."""
        return {f for f, c in zip(self.factors, self.codes) if c == 1}

    @property
    def order(self) -> int:
        return len(self.factors)


@dataclasses.dataclass(frozen=True)
class FixedStructure:
    """The fixed-effects terms of a fit (intercept not among ``terms``)."""

    intercept: bool
    terms: tuple
    numeric: dict
    names: tuple
    levels: dict = dataclasses.field(default_factory=dict)  # factor label -> level labels (categorical)
    columns: dict = dataclasses.field(default_factory=dict)  # factor label -> data columns it reads

    @property
    def labels(self) -> list:
        return [t.label for t in self.terms]

    def term(self, label: str) -> FixedTerm:
        for t in self.terms:
            if t.label == label or t.label.replace(" ", "") == str(label).replace(" ", ""):
                return t
        raise InferenceError(f"{label!r} is not a term of the fixed effects (terms: {self.labels})")

    def contained_in(self, t: FixedTerm) -> list:
        """Terms containing ``t`` in lmerTest's sense: ``u`` has all of ``t``'s variables and more,
        and the same numeric ones -- variables counted as R's ``factors`` matrix codes them 1
        (so in ``temp + temp:recipe`` the term ``temp:recipe`` has the variable ``recipe`` only)."""
        out = []
        vt = t.vars
        nt = {f for f in vt if self.numeric[f]}
        for u in self.terms:
            vu = u.vars
            if vt <= vu and vu - vt and nt == {f for f in vu if self.numeric[f]}:
                out.append(u)
        return out

    def droppable(self) -> list:
        """R's ``drop.scope``: terms whose factors are not all among another term's."""
        return [t for t in self.terms if not any(u is not t and set(t.factors) <= set(u.factors) for u in self.terms)]


def fixed_structure(model) -> FixedStructure:
    """The fixed-effects terms of ``model``, read from the fixed side's encoding kept at fit time
    (R's ``terms``: the variables of each term, their ``factors``-matrix codes and ``assign``)."""
    cached = model.cache.get("fixed_structure")
    if cached is not None:
        return cached
    d = model.design
    d.ensure_specs()
    spec = d.fixed_spec
    keep = np.asarray(d.fixed_keep, bool)
    full_to_kept = np.cumsum(keep) - 1
    assign = np.asarray(spec.assign, dtype=np.int64)
    if assign.size != keep.size:
        raise InferenceError("the fixed-effects model specification does not match the model matrix")
    tm = spec.terms
    intercept = bool(tm.intercept) and bool(keep[assign == 0].any())
    terms, numeric, levels, columns = [], {}, {}, {}
    for j, (vars_, codes) in enumerate(zip(tm.terms, tm.codes)):  # R's terms codes (no model.matrix rule)
        factors = tuple(tm.variables[i] for i in vars_)
        for i, f in zip(vars_, factors):
            info = spec.infos[i]
            numeric[f] = info.kind in ("num", "mat")
            levels[f] = tuple(info.levels)
            columns[f] = tuple(referenced_names([tm.nodes[i]]))
        cols_full = np.nonzero(assign == j + 1)[0]
        cols = tuple(int(full_to_kept[c]) for c in cols_full if keep[c])
        terms.append(FixedTerm(label=tm.labels[j], factors=factors, cols=cols,
                               cols_full=tuple(int(c) for c in cols_full), codes=tuple(int(c) for c in codes)))
    out = FixedStructure(intercept=intercept, terms=tuple(terms), numeric=numeric, names=tuple(d.fixef_names),
                         levels=levels, columns=columns)
    model.cache["fixed_structure"] = out
    return out


def model_frame(model, data=None) -> pd.DataFrame:
    """The rows of the data used by the fit (rows with missing values dropped), never a view.

    ``data`` defaults to the data the model was fitted to (kept by :func:`jaxhlm.lmer`).
    """
    if data is None:
        data = model.data
    if data is None:
        raise InferenceError(
            "this needs the data the model was fitted to, and the model does not hold it (fitted out of "
            "core, or built without lmer()); pass data="
        )
    if isinstance(data, dict):
        data = pd.DataFrame(data)
    if not isinstance(data, pd.DataFrame):
        raise InferenceError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    d = model.design
    needed = _required_columns(d.formula, data)
    frame = data.loc[:, needed]
    complete = ~frame.isna().any(axis=1).to_numpy()
    frame = frame.loc[complete].copy()
    if len(frame) != d.n:
        raise InferenceError(
            f"the data has {len(frame)} complete rows for the model's columns, the fit used {d.n}: "
            "is it the data the model was fitted to?"
        )
    return frame


_TOKEN = re.compile(r"`([^`]+)`|Q\(\s*['\"]([^'\"]+)['\"]\s*\)|([A-Za-z_.][\w.]*)")


def expr_columns(expr: str, columns) -> list:
    """Data columns mentioned in a formula expression (``np.log(x + 1)`` -> ``['x']``)."""
    cols = set(columns)
    out = []
    for m in _TOKEN.finditer(expr):
        name = m.group(1) or m.group(2) or m.group(3)
        if name in cols and name not in out:
            out.append(name)
    return out


def factor_matrix(model, label: str, frame: pd.DataFrame) -> tuple:
    """``(matrix, level_labels)`` of one fixed-effects variable on ``frame``: its numeric values
    (one column, or a matrix's columns), or indicators of every level of a categorical one, encoded
    as at fit time (same levels, same learned transformations)."""
    spec = model.design.fixed_spec
    tm = spec.terms
    try:
        i = tm.variables.index(label)
    except ValueError:
        raise InferenceError(f"{label!r} is not a variable of the fixed effects ({list(tm.variables)})") from None
    info = spec.infos[i]
    ev = Evaluator(frame, spec.state, learn=False)
    try:
        v = ev.variable(tm.nodes[i], spec.where)
        if info.kind in ("factor", "logical"):
            v = spec._recode(v, info, ev)
    except Exception as exc:
        raise InferenceError(f"cannot evaluate the fixed-effects variable {label!r} on the data: {exc}") from None
    n = len(frame)
    if info.kind in ("factor", "logical"):
        codes = v.codes if isinstance(v, Factor) else np.where(np.isnan(v.values), -1, v.values).astype(np.int64)
        k = len(info.levels)
        arr = np.full((n, k), np.nan)
        ok = codes >= 0
        arr[ok] = np.eye(k)[codes[ok]]
        return arr, [label + str(lv) for lv in info.levels]
    vals = np.asarray(v.values, dtype=np.float64)
    if vals.ndim == 0:
        vals = np.full(n, float(vals))
    arr = vals.reshape(n, -1)
    names = [label] if info.kind == "num" else [label + c for c in info.colnames]
    return arr, names


def _row_kron(mats: list) -> np.ndarray:
    """Row-wise Kronecker product, first factor varying fastest (R's column order)."""
    out = np.ones((mats[0].shape[0], 1))
    for M in mats:
        out = (M[:, :, None] * out[:, None, :]).reshape(out.shape[0], -1)
    return out


def _combos(sizes: list) -> list:
    """Index tuples in the order of :func:`_row_kron` (first index fastest)."""
    out = [()]
    for s in sizes:
        out = [c + (i,) for i in range(s) for c in out]
    return out


def dummy_matrices(model, frame: pd.DataFrame) -> tuple:
    """``(rdX, Xt, match)``: lmerTest's full-dummy ``rdX``, the treatment-coded ``X`` and, for each
    column of ``Xt``, the column of ``rdX`` holding the same indicator product.

    Both have their columns grouped by term; ``Xt`` is reduced to full column rank by keeping
    columns in order (a column is dropped when it is a combination of the ones before it).
    Returns also the list of ``Xt`` column indices per term (after the rank reduction), as the
    fourth item.
    """
    fs = fixed_structure(model)
    cache: dict = {}

    def fm(f):
        if f not in cache:
            cache[f] = factor_matrix(model, f, frame)[0]
        return cache[f]

    # R's model.matrix: a factor coded 1 gets contrasts, 2 indicators; without an intercept the
    # first categorical factor of the first term that has one gets indicators
    dummy_first = None
    if not fs.intercept:
        for ti, t in enumerate(fs.terms):
            cat = [f for f in t.factors if not fs.numeric[f]]
            if cat:
                dummy_first = (ti, cat[0])
                break
    n = len(frame)
    rd_blocks, xt_blocks, xt_keys, rd_keys = [], [], [], []
    if fs.intercept:
        rd_blocks.append(np.ones((n, 1)))
        xt_blocks.append(np.ones((n, 1)))
        rd_keys.append(("1", ()))
        xt_keys.append((None, ("1", ())))
    for ti, t in enumerate(fs.terms):
        mats = [fm(f) for f in t.factors]
        rd_blocks.append(_row_kron(mats))
        for c in _combos([m.shape[1] for m in mats]):
            rd_keys.append((t.label, c))
        # treatment coding: drop the first level of a categorical factor whose margin is present
        sub, starts = [], []
        for f, code, M in zip(t.factors, t.codes, mats):
            reduced = (not fs.numeric[f]) and code == 1 and dummy_first != (ti, f)
            sub.append(M[:, 1:] if reduced else M)
            starts.append(1 if reduced else 0)
        xt_blocks.append(_row_kron(sub))
        for c in _combos([m.shape[1] for m in sub]):
            xt_keys.append((ti, (t.label, tuple(i + s for i, s in zip(c, starts)))))
    rdX = np.hstack(rd_blocks)
    Xt = np.hstack(xt_blocks)
    keep = _full_rank_columns(Xt)
    Xt = Xt[:, keep]
    xt_keys = [xt_keys[i] for i in keep]
    pos = {k: i for i, k in enumerate(rd_keys)}
    match = np.array([pos[k] for _, k in xt_keys])
    term_cols = [[i for i, (ti, _) in enumerate(xt_keys) if ti == j] for j in range(len(fs.terms))]
    return rdX, Xt, match, term_cols


def _full_rank_columns(X: np.ndarray, tol: float = 1e-7) -> list:
    """Indices of columns kept when each column that is (numerically) a combination of the
    kept ones before it is dropped (R's ``qr`` with column pivoting to the end)."""
    keep: list = []
    Q = np.zeros((X.shape[0], 0))
    for j in range(X.shape[1]):
        v = X[:, j]
        nv = np.linalg.norm(v)
        if nv == 0:
            continue
        r = v - Q @ (Q.T @ v)
        r = r - Q @ (Q.T @ r)
        nr = np.linalg.norm(r)
        if nr > tol * nv:
            keep.append(j)
            Q = np.column_stack([Q, r / nr])
    return keep
