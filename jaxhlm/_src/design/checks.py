"""Checks on model matrices: aliased fixed effects, a response with nothing to model, and random
terms whose columns duplicate each other.

The aliasing tests are scale invariant: a predictor in units of 1e-170 or 1e155 is judged like one
in units of 1 (no squares that underflow or overflow).
"""
from __future__ import annotations

import numpy as np
from scipy.linalg import lapack

from ..base.errors import AliasedRandomEffectsWarning, DataError, RankDeficiencyWarning, warn

__all__ = ["RankDeficiencyWarning", "AliasedRandomEffectsWarning", "drop_aliased", "check_response_values",
           "check_random_terms"]


def _r_factor(X: np.ndarray, y: np.ndarray | None, block: int = 65536) -> np.ndarray:
    """The triangular factor ``R`` of ``[X y]`` (``A = QR``) by a tall-skinny QR over row blocks.

    The blocks' ``R`` factors are stacked and factorised again; this equals one Householder QR
    of ``A`` up to the signs of ``R``'s rows (which no column norm sees), without forming ``A``.
    """
    n, p = X.shape
    k = p + (y is not None)
    Rs = []
    for i in range(0, n, block):
        rows = slice(i, min(n, i + block))
        blk = np.empty((rows.stop - i, k), order="F")  # LAPACK's layout: no copy inside the call
        blk[:, :p] = X[rows]
        if y is not None:
            blk[:, p] = y[rows]
        Rs.append(_qr_r(blk))
    return Rs[0] if len(Rs) == 1 else _qr_r(np.asfortranarray(np.concatenate(Rs)))


def _qr_r(A: np.ndarray) -> np.ndarray:
    """``R`` of ``A = QR`` (LAPACK ``dgeqrf``, as ``numpy.linalg.qr(A, mode="r")``; ``A`` is
    overwritten): the direct call costs a third of NumPy's wrapper on an 8,000 x 3 matrix."""
    m, k = A.shape
    if m == 0 or k == 0:
        return np.zeros((min(m, k), k))
    qr, _, _, info = lapack.dgeqrf(A, overwrite_a=1)
    if info != 0:  # pragma: no cover - only for invalid arguments
        return np.linalg.qr(A, mode="r")
    return np.triu(qr[:min(m, k)])


def _robust_norms(R: np.ndarray) -> np.ndarray:
    """Column norms without overflow or underflow of the squares (entries of 1e155 or 1e-170)."""
    m = np.max(np.abs(R), axis=0)
    safe = np.where(m > 0, m, 1.0)
    Rs = R / safe
    return np.where(m > 0, m * np.sqrt(np.einsum("ij,ij->j", Rs, Rs)), 0.0)


def drop_aliased(X: np.ndarray, names, tol: float = 1e-7, y: np.ndarray | None = None):
    """Keep a full-rank subset of the columns of ``X``, dropping the later of aliased columns.

    As R's ``qr()`` (LINPACK ``dqrdc2``, which lme4's rank check uses with ``tol = 1e-7``): the
    columns are taken in order and column ``j`` is dropped when the norm of its part orthogonal
    to the columns kept so far is below ``tol`` times its own norm. The test is relative to each
    column's norm, so it does not depend on the columns' units: Householder QR is accurate column
    by column whatever the columns' scales, and the norms of ``R``'s columns are taken with a
    scaling that no square can overflow or underflow (a predictor times 1e155 or 1e-170, or a
    response times 1e151, is judged like the original). Works on the triangular factor of ``X``
    (rotating ``X`` by an orthogonal matrix changes no such norm), so it costs one QR of ``X``.

    Returns
    -------
    keep : ndarray of bool, shape (p,)
    resid : float, only when ``y`` is given
        ``||y - P_X y|| / ||y||``, the relative norm of the least-squares residual of ``y`` on the
        kept columns (from the same QR, with ``y`` as an extra last column).
    """
    n, p = X.shape
    keep = np.zeros(p, bool)
    R = _r_factor(X, y)
    norms = np.sqrt(np.einsum("ij,ij->j", R, R))  # ||A e_j|| = ||R e_j||
    if not all(1e-150 < v < 1e150 for v in norms.tolist()):  # squares may have under- or overflowed
        norms = _robust_norms(R)
    R = R / np.where(norms > 0, norms, 1.0)  # the R factor of the column-normalised matrix
    Q = np.zeros((R.shape[0], 0))  # orthonormal basis of the kept columns (in R's coordinates)

    def residual(j):
        v = R[:, j].copy()
        for _ in range(2):  # Gram-Schmidt twice is orthogonal to working precision
            v -= Q @ (Q.T @ v)
        return v

    for j in range(p):
        if norms[j] == 0:
            continue
        v = residual(j)
        r = np.linalg.norm(v)
        if r > tol:  # columns have unit norm
            keep[j] = True
            Q = np.concatenate([Q, (v / r)[:, None]], axis=1)
    if y is None:
        return keep
    return keep, (float(np.linalg.norm(residual(p))) if norms[p] > 0 else 0.0)


