"""Small dense algebra written out entry by entry, vectorised over levels ("structure of arrays").

A ``q x q`` matrix per level is a nested list of ``(L,)`` arrays (or scalars, or the literal
``0.0`` for a structural zero, which every product skips). ``q`` is static and small (1-8), so
the loops unroll at trace time; batched ``jnp.linalg`` calls on arrays of tiny matrices were
10-20x slower on the CPU (ENGINE-NOTES, pitfall 3).
"""
from __future__ import annotations

import jax.numpy as jnp

__all__ = ["is_zero", "mm", "tr", "add", "scale", "chol", "tri_inv", "inverse_and_logdet",
           "to_lists", "to_array", "sum_levels"]


def is_zero(x) -> bool:
    """A structural zero (the literal ``0.0`` / ``0``), skipped by every product."""
    return isinstance(x, (float, int)) and x == 0


def _sum(terms):
    terms = [t for t in terms if not is_zero(t)]
    if not terms:
        return 0.0
    out = terms[0]
    for t in terms[1:]:
        out = out + t
    return out


def mm(X, Y):
    """Product of nested lists (entries: arrays, scalars or structural zeros)."""
    n, m, r = len(X), len(Y), len(Y[0])
    return [[_sum(X[i][k] * Y[k][j] for k in range(m) if not (is_zero(X[i][k]) or is_zero(Y[k][j])))
             for j in range(r)] for i in range(n)]


def tr(X):
    """Transpose."""
    return [list(r) for r in zip(*X)]


def add(X, Y):
    return [[_sum([a, b]) for a, b in zip(rx, ry)] for rx, ry in zip(X, Y)]


def scale(X, c):
    return [[0.0 if is_zero(a) else a * c for a in row] for row in X]


def chol(M):
    """Lower Cholesky factor of symmetric positive definite ``M`` (lists; lower triangle read)."""
    q = len(M)
    L = [[0.0] * q for _ in range(q)]
    for j in range(q):
        s = _sum([M[j][j]] + [-(L[j][k] * L[j][k]) for k in range(j) if not is_zero(L[j][k])])
        L[j][j] = jnp.sqrt(s)
        for i in range(j + 1, q):
            t = _sum([M[i][j]] + [-(L[i][k] * L[j][k]) for k in range(j)
                                  if not (is_zero(L[i][k]) or is_zero(L[j][k]))])
            L[i][j] = 0.0 if is_zero(t) else t / L[j][j]
    return L


def tri_inv(L):
    """Inverse of a lower-triangular factor (lists)."""
    q = len(L)
    Li = [[0.0] * q for _ in range(q)]
    for j in range(q):
        Li[j][j] = 1.0 / L[j][j]
        for i in range(j + 1, q):
            t = _sum(L[i][k] * Li[k][j] for k in range(j, i) if not (is_zero(L[i][k]) or is_zero(Li[k][j])))
            Li[i][j] = 0.0 if is_zero(t) else -t / L[i][i]
    return Li


def inverse_and_logdet(M):
    """``M^{-1}`` and ``log|M|`` of SPD blocks by Cholesky (``log|M|`` per level)."""
    L = chol(M)
    q = len(M)
    logdet = _sum([2.0 * jnp.log(L[i][i]) for i in range(q)])
    Li = tri_inv(L)
    return mm(tr(Li), Li), logdet, L


def to_lists(A, like=None):
    """A ``(q, r, L)`` array as nested lists of ``(L,)`` arrays."""
    return [[A[i, j] for j in range(A.shape[1])] for i in range(A.shape[0])]


def to_array(X, ref):
    """Nested lists -> ``(q, r, L)`` array; structural zeros become zeros shaped like ``ref``."""
    return jnp.stack([jnp.stack([jnp.zeros_like(ref) if is_zero(x) else jnp.broadcast_to(x, ref.shape)
                                 for x in row]) for row in X])


def sum_levels(terms: list, ref):
    """``[sum_j t_j for t in terms]`` as one reduction over a stacked ``(K, L)`` array (XLA
    compiles every separate reduction as a kernel of its own: one stacked reduction is cheaper
    at a few hundred levels). Structural zeros sum to 0."""
    rows = [jnp.zeros_like(ref) if is_zero(t) else jnp.broadcast_to(t, ref.shape) for t in terms]
    return jnp.sum(jnp.stack(rows), axis=-1)
