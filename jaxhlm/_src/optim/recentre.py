"""Random-effect columns with a large mean: the search runs on the centred term, mapped back.

In a term ``(1 + x | g)`` the covariance of the intercept and slope is unstructured, so the
model with ``x`` and the model with ``x - c`` are the same model in another parametrisation:
with ``Z_c = Z M`` (``M`` the identity but for ``M[i0, j] = -c``, ``i0`` the intercept's column)
the random effects are ``b = M b_c``, their covariance ``Sigma = M Sigma_c M'``, and the
criterion (ML deviance or REML criterion) is the same at corresponding points.

When ``|mean(x)|`` is large against the spread of ``x`` (a year such as 2005 as a slope, or
``Days + 1e6``), the intercept's and the slope's columns are nearly collinear: the optimum has a
huge intercept variance with a correlation near -1, theta spans many orders of magnitude and the
search in it is badly scaled (sleepstudy's ``(Days + 1e6 | Subject)`` stopped 5.8 deviance
units above the optimum). :func:`fit_recentred` searches the centred term instead (its
statistics well conditioned) and maps the optimum back exactly (:func:`theta_from_centred`),
so every consumer (summaries, tests, simulation, prediction) sees the usual model in the
user's columns. Where those columns cannot represent the criterion to working accuracy (there
it differs from the centred one by more than :data:`PRECISION_TOL`), it warns, naming the
column.

Only terms with an intercept and an unstructured covariance qualify: in ``(1 | g) + (0 + x | g)``
(``||``) or ``(0 + x | g)`` a shift of ``x`` changes the model itself.
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from ..base.errors import DataWarning, warn
from ..stats.layout import factor_columns
from ..stats.suffstats import compute_stats
from ..stats.xform import large_mean
from .fit import criterion_at, optimize

__all__ = ["Shift", "Search", "shifted_columns", "centred_design", "theta_from_centred", "factor_maps",
           "variant_theta", "fit_recentred", "PRECISION_TOL"]

PRECISION_TOL = 1e-7  # relative gap between the criteria of the two parametrisations that is reported


@dataclasses.dataclass(frozen=True)
class Shift:
    """Column ``j`` of term ``term`` (whose intercept is column ``i0``) is centred by ``c``."""

    term: int
    i0: int
    j: int
    c: float


class Search(NamedTuple):
    """The parametrisation a fit searched: the centred terms' ``theta`` and statistics ``stats``,
    and per grouping factor ``M[f]`` (``q_f x q_f``) with ``b_f = M[f] b_c`` for every level (the
    identity for factors without a shifted column). Quantities that do not depend on how the
    covariance is written (Satterthwaite df) are computed there; conditional modes and their
    covariances there and mapped (``M b_c``, ``M V_c M'``)."""

    theta: np.ndarray
    stats: object
    M: tuple
    shifts: tuple = ()


def shifted_columns(design) -> list:
    """The :class:`Shift` of every random-effect column (in a term with an intercept and at least
    one more column) whose ``|mean|`` exceeds :data:`SHIFT_RATIO <jaxhlm._src.stats.xform.SHIFT_RATIO>`
    times its root mean square about the mean; designs without rows in memory: none."""
    out = []
    for i, td in enumerate(design.terms):
        if td.p < 2 or "(Intercept)" not in td.names or td.Z.shape[0] == 0:
            continue
        i0 = td.names.index("(Intercept)")
        if not np.all(td.Z[:, i0] == 1.0):
            continue
        for j in range(td.p):
            if j == i0:
                continue
            c = large_mean(td.Z[:, j])
            if c is not None:
                out.append(Shift(i, i0, j, c))
    return out


def centred_design(design, shifts: list):
    """``design`` with each shifted column replaced by ``x - c`` (new arrays; nothing else changes)."""
    terms = list(design.terms)
    for s in shifts:
        td = terms[s.term]
        Z = np.array(td.Z, dtype=np.float64, copy=True) if td is design.terms[s.term] else td.Z
        Z[:, s.j] = Z[:, s.j] - s.c * Z[:, s.i0]
        terms[s.term] = dataclasses.replace(td, Z=Z)
    return dataclasses.replace(design, terms=terms)


def _term_offsets(design) -> dict:
    return {i: o for cols in factor_columns(design) for i, o in cols}


def factor_maps(layout, design, shifts: list) -> tuple:
    """Per grouping factor, ``M_f`` with ``b_f = M_f b_c`` (``M[i0, j] = -c`` inside each term)."""
    M = [np.eye(q) for q in layout.q]
    offs = _term_offsets(design)
    for s in shifts:
        o = offs[s.term]
        M[design.terms[s.term].factor][o + s.i0, o + s.j] = -s.c
    return tuple(M)


def theta_from_centred(theta_c, layout, design, shifts: list, inverse: bool = False) -> np.ndarray:
    """Theta of the user's columns from theta of the centred ones (``inverse``: the other way).

    Per term, ``T T' = M T_c T_c' M'``: ``T`` is the lower triangular factor of ``M T_c``
    (``(M T_c)' = Q R`` gives ``T = R'``, its columns signed so the diagonal is non-negative);
    exact up to rounding whatever the rank of ``T_c`` (a singular centred fit maps to a
    singular one). The inverse uses ``M^-1`` (``+c`` where ``M`` has ``-c``).
    """
    T = layout.T_arrays(np.asarray(theta_c, dtype=np.float64))
    offs = _term_offsets(design)
    Mf = factor_maps(layout, design, shifts)
    for i in sorted({s.term for s in shifts}):
        td = design.terms[i]
        f, o, p = td.factor, offs[i], td.p
        Mt = Mf[f][o:o + p, o:o + p]
        if inverse:
            Mt = 2.0 * np.eye(p) - Mt  # M = I - N with N^2 = 0 (one row): M^-1 = I + N
        A = Mt @ T[f][o:o + p, o:o + p]
        R = np.linalg.qr(A.T, mode="r")
        L = R.T
        sgn = np.where(np.diagonal(L) < 0, -1.0, 1.0)
        T[f][o:o + p, o:o + p] = np.tril(L * sgn[None, :])
    return np.array([T[f][r, c] for f, r, c in zip(layout.theta_factor, layout.theta_row, layout.theta_col)])


def variant_theta(layout, design, shifts) -> np.ndarray:
    """Which theta elements (equally: lme4's ``.sig`` parameters, in the same order) describe a
    different quantity after centring: those in the intercept's row or column of a term with a
    shifted column (the intercept's SD and its correlations). The others (the slopes' SDs and
    their correlations) are the same in both parametrisations."""
    offs = _term_offsets(design)
    rows = {}
    for s in shifts:
        rows.setdefault(design.terms[s.term].factor, set()).add(offs[s.term] + s.i0)
    return np.array([f in rows and (r in rows[f] or c in rows[f])
                     for f, r, c in zip(layout.theta_factor, layout.theta_row, layout.theta_col)], dtype=bool)


def fit_recentred(design, layout, stats, reml: bool, names=None, start=None):
    """The optimum found through the centred terms (see the module docstring), or None when no
    random-effect column is shifted. ``start`` (theta of the user's columns; refits) is mapped
    to the centred terms' and starts the search there.

    The search runs on the centred statistics. Every part of its result but theta is the same in
    both parametrisations (the criterion, ``L_XX``, ``log|L|^2``, beta, ``r^2``: they depend on
    the model, not on how its covariance is written), so the result is the centred one with theta
    mapped back (:func:`theta_from_centred`) and ``search`` the centred :class:`Search` (where
    lme4's singularity rule is applied: a near-zero diagonal element of a well-scaled factor; the
    mapped theta has a diagonal element near 0 whenever the shift is large, singular or not). The
    gradient and inverse Hessian are the search's (centred). Warns
    (:class:`~jaxhlm.DataWarning`, naming the columns) when the criterion evaluated in the
    user's columns at the mapped theta differs from the exact one by more than
    :data:`PRECISION_TOL` relative: quantities computed later in those columns (profiles of the
    intercept's SD and correlations, the Hessian in theta) then carry that error."""
    shifts = shifted_columns(design)
    if not shifts:
        return None
    centred = centred_design(design, shifts)
    stats_c = compute_stats(centred, layout)
    start_c = None if start is None else theta_from_centred(start, layout, design, shifts, inverse=True)
    opt_c = optimize(stats_c, layout, reml, start=start_c, names=names)
    theta = theta_from_centred(opt_c.theta, layout, design, shifts)
    exact = float(opt_c.objective)
    gap = abs(criterion_at(theta, stats, layout, reml) - exact)
    if not gap <= PRECISION_TOL * (1.0 + abs(exact)):
        cols = ", ".join(f"{design.terms[s.term].names[s.j]!r} of {design.terms[s.term].term} (mean {s.c:.3g})"
                         for s in shifts)
        warn(f"random-effect column(s) {cols} have a mean far from 0 against their spread: the model was fitted "
             f"with the columns centred and mapped back, but in these columns the criterion is accurate to only "
             f"about {gap:.2g}, and so are quantities computed in them (profile intervals of the intercept's SD "
             "and correlations); centre the columns (x - mean) for exact results", DataWarning)
    search = Search(np.asarray(opt_c.theta, dtype=np.float64), stats_c, factor_maps(layout, design, shifts),
                    tuple(shifts))
    return opt_c._replace(theta=theta, search=search)
