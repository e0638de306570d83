"""Fitting a GLMM: lme4's two stages in one compiled program, then lme4's checks on the host.

The program (:func:`fit_program`, one per layout, family and ``nAGQ``):

0. PIRLS for ``(beta, u)`` jointly at the starting theta, from the family's ``mustart`` (as
   ``glmer``'s initialisation);
1. BFGS over theta of the Laplace objective at the joint mode (lme4's ``nAGQ = 0`` stage, where
   PIRLS updates ``beta`` too);
2. BFGS over ``(theta, beta)`` of the Laplace (``nAGQ = 1``) or adaptive Gauss-Hermite
   (``nAGQ > 1``) objective with ``u`` at its conditional mode (skipped for ``nAGQ = 0``).

Each evaluation runs PIRLS to convergence from the mode of the best point so far (the BFGS
core's ``warm`` option) and differentiates the objective exactly through the mode
(:func:`jaxhlm._src.optim.pirls.objective`). Theta is searched without bounds; signs are
normalised afterwards (the objective is even in every column of ``T_f``).

On the host, :func:`optimize` adds lme4's ``checkConv``: a singular fit (a diagonal theta
within 1e-4 of 0) skips the gradient checks; otherwise the gradient scaled by the Cholesky
factor of the exact Hessian (:func:`final_program`, forward over reverse mode) must be below
0.002, and the Hessian must be positive definite, with lme4's messages for a very large
eigenvalue (> 1e6) or eigenvalue ratio (< 1e-6).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..base.config import jit
from ..base.errors import FitError
from .bfgs import quasi_newton
from .glmm_centre import centred_op, fixed_centring, to_user
from .fit import CONV_TOL
from ..engine import pls
from ..stats.weighted import weighted_stats_wz
from .pirls import laplace_value, linear_predictor, objective, pirls, u_layout

__all__ = ["GlmmOpt", "value_grad_hessian", "fit_program", "final_program", "optimize", "run_fit", "check_hessian", "conv_messages",
           "HESS_TOL"]

HESS_TOL = 1e-6  # lme4's check.conv.hess tolerance
SEED_MAX = 20  # up to this many parameters, stage 2 seeds its inverse Hessian by differences
SNAP_TOL = 1e-5  # a diagonal theta below this is set to 0 when that does not raise the objective


def _zeros_u(layout, dtype=jnp.float64):
    return tuple(jnp.zeros((q, L), dtype) for q, L in zip(layout.q, layout.nlev))


FD_STEP = 1e-4  # relative step of the central differences of stage 1


def _stage1(theta0, op, data, layout, family, maxit):
    """lme4's first stage: BFGS over theta of the Laplace objective at the joint mode of
    ``(beta, u)`` (``nAGQ = 0``), from PIRLS started at the family's ``mustart``.

    Stage 1 only finds a start for stage 2, so its gradient is taken by central differences
    (``2 m + 1`` PIRLS runs, one compiled copy under ``lax.map``, each from the best point's
    mode), which keeps the joint problem out of reverse-mode differentiation (half the
    program's compile time).
    """
    m = layout.ntheta
    mu0 = family.mustart(data.y, data.n, data.wt)
    eta0 = family.linkfun(mu0)
    eye = jnp.eye(m, dtype=theta0.dtype)

    def one(th, aux):
        b, uu, _, _, ok = pirls(th, aux["beta"], aux["u"], op, data, layout, family, joint=True, eta0=eta0,
                                first=aux["init"])
        return laplace_value(th, b, uu, op, data, layout, family), {"beta": b, "u": uu, "pconv": ok,
                                                                    "init": jnp.asarray(False)}

    def vg1(th, aux):
        h = FD_STEP * jnp.maximum(1.0, jnp.abs(th))
        pts = jnp.concatenate([th[None], th[None] + h[:, None] * eye, th[None] - h[:, None] * eye])
        vals, auxs = jax.lax.map(lambda t: one(t, aux), pts)
        g = (vals[1:m + 1] - vals[m + 1:]) / (2.0 * h)
        return (vals[0], jax.tree_util.tree_map(lambda v: v[0], auxs)), g

    aux0 = {"beta": jnp.zeros((layout.p,), theta0.dtype), "u": _zeros_u(layout, theta0.dtype),
            "pconv": jnp.asarray(False), "init": jnp.asarray(True)}
    shapes = jax.tree_util.tree_map(lambda v: jax.ShapeDtypeStruct(v.shape, v.dtype), aux0)
    return quasi_newton(vg1, theta0, maxit=maxit, dec_tol=1e-6, seed_hessian=m <= SEED_MAX, aux_shapes=shapes,
                        warm=True, aux0=aux0)


def _stage2(x0, u0, op, data, layout, family, nagq, maxit, Hinv0=None, final_hessian=False):
    """lme4's second stage: BFGS over ``(theta, beta)``, PIRLS at every evaluation (warm).

    ``Hinv0`` (a starting inverse Hessian, refits) replaces the seed by differences;
    ``final_hessian`` adds the central-difference Hessian at the optimum (see
    :func:`jaxhlm._src.optim.bfgs.quasi_newton`)."""
    m = layout.ntheta

    def f2(x, aux):
        th, be = x[:m], x[m:]
        _, uu, _, _, ok = pirls(th, be, aux["u"], op, data, layout, family, joint=False)
        val, _, _ = objective(th, be, uu, op, data, layout, family, nagq=nagq)
        return val, {"u": uu, "pconv": ok}

    aux0 = {"u": u0, "pconv": jnp.asarray(True)}
    return quasi_newton(jax.value_and_grad(f2, has_aux=True), x0, maxit=maxit,
                        seed_hessian=Hinv0 is None and x0.shape[0] <= SEED_MAX, Hinv0=Hinv0,
                        aux_shapes=jax.tree_util.tree_map(lambda v: jax.ShapeDtypeStruct(v.shape, v.dtype), aux0),
                        warm=True, aux0=aux0, final_hessian=final_hessian, hess_step=HESS_STEP)


def _flat_u(u):
    return jnp.concatenate([jnp.ravel(uf) for uf in u])


def _unflat_u(v, layout):
    out, o = [], 0
    for q, L in zip(layout.q, layout.nlev):
        out.append(v[o:o + q * L].reshape(q, L))
        o += q * L
    return tuple(out)


def fit_program(theta0, op, data, maxit, layout, family, nagq):
    """Both stages (see the module docstring); one float64 vector out (:func:`_unpack`)."""
    r1 = _stage1(theta0, op, data, layout, family, maxit)
    m, p = layout.ntheta, layout.p
    if nagq == 0:
        x, f, g, Hi, it2, c2 = jnp.concatenate([r1["x"], r1["aux"]["beta"]]), r1["f"], jnp.concatenate(
            [r1["g"], jnp.zeros((p,))]), jnp.eye(m + p), jnp.asarray(0), jnp.asarray(True)
        u, pc = r1["aux"]["u"], r1["aux"]["pconv"]
    else:
        x0 = jnp.concatenate([r1["x"], r1["aux"]["beta"]])
        r2 = _stage2(x0, r1["aux"]["u"], op, data, layout, family, nagq, maxit)
        x, f, g, Hi, it2, c2 = r2["x"], r2["f"], r2["g"], r2["Hinv"], r2["it"], r2["converged"]
        u, pc = r2["aux"]["u"], r2["aux"]["pconv"]
    parts = [x, _flat_u(u), f[None], g, jnp.ravel(Hi), r1["f"][None], jnp.stack([r1["it"], it2]).astype(jnp.float64),
             jnp.stack([r1["converged"], c2, pc]).astype(jnp.float64)]
    return jnp.concatenate([jnp.ravel(v).astype(jnp.float64) for v in parts])


def _unpack(flat, layout) -> dict:
    m, p = layout.ntheta, layout.p
    k = m + p
    nu = sum(q * L for q, L in zip(layout.q, layout.nlev))
    sizes = [("x", k), ("u", nu), ("objective", 1), ("grad", k), ("Hinv", k * k), ("objective1", 1), ("its", 2),
             ("flags", 3)]
    out, o = {}, 0
    for name, s in sizes:
        out[name] = flat[o:o + s]
        o += s
    out["Hinv"] = out["Hinv"].reshape(k, k)
    out["objective"] = float(out["objective"][0])
    out["objective1"] = float(out["objective1"][0])
    out["theta"], out["beta"] = out["x"][:m], out["x"][m:]
    out["iterations"] = tuple(int(v) for v in out["its"])
    out["converged"] = bool(out["flags"][0]) and bool(out["flags"][1])
    out["pirls_converged"] = bool(out["flags"][2])
    return out


def run_fit(theta0, op, data, layout, family, nagq, maxit=500) -> dict:
    """:func:`fit_program` through the program cache; results as NumPy."""
    flat = _program("fit", data)(np.asarray(theta0, dtype=np.float64), op, data, np.asarray(maxit, dtype=np.int64),
                       layout=layout, family=family, nagq=int(nagq))
    return _unpack(np.asarray(flat), layout)


HESS_STEP = 1e-4  # relative step of the Hessian's central differences


def value_grad_hessian(f, x):
    """``f(x)``, its exact gradient (reverse mode) and its Hessian by central differences of
    that gradient, ``H e_i = (g(x + h_i e_i) - g(x - h_i e_i)) / (2 h_i)`` with
    ``h_i = HESS_STEP max(1, |x_i|)``, symmetrised.

    The error is ``O(h^2)`` (about 1e-8 relative; lme4 differentiates the deviance twice
    numerically). One compiled value-and-gradient serves all ``2 m + 1`` points (``lax.map``
    over ``x`` and its ``2 m`` neighbours): forward over reverse mode through PIRLS's Newton
    steps compiled 3-10x longer (23 s for VerbAgg), and a separate copy for ``x`` itself added
    a third to the compile time of the batched refits.
    """
    n = x.shape[0]
    h = HESS_STEP * jnp.maximum(1.0, jnp.abs(x))
    E = jnp.diag(h)
    vals, G = jax.lax.map(jax.value_and_grad(f), jnp.concatenate([x[None, :], x[None, :] + E, x[None, :] - E]))
    H = (G[1:n + 1] - G[n + 1:]) / (2.0 * h[:, None])
    return vals[0], G[0], 0.5 * (H + H.T)


def final_program(x, u0, op, data, layout, family, nagq):
    """What the fitted model reads at the optimum ``x = (theta, beta)``: PIRLS from ``u0`` to the
    conditional mode, then the value, exact gradient and exact Hessian of the objective in
    ``(theta, beta)`` (through two Newton steps from the mode; the Hessian by
    :func:`value_grad_hessian`), and at the mode ``u``, ``eta``, the Fisher weights, ``log|L|^2``, the
    penalised deviance, the PIRLS flag, ``L_XX`` and the Fisher-weighted statistics (for
    lme4's ``R_X`` and the conditional variances)."""
    m = layout.ntheta
    theta, beta = x[:m], x[m:]
    _, u, pd, _, ok = pirls(theta, beta, u0, op, data, layout, family, joint=False)

    def f(v):
        return objective(v[:m], v[m:], u, op, data, layout, family, nagq=max(nagq, 1), steps=2)[0]

    val, g, H = value_grad_hessian(f, x)
    eta = linear_predictor(theta, beta, u, op, data, layout)
    _, _, W, _ = family.working(eta, data.y, data.wt)
    zero, one = jnp.zeros_like(W), jnp.asarray(1.0, W.dtype)
    st = weighted_stats_wz(op, W, zero, one, layout)
    fc = pls.factorize(theta, st, layout)
    ld = pls.factorize(theta, weighted_stats_wz(op, W, zero, one, u_layout(layout), fixed=False), u_layout(layout)).ldL2
    return {"value": val, "grad": g, "hessian": H, "u": u, "eta": eta, "W": W, "ldL2": ld, "pd": pd,
            "pirls_converged": ok, "Lxx": fc.Lxx, "stats": st}


_STATIC = ("layout", "family", "nagq")
# Small problems: XLA's backend optimisations cost more compile time than they save at run time
# (cbpp: 20 s -> 5 s to compile, 3.4 -> 5.4 ms to run); from SMALL_ROWS rows they pay (VerbAgg,
# 7584 rows: 14 s -> 8 s to compile but 0.8 -> 2.1 s to run, and a cached program is reused).
SMALL_ROWS = 5000
_PROGRAMS = {
    (name, small): jit(fn, static_argnames=_STATIC, **({"cpu_options": {"xla_backend_optimization_level": 0}}
                                                       if small else {}))
    for name, fn in (("fit", fit_program), ("final", final_program)) for small in (False, True)
}


def _program(name: str, data):
    return _PROGRAMS[(name, int(np.shape(data.y)[0]) < SMALL_ROWS)]



# ---------------------------------------------------------------------------------------------
# host: lme4's checks
# ---------------------------------------------------------------------------------------------
class GlmmOpt(NamedTuple):
    """The optimum (NumPy): ``theta`` (sign-normalised), ``beta``, ``u`` per factor (``(q_f, L_f)``,
    padded levels included), the objective, its exact gradient and Hessian in ``(theta, beta)``,
    the stage-1 objective, iterations per stage, ``converged`` (optimiser and lme4's checks),
    ``messages`` (lme4's wording), ``nagq``, ``pirls_converged``; at the mode: ``eta``, the
    Fisher weights ``W``, ``ldL2``, the penalised deviance ``pwrss``, ``Lxx`` (``R_X`` in its
    first ``p`` rows) and the Fisher-weighted statistics ``stats``. Where random-effect columns
    were searched centred (:mod:`~jaxhlm._src.optim.glmm_centre`): ``search`` (the searched theta,
    the statistics there, ``M``), ``u`` and ``stats`` of that search and ``hessian_search``, the
    Hessian in its theta (the fixed effects' covariance is read from it)."""

    theta: np.ndarray
    beta: np.ndarray
    u: tuple
    objective: float
    grad: np.ndarray
    hessian: np.ndarray
    objective_stage1: float
    iterations: tuple
    converged: bool
    messages: tuple
    nagq: int
    pirls_converged: bool
    eta: np.ndarray
    W: np.ndarray
    ldL2: float
    pwrss: float
    Lxx: np.ndarray
    stats: object
    search: object = None
    hessian_search: object = None


def check_hessian(H, tol=HESS_TOL, what: str = "") -> tuple:
    """lme4's ``checkHess``: ``(fatal, messages)`` for a Hessian (negative or zero eigenvalues are
    fatal; a very large eigenvalue or eigenvalue ratio is a message)."""
    H = np.asarray(H, dtype=np.float64)
    if not np.all(np.isfinite(H)):
        return True, ["Problem with Hessian check (infinite or missing values?)"]
    ev = np.linalg.eigvalsh(0.5 * (H + H.T))
    kind = f" {what}" if what else ""
    neg = int(np.sum(ev < -tol))
    if neg:
        return True, [f"Model failed to converge: degenerate{kind} Hessian with {neg} negative eigenvalues"]
    if np.any(np.abs(ev) < tol):
        return True, [f"{what + ' ' if what else ''}Hessian is numerically singular: parameters are not uniquely "
                      "determined".strip()]
    msgs = []
    if ev.max() * tol > 1:
        msgs.append("Model is nearly unidentifiable: very large eigenvalue\n - Rescale variables?")
    if ev.min() / ev.max() < tol:
        msgs.append("Model is nearly unidentifiable: large eigenvalue ratio\n - Rescale variables?")
    return False, msgs


def conv_messages(grad, H, ntheta, singular: bool, optimizer_ok: bool, iterations) -> tuple:
    """lme4's ``checkConv`` on the exact gradient and Hessian: ``(converged, messages)``."""
    msgs = []
    ok = bool(optimizer_ok)
    if not optimizer_ok:
        msgs.append(f"optimizer stopped after {iterations} iterations with max|grad| = {np.max(np.abs(grad)):.3g}")
    if singular:
        return ok, msgs
    try:
        scaled = np.linalg.solve(np.linalg.cholesky(0.5 * (H + H.T)).T, grad)
        mingrad = np.minimum(np.abs(scaled), np.abs(grad))
    except np.linalg.LinAlgError:
        mingrad = None
        msgs.append("unable to evaluate scaled gradient")
        ok = False
    if mingrad is not None and mingrad.max() > CONV_TOL:
        k = int(np.argmax(mingrad))
        msgs.append(f"Model failed to converge with max|grad| = {mingrad.max():.6g} (tol = {CONV_TOL:g}, "
                    f"component {k + 1})")
        ok = False
    if H.shape[0] > ntheta:
        fatal, m2 = check_hessian(H[ntheta:, ntheta:], what="fixed-effect")
        msgs += m2
        ok = ok and not fatal
    fatal, m2 = check_hessian(H)
    msgs += [m for m in m2 if m not in msgs]
    return ok and not fatal, msgs


def finite_or_raise(fit: dict) -> None:
    if not (np.isfinite(fit["objective"]) and np.all(np.isfinite(fit["x"]))):
        raise FitError(f"the GLMM objective is not finite at the optimum (objective = {fit['objective']}); "
                       "check for complete separation (a predictor that determines the response) or extreme "
                       "predictor values")


def _normalise_signs(theta, u, layout):
    """Flip every column of ``T_f`` whose diagonal is negative (and the matching row of ``u_f``):
    ``b = T_f u_f``, ``||u||`` and so the objective are unchanged; lme4 keeps diagonals >= 0."""
    theta = np.array(theta, dtype=np.float64)
    u = [np.array(uf) for uf in u]
    tf, tr, tc = (np.asarray(v) for v in (layout.theta_factor, layout.theta_row, layout.theta_col))
    for k in np.flatnonzero((tr == tc) & (theta < 0)):
        cols = (tf == tf[k]) & (tc == tc[k])
        theta[cols] = -theta[cols]
        u[tf[k]][tc[k]] = -u[tf[k]][tc[k]]
    return theta, tuple(u)


def optimize(op, data, layout, family, nagq: int, start=None, maxit: int = 500) -> GlmmOpt:
    """Fit (:func:`fit_program`), normalise signs, evaluate exact derivatives and the mode at the
    optimum (:func:`final_program`) and apply lme4's checks (:func:`conv_messages`); columns of
    ``X`` with a large mean are centred for the search and the optimum mapped back
    (:mod:`~jaxhlm._src.optim.glmm_centre`).

    Parameters
    ----------
    op, data : WeightedOp, GlmmData
        The design's row arrays and the response.
    layout : Layout
    family : Family
    nagq : int
        0 (fixed effects inside PIRLS), 1 (Laplace) or the number of quadrature nodes.
    start : array, optional
        Starting theta (lme4's default: 1 on diagonals, 0 below).
    """
    A = fixed_centring(op.X)
    if A is not None:
        opt = _optimize(centred_op(op, A), data, layout, family, nagq, start, maxit)
        return to_user(opt, A, layout.ntheta)
    return _optimize(op, data, layout, family, nagq, start, maxit)


def _optimize(op, data, layout, family, nagq, start, maxit) -> GlmmOpt:
    theta0 = layout.lme4_start() if start is None else np.asarray(start, dtype=np.float64)
    fit = run_fit(theta0, op, data, layout, family, nagq, maxit=maxit)
    finite_or_raise(fit)
    theta, u = _normalise_signs(fit["theta"], _unflat_u(fit["u"], layout), layout)
    final = _program("final", data)
    u0 = tuple(jnp.asarray(v) for v in u)
    out = None
    diag = np.asarray(layout.theta_row) == np.asarray(layout.theta_col)
    tiny = diag & (np.abs(theta) < SNAP_TOL)
    if tiny.any():  # on the boundary: lme4's bounded optimisers return exact zeros there
        snapped = np.where(tiny, 0.0, theta)
        cand = jax.device_get(final(np.concatenate([snapped, fit["beta"]]), u0, op, data, layout=layout,
                                    family=family, nagq=int(nagq)))
        if float(cand["value"]) <= fit["objective"] + 1e-10 * (1.0 + abs(fit["objective"])):
            theta, out = snapped, cand
    if out is None:
        out = jax.device_get(final(np.concatenate([theta, fit["beta"]]), u0, op, data, layout=layout, family=family,
                                   nagq=int(nagq)))
    grad, H = np.asarray(out["grad"]), np.asarray(out["hessian"])
    if nagq == 0:  # the objective was minimised in theta alone (beta at the joint mode)
        grad = np.concatenate([np.asarray(fit["grad"])[:layout.ntheta], np.zeros(layout.p)])
    ok, msgs = conv_messages(grad, H, layout.ntheta, layout.singular(theta), fit["converged"], fit["iterations"])
    if not bool(out["pirls_converged"]):
        msgs = list(msgs) + ["PIRLS did not converge at the optimum"]
        ok = False
    return GlmmOpt(theta=theta, beta=np.asarray(fit["beta"]), u=tuple(np.asarray(v) for v in out["u"]),
                   objective=float(out["value"]), grad=grad, hessian=H, objective_stage1=fit["objective1"],
                   iterations=fit["iterations"], converged=bool(ok), messages=tuple(msgs), nagq=int(nagq),
                   pirls_converged=bool(out["pirls_converged"]), eta=np.asarray(out["eta"]),
                   W=np.asarray(out["W"]), ldL2=float(out["ldL2"]), pwrss=float(out["pd"]),
                   Lxx=np.asarray(out["Lxx"]), stats=out["stats"])
