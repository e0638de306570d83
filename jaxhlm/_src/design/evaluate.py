"""Evaluating the variables of a formula on data, with R's semantics, in float64.

An :class:`Evaluator` turns a parsed variable (``x``, ``I((x - 3)^2)``, ``log(y)``, ``poly(x, 2)``,
``scale(x)``, ``factor(g)``, ``C(f, sum)``, ``np.log(x)``) into an R value of
:mod:`~jaxhlm._src.design.rvalues`. Arithmetic is R's: ``^`` is a power, ``%%`` and ``%/%`` are
R's modulus and integer division, ``/`` always divides in floating point, a missing value
propagates, comparisons give logicals with missing values, ``&`` / ``|`` are three-valued. Every
numeric column is float64 before any arithmetic (no integer overflow).

Transformations that learn from the data (``scale``, ``poly``, ``center``) learn on every row of
the data, as R's ``model.frame`` evaluates them before rows with missing values are dropped; what
they learned is kept in ``state`` (keyed by the call's R label) and reused for new data
(``predict``), as R's ``makepredictcall``.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ..base.errors import ColumnNotFoundError, DataError, FormulaError
from ..formula.rparse import BinOp, Call, Name, Num, Paren, Str, Unary, deparse
from .contrasts import Contrast, as_contrast
from .rvalues import DataWarning, Factor, Matrix, Numeric, Text, column_value, r_label, sort_levels

__all__ = ["Evaluator", "FUNCTIONS"]

_MATH = {
    "exp": np.exp, "sqrt": np.sqrt, "abs": np.abs, "log2": np.log2, "log10": np.log10, "log1p": np.log1p,
    "expm1": np.expm1, "sin": np.sin, "cos": np.cos, "tan": np.tan, "asin": np.arcsin, "acos": np.arccos,
    "atan": np.arctan, "sinh": np.sinh, "cosh": np.cosh, "tanh": np.tanh, "floor": np.floor,
    "ceiling": np.ceil, "trunc": np.trunc, "sign": np.sign,
}
_CONST = {"TRUE": (1.0, True), "T": (1.0, True), "FALSE": (0.0, True), "F": (0.0, True),
          "pi": (np.pi, False), "Inf": (np.inf, False), "NaN": (np.nan, False), "NA": (np.nan, True),
          "NA_real_": (np.nan, False), "NA_integer_": (np.nan, False)}
FUNCTIONS = sorted(set(_MATH) | {"log", "round", "I", "offset", "scale", "center", "poly", "factor", "as.factor",
                                 "ordered", "relevel", "C", "as.numeric", "as.double", "as.integer",
                                 "as.character", "ifelse", "pmin", "pmax", "is.na", "cbind", "c", "Q", "np.*"})


def _match(node: Call, formals: list) -> dict:
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


def _truth(node, what) -> bool | None:
    """A TRUE/FALSE constant argument (None when the argument is not a logical constant)."""
    if isinstance(node, Name) and node.id in ("TRUE", "T", "FALSE", "F"):
        return node.id in ("TRUE", "T")
    return None


class Evaluator:
    """Evaluate parsed variables on a DataFrame.

    Parameters
    ----------
    frame : pandas.DataFrame
    state : dict
        What data-dependent transformations learned (filled when ``learn``; read otherwise).
    learn : bool
        True at fit time, False for new data.
    cache : dict, optional
        Column values already converted (shared between the parts of one formula).
    """

    def __init__(self, frame: pd.DataFrame, state: dict, learn: bool, cache: dict | None = None):
        self.frame = frame
        self.n = len(frame)
        self.state = state
        self.learn = learn
        self.cache = {} if cache is None else cache
        self.where = "formula"
        self.columns_used: list = []

    # ------------------------------------------------------------------ columns
    def column(self, name: str):
        if name not in self.cache:
            if name not in self.frame.columns:
                raise ColumnNotFoundError(name, self.frame.columns, self.where)
            self.cache[name] = column_value(self.frame[name], name)
        if name not in self.columns_used:
            self.columns_used.append(name)
        return self.cache[name]

    def variable(self, node, where: str):
        """The value of one formula variable, with one entry per row."""
        self.where = where
        with np.errstate(all="ignore"):
            v = self.eval(node)
        if isinstance(v, Text):
            v = self._to_factor(v)
        length = np.shape(v.codes if isinstance(v, Factor) else v.values)
        if not length or length[0] != self.n:
            raise DataError(f"{deparse(node)!r} in the {where} has {length[0] if length else 1} value(s) for {self.n} rows; "
                            "a formula variable needs one value per row")
        return v

    # ------------------------------------------------------------------ helpers
    def _num(self, v, node) -> np.ndarray:
        if isinstance(v, Numeric):
            return v.values
        if isinstance(v, Matrix):
            return v.values
        if isinstance(v, Factor):
            raise DataError(f"arithmetic on the factor in {deparse(node)!r} is not meaningful (R: not meaningful for factors)")
        if isinstance(v, (Text, list)):
            raise DataError(f"{deparse(node)!r} does arithmetic on text; convert the column to numbers")
        raise DataError(f"cannot use {deparse(node)!r} as numbers")

    @staticmethod
    def _pair(a: np.ndarray, b: np.ndarray):
        if a.ndim == 2 and b.ndim == 1:
            b = b[:, None]
        elif b.ndim == 2 and a.ndim == 1:
            a = a[:, None]
        return a, b

    def _wrap(self, values: np.ndarray, like=(), logical=False):
        if values.ndim == 2:
            names = next((x.colnames for x in like if isinstance(x, Matrix)), None)
            return Matrix(values, names)
        return Numeric(values, logical=logical)

    @staticmethod
    def _logical(truth: np.ndarray, na: np.ndarray) -> Numeric:
        out = truth.astype(np.float64)
        out = np.where(na, np.nan, out)
        return Numeric(out, logical=True)

    def _to_factor(self, v) -> Factor:
        if isinstance(v, Factor):
            return v
        if isinstance(v, Text):
            vals = np.asarray(v.values, dtype=object)
            if vals.ndim == 0:
                vals = np.full(self.n, vals.item(), dtype=object)
            missing = pd.isna(vals)
            labels = np.where(missing, None, vals)
            levs = sort_levels(pd.unique(labels[~missing]))
            codes = np.full(len(vals), -1, np.int64)
            codes[~missing] = pd.Index(levs).get_indexer(labels[~missing])
            return Factor(codes, tuple(levs))
        if isinstance(v, Numeric):
            x = v.values
            missing = np.isnan(x)
            if v.logical:
                levs = [lv for lv, val in (("FALSE", 0.0), ("TRUE", 1.0)) if np.any(x[~missing] == val)]
                codes = np.where(missing, -1, (x == 1.0).astype(np.int64) - (0 if "FALSE" in levs else 1))
                return Factor(codes.astype(np.int64), tuple(levs))
            uniq = np.unique(x[~missing])
            codes = np.full(len(x), -1, np.int64)
            codes[~missing] = np.searchsorted(uniq, x[~missing])
            return Factor(codes, tuple(r_label(u) for u in uniq))
        raise DataError("cannot make a factor of a matrix")

    def _labels(self, v) -> np.ndarray:
        """Text labels (None for missing) of a factor/text/numeric value."""
        if isinstance(v, Factor):
            lev = np.asarray(list(v.levels) + [None], dtype=object)
            return lev[v.codes]
        if isinstance(v, Text):
            return np.asarray(v.values, dtype=object)
        if isinstance(v, Numeric):
            x = np.atleast_1d(v.values)
            if v.logical:
                return np.asarray([None if np.isnan(a) else ("TRUE" if a else "FALSE") for a in x], dtype=object)
            return np.asarray([None if np.isnan(a) else r_label(a) for a in x], dtype=object)
        raise DataError("a matrix has no labels")

    # ------------------------------------------------------------------ evaluation
    def eval(self, node):
        if isinstance(node, Num):
            return Numeric(np.asarray(node.value, dtype=np.float64))
        if isinstance(node, Str):
            return Text(node.value)
        if isinstance(node, Name):
            if node.id in self.frame.columns:
                return self.column(node.id)
            if node.id in _CONST:
                val, logical = _CONST[node.id]
                return Numeric(np.asarray(val), logical=logical)
            raise ColumnNotFoundError(node.id, self.frame.columns, self.where)
        if isinstance(node, Paren):
            return self.eval(node.inner)
        if isinstance(node, Unary):
            v = self.eval(node.operand)
            if node.op == "!":
                x = self._num(v, node)
                return self._logical(x == 0, np.isnan(x))
            if node.op == "~":
                raise FormulaError(f"'~' inside {deparse(node)!r}")
            x = self._num(v, node)
            return self._wrap(-x if node.op == "-" else x + 0.0, (v,))
        if isinstance(node, BinOp):
            return self._binop(node)
        if isinstance(node, Call):
            return self._call(node)
        raise FormulaError(f"cannot evaluate {deparse(node)!r}")

    def _binop(self, node: BinOp):
        op = node.op
        a = self.eval(node.left)
        if op == "%in%":
            return self._in(a, node)
        b = self.eval(node.right)
        if op in ("==", "!=") and (isinstance(a, (Factor, Text)) or isinstance(b, (Factor, Text))):
            la, lb = self._labels(a), self._labels(b)
            na = pd.isna(la) | pd.isna(lb)
            eq = np.asarray(la == lb, dtype=bool) & ~na
            return self._logical(eq if op == "==" else ~eq, na)
        x, y = self._pair(self._num(a, node.left), self._num(b, node.right))
        if op in ("+", "-", "*", "/", "^", "%%", "%/%"):
            f = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "^": np.power,
                 "%%": np.mod, "%/%": np.floor_divide}[op]
            out = f(x, y)
            if op == "^":  # R: 1^y and x^0 are 1 even for NaN / Inf
                out = np.where((x == 1) | (y == 0), 1.0, out)
            return self._wrap(np.asarray(out, dtype=np.float64), (a, b))
        na = np.isnan(x) | np.isnan(y)
        if op in ("==", "!=", "<", ">", "<=", ">="):
            f = {"==": np.equal, "!=": np.not_equal, "<": np.less, ">": np.greater, "<=": np.less_equal,
                 ">=": np.greater_equal}[op]
            return self._logical(f(x, y), na)
        if op in ("&", "|"):
            xt, yt = (x != 0) & ~np.isnan(x), (y != 0) & ~np.isnan(y)
            xf, yf = (x == 0), (y == 0)
            if op == "&":
                return self._logical(xt & yt, na & ~(xf | yf))
            return self._logical(xt | yt, na & ~(xt | yt))
        raise FormulaError(f"operator {op!r} is not supported in {deparse(node)!r}")

    def _in(self, a, node):
        table = self.eval(node.right)
        items = table if isinstance(table, list) else list(np.atleast_1d(self._labels(table)))
        labels = {r_label(t) if not isinstance(t, str) else t for t in items if t is not None}
        la = np.atleast_1d(self._labels(a))
        return self._logical(np.asarray([lab in labels for lab in la], dtype=bool), np.zeros(len(la), bool))

    # ------------------------------------------------------------------ calls
    def _call(self, node: Call):
        fn = node.fn
        if fn in _MATH:
            (arg,) = self._args(node, 1)
            v = self.eval(arg)
            return self._wrap(np.asarray(_MATH[fn](self._num(v, arg)), np.float64), (v,))
        if fn.startswith("np.") or fn.startswith("numpy."):
            return self._numpy(node)
        handler = getattr(self, "_fn_" + fn.replace(".", "_"), None)
        if handler is not None:
            return handler(node)
        if fn in self.frame.columns:
            raise FormulaError(f"{fn!r} in the {self.where} is used as a function but it is a column of the data; "
                               f"write `{fn}` in backticks or without parentheses")
        raise FormulaError(
            f"{fn!r} in the {self.where} is used as a function but is neither a column of the data nor a function "
            f"jaxhlm knows (R's {', '.join(f for f in FUNCTIONS if f != 'np.*')}, and numpy's as np.log(x))"
        )

    def _args(self, node: Call, k: int) -> list:
        if len(node.args) != k or any(name is not None for name, _ in node.args):
            raise FormulaError(f"{node.fn}() takes {k} unnamed argument{'s' if k > 1 else ''}: {deparse(node)}")
        return [v for _, v in node.args]

    def _numpy(self, node: Call):
        name = node.fn.split(".", 1)[1]
        f = getattr(np, name, None)
        if not callable(f):
            raise FormulaError(f"numpy has no function {name!r} ({deparse(node)})")
        args = [self._num(self.eval(v), v) for k, v in node.args if k is None]
        kwargs = {k: self._num(self.eval(v), v) for k, v in node.args if k is not None}
        out = np.asarray(f(*args, **kwargs))
        if out.dtype == bool:
            return Numeric(out.astype(np.float64), logical=True)
        return self._wrap(out.astype(np.float64))

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
        a = _match(node, ["x", "base"])
        v = self.eval(a["x"])
        x = self._num(v, a["x"])
        out = np.log(x)
        if "base" in a:
            out = out / np.log(self._num(self.eval(a["base"]), a["base"]))
        return self._wrap(out, (v,))

    def _fn_round(self, node):
        a = _match(node, ["x", "digits"])
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
        a = _match(node, ["test", "yes", "no"])
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
        a = _match(node, ["x", "levels", "labels", "exclude", "ordered"])
        v = self.eval(a["x"])
        f = self._to_factor(v)
        ordered = _truth(a["ordered"], node) if "ordered" in a else (node.fn == "ordered" or f.ordered)
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
        a = _match(node, ["x", "ref"])
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
        a = _match(node, ["object", "contr", "how.many"])
        if "how.many" in a or "contr" not in a:
            raise FormulaError(f"write C(f, contr) with contr one of sum, treatment, helmert, poly, SAS: {deparse(node)}")
        f = self._to_factor(self.eval(a["object"]))
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
    def _stored(self, node, compute):
        key = deparse(node)
        if self.learn:
            if key not in self.state:
                self.state[key] = compute()
            return self.state[key]
        if key not in self.state:
            raise DataError(f"{key!r} has no stored parameters for new data")
        return self.state[key]

    def _fn_center(self, node):
        (arg,) = self._args(node, 1)
        x = self._num(self.eval(arg), arg)
        mean = self._stored(node, lambda: float(np.nanmean(x)))
        return Numeric(x - mean)

    def _fn_scale(self, node):
        a = _match(node, ["x", "center", "scale"])
        v = self.eval(a["x"])
        x = self._num(v, a["x"])
        x2 = x if x.ndim == 2 else x[:, None]

        def compute():
            c_arg, s_arg = a.get("center"), a.get("scale")
            c_on = True if c_arg is None else _truth(c_arg, node)
            s_on = True if s_arg is None else _truth(s_arg, node)
            center = (np.nanmean(x2, axis=0) if c_on else None) if c_on is not None else \
                np.atleast_1d(self._num(self.eval(c_arg), c_arg)).astype(float)
            xc = x2 - center if center is not None else x2
            if s_on is None:
                scale = np.atleast_1d(self._num(self.eval(s_arg), s_arg)).astype(float)
            elif s_on:
                ok = ~np.isnan(xc)
                m = ok.sum(axis=0)
                scale = np.sqrt(np.nansum(xc * xc, axis=0) / np.maximum(1, m - 1))
            else:
                scale = None
            if scale is not None and np.any(scale == 0):
                raise DataError(f"{deparse(node)!r}: the column has no spread (standard deviation 0), it cannot be scaled")
            return {"center": center, "scale": scale}

        st = self._stored(node, compute)
        out = x2 - st["center"] if st["center"] is not None else x2 + 0.0
        if st["scale"] is not None:
            out = out / st["scale"]
        return Matrix(out, v.colnames if isinstance(v, Matrix) else None)

    def _fn_poly(self, node):
        a = _match(node, ["x", "degree", "coefs", "raw", "simple"])
        if "coefs" in a or "simple" in a:
            raise FormulaError(f"coefs= and simple= of poly() are not supported: {deparse(node)}")
        deg_node = a.get("degree")
        degree = 1 if deg_node is None else self._num(self.eval(deg_node), deg_node)
        if np.ndim(degree) != 0 or degree < 1 or not float(degree).is_integer():
            raise FormulaError(f"poly(): the degree must be a whole number >= 1 (one variable only): {deparse(node)}")
        degree = int(degree)
        raw = False
        if "raw" in a:
            raw = _truth(a["raw"], node)
            if raw is None:
                raise FormulaError(f"poly(): raw must be TRUE or FALSE: {deparse(node)}")
        x = self._num(self.eval(a["x"]), a["x"])
        if x.ndim != 1:
            raise FormulaError(f"poly() of a matrix is not supported: {deparse(node)}")
        if np.isnan(x).any():
            raise DataError(f"{deparse(node)!r}: missing values are not allowed in poly() (as in R); "
                            "drop those rows from the data first")
        names = tuple(str(j) for j in range(1, degree + 1))
        if raw:
            return Matrix(np.column_stack([x ** j for j in range(1, degree + 1)]), names)

        def compute():
            if len(np.unique(x)) <= degree:
                raise DataError(f"{deparse(node)!r}: the degree must be less than the number of distinct values "
                                f"({len(np.unique(x))})")
            xbar = float(np.mean(x))
            xc = x - xbar
            V = np.vander(xc, degree + 1, increasing=True)
            Q, R = np.linalg.qr(V)
            Z = Q * np.diag(R)
            norm2 = np.sum(Z * Z, axis=0)
            alpha = (np.sum(xc[:, None] * Z * Z, axis=0) / norm2 + xbar)[:degree]
            return {"alpha": alpha, "norm2": np.concatenate([[1.0], norm2])}, Z[:, 1:] / np.sqrt(norm2[1:])

        key = deparse(node)
        if self.learn and key not in self.state:  # R's poly(): the QR columns themselves
            self.state[key], Z = compute()
            return Matrix(Z, names)
        st = self._stored(node, compute)
        alpha, norm2 = st["alpha"], st["norm2"]
        Z = np.empty((len(x), degree + 1))
        Z[:, 0] = 1.0
        Z[:, 1] = x - alpha[0]
        for i in range(1, degree):
            Z[:, i + 1] = (x - alpha[i]) * Z[:, i] - (norm2[i + 1] / norm2[i]) * Z[:, i - 1]
        Z = Z / np.sqrt(norm2[1:])
        return Matrix(Z[:, 1:], names)
