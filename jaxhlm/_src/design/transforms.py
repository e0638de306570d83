"""R's transformations that learn from the data: ``scale()``, ``poly()`` (and formulaic's ``center()``).

They learn on every row of the data (as R's ``model.frame`` evaluates them before dropping rows
with missing values) and keep what they learned in the evaluator's ``state``, keyed by the call's
R label, for new data (R's ``makepredictcall``):

* ``scale(x, center = TRUE, scale = TRUE)``: ``(x - mean) / sd`` with the n-1 standard deviation of
  the non-missing values; with ``center = FALSE`` the divisor is ``sqrt(sum(x^2) / (n - 1))``; numbers
  may be given for either;
* ``poly(x, degree)``: R's orthogonal polynomials (the QR columns of the centred powers, scaled to
  unit norm) and, for new data, R's three-term recurrence with the stored ``alpha`` and ``norm2``;
  ``poly(x, degree, raw = TRUE)``: the plain powers; missing values are refused, as in R;
* ``center(x)``: ``x - mean(x)``.
"""
from __future__ import annotations

import numpy as np

from ..base.errors import DataError, FormulaError
from ..formula.rparse import deparse
from .rfunctions import match_args, truth
from .rvalues import Matrix, Numeric

__all__ = ["Transforms"]


class Transforms:
    """``scale``, ``poly`` and ``center`` handlers; ``self`` is an Evaluator."""

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
        a = match_args(node, ["x", "center", "scale"])
        v = self.eval(a["x"])
        x = self._num(v, a["x"])
        x2 = x if x.ndim == 2 else x[:, None]

        def compute():
            c_arg, s_arg = a.get("center"), a.get("scale")
            c_on = True if c_arg is None else truth(c_arg, node)
            s_on = True if s_arg is None else truth(s_arg, node)
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
        a = match_args(node, ["x", "degree", "coefs", "raw", "simple"])
        if "coefs" in a or "simple" in a:
            raise FormulaError(f"coefs= and simple= of poly() are not supported: {deparse(node)}")
        deg_node = a.get("degree")
        degree = 1 if deg_node is None else self._num(self.eval(deg_node), deg_node)
        if np.ndim(degree) != 0 or degree < 1 or not float(degree).is_integer():
            raise FormulaError(f"poly(): the degree must be a whole number >= 1 (one variable only): {deparse(node)}")
        degree = int(degree)
        raw = False
        if "raw" in a:
            raw = truth(a["raw"], node)
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
