"""Minimising the profiled (RE)ML criterion over theta: the compiled fit and the checks after it.

What is compiled, per model layout, is one program (:func:`fit_program`): the moment start
(one grouping factor), the BFGS loop of :mod:`jaxhlm._src.optim.bfgs`, and the end point's summary
The start, the moment-start flag and the iteration limit are its arguments, so fits, refits from
a given start and single evaluations (:func:`criterion_at`) share it; it returns one vector (one
transfer) with what the checks after it read (theta sign-normalised, beta, ``r^2``, the
smallest diagonal element, ...: :func:`_end_point`).

:func:`optimize` is lme4's ``optimizeLmer`` + ``checkConv``: the search, then

* the boundary: the criterion is even in every column of ``T_f``, so its gradient vanishes
  wherever a diagonal element is 0, minimum or not (ENGINE-NOTES pitfall 2), and with few
  groups it can have an interior local optimum above a boundary one. A fit that ends singular,
  or has a factor with few levels, is compared with every boundary face (each column of each
  term's block set to zero, each whole term set to zero), a point lifted off zero and (few
  levels) lme4's start: small models are refitted from each, larger ones from those where the
  criterion is already lower; the lowest optimum wins. Diagonal elements that end within
  rounding of 0 are snapped to exactly 0 when that does not raise the criterion;
* convergence: lme4's gradient check (tolerance 0.002, scaled by the Hessian's Cholesky factor).
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..base.config import jit
from ..base.errors import FitError
from ..base.threads import in_parallel
from ..engine import pls
from ..stats.layout import SINGULAR_TOL
from .bfgs import quasi_newton
from .start import moment_start, moment_start_one_factor

__all__ = ["OptResult", "fit_program", "run_fit", "criterion_at", "optimize", "value_and_grad_theta",
           "hessian_theta", "CONV_TOL"]

SEED_MAX_THETA = 12  # up to this many parameters the first m gradient calls seed BFGS's Hessian
CONV_TOL = 2e-3  # lme4's check.conv.grad tolerance
SNAP_TOL = 1e-3  # diagonal elements below this may be snapped to exactly 0


class OptResult(NamedTuple):
    """The optimum (NumPy): theta (sign-normalised), the criterion, its gradient, the optimiser's
    inverse-Hessian estimate, ``L_XX`` and ``log|L|^2`` there, and from them ``beta``, ``r2``,
    ``Lx`` (lme4's ``R_X``), ``ldRX2``; ``iterations`` (gradient calls), ``converged`` (the
    optimiser's flag and lme4's gradient check), ``messages`` (why not / boundary notes);
    ``search``: the parametrisation that was searched when it is not theta's own (random-effect
    columns centred: a :class:`.recentre.Search`), else None."""

    theta: np.ndarray
    objective: float
    grad: np.ndarray
    Hinv: np.ndarray
    Lxx: np.ndarray
    ldL2: float
    beta: np.ndarray
    r2: float
    Lx: np.ndarray
    ldRX2: float
    iterations: int
    converged: bool
    messages: tuple = ()
    search: object = None


def _value_aux(theta, stats, layout, reml):
    fc = pls.factorize(theta, stats, layout)
    return pls.criterion(fc.ldL2, fc.Lxx, stats.n, layout.p, reml, stats.logw), {"Lxx": fc.Lxx, "ldL2": fc.ldL2}


def _fit_core(theta0, stats, layout, reml, moment, maxit):
    if layout.plan.kind == "one":
        # the moment estimate (start.py), computed in the program; ``moment`` is an argument,
        # not static, so a refit from a given theta runs the same program
        theta0 = jnp.where(moment, moment_start_one_factor(stats, layout, theta0), theta0)
    k = layout.p + 1
    aux = {"Lxx": jax.ShapeDtypeStruct((k, k), theta0.dtype), "ldL2": jax.ShapeDtypeStruct((), theta0.dtype)}
    vg = jax.value_and_grad(lambda th: _value_aux(th, stats, layout, reml), has_aux=True)
    res = quasi_newton(vg, theta0, maxit=maxit, seed_hessian=layout.ntheta <= SEED_MAX_THETA, aux_shapes=aux)
    out = {"theta": res["x"], "objective": res["f"], "grad": res["g"], "iterations": res["it"],
           "converged": res["converged"], "Hinv": res["Hinv"], **res["aux"]}
    return {**out, **_end_point(out, stats, layout)}


def _end_point(out, stats, layout) -> dict:
    """What the host's checks read at the search's end, formed in the program (one pass of
    small host calls cost an 8k-row fit more than its whole BFGS loop's share of them): theta
    sign-normalised (``Layout.column_signs``), ``beta`` (``L_x' beta = l``), ``r^2``,
    ``log|R_X|^2``, ``max|grad|``, the smallest ``|theta_ii|`` (inf without one), the first
    factor's levels with a nonzero ``Z'Z`` (its padding excluded) and whether theta and ``L_XX``
    are finite (the criterion is a scalar the host reads anyway)."""
    theta, Lxx, p = out["theta"], out["Lxx"], layout.p
    rtheta = theta * layout.column_signs(theta, xp=jnp)
    diag = np.asarray(layout.is_diag())
    dmin = jnp.min(jnp.abs(rtheta[diag])) if diag.any() else jnp.asarray(jnp.inf)
    Lx = Lxx[:p, :p]
    beta = (jax.lax.linalg.triangular_solve(Lx, Lxx[p, :p][:, None], left_side=True, lower=True, transpose_a=True)[:, 0]
            if p else jnp.zeros(0, Lxx.dtype))
    first = stats.levels[0].ZtZ  # (q, q, L): the trace per level
    used0 = jnp.sum(jnp.trace(first, axis1=0, axis2=1) > 0)
    finite = jnp.all(jnp.isfinite(theta)) & jnp.all(jnp.isfinite(Lxx))
    return {"rtheta": rtheta, "beta": beta, "r2": Lxx[p, p] ** 2, "ldRX2": 2.0 * jnp.sum(jnp.log(jnp.diagonal(Lx))),
            "gmax": jnp.max(jnp.abs(out["grad"])) if layout.ntheta else jnp.asarray(0.0), "dmin": dmin,
            "used0": used0, "finite": finite}


_FIELDS = ("theta", "objective", "grad", "iterations", "converged", "Hinv", "Lxx", "ldL2", "rtheta", "beta", "r2",
           "ldRX2", "gmax", "dmin", "used0", "finite")


def _shapes(layout):
    m, k = layout.ntheta, layout.p + 1
    return {"theta": (m,), "objective": (), "grad": (m,), "iterations": (), "converged": (),
            "Hinv": (m, m), "Lxx": (k, k), "ldL2": (), "rtheta": (m,), "beta": (k - 1,), "r2": (), "ldRX2": (),
            "gmax": (), "dmin": (), "used0": (), "finite": ()}


@jit(static_argnames=("layout", "reml"))
def fit_program(theta0, stats, moment, maxit, layout, reml):
    """Minimise the (RE)ML criterion over theta: the one compiled program per model layout.

    Returns one float64 vector (:func:`_unpack` names its parts). With ``moment`` true (one
    grouping factor) ``theta0`` is replaced by the moment estimate (``theta0`` is its
    fallback); ``maxit`` bounds the gradient calls (1: evaluate at ``theta0`` only).
    """
    out = _fit_core(theta0, stats, layout, reml, moment, maxit)
    return jnp.concatenate([jnp.ravel(out[k]).astype(jnp.float64) for k in _FIELDS])


@functools.lru_cache(maxsize=64)
def _slices(layout) -> tuple:
    """``(name, slice, shape)`` of each part of :func:`fit_program`'s vector."""
    out, o = [], 0
    for k, shape in _shapes(layout).items():
        size = math.prod(shape)
        out.append((k, slice(o, o + size), shape))
        o += size
    return tuple(out)


_SCALARS = {"iterations": int, "converged": bool, "objective": float, "ldL2": float, "r2": float, "ldRX2": float,
            "gmax": float, "dmin": float, "used0": int, "finite": bool}


def _unpack(flat, layout) -> dict:
    out = {}
    for k, sl, shape in _slices(layout):
        conv = _SCALARS.get(k)
        out[k] = flat[sl].reshape(shape) if conv is None else conv(flat[sl.start])
    return out


def run_fit(theta0, stats, layout, reml, moment=False, maxit=500) -> dict:
    """:func:`fit_program` on the host (through the program cache), its results as NumPy."""
    from ..base import programcache

    if getattr(stats, "xform", None) is not None:  # host-only (the engine never reads it): 5 arguments fewer
        stats = stats._replace(xform=None)
    args = (np.asarray(theta0, dtype=np.float64), stats,
            np.asarray(bool(moment) and layout.plan.kind == "one"), np.asarray(maxit, dtype=np.int64))
    flat = np.asarray(programcache.call(fit_program, "fit_program", args, {"layout": layout, "reml": bool(reml)}))
    return _unpack(flat, layout)


def criterion_at(theta, stats, layout, reml) -> float:
    """The criterion at ``theta`` by the fit's own program (one evaluation; compiles nothing)."""
    return run_fit(theta, stats, layout, reml, maxit=1)["objective"]


@jit(static_argnames=("layout", "reml"))
def value_and_grad_theta(theta, stats, layout, reml):
    """Criterion and exact gradient at ``theta``."""
    return jax.value_and_grad(lambda th: _value_aux(th, stats, layout, reml)[0])(theta)


@jit(static_argnames=("layout", "reml"))
def _hessian(theta, stats, layout, reml):
    return jax.jacrev(jax.grad(lambda th: _value_aux(th, stats, layout, reml)[0]))(theta)


def hessian_theta(theta, stats, layout, reml) -> np.ndarray:
    """Exact Hessian of the criterion in theta (reverse over reverse mode), symmetrised."""
    H = np.asarray(_hessian(np.asarray(theta, dtype=np.float64), stats, layout, reml))
    return 0.5 * (H + H.T)


# ---------------------------------------------------------------------------------------------
# on the host: lme4's optimizeLmer + checkConv
# ---------------------------------------------------------------------------------------------
def _finish(fit: dict, layout, theta, converged, messages) -> OptResult:
    p = layout.p
    Lxx = fit["Lxx"]
    return OptResult(theta=theta, objective=fit["objective"], grad=fit["grad"], Hinv=fit["Hinv"], Lxx=Lxx,
                     ldL2=fit["ldL2"], beta=fit["beta"], r2=fit["r2"], Lx=Lxx[:p, :p], ldRX2=fit["ldRX2"],
                     iterations=fit["iterations"], converged=bool(converged), messages=tuple(messages))


def _faces(theta, layout) -> list:
    """Starts on the boundary a fit is compared with: every column of every term's block of
    ``T_f`` zeroed (the criterion is even in each column, so a search started there stays on
    that face: the optimum of the model without that direction of the random effects), and
    every whole term zeroed."""
    out = []
    th = np.asarray(theta, dtype=np.float64)
    rows, cols, facs = map(np.asarray, (layout.theta_row, layout.theta_col, layout.theta_factor))
    for f in range(layout.nfactors):
        for blk in layout.term_blocks(f):
            in_term = (facs == f) & np.isin(cols, blk)
            if len(blk) > 1:
                for c in blk:
                    t = th.copy()
                    t[(facs == f) & (cols == c)] = 0.0
                    out.append(t)
            t = th.copy()
            t[in_term] = 0.0
            out.append(t)
    return out


FEW_LEVELS = 50  # with fewer levels the criterion is often multimodal: search from more starts


def _fewest_levels(fit, layout) -> int:
    """The smallest number of levels of a grouping factor (the first factor's padding excluded)."""
    return min((fit["used0"],) + tuple(layout.nlev[1:]))


THOROUGH_MAX_THETA = 6  # up to this many parameters a fit is cheap: refit from every boundary face
THOROUGH_MAX_DENSE = 256  # ... when its dense block (the costly part of an evaluation) is at most this wide


def _improve_boundary(fit, stats, layout, reml, depth=0):
    """Compare the fit with the boundary faces (and, for few levels, with lme4's start).

    A singular fit, or one with a grouping factor of fewer than :data:`FEW_LEVELS` levels (where
    the criterion can have an interior local optimum above a boundary one), is compared with
    every face of :func:`_faces`, a point lifted off zero and (few levels) lme4's start. Small
    models (at most :data:`THOROUGH_MAX_THETA` parameters and a dense block at most
    :data:`THOROUGH_MAX_DENSE` wide) are refitted from each of them; larger ones (maximal crossed
    models, large crossed designs, where each fit costs more) evaluate the criterion there (two
    at a time on a multi-core CPU: InstEval with its 14 departments, 1.37 -> 1.24 s a fit) and
    refit only from points below the fit. The lowest optimum wins.
    """
    few = depth == 0 and _fewest_levels(fit, layout) < FEW_LEVELS
    if depth > 2 or not (few or fit["dmin"] < SINGULAR_TOL):  # (lme4's isSingular)
        return fit
    theta = np.asarray(fit["theta"], dtype=np.float64)
    thorough = layout.ntheta <= THOROUGH_MAX_THETA and layout.QD <= THOROUGH_MAX_DENSE
    tol = 1e-7 * (1.0 + abs(fit["objective"]))
    starts = _faces(theta, layout) + [layout.lifted(theta)]
    if few and thorough:
        starts.append(layout.lme4_start())
    if not thorough:  # the criterion at every start first, side by side on a multi-core CPU
        values = in_parallel(lambda th: criterion_at(th, stats, layout, reml), starts)
        starts = [st for st, v in zip(starts, values) if v < fit["objective"] - tol]
    best = fit
    for start in starts:
        trial = run_fit(start, stats, layout, reml)
        if np.isfinite(trial["objective"]) and trial["objective"] < best["objective"] - tol:
            best = trial
    if best is fit:
        return fit
    return _improve_boundary(best, stats, layout, reml, depth + 1)


def _snap(fit, stats, layout, reml):
    """Diagonal elements that ended within rounding of 0: exactly 0 where the criterion agrees."""
    theta = fit["rtheta"]
    if not fit["dmin"] < SNAP_TOL:
        return fit, theta
    diag = layout.is_diag()
    small = np.nonzero(diag & (np.abs(theta) < SNAP_TOL) & (theta != 0))[0]
    if small.size == 0:
        return fit, theta
    trial = theta.copy()
    trial[small] = 0.0
    snapped = run_fit(trial, stats, layout, reml, maxit=1)
    if snapped["objective"] <= fit["objective"] + 1e-10 * (1.0 + abs(fit["objective"])):
        snapped["iterations"] = fit["iterations"]
        snapped["converged"] = fit["converged"]
        snapped["Hinv"] = fit["Hinv"]
        return snapped, trial
    return fit, theta


def _convergence(fit, stats, layout, reml, names=None) -> str | None:
    """lme4's ``checkConv``: the problem, or None. Flagged when the optimiser stopped early, or
    when for some component both the gradient and the gradient scaled by the Hessian's
    Cholesky factor (``R^{-1} g``, ``H = R'R``) exceed :data:`CONV_TOL` in absolute value
    (the Hessian only when the quasi-Newton decrement ``g'H^{-1}g``, with the search's positive
    definite inverse-Hessian estimate, is not already small)."""
    gmax = fit["gmax"]
    if not fit["converged"]:
        return f"optimizer stopped after {fit['iterations']} iterations with max|grad| = {gmax:.3g}"
    if gmax <= CONV_TOL:
        return None
    grad = np.asarray(fit["grad"], dtype=np.float64)
    Hi = np.asarray(fit["Hinv"])
    if Hi.shape == (grad.size, grad.size) and np.all(np.isfinite(Hi)) and abs(grad @ Hi @ grad) <= CONV_TOL**2:
        try:  # the search's inverse-Hessian estimate is trusted only when positive definite
            np.linalg.cholesky(0.5 * (Hi + Hi.T))
            return None
        except np.linalg.LinAlgError:
            pass
    try:
        H = hessian_theta(fit["theta"], stats, layout, reml)
        scaled = np.linalg.solve(np.linalg.cholesky(H).T, grad)
        mingrad = np.minimum(np.abs(scaled), np.abs(grad))
    except np.linalg.LinAlgError:
        mingrad = np.abs(grad)
    if not np.all(np.isfinite(mingrad)):
        mingrad = np.abs(grad)
    k = int(np.argmax(mingrad))
    if mingrad[k] > CONV_TOL:
        label = f", {names[k]}" if names is not None else ""
        return f"max|grad| = {mingrad[k]:.3g} (tol = {CONV_TOL:g}, component {k + 1}{label})"
    return None


def start_theta(stats, layout, start=None):
    """The search's start: ``start`` (validated elsewhere), or the moment estimate; returns
    ``(theta0, moment)`` where ``moment`` asks the program to compute the start itself."""
    if start is not None:
        return np.asarray(start, dtype=np.float64), False
    if layout.plan.kind == "one":
        return layout.lme4_start(), True
    return moment_start(layout, stats), False


def optimize(stats, layout, reml, start=None, names=None) -> OptResult:
    """lme4's ``optimizeLmer`` + ``checkConv`` for the profiled criterion (see the module docstring).

    ``names`` (theta's names) label the component in a convergence message.

    Raises
    ------
    FitError
        When the criterion is not finite at the optimum.
    """
    theta0, moment = start_theta(stats, layout, start)
    if layout.plan.kind == "crossed":
        # the fill map and the dense block on the device once: the boundary comparisons and the
        # convergence check call programs with the same statistics (each call copied them:
        # 15 ms for InstEval's)
        stats = jax.device_put(stats)
    fit = run_fit(theta0, stats, layout, reml, moment=moment)
    fit = _improve_boundary(fit, stats, layout, reml)
    fit, theta = _snap(fit, stats, layout, reml)
    return conclude(fit, theta, stats, layout, reml, names)


def conclude(fit: dict, theta, stats, layout, reml, names=None) -> OptResult:
    """lme4's ``checkConv`` on a search's end point: a finite criterion (else :class:`FitError`),
    the gradient check, and the :class:`OptResult` with its messages."""
    if not (fit["finite"] and math.isfinite(fit["objective"]) and np.all(np.isfinite(theta))):
        raise FitError(
            f"the {'REML criterion' if reml else 'deviance'} is not finite at the optimum "
            f"(objective = {fit['objective']}); check the data for a response that is (almost) "
            "exactly determined by the predictors, or predictors with extreme values"
        )
    problem = _convergence(fit, stats, layout, reml, names)
    return _finish(fit, layout, theta, problem is None, [] if problem is None else [problem])
