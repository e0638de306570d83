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

import numpy as np
import pandas as pd

from ..base.errors import ColumnNotFoundError, DataError, FormulaError
from ..formula.rparse import BinOp, Call, Name, Num, Paren, Str, Unary, deparse
from .rfunctions import RFunctions
from .rvalues import Factor, Matrix, Numeric, Text, column_value, r_label, sort_levels
from .transforms import Transforms

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


class Evaluator(RFunctions, Transforms):
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
