"""R's ``model.matrix``: the columns of a model matrix from expanded terms and evaluated variables.

For each term (in :class:`~jaxhlm._src.formula.rterms.Terms` order) the columns are the row-wise
products of its variables' columns, the first variable varying fastest, named by joining the
variables' column names with ``:`` (``aq:bv``, ``x:fb``, ``poly(x, 2)1:ap``):

* a numeric variable gives one column named by its label (``x``, ``I(x^2)``, ``log(z)``);
* a matrix variable one column per matrix column (``poly(x, 2)1``, ``poly(x, 2)2``; ``scale(x)``);
* a factor (or a logical, levels ``FALSE``/``TRUE``) coded by contrasts (``Terms.codes`` 1) gives
  the contrast matrix's columns (``fb``, ``f1``, ``f.L``); coded by indicators (2) one column per level.
  Without an intercept the first factor of the first term that has one is coded by indicators (R's
  rule, so that ``0 + f`` has every level).

:class:`SideSpec` keeps everything needed to encode new data the same way (levels, contrast
matrices, learned transformations): ``get_model_matrix(newdata)`` is what ``predict`` calls.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from ..base.errors import ColumnNotFoundError, DataError
from ..formula.plan import referenced_names
from ..formula.rterms import Terms
from .contrasts import Contrast, contrast_matrix
from .evaluate import Evaluator
from .rvalues import Factor, Matrix, Numeric

__all__ = ["SideSpec", "na_mask", "take_rows", "drop_unused_levels", "encode_side", "plain_spec"]

_LOGICAL_LEVELS = ("FALSE", "TRUE")


def na_mask(v) -> np.ndarray:
    if isinstance(v, Factor):
        return v.codes < 0
    x = v.values
    return np.isnan(x).any(axis=1) if x.ndim == 2 else np.isnan(x)


def take_rows(v, rows):
    if isinstance(v, Factor):
        return dataclasses.replace(v, codes=v.codes[rows])
    return dataclasses.replace(v, values=v.values[rows])


def drop_unused_levels(v):
    """R's ``drop.unused.levels``: a factor keeps only the levels present."""
    if not isinstance(v, Factor):
        return v
    present = np.zeros(v.nlevels + 1, bool)
    present[v.codes] = True
    present = present[:-1] if v.nlevels else present[:0]
    if present.all():
        return v
    remap = np.full(v.nlevels + 1, -1, np.int64)
    keep = np.nonzero(present)[0]
    remap[keep] = np.arange(len(keep))
    return dataclasses.replace(v, codes=remap[v.codes], levels=tuple(v.levels[i] for i in keep))


def _is_factor(v) -> bool:
    return isinstance(v, Factor) or (isinstance(v, Numeric) and v.logical)


def _factor_codes(v) -> np.ndarray:
    if isinstance(v, Factor):
        return v.codes
    return np.where(np.isnan(v.values), -1, v.values).astype(np.int64)  # logical: FALSE 0, TRUE 1


@dataclasses.dataclass
class _VarInfo:
    kind: str  # "num", "mat", "factor", "logical"
    label: str
    ncol: int = 1
    colnames: tuple = ()
    levels: tuple = ()
    contrast: np.ndarray | None = None
    contrast_names: tuple = ()


def _product(blocks: list, n: int) -> tuple:
    """Row-wise products of the variables' columns, the first variable varying fastest."""
    B = np.ones((n, 1))
    names = [""]
    for Bv, nv in blocks:
        B = (B[:, :, None] * Bv[:, None, :]).reshape(n, B.shape[1] * Bv.shape[1], order="F")
        names = [f"{a}:{b}" if a else b for b in nv for a in names]
    return B, names


