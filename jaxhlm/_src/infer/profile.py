"""Profile likelihood intervals (lme4's ``profile`` / ``confint.merMod``), used by :mod:`.confint`.

Profile (lme4's default method): for every parameter ``psi`` -- the standard deviations and
correlations of each random term (``.sig01, .sig02, ...`` in the order of ``theta``), the
residual standard deviation ``.sigma`` and the fixed effects -- the signed root deviance

    zeta(x) = sign(x - psi_hat) sqrt(d(x) - d_hat),   d(x) = min_{other parameters} deviance | psi = x,

and the interval ends are the solutions of ``zeta(x) = -+ z_{(1+level)/2}``. As lme4, profiles
use the ML deviance (REML fits are refitted by ML first). lme4 evaluates ``zeta`` on a grid and
interpolates a spline; here each end is found by a safeguarded Newton iteration on ``zeta``,
with the exact derivative (envelope theorem: ``d'(x) = dD/dx`` at the constrained optimum,
by autodiff) and every constrained optimum computed by the jit-compiled BFGS of
:mod:`optimize`, warm-started from the previous one.

Constrained parametrisations (nuisance parameters ``z`` unconstrained, fixed value ``x``):

* ``.sigma = x``: ``theta`` free.
* sd of column ``a`` of a term: row ``a`` of the term's factor ``T`` is ``(x / sigma) v / |v|``
  (``v`` free), so that ``sigma |T_a| = x``; the other rows and sigma free.
* correlation of columns ``(c, r)``: in the order ``(c, r, others)`` the factor is lower
  triangular with first rows ``e^a e_1`` and ``e^b (x e_1 + sqrt(1 - x^2) e_2)`` (positive
  scales: a sign flip would turn the correlation into ``-x``; the log scale keeps small
  standard deviations well conditioned), the other rows free; its rows are permuted back, so
  the term's covariance is ``T T'`` with a (generally non-triangular) ``T`` -- the deviance
  depends on ``T`` only through ``T T'``.
* a fixed effect ``beta_j = x``: the column moves to an offset, ``y - x X_j``; the sufficient
  statistics are transformed exactly (``[X y] -> [X_{-j}, y - x X_j]`` is linear), and the
  deviance is profiled over ``theta`` (sigma and the other fixed effects analytically).

The statistics are those of the preconditioned columns ``X_c = X A``, ``y_c = (y - X g) / s``
(:class:`~jaxhlm._src.stats.suffstats.Xform`), and the profiles are computed there: the ML
deviance differs from the original one by the constant ``n log s^2``, standard deviations and
sigma are profiled in units of ``s``, and ``beta_j = x`` is the constraint on the response
``(y - x X_j) / s = y_c + X_c A^{-1}(g - x e_j) / s`` with the span of ``X_{-j}`` written in the
centred columns (``X_c`` without column ``j`` when ``j`` is not the intercept; the raw columns
``X_c A^{-1}`` without the intercept when it is).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from ..base.config import jit
from ..engine.pls import objective_vp
from ..base.errors import JaxhlmWarning, NonMonotonicProfileWarning, warn
from ..optim.bfgs import minimize
from ..stats.suffstats import transform_xy
from ..base import dist


__all__ = ["nonmonotone_points"]


# ------------------------------------------------------------------------------ profile machinery
@dataclasses.dataclass(frozen=True)
class _TermSpec:
    """Static description of one random term inside its factor (a jit static argument)."""

    factor: int
    offset: int  # first column of the term inside the factor's block
    q: int
    theta_start: int  # first theta index of the term
    rows: tuple  # term-local (r, c) of its theta entries
    cols: tuple


def _term_specs(model) -> tuple:
    from ..stats.layout import factor_columns

    d = model.design
    off_of = {}
    for lst in factor_columns(d):
        for i, o in lst:
            off_of[i] = o
    specs, k = [], 0
    for i, td in enumerate(d.terms):
        rows, cols = [], []
        for c in range(td.p):
            for r in range(c, td.p):
                rows.append(r)
                cols.append(c)
        specs.append(_TermSpec(td.factor, off_of[i], td.p, k, tuple(rows), tuple(cols)))
        k += len(rows)
    return tuple(specs)


def _term_block(spec, th, x, sigma, kind, a, perm):
    """The term's factor ``T_t`` (q x q) from its theta entries under the profile constraint."""
    q = spec.q
    Tl = jnp.zeros((q, q), th.dtype).at[jnp.array(spec.rows), jnp.array(spec.cols)].set(
        th[spec.theta_start:spec.theta_start + len(spec.rows)]
    )

    def free(_):
        return Tl

    def sd(_):
        v = Tl[a]
        nv = jnp.sqrt(jnp.sum(v * v))
        return Tl.at[a].set(x / sigma * v / nv)

    def cor(_):
        if q < 2:
            return Tl
        tau2 = jnp.exp(Tl[0, 0])  # log-scale: positive, and well scaled for small sds
        rho2 = jnp.exp(Tl[1, 1])
        xc = jnp.clip(x, -1.0, 1.0)
        row0 = jnp.zeros(q, th.dtype).at[0].set(tau2)
        row1 = jnp.zeros(q, th.dtype).at[0].set(rho2 * xc).at[1].set(rho2 * jnp.sqrt(1.0 - xc * xc))
        Tp = Tl.at[0].set(row0).at[1].set(row1)
        return Tp[jnp.argsort(perm)]

    return jax.lax.switch(kind, [free, sd, cor], None)


