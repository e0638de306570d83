"""Batched refits: one design, many responses, all fitted inside one compiled call.

Each replicate's statistics are the design's with the response columns replaced
(:func:`jaxhlm._src.stats.response.with_y`). The replicate runs the same quasi-Newton core as a
fit (:func:`jaxhlm._src.optim.bfgs.quasi_newton`), started at the fitted theta with the fitted
model's inverse Hessian (the replicate optima lie close by, so the first steps are nearly
Newton steps), and, when asked, the exact second derivatives Satterthwaite's df need
(:func:`jaxhlm._src.engine.pls.vp_derivatives` by autodiff: compiled once for all replicates,
where single fits of small models take its differences, which compile faster).
Replicates run one at a time under ``lax.map`` (fastest on a CPU, ENGINE-NOTES pitfall 6) or
``batch_size`` side by side (vmap; the default on accelerators).
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from ..base.config import jit
from ..base.errors import ArgumentError, DataError
from ..engine import pls
from ..stats.layout import bucket
from ..stats.response import YStats, with_y
from .bfgs import quasi_newton

__all__ = ["RefitSpec", "refit_batches", "abs_inverse"]


@dataclasses.dataclass
class RefitSpec:
    """What the batched refit needs: a design, its layout and statistics, a start, and the
    response operator and seed inverse Hessian (filled on first use). ``shifts`` (with
    ``user_design``): the design is the centred twin of ``user_design`` (random-effect columns
    centred, :mod:`.recentre`) and the replicates' theta are mapped back to its columns."""

    design: object
    layout: object
    stats: object
    reml: bool
    theta0: np.ndarray
    fixef_names: list
    theta_names: list
    G: object = None
    Hinv0: np.ndarray = None
    user_design: object = None
    shifts: tuple = ()

    @property
    def n(self) -> float:
        return float(self.stats.n)


def _replicate(theta0, Hi0, base, ys, flags, layout, reml, maxit):
    """Fit one replicate; ``flags = (valid, satterthwaite)``."""
    stats = with_y(base, ys)
    valid, sat = flags[0], flags[1]
    k, m = layout.p + 1, layout.ntheta

    def f_aux(th):
        fc = pls.factorize(th, stats, layout)
        return pls.criterion(fc.ldL2, fc.Lxx, stats.n, layout.p, reml, stats.logw), {"Lxx": fc.Lxx, "ldL2": fc.ldL2}

    aux = {"Lxx": jax.ShapeDtypeStruct((k, k), theta0.dtype), "ldL2": jax.ShapeDtypeStruct((), theta0.dtype)}
    res = quasi_newton(jax.value_and_grad(f_aux, has_aux=True), theta0, maxit=jnp.where(valid, maxit, 0),
                       Hinv0=Hi0, max_step=1.0, aux_shapes=aux)
    Lxx = res["aux"]["Lxx"]
    nn = stats.n - layout.p if reml else stats.n
    sigma = jnp.abs(Lxx[layout.p, layout.p]) / jnp.sqrt(nn)
    varpar = jnp.concatenate([res["x"], sigma[None]])
    shapes = ((m + 1, m + 1), (layout.p, layout.p, m + 1), (layout.p, layout.p))
    zeros = tuple(jnp.zeros(s, theta0.dtype) for s in shapes)
    ok = sat & valid & jnp.isfinite(res["f"])
    H, J, C = jax.lax.cond(ok, lambda v: pls.vp_derivatives(v, stats, layout, reml, method="autodiff"),
                           lambda v: zeros, varpar)
    return {"theta": res["x"], "objective": res["f"], "grad": res["g"], "Lxx": Lxx, "ldL2": res["aux"]["ldL2"],
            "converged": res["converged"] & valid, "iterations": res["it"], "H": H, "J": J, "C": C, "sat_ok": ok}


@jit(static_argnames=("layout", "reml", "batch_size"))
def _refit_chunk(theta0, Hi0, base, ys, flags, maxit, layout, reml, batch_size):
    one = lambda args: _replicate(theta0, Hi0, base, args[0], args[1], layout, reml, maxit)  # noqa: E731
    return jax.lax.map(one, (ys, flags), batch_size=None if batch_size == 1 else batch_size)


