"""Many GLMM fits of one design in one compiled program: ``lax.map`` (or ``vmap``) over responses.

For simulation (parametric bootstrap, power), every replicate is the same design with another
response ``y``. :func:`refit_program` maps over the responses one program that, per replicate,

1. minimises the objective over ``(theta, beta)`` by BFGS with PIRLS at every evaluation
   (lme4's second stage; started at the fitted model's estimates and the inverse of its
   Hessian, which replace lme4's first stage and the seed by differences),
2. in the same loop, with the same gradient call site, evaluates the exact gradient at
   ``2 m`` points ``x +- h_i e_i`` around the optimum (PIRLS at each) for the Hessian by
   central differences (``quasi_newton(final_hessian=True)``) and from it
   ``V = 2 [H^{-1}]_{beta beta}`` (lme4's Hessian-based covariance) and the standard errors,
3. normalises the signs of theta (diagonals of ``T_f`` >= 0).

One compiled copy of the objective's gradient: a second copy for the Hessian (and one more
PIRLS) had doubled the program's compile time (cbpp: 9 s -> 2.5 s).

PIRLS and BFGS are while loops. On a CPU the replicates run one after another (``lax.map``);
on accelerators ``batch_size`` of them side by side under ``vmap``, where each keeps iterating
until the slowest has converged (finished replicates are frozen by the loops' predicates).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..base.config import jit
from .batch import default_batch_size
from .glmm_centre import centred_start, thetas_from_search
from .glmm_fit import _stage2, _zeros_u
from .pirls import GlmmData

__all__ = ["refit_program", "refit_batch", "start_inverse_hessian"]


def _signs(theta, u, layout):
    tf, tr, tc = (np.asarray(v) for v in (layout.theta_factor, layout.theta_row, layout.theta_col))
    u = list(u)
    for k in np.flatnonzero(tr == tc):
        s = jnp.where(theta[k] < 0, -1.0, 1.0)
        cols = np.flatnonzero((tf == tf[k]) & (tc == tc[k]))
        theta = theta.at[cols].multiply(s)
        f, c = int(tf[k]), int(tc[k])
        u[f] = u[f].at[c].multiply(s)
    return theta, tuple(u)


def _one(x0, Hinv0, A, op, data, maxit, layout, family, nagq):
    m = layout.ntheta
    r = _stage2(x0, _zeros_u(layout, x0.dtype), op, data, layout, family, nagq, maxit, Hinv0=Hinv0,
                final_hessian=True)
    theta, _ = _signs(r["x"][:m], r["aux"]["u"], layout)
    beta = A @ r["x"][m:]  # the user's columns (A: the centring of glmm_centre, else I)
    ok = r["aux"]["pconv"] & jnp.isfinite(r["f"])
    V = 2.0 * jnp.linalg.inv(r["hessian"])[m:, m:]  # sign flips of theta leave this block as it is
    V = A @ V @ A.T
    return {"theta": theta, "beta": beta, "se": jnp.sqrt(jnp.diagonal(V)), "objective": r["f"],
            "max_grad": jnp.max(jnp.abs(r["g"])), "converged": r["converged"] & ok & jnp.isfinite(r["f"]),
            "iterations": r["it"]}


def refit_program(x0, Hinv0, A, op, data, maxit, layout, family, nagq, batch_size=1):
    """Fits to every response of ``data.y`` (shape ``(nrep, n)``); a dict of ``(nrep, ...)`` arrays.

    ``batch_size`` replicates run side by side (``vmap`` inside ``lax.map``); 1, the default on a
    CPU, runs them one after another, each for its own number of iterations (ENGINE-NOTES
    pitfall 6: 3x faster than one ``vmap`` over the chunk for cbpp's power analysis)."""
    def one(y):
        return _one(x0, Hinv0, A, op, data._replace(y=y), maxit, layout, family, nagq)

    return jax.lax.map(one, data.y, batch_size=None if batch_size == 1 else batch_size)


_STATIC = ("layout", "family", "nagq", "batch_size")
# Always XLA's optimised backend: unlike a single fit, the program runs for every replicate
# (cbpp, 1000 replicates: 1.3 s instead of 3.4 s, the compile time about the same).
_PROGRAM = jit(refit_program, static_argnames=_STATIC)


def start_inverse_hessian(H) -> np.ndarray:
    """The inverse of the fitted model's Hessian in ``(theta, beta)``, the refits' starting BFGS
    inverse Hessian (their optima lie close by); eigenvalues below ``1e-6`` of the largest
    (a singular fit's flat directions) or negative are raised to that floor."""
    H = np.asarray(H, dtype=np.float64)
    H = 0.5 * (H + H.T)
    if not np.all(np.isfinite(H)):
        return np.eye(H.shape[0])
    lam, V = np.linalg.eigh(H)
    floor = 1e-6 * max(float(np.max(np.abs(lam))), 1e-300)
    lam = np.maximum(np.abs(lam), floor)
    return (V / lam) @ V.T


def refit_batch(model, Y: np.ndarray, maxit: int = 500) -> dict:
    """Refit ``model``'s design to the columns of ``Y`` (``(n, nrep)``; proportions for the
    binomial) in one program call; NumPy arrays, one row per replicate."""
    Y = np.ascontiguousarray(np.asarray(Y, dtype=np.float64).T)
    data = model.glmm_data._replace(y=Y)
    op, x0, H, A = centred_start(model)  # large-mean columns centred, as the fit searched
    out = _PROGRAM(x0, start_inverse_hessian(H), A, op, data, np.asarray(maxit, dtype=np.int64), layout=model.layout, family=model.family,
               nagq=max(int(model.nagq), 1), batch_size=default_batch_size())
    res = {k: np.asarray(v) for k, v in jax.device_get(out).items()}
    res["theta"] = thetas_from_search(model, res["theta"])  # searched centred columns: theta mapped back
    return res