def _theta_full(z, x, kind, which, a, perm, struct, specs):
    """Theta of the full-T structure from the nuisance vector ``z = [theta, sigma]``.

    ``kind``: 0 sigma = x, 1 sd, 2 correlation (of term ``which``), 3 fixed effect (no
    constraint on the covariance parameters). Everything but ``struct``/``specs`` is traced,
    so one compiled function serves every parameter of a model.
    """
    th = z[:-1]
    sigma = jnp.where(kind == 0, x, z[-1])
    Ts = [jnp.zeros((q, q), z.dtype) for q in struct.q]
    for t, spec in enumerate(specs):
        kt = jnp.where((which == t) & ((kind == 1) | (kind == 2)), kind, 0)
        Tt = _term_block(spec, th, x, sigma, kt, a, perm[:spec.q])
        o = spec.offset
        Ts[spec.factor] = Ts[spec.factor].at[o:o + spec.q, o:o + spec.q].set(Tt)
    return jnp.concatenate([T.reshape(-1) for T in Ts]), sigma


@jit(static_argnames=("struct", "specs"))
def _profile_point(z0, x, kind, which, a, perm, M0, E, stats, struct, specs):
    """Minimise the ML deviance over the nuisance ``z = [theta, sigma]`` with one parameter at ``x``.

    For a fixed effect ``beta_j = x`` the statistics are those of ``[X_{-j}, e, y - x X_j]``
    (``M0 - x E``), where ``e`` is a unit column orthogonal to everything (its coefficient is
    0 and it changes no ML deviance), so the structure keeps its shape. Returns the optimum,
    the deviance there and its derivative in ``x`` (envelope theorem).
    """
    fstruct = struct.full_T()
    ncols = stats.XytXy.shape[0]
    unit = jnp.zeros((ncols, ncols), z0.dtype).at[ncols - 2, ncols - 2].set(1.0)

    def dev(z, xx):
        thf, s = _theta_full(z, xx, kind, which, a, perm, struct, specs)
        fixed = kind == 3
        M = jnp.where(fixed, M0 - xx * E, jnp.eye(ncols, dtype=z.dtype))
        st = transform_xy(stats, M)
        st = st._replace(XytXy=st.XytXy + jnp.where(fixed, unit, 0.0))
        return objective_vp(jnp.concatenate([thf, s[None]]), st, fstruct, False)

    zs, fz, g, done = minimize(lambda z: dev(z, x), z0)
    val, dx = jax.value_and_grad(dev, argnums=1)(zs, x)
    return zs, val, dx, done


def _with_lifted_diagonal(alternatives, diag):
    """Add a start whose small diagonal theta entries are raised to 10% of the largest one."""

    def alt(z):
        out = list(alternatives(z)) if alternatives else []
        if diag.size:
            d = np.abs(np.asarray(z)[diag])
            floor = 0.1 * max(float(d.max()), 0.1)
            if np.any(d < floor):
                zz = np.array(z, dtype=float)
                zz[diag] = np.where(d < floor, floor, zz[diag])
                out.append(zz)
        return out

    return alt


