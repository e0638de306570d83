"""Fitting a GLMM: lme4's two stages in compiled programs, then lme4's checks on the host.

The programs (one per layout and family; the search also per ``nAGQ``):

0. PIRLS for ``(beta, u)`` jointly at the starting theta, from the family's ``mustart`` (as
   ``glmer``'s initialisation);
1. BFGS over theta of the Laplace objective at the joint mode (lme4's ``nAGQ = 0`` stage, where
   PIRLS updates ``beta`` too);
2. BFGS over ``(theta, beta)`` of the Laplace (``nAGQ = 1``) or adaptive Gauss-Hermite
   (``nAGQ > 1``) objective with ``u`` at its conditional mode (skipped for ``nAGQ = 0``), and
   the Hessian at the optimum by central differences of the exact gradient.

Steps 0-1 are :func:`stage1_program`, step 2 :func:`search_program`: every refit of a simulated
response (:mod:`~jaxhlm._src.optim.glmm_batch`) runs that same compiled program, started at the
fit's optimum and inverse Hessian, so a power analysis after a fit compiles nothing.
:func:`mode_program` reads the mode at the optimum.

Each evaluation runs PIRLS to convergence from the mode of the best point so far (the BFGS
core's ``warm`` option) and differentiates the objective exactly through the mode
(:func:`jaxhlm._src.optim.pirls.objective`). Theta is searched without bounds; signs are
normalised afterwards (the objective is even in every column of ``T_f``).

On the host, :func:`optimize` adds lme4's ``checkConv``: a singular fit (a diagonal theta
within 1e-4 of 0) skips the gradient checks; otherwise the gradient scaled by the Cholesky
factor of the Hessian (differences of the exact gradient) must be below
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
from .pirls import laplace_value, linear_predictor, objective, penalized_deviance, pirls, u_layout

__all__ = ["GlmmOpt", "stage1_program", "search_program", "mode_program", "run_search", "evaluate", "optimize",
           "check_hessian", "conv_messages", "HESS_TOL"]

HESS_TOL = 1e-6  # lme4's check.conv.hess tolerance
SEED_MAX = 20  # up to this many parameters, stage 2 seeds its inverse Hessian by differences
SNAP_TOL = 1e-5  # a diagonal theta below this is set to 0 when that does not raise the objective


def _zeros_u(layout, dtype=jnp.float64, xp=jnp):
    """Zero conditional modes, per factor ``(q_f, L_f)`` (``xp=numpy`` on the host: no program)."""
    return tuple(xp.zeros((q, L), dtype) for q, L in zip(layout.q, layout.nlev))


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


def _stage2(x0, u0, op, data, layout, family, nagq, maxit, Hinv0=None, final_hessian=False, seed=None,
            use_hinv0=None):
    """lme4's second stage: BFGS over ``(theta, beta)``, PIRLS at every evaluation (warm).

    ``Hinv0`` (a starting inverse Hessian, refits) replaces the seed by differences;
    ``final_hessian`` adds the central-difference Hessian at the optimum (see
    :func:`jaxhlm._src.optim.bfgs.quasi_newton`); ``seed`` and ``use_hinv0`` (traced booleans,
    :func:`search_program`) choose the start when the program runs."""
    m = layout.ntheta

    def f2(x, aux):
        th, be = x[:m], x[m:]
        _, uu, _, _, ok = pirls(th, be, aux["u"], op, data, layout, family, joint=False)
        val, _, _ = objective(th, be, uu, op, data, layout, family, nagq=nagq)
        return val, {"u": uu, "pconv": ok}

    if seed is None:
        seed = Hinv0 is None and x0.shape[0] <= SEED_MAX
    aux0 = {"u": u0, "pconv": jnp.asarray(True)}
    return quasi_newton(jax.value_and_grad(f2, has_aux=True), x0, maxit=maxit, seed_hessian=seed, Hinv0=Hinv0,
                        use_hinv0=use_hinv0,
                        aux_shapes=jax.tree_util.tree_map(lambda v: jax.ShapeDtypeStruct(v.shape, v.dtype), aux0),
                        warm=True, aux0=aux0, final_hessian=final_hessian, hess_step=HESS_STEP)


HESS_STEP = 1e-4  # relative step of the Hessian's central differences


def stage1_program(theta0, op, data, maxit, layout, family):
    """lme4's first stage (:func:`_stage1`): theta, the joint mode ``(beta, u)``, the objective,
    its gradient in theta, iterations and flags."""
    r = _stage1(theta0, op, data, layout, family, maxit)
    return {"theta": r["x"], "beta": r["aux"]["beta"], "u": r["aux"]["u"], "f": r["f"], "g": r["g"],
            "it": r["it"], "converged": r["converged"], "pconv": r["aux"]["pconv"]}


def search_program(x0, Hinv0, seed, use_hinv0, u0, op, data, maxit, layout, family, nagq):
    """lme4's second stage (:func:`_stage2`) from ``x0 = (theta, beta)`` and ``u0``, and the
    Hessian at the optimum by central differences of the exact gradient (``2 m`` more
    evaluations, PIRLS at each): the fit's search and every refit of a simulated response run
    this one compiled program (a refit needs no compile of its own).

    ``seed`` (traced bool): start from a forward-difference inverse Hessian (the fit);
    ``use_hinv0``: start from ``Hinv0`` (refits: the fit's inverse Hessian); neither: a plain
    start. ``maxit = 0``: no search, the value, gradient and Hessian at ``x0``.

    Returns
    -------
    dict with ``x, f, g, hessian, it, converged`` and, at the best point, the conditional mode
    ``u`` and the PIRLS flag ``pconv``.
    """
    r = _stage2(x0, u0, op, data, layout, family, nagq, maxit, Hinv0=Hinv0, final_hessian=True, seed=seed,
                use_hinv0=use_hinv0)
    return {"x": r["x"], "f": r["f"], "g": r["g"], "hessian": r["hessian"], "it": r["it"],
            "converged": r["converged"], "u": r["aux"]["u"], "pconv": r["aux"]["pconv"]}


def mode_program(x, u, op, data, layout, family):
    """What the fitted model reads at the optimum ``x = (theta, beta)`` with ``u`` its
    conditional mode: ``eta``, the Fisher weights ``W``, ``log|L|^2``, the penalised deviance
    ``pd``, ``L_XX`` and the Fisher-weighted statistics (for lme4's ``R_X`` and the conditional
    variances)."""
    m = layout.ntheta
    theta, beta = x[:m], x[m:]
    eta = linear_predictor(theta, beta, u, op, data, layout)
    _, _, W, _ = family.working(eta, data.y, data.wt)
    zero, one = jnp.zeros_like(W), jnp.asarray(1.0, W.dtype)
    st = weighted_stats_wz(op, W, zero, one, layout)
    fc = pls.factorize(theta, st, layout)
    ulay = u_layout(layout)
    ld = pls.factorize(theta, weighted_stats_wz(op, W, zero, one, ulay, fixed=False), ulay).ldL2
    return {"eta": eta, "W": W, "ldL2": ld, "pd": penalized_deviance(eta, u, data, family), "Lxx": fc.Lxx,
            "stats": st}


# Small problems: XLA's backend optimisations cost more compile time than they save at run time
# (cbpp: 0.64 s instead of 1.17 s to compile stage 1, 2.9 ms instead of 1.9 ms to run it); from
# SMALL_ROWS rows they pay (VerbAgg, 7584 rows: 14 s -> 8 s to compile but 0.8 -> 2.1 s to run).
# The search program is always optimised: every refit of a simulated response runs it (cbpp,
# 1000 refits: 1.0 s instead of 1.9 s).
SMALL_ROWS = 5000
_OPT0 = {"cpu_options": {"xla_backend_optimization_level": 0}}
_PROGRAMS = {
    **{(name, small): jit(fn, static_argnames=("layout", "family"), **(_OPT0 if small else {}))
       for name, fn in (("stage1", stage1_program), ("mode", mode_program)) for small in (False, True)},
}
_SEARCH = jit(search_program, static_argnames=("layout", "family", "nagq"))


def _program(name: str, data):
    if name == "search":
        return _SEARCH
    return _PROGRAMS[(name, int(np.shape(data.y)[0]) < SMALL_ROWS)]


def run_search(x0, u0, op, data, layout, family, nagq, maxit=500, Hinv0=None, seed=None) -> dict:
    """:func:`search_program` through the program cache (NumPy results). ``Hinv0`` given: started
    from it; else seeded by differences when ``seed`` (default: up to :data:`SEED_MAX`
    parameters), else a plain start."""
    k = len(x0)
    use = Hinv0 is not None
    if seed is None:
        seed = not use and k <= SEED_MAX
    H0 = np.eye(k) if Hinv0 is None else np.asarray(Hinv0, dtype=np.float64)
    out = _program("search", data)(np.asarray(x0, dtype=np.float64), H0, np.asarray(bool(seed)), np.asarray(use),
                                   tuple(np.asarray(v, dtype=np.float64) for v in u0), op, data,
                                   np.asarray(maxit, dtype=np.int64), layout=layout, family=family, nagq=int(nagq))
    return jax.device_get(out)


def evaluate(x, u0, op, data, layout, family, nagq) -> dict:
    """The objective, its exact gradient and its central-difference Hessian at ``x`` (no search:
    :func:`search_program` with ``maxit = 0``), with the conditional mode found from ``u0``."""
    return run_search(x, u0, op, data, layout, family, max(int(nagq), 1), maxit=0, seed=False)


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


def finite_or_raise(f, x) -> None:
    if not (np.isfinite(f) and np.all(np.isfinite(x))):
        raise FitError(f"the GLMM objective is not finite at the optimum (objective = {f}); "
                       "check for complete separation (a predictor that determines the response) or extreme "
                       "predictor values")


def _flip(r, layout, x) -> dict:
    """A search result at ``x`` with theta's signs normalised (gradient and Hessian follow)."""
    m = layout.ntheta
    s = np.concatenate([layout.column_signs(x[:m]), np.ones(len(x) - m)])
    tf, tr, tc = (np.asarray(v) for v in (layout.theta_factor, layout.theta_row, layout.theta_col))
    u = [np.array(v) for v in r["u"]]
    for k in np.flatnonzero((tr == tc) & (s[:m] < 0)):  # one row of u_f per flipped column
        u[tf[k]][tc[k]] = -u[tf[k]][tc[k]]
    return {**r, "x": x * s, "g": np.asarray(r["g"]) * s, "hessian": np.asarray(r["hessian"]) * np.outer(s, s),
            "u": tuple(u)}


def optimize(op, data, layout, family, nagq: int, start=None, maxit: int = 500) -> GlmmOpt:
    """Fit (lme4's stages: :func:`stage1_program`, :func:`search_program`), normalise signs,
    read the mode at the optimum (:func:`mode_program`) and apply lme4's checks
    (:func:`conv_messages`); columns of ``X`` with a large mean are centred for the search and
    the optimum mapped back (:mod:`~jaxhlm._src.optim.glmm_centre`).

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
    m = layout.ntheta
    theta0 = layout.lme4_start() if start is None else np.asarray(start, dtype=np.float64)
    r1 = jax.device_get(_program("stage1", data)(np.asarray(theta0, dtype=np.float64), op, data,
                                                  np.asarray(maxit, dtype=np.int64), layout=layout, family=family))
    x1 = np.concatenate([np.asarray(r1["theta"]), np.asarray(r1["beta"])])
    finite_or_raise(float(r1["f"]), x1)
    if nagq == 0:  # theta searched alone (beta at the joint mode): the Laplace derivatives there
        r = evaluate(x1, r1["u"], op, data, layout, family, 1)
        r = {**r, "g": np.concatenate([np.asarray(r1["g"]), np.zeros(layout.p)]), "it": 0,
             "converged": True}
    else:
        r = run_search(x1, r1["u"], op, data, layout, family, nagq, maxit=maxit)
    finite_or_raise(float(r["f"]), r["x"])
    r = _flip(r, layout, np.asarray(r["x"], dtype=np.float64))
    theta = r["x"][:m]
    diag = np.asarray(layout.theta_row) == np.asarray(layout.theta_col)
    tiny = diag & (np.abs(theta) < SNAP_TOL) & (theta != 0)
    if tiny.any():  # on the boundary: lme4's bounded optimisers return exact zeros there
        snapped = np.concatenate([np.where(tiny, 0.0, theta), r["x"][m:]])
        cand = evaluate(snapped, r["u"], op, data, layout, family, nagq)
        if nagq == 0:
            cand = {**cand, "g": r["g"]}
        if float(cand["f"]) <= float(r["f"]) + 1e-10 * (1.0 + abs(float(r["f"]))):
            r = {**cand, "x": snapped, "it": r["it"], "converged": r["converged"]}
    theta, beta = r["x"][:m], r["x"][m:]
    at = jax.device_get(_program("mode", data)(r["x"], tuple(np.asarray(v) for v in r["u"]), op, data,
                                               layout=layout, family=family))
    grad, H = np.asarray(r["g"]), np.asarray(r["hessian"])
    its = (int(r1["it"]), int(r["it"]))
    ok_opt = bool(r1["converged"]) and bool(r["converged"])
    ok, msgs = conv_messages(grad, H, m, layout.singular(theta), ok_opt, its)
    if not bool(r["pconv"]):
        msgs = list(msgs) + ["PIRLS did not converge at the optimum"]
        ok = False
    return GlmmOpt(theta=theta, beta=beta, u=tuple(np.asarray(v) for v in r["u"]),
                   objective=float(r["f"]), grad=grad, hessian=H, objective_stage1=float(r1["f"]),
                   iterations=its, converged=bool(ok), messages=tuple(msgs), nagq=int(nagq),
                   pirls_converged=bool(r["pconv"]), eta=np.asarray(at["eta"]),
                   W=np.asarray(at["W"]), ldL2=float(at["ldL2"]), pwrss=float(at["pd"]),
                   Lxx=np.asarray(at["Lxx"]), stats=at["stats"])