def abs_inverse(H: np.ndarray) -> np.ndarray:
    """``V |w|^{-1} V'`` with eigenvalues floored at ``1e-8 max|w|``: a positive definite inverse."""
    H = 0.5 * (H + H.T)
    w, V = np.linalg.eigh(H)
    scale = max(float(np.max(np.abs(w))), 1e-300)
    w = np.maximum(np.abs(w), 1e-8 * scale)
    return (V / w) @ V.T


def default_batch_size() -> int:
    return 1 if jax.default_backend() == "cpu" else 64


def default_chunk(n: int) -> int:
    """Replicates per compiled call: at most 256, and the (n, chunk) response block under ~256 MB."""
    return int(max(8, min(256, (256 * 2**20) // (8 * max(n, 1)))))


def padded_chunk(cs: int, bs: int) -> int:
    """Replicate slots per compiled call: ``cs`` rounded up to 8, 10, 12, ... (a multiple of
    ``bs``), so that nearby chunk sizes share one compiled program; empty slots cost nothing."""
    padded = bucket(cs, minimum=8)
    if bs > 1:
        padded = int(math.ceil(padded / bs) * bs)
    return padded


def _run_chunk(spec, base, ys: YStats, flags, padded, bs, maxit=200):
    k = flags.shape[0]
    if k < padded:  # pad: one compiled shape per chunk size; padding entries are skipped
        ys = jax.tree_util.tree_map(lambda v: np.concatenate([v, np.repeat(v[-1:], padded - k, axis=0)]), ys)
        flags = np.concatenate([flags, np.zeros((padded - k, 2), bool)])
    out = _refit_chunk(jnp.asarray(spec.theta0), jnp.asarray(spec.Hinv0), base, ys, flags, np.int64(maxit),
                       spec.layout, bool(spec.reml), bs)
    out = jax.device_get(out)
    return {key: np.asarray(v)[:k] for key, v in out.items()}


def ensure_seed(spec: RefitSpec) -> None:
    """The inverse of the exact Hessian of the criterion at the start, cached in ``spec``."""
    if spec.Hinv0 is not None:
        return
    from .fit import hessian_theta

    H = hessian_theta(spec.theta0, spec.stats, spec.layout, spec.reml)
    spec.Hinv0 = abs_inverse(H) if np.all(np.isfinite(H)) else np.eye(len(spec.theta0))


def refit_batches(spec: RefitSpec, Y_chunks, nrep: int, *, satterthwaite=True, batch_size=None, chunk_size=None,
                  on_chunk=None) -> dict:
    """Refit ``spec`` to ``nrep`` responses yielded by ``Y_chunks(size)`` (arrays ``(n, k)``).

    Returns the per-replicate arrays (theta, objective, grad, Lxx, ldL2, converged, iterations,
    and with ``satterthwaite`` the exact ``H``, ``J``, ``C``); ``on_chunk(k)`` is called after
    each chunk (progress). With preconditioned statistics (``spec.stats.xform``) every response
    is mapped as the base fit's (``(y - X g) / s``) and the arrays are in those units
    (:func:`jaxhlm._src.sim.replicates.tidy` transforms them back).
    """
    from ..stats.response import y_operator, y_stats

    bs = default_batch_size() if batch_size is None else batch_size
    if isinstance(bs, bool) or not isinstance(bs, (int, np.integer)) or bs < 1:
        raise ArgumentError(f"batch_size must be a positive integer, got {batch_size!r}")
    cs = default_chunk(spec.design.n) if chunk_size is None else chunk_size
    if isinstance(cs, bool) or not isinstance(cs, (int, np.integer)) or cs < 1:
        raise ArgumentError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    cs = int(min(cs, nrep))
    bs = int(min(bs, cs))
    padded = padded_chunk(cs, bs)
    if spec.G is None:
        spec.G = y_operator(spec.design, spec.layout, getattr(spec.stats, "xform", None))
    ensure_seed(spec)
    base = jax.device_put(spec.stats)
    offset = getattr(spec.design, "offset", None)
    parts, done = [], 0
    for Y in Y_chunks(cs):
        Y = np.asarray(Y, dtype=np.float64)
        k = Y.shape[1]
        flags = np.ones((k, 2), bool)
        flags[:, 1] = bool(satterthwaite)
        parts.append(_run_chunk(spec, base, y_stats(spec.G, Y, spec.layout, offset), flags, padded, bs))
        done += k
        if on_chunk is not None:
            on_chunk(k)
    if done != nrep:
        raise DataError(f"expected {nrep} responses, got {done}")
    return {key: np.concatenate([pt[key] for pt in parts]) for key in parts[0]}