class _Profile:
    """zeta(x) and zeta'(x) for one parameter, with warm starts.

    ``alternatives(z)`` gives further starting points: with a variance parameter held fixed
    the constrained deviance can have several local minima (e.g. a correlation held near -1
    is fitted either with a large or with a nearly zero slope variance); the lowest is kept.
    """

    def __init__(self, fn, z0, xhat, base, alternatives=None):
        self.fn = fn
        self.z0 = z0
        self.xhat = xhat
        self.base = base
        self.alternatives = alternatives
        self.nonconv = 0
        self.lower_dev = 0.0
        self.points = []  # (x, zeta, nuisance) of every evaluation

    def __call__(self, x, z_start=None):
        z_start = self.z0 if z_start is None else z_start
        starts = [z_start] + (list(self.alternatives(z_start)) if self.alternatives else [])
        best = None
        for z in starts:
            zs, val, dx, done = self.fn(z, x)
            val = float(val)
            if best is None or (np.isfinite(val) and val < best[1] - 1e-9):
                best = (zs, val, dx, done)
        zs, val, dx, done = best
        zs, dx = np.asarray(zs), float(dx)
        if not bool(done):
            self.nonconv += 1
        diff = val - self.base
        if diff < 0:
            self.lower_dev = min(self.lower_dev, diff)
            diff = 0.0
        zeta = math.copysign(math.sqrt(diff), x - self.xhat) if x != self.xhat else 0.0
        dz = dx / (2 * zeta) if zeta != 0 else np.nan
        self.points.append((float(x), zeta, zs))
        return zeta, dz, zs


MONOTONE_TOL = 1e-3


def nonmonotone_points(points, xhat, tol: float = MONOTONE_TOL) -> list:
    """Pairs ``(x1, x2)`` with ``x1 < x2`` on one side of ``xhat`` where zeta decreases by more
    than ``tol`` (the signed root deviance must increase with x)."""
    out = []
    for side in (-1.0, 1.0):
        pts = sorted((x, z) for x, z in points if (x - xhat) * side > 0)
        pts = pts if side > 0 else pts[::-1]
        best = None
        for x, z in pts:  # walking away from xhat, |zeta| must not fall
            az = abs(z)
            if best is not None and az < best[1] - tol:
                out.append((best[0], x))
            if best is None or az > best[1]:
                best = (x, az)
    return out


def _check_monotone(prof, ends, name, n_inner=3, unit=1.0):
    """Evaluate zeta at ``n_inner`` points between the estimate and each end (warm starts from
    the nearest evaluated point) and report a non-monotonic profile."""
    for end in ends:
        if not np.isfinite(end) or end == prof.xhat:
            continue
        for k in range(1, n_inner + 1):
            x = prof.xhat + (end - prof.xhat) * k / (n_inner + 1)
            near = min(prof.points, key=lambda p: abs(p[0] - x)) if prof.points else None
            prof(x, None if near is None else near[2])
    bad = nonmonotone_points([(x, z) for x, z, _ in prof.points], prof.xhat)
    if bad:
        x1, x2 = bad[0]
        warn(
            f"the profile of {name} is not monotonic (the signed root deviance falls between {x1 * unit:.4g} and "
            f"{x2 * unit:.4g}): its interval may be wrong; inspect the profile", NonMonotonicProfileWarning)
        return True
    return False


