"""The dense block of scalar dense factors, given by its values on a known nonzero pattern.

With every dense factor scalar (InstEval's lecturers and departments), ``M_D = I + s s' o
(Z_D'Z_D - fill)`` is zero off the pattern of ``Z_D'Z_D``, the fill and the diagonal
(:func:`~jaxhlm._src.stats.fillmap.scalar_pattern`: InstEval 130k slots of 1.27M). The engine
computes the slots' values; :func:`pattern_eliminate` is
:func:`~jaxhlm._src.engine.kernels.dense_eliminate` of the block they define, with the block built
on the host, next to LAPACK, and only the inverse's values at the slots coming back: no pass over
the whole block in either direction (forming it, and its cotangent, took ~10 ms of a 45 ms
InstEval evaluation).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..base import threads
from .kernels import spd_inv_logdet

__all__ = ["pattern_matrix", "pattern_eliminate"]


def pattern_matrix(vals, up, lo, n: int):
    """The symmetric ``n x n`` matrix zero but for ``vals`` at the flat upper-triangle slots
    ``up`` and their mirrors ``lo`` (padding slots ``n * n``, past the end, are dropped)."""
    flat = jnp.zeros((n * n,), vals.dtype)
    flat = flat.at[up].set(vals, mode="drop", unique_indices=True, indices_are_sorted=True)
    return flat.at[lo].set(vals, mode="drop", unique_indices=True).reshape(n, n)


def _host_pattern_inv(vals, R, up):
    """``(M^{-1}`` at the slots, ``log|M|``, ``M^{-1} R)`` by LAPACK, ``M`` built here from the
    slots (NaNs if not positive definite)."""
    import scipy.linalg.blas as blas
    import scipy.linalg.lapack as lapack

    R = np.asarray(R, dtype=np.float64)
    n = R.shape[0]
    up = np.asarray(up)
    ok = up < n * n
    # C-order slot i n + j (i <= j) is the Fortran-order (j, i): the lower triangle LAPACK reads
    A = np.zeros((n, n), order="F")
    A.reshape(-1, order="F")[up[ok]] = np.asarray(vals, dtype=np.float64)[ok]
    with threads.dense_block(n):  # one BLAS thread, two when a core is idle (base/threads.py)
        L, info = lapack.dpotrf(A, lower=1, clean=0, overwrite_a=1)
        if info != 0:
            return np.full(up.shape, np.nan), np.float64(np.nan), np.full(R.shape, np.nan)
        ld = 2.0 * np.sum(np.log(np.diagonal(L)))
        Minv, info = lapack.dpotri(L, lower=1, overwrite_c=1)
        Z = blas.dsymm(1.0, Minv, R, side=0, lower=1)
    out = np.zeros(up.shape)
    out[ok] = Minv.reshape(-1, order="F")[up[ok]]
    return out, np.float64(ld), Z


@jax.custom_jvp
def _pattern_inv(vals, R, up, lo):
    """``(M^{-1}`` at the slots, ``log|M|``, ``M^{-1} R)`` on the host. The JVP (used by second
    derivatives only) forms ``M`` and goes through :func:`spd_inv_logdet`'s."""
    shapes = (jax.ShapeDtypeStruct(vals.shape, vals.dtype), jax.ShapeDtypeStruct((), vals.dtype),
              jax.ShapeDtypeStruct(R.shape, R.dtype))
    return jax.pure_callback(_host_pattern_inv, shapes, vals, R, up, vmap_method="sequential")


@_pattern_inv.defjvp
def _pattern_inv_jvp(primals, tangents):
    (vals, R, up, lo), (dv, dR, _, _) = primals, tangents
    n = R.shape[0]
    M, dM = pattern_matrix(vals, up, lo, n), pattern_matrix(dv, up, lo, n)
    Minv, ld, Z = spd_inv_logdet(M, R)
    at = lambda A: jnp.take(A.reshape(-1), up, mode="fill", fill_value=0.0)  # noqa: E731
    return (at(Minv), ld, Z), (at(-Minv @ dM @ Minv), jnp.sum(Minv * dM), Minv @ (dR - dM @ Z))


@jax.custom_vjp
def pattern_eliminate(vals, R, up, lo):
    """``(log|M|, R' M^{-1} R)`` for ``M = pattern_matrix(vals, up, lo, n)``, ``n = R.shape[0]``.

    Reverse pass from the inverse at the slots and ``Z = M^{-1} R``: with ``d log|M| = 2 sum_s
    h_s M^{-1}_s`` and ``d(R'M^{-1}R) = dR'Z + Z'dR - sum_s h_s (Z_i'Z_j + Z_j'Z_i)`` (``h_s =
    dv_s`` off the diagonal and ``dv_s / 2`` on it; ``i, j``: slot s's row and column), the
    cotangents ``c`` of ``log|M|`` and ``H`` of ``R'M^{-1}R`` give
    ``v_s-bar = w_s (2 c M^{-1}_s - Z_i (H + H') Z_j')`` (``w_s``: 1, 1/2 on the diagonal, 0 for
    padding) and ``R-bar = Z (H + H')``: per-slot products of rows of ``Z``, no pass over the
    block. The reverse pass is ordinary JAX code on the host results, whose own derivatives
    (:func:`_pattern_inv`) make second derivatives exact.
    """
    _, ld, Z = _pattern_inv(vals, R, up, lo)
    return ld, R.T @ Z


def _pattern_eliminate_fwd(vals, R, up, lo):
    Minv_s, ld, Z = _pattern_inv(vals, R, up, lo)
    return (ld, R.T @ Z), (Minv_s, Z, up, lo)


def _pattern_eliminate_bwd(res, cts):
    Minv_s, Z, up, lo = res
    c, H = cts
    n = Z.shape[0]
    w = jnp.where(up < n * n, jnp.where(up == lo, 0.5, 1.0), 0.0).astype(Z.dtype)
    Hs = H + H.T
    Zi = jnp.take(Z, up // n, axis=0, mode="fill", fill_value=0.0)
    Zj = jnp.take(Z, up % n, axis=0, mode="fill", fill_value=0.0)
    ZiH = Zi @ Hs
    quad = sum(ZiH[:, k] * Zj[:, k] for k in range(Z.shape[1]))
    return w * (2.0 * c * Minv_s - quad), Z @ Hs, None, None


pattern_eliminate.defvjp(_pattern_eliminate_fwd, _pattern_eliminate_bwd)
