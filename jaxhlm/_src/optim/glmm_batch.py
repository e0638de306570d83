"""Many GLMM fits of one design in one compiled program: ``lax.map`` (or ``vmap``) over responses.

For simulation (parametric bootstrap, power), every replicate is the same design with another
response ``y``. :func:`refit_program` maps over the responses one program that, per replicate,

1. minimises the objective over ``(theta, beta)`` by BFGS with PIRLS at every evaluation
   (lme4's second stage; started at the fitted model's estimates, which replaces lme4's
   first stage as a start),
2. normalises the signs of theta (diagonals of ``T_f`` >= 0),
3. takes the exact gradient and the Hessian there (:func:`jaxhlm._src.optim.glmm_fit.final_program`'s
   definition) and from them ``V = 2 [H^{-1}]_{beta beta}`` (lme4's Hessian-based covariance)
   and the standard errors.

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
from .glmm_fit import _stage2, _zeros_u, value_grad_hessian
from .pirls import GlmmData, objective, pirls

__all__ = ["refit_program", "refit_batch"]


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


def _one(x0, op, data, maxit, layout, family, nagq):
    m = layout.ntheta
    r = _stage2(x0, _zeros_u(layout, x0.dtype), op, data, layout, family, nagq, maxit)
    theta, u = _signs(r["x"][:m], r["aux"]["u"], layout)
    beta = r["x"][m:]
    _, u, _, _, ok = pirls(theta, beta, u, op, data, layout, family, joint=False)
    x = jnp.concatenate([theta, beta])

    def f(v):
        return objective(v[:m], v[m:], u, op, data, layout, family, nagq=nagq, steps=2)[0]

    val, g, H = value_grad_hessian(f, x)
    V = 2.0 * jnp.linalg.inv(H)[m:, m:]
    return {"theta": theta, "beta": beta, "se": jnp.sqrt(jnp.diagonal(V)), "objective": val,
            "max_grad": jnp.max(jnp.abs(g)), "converged": r["converged"] & ok & jnp.isfinite(val),
            "iterations": r["it"]}


def refit_program(x0, op, data, maxit, layout, family, nagq, batch_size=1):
    """Fits to every response of ``data.y`` (shape ``(nrep, n)``); a dict of ``(nrep, ...)`` arrays.

    ``batch_size`` replicates run side by side (``vmap`` inside ``lax.map``); 1, the default on a
    CPU, runs them one after another, each for its own number of iterations (ENGINE-NOTES
    pitfall 6: 3x faster than one ``vmap`` over the chunk for cbpp's power analysis)."""
    def one(y):
        return _one(x0, op, data._replace(y=y), maxit, layout, family, nagq)

    return jax.lax.map(one, data.y, batch_size=None if batch_size == 1 else batch_size)


_STATIC = ("layout", "family", "nagq", "batch_size")
# Always XLA's optimised backend: unlike a single fit, the program runs for every replicate
# (cbpp, 1000 replicates: 1.3 s instead of 3.4 s, the compile time about the same).
_PROGRAM = jit(refit_program, static_argnames=_STATIC)


def refit_batch(model, Y: np.ndarray, maxit: int = 500) -> dict:
    """Refit ``model``'s design to the columns of ``Y`` (``(n, nrep)``; proportions for the
    binomial) in one program call; NumPy arrays, one row per replicate."""
    Y = np.ascontiguousarray(np.asarray(Y, dtype=np.float64).T)
    data = model.glmm_data._replace(y=Y)
    x0 = np.concatenate([np.asarray(model.opt.theta), np.asarray(model.opt.beta)])
    out = _PROGRAM(x0, model.op, data, np.asarray(maxit, dtype=np.int64), layout=model.layout, family=model.family,
               nagq=max(int(model.nagq), 1), batch_size=default_batch_size())
    return {k: np.asarray(v) for k, v in jax.device_get(out).items()}
