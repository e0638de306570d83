"""R functions a formula may call (``factor``, ``relevel``, ``C``, ``ifelse``, ``pmin``, ``log``, ...),
evaluated with R's semantics; a mixin of :class:`~jaxhlm._src.design.evaluate.Evaluator`."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ..base.errors import DataError, FormulaError
from ..formula.rparse import Call, Name, Num, Str, deparse
from .contrasts import Contrast, as_contrast
from .rvalues import DataWarning, Factor, Matrix, Numeric, Text, r_label

__all__ = ["RFunctions", "match_args", "truth"]


def match_args(node: Call, formals: list) -> dict:
    """R's argument matching (exact names, then positions) of a call's unevaluated arguments."""
    out: dict = {}
    positional = []
    for name, val in node.args:
        if name is None:
            positional.append(val)
        elif name in formals and name not in out:
            out[name] = val
        else:
            raise FormulaError(f"unused or repeated argument {name!r} in {deparse(node)}")
    free = [f for f in formals if f not in out and f != "..."]
    if len(positional) > len(free):
        raise FormulaError(f"too many arguments in {deparse(node)}")
    for f, v in zip(free, positional):
        out[f] = v
    return out


def truth(node, what) -> bool | None:
    """A TRUE/FALSE constant argument (None when the argument is not a logical constant)."""
    if isinstance(node, Name) and node.id in ("TRUE", "T", "FALSE", "F"):
        return node.id in ("TRUE", "T")
    return None


class RFunctions:
    """``_fn_<name>`` handlers (``as.numeric`` -> ``_fn_as_numeric``); ``self`` is an Evaluator."""

    def _fn_I(self, node):
        (arg,) = self._args(node, 1)
        return self.eval(arg)

    def _fn_offset(self, node):
        (arg,) = self._args(node, 1)
        v = self.eval(arg)
        return Numeric(np.asarray(self._num(v, arg), np.float64))

    def _fn_Q(self, node):
        (arg,) = self._args(node, 1)
        if not isinstance(arg, Str):
            raise FormulaError(f"Q() takes a quoted column name: {deparse(node)}")
        return self.column(arg.value)

    def _fn_c(self, node):
        out = []
        for _, v in node.args:
            val = self.eval(v)
            if isinstance(val, Text) and isinstance(val.values, str):
                out.append(val.values)
            elif isinstance(val, Numeric) and np.ndim(val.values) == 0:
                out.append(float(val.values))
            else:
                raise FormulaError(f"c() takes constants here: {deparse(node)}")
        return out

    def _fn_log(self, node):
        a = match_args(node, ["x", "base"])
        v = self.eval(a["x"])
        x = self._num(v, a["x"])
        out = np.log(x)
        if "base" in a:
            out = out / np.log(self._num(self.eval(a["base"]), a["base"]))
        return self._wrap(out, (v,))

    def _fn_round(self, node):
        a = match_args(node, ["x", "digits"])
        v = self.eval(a["x"])
        d = int(self._num(self.eval(a["digits"]), a["digits"])) if "digits" in a else 0
        return self._wrap(np.round(self._num(v, a["x"]), d), (v,))

    def _fn_is_na(self, node):
        (arg,) = self._args(node, 1)
        v = self.eval(arg)
        miss = (v.codes < 0) if isinstance(v, Factor) else pd.isna(np.asarray(self._labels(v) if isinstance(v, Text) else v.values))
        if np.ndim(miss) == 2:
            miss = miss.any(axis=1)
        return Numeric(np.asarray(miss, np.float64), logical=True)

    def _fn_ifelse(self, node):
        a = match_args(node, ["test", "yes", "no"])
        t = self._num(self.eval(a["test"]), a["test"])
        yes, no = self.eval(a["yes"]), self.eval(a["no"])
        if isinstance(yes, (Text, Factor)) or isinstance(no, (Text, Factor)):
            ly, ln = np.broadcast_to(self._labels(yes), t.shape), np.broadcast_to(self._labels(no), t.shape)
            out = np.where(np.isnan(t), None, np.where(t != 0, ly, ln)).astype(object)
            return Text(out)
        y, n_ = self._num(yes, a["yes"]), self._num(no, a["no"])
        out = np.where(t != 0, y, n_)
        out = np.where(np.isnan(t), np.nan, out)
        both_logical = isinstance(yes, Numeric) and yes.logical and isinstance(no, Numeric) and no.logical
        return Numeric(np.asarray(out, np.float64), logical=both_logical)

    def _minmax(self, node, f):
        vals = [self._num(self.eval(v), v) for k, v in node.args if k is None]
        if not vals or any(k is not None for k, _ in node.args):
            raise FormulaError(f"{node.fn}() takes unnamed numeric arguments: {deparse(node)}")
        out = vals[0]
        for v in vals[1:]:
            out = f(out, v)  # np.maximum / np.minimum propagate NaN, as R's na.rm = FALSE
        return Numeric(np.asarray(out, np.float64))

    def _fn_pmin(self, node):
        return self._minmax(node, np.minimum)

    def _fn_pmax(self, node):
        return self._minmax(node, np.maximum)

    def _fn_as_numeric(self, node):
        (arg,) = self._args(node, 1)
        v = self.eval(arg)
        if isinstance(v, Factor):
            if v.nlevels and pd.to_numeric(pd.Series(v.levels), errors="coerce").notna().all():
                warnings.warn(
                    f"{deparse(node)!r} gives the factor's level codes 1..{v.nlevels} (as R), not the numbers in "
                    f"its labels; for those write as.numeric(as.character(...))",
                    DataWarning, stacklevel=8)
            return Numeric(np.where(v.codes < 0, np.nan, v.codes + 1.0))
        if isinstance(v, Text):
            lab = pd.Series(np.atleast_1d(v.values), dtype=object)
            num = pd.to_numeric(lab, errors="coerce")
            bad = int((num.isna() & lab.notna()).sum())
            if bad:
                warnings.warn(f"{deparse(node)!r}: {bad} values are not numbers and become missing (R: NAs introduced "
                              "by coercion)", DataWarning, stacklevel=8)
            return Numeric(num.to_numpy(dtype=np.float64, na_value=np.nan))
        out = Numeric(np.asarray(self._num(v, arg), np.float64))
        if node.fn == "as.integer":
            out.values = np.trunc(out.values)
        return out

    _fn_as_double = _fn_as_numeric
    _fn_as_integer = _fn_as_numeric

    def _fn_as_character(self, node):
        (arg,) = self._args(node, 1)
        return Text(self._labels(self.eval(arg)))

    def _fn_factor(self, node):
        a = match_args(node, ["x", "levels", "labels", "exclude", "ordered"])
        v = self.eval(a["x"])
        f = self._to_factor(v)
        ordered = truth(a["ordered"], node) if "ordered" in a else (node.fn == "ordered" or f.ordered)
        if "levels" in a:
            levels = self.eval(a["levels"])
            levels = [r_label(x) if not isinstance(x, str) else x for x in (levels if isinstance(levels, list) else list(self._labels(levels)))]
            labs = self._labels(f)
            idx = pd.Index(levels).get_indexer(labs)
            f = Factor(np.where(pd.isna(labs), -1, idx).astype(np.int64), tuple(levels))
        if "labels" in a or "exclude" in a:
            raise FormulaError(f"labels= and exclude= of factor() are not supported: {deparse(node)}")
        return Factor(f.codes, f.levels, ordered=bool(ordered), contrasts=f.contrasts)

    _fn_as_factor = _fn_factor
    _fn_ordered = _fn_factor

    def _fn_relevel(self, node):
        a = match_args(node, ["x", "ref"])
        f = self._to_factor(self.eval(a["x"]))
        ref = self.eval(a["ref"])
        lab = ref.values if isinstance(ref, Text) else r_label(float(ref.values))
        if lab not in f.levels:
            raise DataError(f"relevel: {lab!r} is not a level of {deparse(a['x'])!r} (levels {list(f.levels)})")
        j = f.levels.index(lab)
        order = [j] + [i for i in range(f.nlevels) if i != j]
        rank = np.empty(f.nlevels + 1, np.int64)
        rank[np.asarray(order)] = np.arange(f.nlevels)
        rank[-1] = -1
        return Factor(rank[f.codes], tuple(f.levels[i] for i in order), contrasts=f.contrasts)

    def _fn_C(self, node):
        a = match_args(node, ["object", "contr", "how.many"])
        if "how.many" in a:
            raise FormulaError(f"C(f, contr, how.many) is not supported; write C(f, contr): {deparse(node)}")
        f = self._to_factor(self.eval(a["object"]))
        if "contr" not in a:  # R: the default contrasts (options("contrasts")) for its orderedness
            return Factor(f.codes, f.levels, ordered=f.ordered, contrasts=f.contrasts)
        return Factor(f.codes, f.levels, ordered=f.ordered, contrasts=self._contrast_arg(a["contr"], node))

    def _contrast_arg(self, c, node) -> Contrast:
        what = deparse(node)
        if isinstance(c, Name):
            return as_contrast(c.id, what)
        if isinstance(c, Str):
            return as_contrast(c.value, what)
        if isinstance(c, Call) and c.fn in ("Treatment", "contr.treatment", "Sum", "Helmert", "Poly", "SAS"):
            ref = None
            for k, v in c.args:
                if k in (None, "reference", "base") and isinstance(v, (Str, Num)):
                    ref = v.value if isinstance(v, Str) else r_label(v.value)
            kind = as_contrast(c.fn, what).kind if c.fn != "contr.treatment" else "treatment"
            return Contrast(kind, base=ref if kind == "treatment" else None)
        raise FormulaError(f"cannot read the contrasts in {what}")

    def _fn_cbind(self, node):
        cols, names = [], []
        for k, v in node.args:
            x = self._num(self.eval(v), v)
            x = np.broadcast_to(x, (self.n,)) if x.ndim < 2 else x
            cols.append(x if x.ndim == 2 else x[:, None])
            label = k if k is not None else (v.id if isinstance(v, Name) else "")
            names.extend([label] * cols[-1].shape[1])
        return Matrix(np.concatenate(cols, axis=1).astype(np.float64), tuple(names))

    # ---------------------------------------------- transformations that learn from the data
