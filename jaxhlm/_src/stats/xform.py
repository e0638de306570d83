"""The preconditioner of ``[X y]``: centred and scaled columns inside, results on the user's scale.

:func:`preconditioner` chooses ``X_c = X A``, ``y_c = (y - X g) / s``; :func:`compute_stats
<jaxhlm._src.stats.suffstats.compute_stats>` forms the statistics of those columns and stores
the :class:`Xform` with them; :func:`original_scale` and :func:`original_objective` map the fit
back. A shift of a predictor or the response by 1e6-1e10, or a scale of 1e155, then changes no
reported quantity beyond rounding.
"""
from __future__ import annotations

import contextlib
from typing import NamedTuple

import numpy as np

__all__ = ["Xform", "preconditioner", "preconditioning", "intercept_column", "X_times", "xform_of",
           "original_scale", "original_objective"]


class Xform(NamedTuple):
    """The preconditioner of ``[X y]``: the statistics are those of ``X_c = X A`` and
    ``y_c = (y - X g) / s`` (centred and scaled columns). With it, ``beta = s A beta_c + g``,
    ``sigma = s sigma_c``, ``b = s b_c``, theta unchanged; ``yy`` is the raw ``y'W y``."""

    A: object
    g: object
    s: object
    logdetA: object
    yy: object


def X_times(X, v) -> np.ndarray:
    """``X @ v`` (zero rows for p = 0)."""
    return X @ v if X.shape[1] else np.zeros(X.shape[0])


def intercept_column(X) -> int | None:
    """The index of a column of ``X`` that is all ones, or None."""
    for j in range(X.shape[1]):
        c = X[:, j]
        if c.size and c[0] == 1.0 and np.all(c == 1.0):
            return j
    return None


def _centre_scale(x, wt, sw, centre: bool):
    """Weighted mean (0 unless ``centre``) and root mean square about it of ``x``, both formed
    after dividing by ``max|x|`` (no overflow at 1e155, no underflow at 1e-170)."""
    amax = float(np.max(np.abs(x))) if x.size else 0.0
    if not (np.isfinite(amax) and amax > 0):
        return 0.0, 1.0
    xs = x / amax
    m = float(np.dot(wt, xs) / sw) if centre else 0.0
    r = xs - m
    d = float(np.sqrt(np.dot(wt, r * r) / sw))
    if not (np.isfinite(d) and d > 0):  # constant: scaled only (rank problems are the design's)
        m, d = 0.0, float(np.sqrt(np.dot(wt, xs * xs) / sw))
        if not (np.isfinite(d) and d > 0):
            return 0.0, 1.0
    return m * amax, d * amax


def preconditioner(X, y, w=None) -> Xform:
    """Centre (when ``X`` has an intercept) and scale every column of ``X`` and ``y``.

    A predictor or response with a large mean (``x + 1e6``) or an extreme scale (``x * 1e155``)
    otherwise loses digits in the cross-products and their Schur complements (the engine's
    criterion moved by 0.01 for a shift of 1e6), or overflows; the centred and scaled problem
    is the same model, with the results transformed back exactly (:class:`Xform`).

    Column ``j`` (not the intercept) becomes ``(x_j - m_j) / d_j`` (``m_j`` its weighted mean
    when there is an intercept column, else 0; ``d_j`` the weighted root mean square about
    ``m_j``): ``X_c = X A`` with ``A`` the identity but for ``A_jj = 1/d_j`` and
    ``A_{0j} = -m_j/d_j`` in the intercept's row. The response becomes ``(y - X g) / s``,
    ``g`` its weighted mean on the intercept (0 otherwise) and ``s`` the root mean square of
    ``y - X g``.
    """
    n, p = X.shape
    wt = np.ones(n) if w is None else w
    sw = float(np.sum(wt))
    icpt = intercept_column(X)
    A = np.eye(p)
    for j in range(p):
        if j == icpt:
            continue
        m, d = _centre_scale(X[:, j], wt, sw, icpt is not None)
        A[j, j] = 1.0 / d
        if icpt is not None:
            A[icpt, j] = -m / d
    g = np.zeros(p)
    m, s = _centre_scale(y, wt, sw, icpt is not None)
    if icpt is not None:
        g[icpt] = m
    r = y - X_times(X, g)
    s = _centre_scale(r, wt, sw, False)[1]
    logdetA = float(np.sum(np.log(np.abs(np.diag(A)))))  # A is triangular (intercept row only)
    amax = float(np.max(np.abs(y))) if y.size else 0.0
    amax = amax if (np.isfinite(amax) and amax > 0) else 1.0
    yy = amax**2 * float(np.dot(wt * (y / amax), y / amax))  # the raw y'W y (for comparisons)
    return Xform(A, g, np.float64(s), np.float64(logdetA), np.float64(yy))


_PRECONDITION = [True]


@contextlib.contextmanager
def preconditioning(on: bool):
    """Within the block, :func:`compute_stats` preconditions ``[X y]`` by default only when
    ``on`` (``False``: the raw statistics, as before preconditioning existed; for tests that
    compare both)."""
    old = _PRECONDITION[0]
    _PRECONDITION[0] = bool(on)
    try:
        yield
    finally:
        _PRECONDITION[0] = old


def xform_of(stats, p: int) -> Xform:
    """The statistics' preconditioner (the identity when there is none)."""
    xf = stats.xform
    if xf is None:
        return Xform(np.eye(p), np.zeros(p), np.float64(1.0), np.float64(0.0), np.float64(np.nan))
    return Xform(*(np.asarray(v, dtype=np.float64) for v in xf))


def original_scale(xf: Xform, beta_c, cov_c=None):
    """``beta = s A beta_c + g`` and ``cov = s^2 A cov_c A'`` (the preconditioned fit's fixed
    effects and their covariance in the original columns)."""
    beta = float(xf.s) * (xf.A @ np.asarray(beta_c, dtype=np.float64)) + xf.g
    if cov_c is None:
        return beta
    return beta, float(xf.s) ** 2 * (xf.A @ np.asarray(cov_c, dtype=np.float64) @ xf.A.T)


def original_objective(obj_c: float, xf: Xform, n: float, p: int, reml: bool) -> float:
    """The (RE)ML criterion of the original columns from the preconditioned one:
    ``+ n log s^2`` (ML) or ``+ (n - p) log s^2 - 2 log|A|`` (REML: ``log|X'V^{-1}X|`` changes)."""
    s2 = float(xf.s) ** 2
    if reml:
        return float(obj_c) + (n - p) * np.log(s2) - 2.0 * float(xf.logdetA)
    return float(obj_c) + n * np.log(s2)