def _solve_side(prof, target, step0, lo_bound, hi_bound, tol=1e-6, maxit=60):
    """Find x on one side of ``xhat`` with ``zeta(x) = target``; the bound if it is never reached.

    Safeguarded Newton: steps use the exact ``zeta'``; until the root is bracketed they only
    move outwards (at most 4 times the distance covered so far), afterwards they must stay
    inside the bracket or bisection is used.
    """
    xhat = prof.xhat
    sgn = 1.0 if target > 0 else -1.0
    bound = hi_bound if sgn > 0 else lo_bound
    inner, z_in = xhat, prof.z0  # zeta - target has sign -sgn here (not reached)
    outer = None  # a point where zeta - target has sign +sgn (passed)
    x = xhat + sgn * step0
    if np.isfinite(bound) and (x - bound) * sgn >= 0:
        x = xhat + 0.5 * (bound - xhat)
    for _ in range(maxit):
        zeta, dz, zs = prof(x, z_in)
        g = zeta - target
        if abs(g) < tol:
            return x
        if g * sgn < 0:
            inner, z_in = x, zs
        else:
            outer = x
        if outer is None and x == bound:
            return bound  # the profile does not reach the cut-off before the boundary
        xn = x - g / dz if (np.isfinite(dz) and dz > 0) else np.nan  # zeta increases in x
        if outer is None:
            cap = 4.0 * max(abs(inner - xhat), step0)
            if not np.isfinite(xn) or (xn - inner) * sgn <= 0:
                xn = inner + sgn * cap
            else:
                xn = inner + sgn * min(abs(xn - inner), cap)
            if np.isfinite(bound) and (xn - bound) * sgn >= 0:
                xn = bound
        else:
            if abs(outer - inner) < max(1e-10 * step0, 4e-16 * abs(xhat)):  # (scale free)
                return 0.5 * (inner + outer)
            a_, b_ = min(inner, outer), max(inner, outer)
            if not (np.isfinite(xn) and a_ < xn < b_):
                xn = 0.5 * (inner + outer)
        x = xn
    return x