def check_response_values(ycol: str, y: np.ndarray, resid: float) -> None:
    """Refuse a response with nothing left to model: constant, or exactly a linear function of
    the fixed effects (relative least-squares residual ``resid`` ~ 0): its residual variance
    would be 0 and the deviance minus infinity."""
    if np.all(y == y[0]):
        raise DataError(
            f"the response {ycol!r} is constant (every used row has the value {y[0]:g}); "
            "there is no variation for a model to explain"
        )
    if resid <= 1e-13:  # about 500 rounding errors: an exact fit
        raise DataError(
            f"the response {ycol!r} is an exact linear function of the fixed effects "
            "(zero residuals); there is no residual variation for a mixed model"
        )


def _within_spread(x: np.ndarray, codes: np.ndarray, nlev: int) -> str | None:
    """``"constant"`` / ``"within"`` when ``x`` is constant overall / within every level."""
    c0, x0 = codes[:33].tolist(), x[:33].tolist()  # quick exit: neighbouring rows of a level differ
    for i in range(len(c0) - 1):
        if c0[i] == c0[i + 1] and x0[i] != x0[i + 1]:
            return None
    if np.any((codes[1:] == codes[:-1]) & (x[1:] != x[:-1])):
        return None
    cnt = np.bincount(codes, minlength=nlev)
    xc = x - x[0]
    m = float(np.max(np.abs(xc))) if len(xc) else 0.0
    if m == 0.0:
        return "constant"
    xc = xc / m
    s1 = np.bincount(codes, weights=xc, minlength=len(cnt))
    s2 = np.bincount(codes, weights=xc * xc, minlength=len(cnt))
    ok = cnt > 0
    sst = float(s2.sum() - s1.sum() ** 2 / len(xc))
    ssw = float(np.sum(s2[ok] - s1[ok] ** 2 / cnt[ok]))
    if sst <= 1e-24 * len(xc):
        return "constant"
    return "within" if ssw <= 1e-12 * sst else None


def check_random_terms(terms: list, factors: list) -> None:
    """Warn about random-effect columns that the data cannot tell apart, per grouping factor:

    * a column constant within every level when the factor also has a random intercept (``(x | g)``
      with ``x`` a property of the groups, or ``(one | g)`` with ``one`` = 1): each group then has
      one effect, not two, and the variances are not separately identifiable;
    * columns that are linearly dependent (``(x + x2 | g)`` with ``x2 = 2 x``).

    Either way the fit will be singular (a variance at zero or a correlation at +-1).
    """
    if len(terms) == 1 and terms[0].p < 2:
        return
    for f, fac in enumerate(factors):
        tds = [td for td in terms if td.factor == f]
        cols = [(td, j) for td in tds for j in range(td.p)]
        if len(cols) < 2:
            continue
        intercept = any("(Intercept)" in td.names for td in tds)
        if intercept:
            for td, j in cols:
                if td.names[j] == "(Intercept)":
                    continue
                how = _within_spread(td.Z[:, j], fac.codes, fac.nlevels)
                if how is not None:
                    what = ("is constant, so it duplicates the random intercept" if how == "constant" else
                            f"is constant within every level of {fac.name!r}, so it is aliased with the random intercept")
                    warn(
                        f"random-effect column {td.names[j]!r} of {td.term} {what}: the data cannot separate their "
                        "variances and the fit will be singular; remove it from the random part",
                        AliasedRandomEffectsWarning)
                    return
        if intercept and len(cols) == 2:
            continue  # intercept and one column: aliased only if constant, checked above
        Z = tds[0].Z if len(tds) == 1 else np.column_stack([td.Z for td in tds])
        G = Z.T @ Z
        if not np.all(np.isfinite(G)):  # huge columns: scale them first
            m = np.max(np.abs(Z), axis=0)
            Zs = Z / np.where(m > 0, m, 1.0)
            G = Zs.T @ Zs
        d = np.sqrt(np.diag(G))
        if np.any(d == 0):
            continue  # (an all-zero column: nothing to say here)
        C = G / np.outer(d, d)
        smallest = 1.0 - abs(C[0, 1]) if len(C) == 2 else np.linalg.eigvalsh(C)[0]
        if smallest <= 1e-10:
            keep = drop_aliased(Z, None)
            bad = [f"{td.names[j]!r} of {td.term}" for (td, j), k in zip(cols, keep) if not k]
            if bad:
                warn(
                    f"random-effect columns on {fac.name!r} are linearly dependent: {', '.join(bad)} "
                    "is a combination of the others; the fit will be singular; remove it from the random part",
                    AliasedRandomEffectsWarning)
