"""Many GLMM fits of one design: refits of simulated responses (parametric bootstrap, power).

Every replicate is the fitted design with another response ``y``. Each refit runs the fit's own
second stage, :func:`~jaxhlm._src.optim.glmm_fit.search_program` (BFGS over ``(theta, beta)``
with PIRLS at every evaluation, then the Hessian by central differences of the exact gradient),
started at the fitted model's estimates and the inverse of its Hessian (which replace lme4's
first stage and the seed by differences):

* on a CPU one call of that program per replicate (the callers run blocks of replicates on
  :func:`~jaxhlm._src.base.threads.side_by_side` threads): it is the very program the fit compiled, so a power analysis after a
  fit compiles nothing (cbpp, 1,000 refits: 1.0 s; its own batched program took 1.6 s to
  compile and 0.4 s to run);
* on accelerators :func:`refit_program`: ``batch_size`` replicates side by side under ``vmap``
  (inside ``lax.map``), each iterating until the slowest has converged (finished replicates
  are frozen by the loops' predicates).

On the host (:func:`finish`, both routes): theta's signs are normalised (diagonals of ``T_f``
>= 0), ``V = 2 [H^{-1}]_{beta beta}`` (lme4's Hessian-based covariance) gives the standard errors
and the fixed effects return to the user's columns (``beta = A beta_c``, ``V -> A V A'``).
"""
from __future__ import annotations

import jax
import numpy as np

from ..base.config import jit
from ..base.threads import limited
from .batch import default_batch_size
from .glmm_centre import centred_start, thetas_from_search
from .glmm_fit import _program, _zeros_u, search_program

__all__ = ["refit_program", "refit_batch", "start_inverse_hessian", "finish"]

_KEYS = ("x", "f", "g", "hessian", "it", "converged", "pconv")  # what a refit reads of the search


def _one(x0, Hinv0, op, data, maxit, layout, family, nagq):
    r = search_program(x0, Hinv0, False, True, _zeros_u(layout, x0.dtype), op, data, maxit, layout, family, nagq)
    return {k: r[k] for k in _KEYS}


def refit_program(x0, Hinv0, op, data, maxit, layout, family, nagq, batch_size=1):
    """Fits to every response of ``data.y`` (shape ``(nrep, n)``) in one program (accelerators);
    a dict of ``(nrep, ...)`` arrays: ``x, f, g, hessian, it, converged, pconv``."""
    def one(y):
        return _one(x0, Hinv0, op, data._replace(y=y), maxit, layout, family, nagq)

    return jax.lax.map(one, data.y, batch_size=None if batch_size == 1 else batch_size)


_PROGRAM = jit(refit_program, static_argnames=("layout", "family", "nagq", "batch_size"))


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


def finish(raw: dict, A, layout) -> dict:
    """Search results of many refits (``(nrep, ...)`` arrays) as the replicates' estimates:
    sign-normalised theta (searched columns), ``beta`` and ``se`` in the user's columns, the
    objective, ``max_grad``, ``iterations`` and ``converged`` (search, PIRLS and a finite
    objective)."""
    m = layout.ntheta
    x = np.asarray(raw["x"], dtype=np.float64)
    theta = layout.rectify(x[:, :m])  # sign flips of theta leave V as it is
    H = np.asarray(raw["hessian"], dtype=np.float64)
    with np.errstate(all="ignore"):
        ok = np.all(np.isfinite(H), axis=(1, 2))
        Hi = np.full_like(H, np.nan)
        try:  # all at once; one at a time only when some Hessian is singular
            Hi[ok] = np.linalg.inv(H[ok])
        except np.linalg.LinAlgError:
            for i in np.flatnonzero(ok):
                try:
                    Hi[i] = np.linalg.inv(H[i])
                except np.linalg.LinAlgError:
                    pass
        V = 2.0 * Hi[:, m:, m:]
        V = A @ V @ A.T
        se = np.sqrt(np.diagonal(V, axis1=1, axis2=2))
    f = np.asarray(raw["f"], dtype=np.float64)
    conv = np.asarray(raw["converged"], bool) & np.asarray(raw["pconv"], bool) & np.isfinite(f)
    return {"theta": theta, "beta": x[:, m:] @ A.T, "se": se, "objective": f,
            "max_grad": np.max(np.abs(np.asarray(raw["g"])), axis=1), "converged": conv,
            "iterations": np.asarray(raw["it"])}


def _one_by_one(model, Y, op, x0, Hinv0, maxit) -> dict:
    """The fit's search program once per column of ``Y``."""
    data = jax.device_put(model.glmm_data)
    op = jax.device_put(op)
    # device_put, not jnp.asarray: the latter compiles a small program per shape
    args = jax.device_put((np.asarray(x0, dtype=np.float64), np.asarray(Hinv0, dtype=np.float64), np.asarray(False),
                           np.asarray(True), _zeros_u(model.layout, np.float64, np)))
    it = jax.device_put(np.asarray(maxit, dtype=np.int64))
    Yt = np.ascontiguousarray(Y.T)
    kw = {"layout": model.layout, "family": model.family, "nagq": max(int(model.nagq), 1)}
    prog = _program("search", data).executable(*args, op, data._replace(y=Yt[0]), it, **kw)
    outs = []
    with limited():  # calls queued without waiting for each result
        for j in range(Yt.shape[0]):
            r = prog(*args, op, data._replace(y=Yt[j]), it)
            outs.append({k: r[k] for k in _KEYS})
        rows = jax.device_get(outs)
    return {k: np.stack([np.asarray(r[k]) for r in rows]) for k in _KEYS}


def refit_batch(model, Y: np.ndarray, maxit: int = 500, width: int | None = None) -> dict:
    """Refit ``model``'s design to the columns of ``Y`` (``(n, nrep)``; proportions for the
    binomial); NumPy arrays, one row per replicate (:func:`finish`). ``width`` (accelerators):
    the batched program's number of replicates, ``Y`` padded to it (one shape, one program)."""
    Y = np.asarray(Y, dtype=np.float64)
    op, x0, H, A = centred_start(model)  # large-mean columns centred, as the fit searched
    Hinv0 = start_inverse_hessian(H)
    bs = default_batch_size()
    k = Y.shape[1]
    if bs == 1:  # a CPU: the fit's own compiled search program, once per replicate
        raw = _one_by_one(model, Y, op, x0, Hinv0, maxit)
    else:
        if width and k < width:  # padding, dropped below
            Y = np.concatenate([Y, np.repeat(Y[:, -1:], width - k, axis=1)], axis=1)
        data = model.glmm_data._replace(y=np.ascontiguousarray(Y.T))
        raw = jax.device_get(_PROGRAM(x0, Hinv0, op, data, np.asarray(maxit, dtype=np.int64), layout=model.layout,
                                      family=model.family, nagq=max(int(model.nagq), 1), batch_size=bs))
        raw = {key: np.asarray(v)[:k] for key, v in raw.items()}
    res = finish(raw, A, model.layout)
    res["theta"] = thetas_from_search(model, res["theta"])  # searched centred columns: theta mapped back
    return res