def _profile_ci(model, idx, allnames, level, maxit=60, check_monotone=True):
    from ..model.pipeline import refit_ml

    if model.reml:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mml = refit_ml(model)
    else:
        mml = model
    struct, stats = mml.layout, mml.stats
    specs = _term_specs(mml)
    nvar = len(allnames) - mml.p
    zq = dist.norm_ppf(0.5 + level / 2)
    xf = mml.xform  # the statistics are the preconditioned ones: work in their units
    s_y = float(xf.s)
    Ai = np.linalg.inv(np.asarray(xf.A, dtype=np.float64))
    g_c = np.asarray(xf.g, dtype=np.float64)
    # the intercept: where g (y's mean) or A (the columns' means) has its entries; when neither
    # has, A is diagonal and the intercept needs no special treatment below
    icpt = next((k for k in range(mml.p) if g_c[k] != 0 or np.count_nonzero(np.asarray(xf.A)[k]) > 1), None)
    base = float(mml.opt.objective)  # the ML deviance of the preconditioned statistics
    theta = mml.theta.to_numpy()
    sigma = mml.sigma / s_y  # sigma_c
    covs = mml.term_covariances()
    lo = np.full(len(idx), np.nan)
    hi = np.full(len(idx), np.nan)
    notes = []
    # approximate standard errors of the variance parameters (only to size the first step)
    p = mml.p
    qmax = max(sp.q for sp in specs)
    eye = np.eye(p + 1)
    zero = np.zeros((p + 1, p + 1))

    def point(z, x, kind, which, a, perm, M0, E):
        return _profile_point(jnp.asarray(z), jnp.asarray(float(x)), jnp.asarray(kind), jnp.asarray(which),
                              jnp.asarray(a), jnp.asarray(perm), jnp.asarray(M0), jnp.asarray(E),
                              stats, struct, specs)

    diag_slots = [k for k in range(struct.ntheta) if struct.theta_row[k] == struct.theta_col[k]]
    for n, i in enumerate(idx):
        z0 = np.concatenate([theta, [sigma]])
        ia = ib = -1
        perm = np.arange(qmax)
        M0, E = eye, zero
        which, a = 0, 0
        alternatives = None
        unit = s_y  # sigma and standard deviations are profiled in units of s
        if i == nvar - 1:  # sigma
            kind = 0
            xhat, lb, ub = sigma, 0.0, np.inf
            step = 0.05 * sigma
        elif i < nvar:
            which = next(t for t, sp in enumerate(specs) if sp.theta_start <= i < sp.theta_start + len(sp.rows))
            sp = specs[which]
            r, c = sp.rows[i - sp.theta_start], sp.cols[i - sp.theta_start]
            S = covs[which][2]
            slots = {(rr, cc): sp.theta_start + k for k, (rr, cc) in enumerate(zip(sp.rows, sp.cols))}
            if r == c:
                kind, a = 1, r
                xhat, lb, ub = math.sqrt(S[r, r]) / s_y, 0.0, np.inf
                step = 0.2 * xhat if xhat > 0 else 0.1 * sigma
                others = np.array([k for (rr, _), k in slots.items() if rr != r], dtype=int)
                if others.size:
                    def alternatives(z, others=others):  # the term's other rows shrunk
                        z = np.array(z, dtype=float)
                        z[others] *= 0.08
                        return [z]
            else:
                kind, unit = 2, 1.0
                order = [c, r] + [k for k in range(sp.q) if k not in (c, r)]
                perm = np.array(order + list(range(sp.q, qmax)))
                den = math.sqrt(S[r, r] * S[c, c])
                xhat = S[r, c] / den if den > 0 else 0.0
                lb, ub = -1.0, 1.0
                step = 0.1
                # starting nuisance for the permuted parametrisation
                Sp = (S / mml.sigma**2)[np.ix_(order, order)]
                try:
                    Tp = np.linalg.cholesky(Sp + 1e-12 * max(np.trace(Sp), 1e-12) * np.eye(sp.q))
                except np.linalg.LinAlgError:
                    Tp = np.diag(np.sqrt(np.maximum(np.diag(Sp), 1e-12)))
                Tp[0, 0] = math.log(max(Tp[0, 0], 1e-3))
                Tp[1, 1] = math.log(max(math.sqrt(Tp[1, 0] ** 2 + Tp[1, 1] ** 2), 1e-3))
                Tp[1, 0] = 0.0
                z0[sp.theta_start:sp.theta_start + len(sp.rows)] = Tp[np.array(sp.rows), np.array(sp.cols)]
                ia, ib = slots[(0, 0)], slots[(1, 1)]

                def alternatives(z, ia=ia, ib=ib):  # one of the two scales much smaller
                    out = []
                    for k in (ia, ib):
                        zz = np.array(z, dtype=float)
                        zz[k] -= 2.5
                        out.append(zz)
                    return out
        else:
            kind, unit = 3, 1.0
            j = i - nvar
            keep = [k for k in range(p) if k != j]
            # [X_c y_c] M, M = M0 - x E: a basis of span X_{-j}, the unit column, then
            # (y - x X_j) / s = y_c + X_c v(x), v(x) = A^{-1}(g - x e_j) / s
            basis = np.eye(p) if (icpt is not None and j != icpt) else Ai
            v0, vj = Ai @ g_c / s_y, Ai[:, j] / s_y
            if icpt is not None and j != icpt:  # the intercept column is kept: its part drops out
                v0[icpt] = vj[icpt] = 0.0
            M0 = np.zeros((p + 1, p + 1))
            M0[:p, :p - 1] = basis[:, keep]
            M0[:p, p] = v0
            M0[p, p] = 1.0
            E = np.zeros((p + 1, p + 1))
            E[:p, p] = vj
            xhat = float(mml.fixef.iloc[j])
            lb, ub = -np.inf, np.inf
            step = float(mml.se.iloc[j])
        fn = functools.partial(lambda z, x, **kw: point(z, x, **kw), kind=kind, which=which, a=a, perm=perm, M0=M0, E=E)
        # a diagonal theta entry at (nearly) 0 is a stationary point of the sign-symmetric
        # deviance, where BFGS cannot leave the boundary: also start with such entries lifted
        diag = [k for k in diag_slots if not (kind == 2 and k in (ia, ib))]
        alternatives = _with_lifted_diagonal(alternatives, np.array(diag, dtype=int))
        prof = _Profile(fn, z0, xhat, base, alternatives)
        lo[n] = _solve_side(prof, -zq, step, lb, ub, maxit=maxit)
        hi[n] = _solve_side(prof, zq, step, lb, ub, maxit=maxit)
        if check_monotone:
            _check_monotone(prof, (lo[n], hi[n]), allnames[i], unit=unit)
        lo[n], hi[n] = lo[n] * unit, hi[n] * unit
        if prof.lower_dev < -1e-6:
            notes.append(f"profiling {allnames[i]} found a deviance {-prof.lower_dev:.3g} below the fit's optimum")
        if prof.nonconv:
            notes.append(f"{prof.nonconv} constrained optimisation(s) for {allnames[i]} stopped before convergence")
    for msg in notes:
        warn(msg, JaxhlmWarning)
    return lo, hi


# ------------------------------------------------------------------------------ entry point