def _block(info: _VarInfo, value, code: int, n: int) -> tuple:
    if info.kind == "num":
        return value.values.reshape(n, 1), [info.label]
    if info.kind == "mat":
        return value.values, [info.label + c for c in info.colnames]
    codes = _factor_codes(value)
    if code == 1:
        C, cn = info.contrast, info.contrast_names
    else:
        C, cn = np.eye(len(info.levels)), info.levels
    out = np.full((n, C.shape[1]), np.nan)
    ok = codes >= 0
    out[ok] = C[codes[ok]]
    return out, [info.label + c for c in cn]


def encode_side(terms: Terms, values: dict, contrasts: dict, where: str, n: int) -> tuple:
    """Model matrix of one side (the fixed part, or one random term) at fit time.

    Parameters
    ----------
    terms : Terms
    values : dict
        Variable index -> value, rows already selected, unused factor levels dropped.
    contrasts : dict
        Variable label -> :class:`Contrast` (the ``contrasts=`` argument; empty for random terms).
    where : str
    n : int
        Number of rows.

    Returns
    -------
    X : ndarray (n, p), names : list of str, infos : dict of _VarInfo, codes : tuple,
    assign : tuple of int (R's ``attr(X, "assign")``: 0 for the intercept, j for term j)
    """
    used = sorted({v for t in terms.terms for v in t})
    infos: dict = {}
    for i in used:
        v = values[i]
        label = terms.variables[i]
        if isinstance(v, Matrix):
            k = v.values.shape[1]
            cn = tuple(v.colnames) if v.colnames is not None else (tuple(str(j) for j in range(1, k + 1)) if k > 1 else ("",))
            infos[i] = _VarInfo("mat", label, k, cn)
        elif _is_factor(v):
            levels = v.levels if isinstance(v, Factor) else _LOGICAL_LEVELS
            if len(levels) < 2:
                shown = f" ({levels[0]!r})" if levels else ""
                raise DataError(
                    f"the factor {label!r} in the {where} has only {len(levels)} level{shown} in the rows used; a factor "
                    "predictor needs at least 2 levels (R: contrasts can be applied only to factors with 2 or more levels)"
                )
            spec = contrasts.get(label)
            if spec is None and isinstance(v, Factor):
                spec = v.contrasts
            if spec is None:
                spec = Contrast("poly" if isinstance(v, Factor) and v.ordered else "treatment")
            C, cn = contrast_matrix(spec, tuple(levels), f"{label!r}")
            infos[i] = _VarInfo("factor" if isinstance(v, Factor) else "logical", label, levels=tuple(levels),
                                contrast=C, contrast_names=tuple(cn))
        else:
            infos[i] = _VarInfo("num", label)
    codes = [list(c) for c in terms.codes]
    if not terms.intercept:  # R: the first factor of the first term with one is coded by indicators
        done = False
        for j, t in enumerate(terms.terms):
            for pos, i in enumerate(t):
                if infos[i].kind in ("factor", "logical"):
                    codes[j][pos] = 2
                    done = True
                    break
            if done:
                break
    codes = tuple(tuple(c) for c in codes)
    assign: list = []
    X, names = _assemble(terms, infos, codes, values, n, assign)
    return X, names, infos, codes, tuple(assign)


def _assemble(terms: Terms, infos: dict, codes: tuple, values: dict, n: int, assign: list | None = None) -> tuple:
    mats, names = [], []
    if terms.intercept:
        mats.append(np.ones((n, 1)))
        names.append("(Intercept)")
        if assign is not None:
            assign.append(0)
    for j, (t, c) in enumerate(zip(terms.terms, codes)):
        blocks = [_block(infos[i], values[i], ci, n) for i, ci in zip(t, c)]
        B, nm = _product(blocks, n)
        mats.append(B)
        names.extend(nm)
        if assign is not None:
            assign.extend([j + 1] * B.shape[1])
    X = np.concatenate(mats, axis=1) if mats else np.zeros((n, 0))
    return np.asfortranarray(X, dtype=np.float64), names


