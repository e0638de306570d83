"""The preconditioner of ``[X y]``: centred and scaled columns inside, results on the user's scale.

:func:`preconditioner` chooses ``X_c = X A``, ``y_c = (y - X g) / s``; :func:`compute_stats
<jaxhlm._src.stats.suffstats.compute_stats>` forms the statistics of those columns and stores
the :class:`Xform` with them; :func:`original_scale` and :func:`original_objective` map the fit
back. A shift of a predictor or the response by 1e6-1e10, or a scale of 1e155, then changes no
reported quantity beyond rounding.
"""
from __future__ import annotations

import contextlib
import math
from typing import NamedTuple

import numpy as np

__all__ = ["Xform", "preconditioner", "needs_preconditioning", "response_scaling", "raw_screen", "precondition_xy", "ScaledColumn",
           "large_mean", "preconditioning", "intercept_column", "X_times", "xform_of", "original_scale", "original_objective"]


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


def preconditioner(X, y, w=None, columns: bool = True) -> Xform:
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
    ``y - X g``. ``columns=False``: the response alone (``A`` the identity).
    """
    n, p = X.shape
    wt = np.ones(n) if w is None else w
    sw = float(np.sum(wt))
    icpt = intercept_column(X)
    A = np.eye(p)
    for j in range(p):
        if j == icpt or not columns:
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


SHIFT_RATIO = 100.0  # precondition when a column's |mean| exceeds this many root mean squares about it
MAGNITUDE = (1e-30, 1e30)  # ... or its largest |value| lies outside this range


def needs_preconditioning(X, w=None, icpt=-1) -> bool:
    """Whether the raw cross-products of the columns of ``X`` would lose digits or
    over/underflow: some column (the intercept aside) has ``|mean| > SHIFT_RATIO`` times its
    spread (only with an intercept, whose column centring removes the mean), or a largest
    absolute value outside :data:`MAGNITUDE`. One cheap pass per column; where it says no,
    :func:`compute_stats <jaxhlm._src.stats.suffstats.compute_stats>` preconditions the response
    alone (always: the Satterthwaite Hessian in ``(theta, sigma)`` needs ``sigma`` near 1) and
    keeps the raw columns of ``X`` (the same numbers to rounding, and cheaper: they then
    coincide with the random-effect columns and share their products). ``icpt``: the intercept
    column if known (None for none; default: looked up)."""
    n, p = X.shape
    wt = None if w is None else np.asarray(w, dtype=np.float64)
    sw = float(n if wt is None else np.sum(wt))
    if icpt == -1:
        icpt = intercept_column(X)
    return any(_shifted_or_extreme(X[:, j], wt, sw, icpt is not None) for j in range(p) if j != icpt)


def _moments(x, wt, sw, amax):
    """Weighted mean and mean square of ``x`` (raw sums when ``amax`` is within
    :data:`MAGNITUDE`'s square root, where they neither overflow nor underflow; else of ``x / amax``,
    rescaled)."""
    if 1e-150 < amax < 1e150:
        m1 = float(x.sum() if wt is None else np.dot(wt, x)) / sw
        m2 = float(np.dot(x, x) if wt is None else np.dot(wt * x, x)) / sw
        return m1, m2, 1.0
    xs = x / amax
    m1 = float(np.sum(xs) if wt is None else np.dot(wt, xs)) / sw
    m2 = float(np.dot(xs, xs) if wt is None else np.dot(wt * xs, xs)) / sw
    return m1, m2, amax


ROW_CHUNK = 1 << 21  # rows per pass where a full-length temporary is avoided (16 MB)


def _sumsq_over(y, a, wt=None) -> float:
    """``sum_r w_r (y_r / a)^2``, over :data:`ROW_CHUNK` rows at a time (one pass, the same
    bits, when there are no more rows than that)."""
    total = 0.0
    for start in range(0, max(len(y), 1), ROW_CHUNK):
        rows = slice(start, start + ROW_CHUNK)
        ys = y[rows] / a
        total += float(np.dot(ys, ys) if wt is None else np.dot(wt[rows] * ys, ys))
    return total


def _amax(x) -> float:
    return max(float(x.max()), -float(x.min())) if x.size else 0.0


def _shifted(m1: float, m2: float) -> bool:
    """The rule from a mean ``m1`` and mean square ``m2``: the spread ``sqrt(m2 - m1^2)`` is
    below ``|m1| / SHIFT_RATIO`` (the cancellation in ``m2 - m1^2`` is far below that bound)."""
    return m2 - m1 * m1 <= (m1 * m1) / SHIFT_RATIO**2


def large_mean(x) -> float | None:
    """The mean of ``x`` when ``|mean| > SHIFT_RATIO`` times its root mean square about the mean
    (the rule of :func:`needs_preconditioning`), else None; None also for a constant or all-zero
    column. Raw moments decide (four passes); the mean and spread are then formed exactly."""
    amax = _amax(x)
    if not (np.isfinite(amax) and amax > 0):
        return None
    m1, m2, _ = _moments(x, None, float(x.size), amax)
    if not _shifted(m1, m2):
        return None
    xs = x / amax
    m = float(np.mean(xs))
    d = float(np.sqrt(np.mean((xs - m) ** 2)))
    return m * amax if 0 < d and abs(m) > SHIFT_RATIO * d else None


def _extreme(amax: float) -> bool:
    """A largest ``|value|`` that is not finite, or nonzero outside :data:`MAGNITUDE` (the
    magnitude half of the screen, for a column of ``X`` and for the response alike)."""
    return not math.isfinite(amax) or (amax != 0.0 and not MAGNITUDE[0] < amax < MAGNITUDE[1])


def _shifted_or_extreme(x, wt, sw, centre: bool) -> bool:
    """``|mean| > SHIFT_RATIO`` spreads (with ``centre``) or ``max|x|`` outside :data:`MAGNITUDE`
    (a non-finite ``max|x|`` too: the preconditioner and the checks after it report it)."""
    amax = _amax(x)
    if _extreme(amax):
        return True
    if amax == 0.0 or not centre:
        return False
    return _shifted(*_moments(x, wt, sw, amax)[:2])


def _scale_response(y, ay: float, wt, sw: float, p: int, moments, centre: bool) -> Xform | None:
    """The response's :class:`Xform` once ``X`` needs no preconditioning: ``y / s`` with ``s``
    its root mean square from ``y / max|y|`` (the same bits whichever route scales ``y``: a
    last-bit change of ``s`` changed a 1M-row crossed fit's path from 10 to 26 BFGS calls); the
    identity for an all-zero ``y``; None when ``y`` has an extreme magnitude or (``centre``) a
    large mean, which the full preconditioner centres. ``moments()`` gives ``y``'s weighted mean
    and mean square, asked for only when the shift decides. The one rule of
    :func:`response_scaling` and :func:`raw_screen`."""
    if _extreme(ay):
        return None
    if not ay > 0:
        return Xform(np.eye(p), np.zeros(p), np.float64(1.0), np.float64(0.0), np.float64(0.0))
    if centre and _shifted(*moments()):
        return None
    s = ay * math.sqrt(_sumsq_over(y, ay, wt) / sw)
    return Xform(np.eye(p), np.zeros(p), np.float64(s), np.float64(0.0), np.float64(s * s * sw))


def response_scaling(X, y, w=None, icpt=-1) -> Xform | None:
    """The response's share of the preconditioner when ``X`` needs none: ``y / s`` with ``s``
    its root mean square (exact, no centring; a pass over ``y`` alone), or None when ``y``
    itself has a large mean or an extreme magnitude (then :func:`preconditioner` centres it).
    ``icpt`` as for :func:`needs_preconditioning`."""
    n, p = X.shape
    wt = None if w is None else np.asarray(w, dtype=np.float64)
    sw = float(n if wt is None else np.sum(wt))
    if icpt == -1:
        icpt = intercept_column(X)
    amax = _amax(y)
    return _scale_response(y, amax, wt, sw, p, lambda: _moments(y, wt, sw, amax)[:2], icpt is not None)


def raw_screen(X, y, w, XtX, Xty, yy, icpt=-1) -> Xform | None:
    """:func:`needs_preconditioning` and :func:`response_scaling` decided from the raw
    cross-products ``X'WX``, ``X'Wy``, ``y'Wy`` (formed anyway) and the columns' largest
    magnitudes: two passes over ``X`` and two over ``y`` instead of six per column (an 8k-row
    fit's statistics 0.16 -> 0.13 ms). The response's :class:`Xform` (``y / s``, ``s`` its root
    mean square) where ``X`` needs no preconditioning and ``y`` only scaling, else None (then
    :func:`precondition_xy` forms the full preconditioner). The moments are the raw sums
    :func:`needs_preconditioning` forms too (every magnitude within :data:`MAGNITUDE`, where
    they neither overflow nor underflow)."""
    n, p = X.shape
    if n == 0:
        return None
    sw = float(n if w is None else np.sum(w))
    if icpt == -1:
        icpt = intercept_column(X)
    if p:
        G = np.asarray(XtX).tolist()
        # sqrt(ss / n) <= max|x_j| <= sqrt(ss) for ss = x_j'x_j: inside these bounds (with room for
        # the rounding of ss) max|x_j| lies inside MAGNITUDE and no pass over X is needed
        inside = (MAGNITUDE[0] ** 2 * n * (1 + 1e-6), MAGNITUDE[1] ** 2 * (1 - 1e-6)) if w is None else (1.0, 0.0)
        amax = None
        for j in range(p):
            if j == icpt:
                continue
            if not inside[0] < G[j][j] < inside[1]:  # zero, extreme, not finite, or weighted: max|x_j| itself
                if amax is None:
                    amax = np.maximum(X.max(axis=0), -X.min(axis=0)).tolist()
                if amax[j] == 0.0:
                    continue
                if _extreme(amax[j]):
                    return None
            if icpt is not None and _shifted(G[icpt][j] / sw, G[j][j] / sw):
                return None
    wt = None if w is None else np.asarray(w, dtype=np.float64)
    return _scale_response(y, _amax(y), wt, sw, p, lambda: (float(Xty[icpt]) / sw, float(yy) / sw),
                           icpt is not None)


class ScaledColumn:
    """``x / s``, formed a slice of rows at a time (:meth:`part`): a response scaled without a
    copy of it (10M rows: 76 MB less). Every element has the same bits as in ``x / s``."""

    __slots__ = ("x", "s")

    def __init__(self, x: np.ndarray, s):
        self.x, self.s = x, s

    def part(self, rows=slice(None)) -> np.ndarray:
        """``(x / s)[rows]``."""
        return self.x[rows] / self.s


def precondition_xy(X, y, w, on: bool, columns: bool | None = None, lazy: bool = False):
    """``(xform, X_c, y_c)`` for :func:`compute_stats <jaxhlm._src.stats.suffstats.compute_stats>`:
    nothing when not ``on``; else the response always (scaled, centred when shifted) and the
    columns of ``X`` when ``columns`` (None: where :func:`needs_preconditioning` says so).
    With ``lazy``, a response of more than :data:`ROW_CHUNK` rows that is only scaled comes back
    as a :class:`ScaledColumn`."""
    if not on:
        return None, X, y
    icpt = intercept_column(X)
    if columns is None:
        columns = needs_preconditioning(X, w, icpt)
    if not columns:
        xform = response_scaling(X, y, w, icpt)
        if xform is not None:
            lazy = lazy and len(y) > ROW_CHUNK  # (a copy of a short column costs less than slices)
            return xform, X, (ScaledColumn(y, xform.s) if lazy else y / xform.s)
    xform = preconditioner(X, y, w, columns=columns)
    Xc = X @ xform.A if columns else X
    return xform, Xc, (y - X_times(X, xform.g)) / xform.s


_PRECONDITION = [True]


@contextlib.contextmanager
def preconditioning(on: bool):
    """Within the block, :func:`compute_stats` preconditions ``[X y]`` by default only when
    ``on`` (and :func:`needs_preconditioning` says so); ``False``: the raw statistics always (for
    tests that compare both)."""
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