@dataclasses.dataclass
class SideSpec:
    """How one side of a formula was encoded, to encode new data the same way.

    Fields
    ------
    terms : Terms
    where : str
        ``"fixed-effects part"`` or ``"random-effect term (x | g)"`` (for messages).
    state : dict
        Parameters learned by ``scale``, ``poly``, ``center`` (shared by all sides).
    infos : dict
        Per variable: numeric / matrix / factor (levels and contrast matrix).
    codes : tuple
        Factor coding per term (after R's no-intercept rule).
    column_names : list of str
    required_variables : set of str
        Data columns the side reads.
    assign : tuple of int
        R's ``attr(X, "assign")``: per column, 0 for the intercept, ``j`` for ``terms.labels[j - 1]``.
    """

    terms: Terms
    where: str
    state: dict
    infos: dict
    codes: tuple
    column_names: list
    required_variables: set
    assign: tuple = ()

    @property
    def term_labels(self) -> tuple:
        return self.terms.labels

    def _values(self, data: pd.DataFrame) -> tuple:
        for c in sorted(self.required_variables):
            if c not in data.columns:
                raise ColumnNotFoundError(c, data.columns, self.where)
        ev = Evaluator(data, self.state, learn=False)
        n = len(data)
        values, missing = {}, np.zeros(n, bool)
        for i, info in self.infos.items():
            v = ev.variable(self.terms.nodes[i], self.where)
            if info.kind in ("factor", "logical"):
                v = self._recode(v, info, ev)
            elif isinstance(v, Factor) or (info.kind == "mat") != isinstance(v, Matrix):
                raise DataError(f"{info.label!r} in the new data is not of the type it had in the fit ({info.kind})")
            missing |= na_mask(v)
            values[i] = v
        return values, missing, n

    @staticmethod
    def _recode(v, info: _VarInfo, ev: Evaluator):
        if info.kind == "logical":
            if not (isinstance(v, Numeric) and v.logical):
                raise DataError(f"{info.label!r} was TRUE/FALSE in the fit; the new data has other values")
            return v
        f = v if isinstance(v, Factor) else ev._to_factor(v)
        labels = np.asarray(list(f.levels) + [None], dtype=object)[f.codes]
        idx = pd.Index(info.levels).get_indexer(labels)
        bad = (idx < 0) & (f.codes >= 0)
        if bad.any():
            new = sorted({str(x) for x in labels[bad]})
            raise DataError(f"factor {info.label!r} has new levels {new[:5]} not seen in the fit (levels "
                            f"{list(info.levels)[:10]}); a fixed-effects factor cannot take levels unseen in the fit")
        return Factor(idx.astype(np.int64), info.levels)

    def get_model_matrix(self, data, na_action: str = "ignore") -> np.ndarray:
        """The model matrix of new data (rows with a missing value are NaN rows)."""
        values, missing, n = self._values(data)
        X, _ = _assemble(self.terms, self.infos, self.codes, values, n)
        if missing.any():
            X[missing] = np.nan
        return X

    def offset(self, data) -> np.ndarray | None:
        """The sum of the side's ``offset(...)`` terms on new data (None without offsets)."""
        if not self.terms.offsets:
            return None
        ev = Evaluator(data, self.state, learn=False)
        out = np.zeros(len(data))
        for i in self.terms.offsets:
            out = out + ev.variable(self.terms.nodes[i], self.where).values
        return out


def plain_spec(terms: Terms, where: str) -> SideSpec:
    """The spec of a side whose variables are all plain numeric columns (the fast path's)."""
    used = sorted({v for t in terms.terms for v in t})
    infos = {i: _VarInfo("num", terms.variables[i]) for i in used}
    names = (["(Intercept)"] if terms.intercept else []) + list(terms.labels)
    nodes = [terms.nodes[i] for i in used] + [terms.nodes[i] for i in terms.offsets]
    assign = tuple(([0] if terms.intercept else []) + list(range(1, len(terms.terms) + 1)))
    return SideSpec(terms=terms, where=where, state={}, infos=infos, codes=terms.codes, column_names=names,
                    required_variables=set(referenced_names(nodes)), assign=assign)
