"""Block kernels of the blocked Cholesky factorisation (one kernel per block type).

The engine (:mod:`jaxhlm._src.engine.pls`) eliminates the random effects block by block. Every
elimination has the same form. For a block with Z-scale Schur complement ``S`` (``Z'Z`` less
the fill-in of the blocks eliminated before it) and relative covariance factor ``T``:

    M = T' S T + I,        log|M|,        W = T M^{-1} T'

``W`` is the block's contribution in the b scale: the Schur complement of every later block
``R`` is updated by ``S_RR <- S_RR - S_R,blk W S_blk,R`` (the "rank update" of MixedModels.jl's
``updateL!``), and everything after the elimination is linear in ``W``. The kernels:

* :func:`eliminate` — batched blocks (one ``q x q`` block per level), unrolled, with a
  hand-written JVP (forward and reverse mode, so exact Hessians work);
* :func:`dense_eliminate` — the dense block: XLA's Cholesky when small, LAPACK on the host when
  large (with exact derivatives through a custom JVP);
* the rank updates (fill-in) live beside the statistics they read: :func:`sandwich_sum`
  (per-level blocks to a dense target), the dense-coupling product, the scalar fill map and
  the pairs-of-pairs products in :mod:`jaxhlm._src.engine.pls`.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ..base import threads
from . import soa

__all__ = ["ElimSpec", "elim_spec", "eliminate", "eliminate_sum", "level_slice", "sandwich_sum", "dense_eliminate",
           "scalar_fill", "SMALL_DENSE"]

SMALL_DENSE = 128  # dense blocks up to this size stay in XLA; larger go to LAPACK on the host


class ElimSpec(tuple):
    """Static description of a batched block: ``(q, ((k, r, c), ...))`` (theta index, position)."""

    @property
    def q(self) -> int:
        return self[0]

    @property
    def entries(self) -> tuple:
        return self[1]


def elim_spec(layout, f: int) -> ElimSpec:
    """The :class:`ElimSpec` of factor ``f`` of ``layout``."""
    return ElimSpec((layout.q[f], tuple((k, layout.theta_row[k], layout.theta_col[k]) for k in layout.theta_of(f))))


def _T(theta, spec):
    q = spec.q
    T = [[0.0] * q for _ in range(q)]
    for k, r, c in spec.entries:
        T[r][c] = theta[k]
    return T


def _forward(theta, S, spec):
    q = spec.q
    T = _T(theta, spec)
    Sl = soa.to_lists(S)
    ST = soa.mm(Sl, T)
    M = soa.mm(soa.tr(T), ST)
    for i in range(q):
        M[i][i] = M[i][i] + 1.0 if not soa.is_zero(M[i][i]) else jnp.ones_like(S[0, 0])
    N, logdet, _ = soa.inverse_and_logdet(M)
    P = soa.mm(T, N)
    W = soa.mm(P, soa.tr(T))
    return T, ST, N, P, W, logdet


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def eliminate(theta, S, spec):
    """Eliminate a batched block: ``(sum_j log|M_j|, W (q,q,L))`` with ``M_j = T'S_jT + I``,
    ``W_j = T M_j^{-1} T'``; ``S (q,q,L)`` symmetric per level, ``T`` from ``theta`` by ``spec``.

    Reverse pass in closed form (``N = M^{-1}``, ``P = T N``; cotangents ``c`` of the log
    determinant and ``H`` (symmetrised) of ``W``; from ``dM = dT'ST + T'S dT + T'dS T``,
    ``dN = -N dM N``):

        d/dT  = 2 sum_j (c S_j + H_j - S_j W_j H_j) P_j        (read off at theta's positions)
        d/dS_j = c W_j - W_j H_j W_j

    one stacked reduction over levels; about one forward pass, where autodiff of the unrolled
    forward code costs several. The reverse pass is ordinary JAX code, so reverse-over-reverse
    (``jax.jacrev(jax.grad(f))``) gives exact Hessians.
    """
    _, _, _, _, W, logdet = _forward(theta, S, spec)
    return jnp.sum(logdet), soa.to_array(W, S[0, 0])


def _eliminate_fwd(theta, S, spec):
    T, ST, N, P, W, logdet = _forward(theta, S, spec)
    return (jnp.sum(logdet), soa.to_array(W, S[0, 0])), (theta, S, P, W)


def _eliminate_bwd(spec, res, cts):
    theta, S, P, W = res
    c, H = cts
    q = spec.q
    Sl = soa.to_lists(S)
    Hs = [[0.5 * (H[a, b] + H[b, a]) for b in range(q)] for a in range(q)]
    SWH = soa.mm(soa.mm(Sl, W), Hs)
    X = [[c * Sl[a][b] + Hs[a][b] - SWH[a][b] for b in range(q)] for a in range(q)]
    terms = [soa._sum(X[r][k] * P[k][cc] for k in range(q) if not soa.is_zero(P[k][cc]))
             for _, r, cc in spec.entries]
    gT = 2.0 * soa.sum_levels(terms, S[0, 0]) if terms else jnp.zeros((0,), S.dtype)
    g = _place(gT, np.array([k for k, _, _ in spec.entries], dtype=np.int64), theta)
    WHW = soa.mm(soa.mm(W, Hs), W)
    dS = [[c * W[a][b] - WHW[a][b] for b in range(q)] for a in range(q)]
    return g, soa.to_array(dS, S[0, 0])


eliminate.defvjp(_eliminate_fwd, _eliminate_bwd)


def _place(vals, idx: np.ndarray, like):
    """A vector like ``like``, zero but for ``vals`` at the static positions ``idx``: a pad
    when they are consecutive (a factor's theta elements always are), else a constant 0/1
    product; never a scatter (XLA runs a scatter on the CPU as a loop, once per gradient)."""
    m = like.shape[0]
    if idx.size == 0:
        return jnp.zeros_like(like)
    a = int(idx[0])
    if np.array_equal(idx, np.arange(a, a + idx.size)):
        return jnp.pad(vals, (a, m - a - idx.size))
    E = np.zeros((idx.size, m))
    E[np.arange(idx.size), idx] = 1.0
    return vals @ jnp.asarray(E, dtype=vals.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(6,))
def scalar_fill(t, W, S, v, a, dest, size):
    """The fill-in of a scalar first factor: ``U_d = sum_{m: dest_m = d} v_m W[a_m]`` (``dest``
    sorted, ``size`` destinations), where ``W = t^2 / (t^2 S + 1)`` per level is that factor's
    :func:`eliminate` output for its one theta element ``t`` (``S``: its ``Z'Z`` per level).

    The reverse pass goes to ``t`` directly, not through ``W``: ``dU/dt`` is the same segment
    sum of ``v dW/dt`` (``dW/dt = 2 t / (t^2 S + 1)^2``), formed beside ``U`` in the forward
    pass (one pass over the entries with two values each), so the cotangent is one dot
    product. Autodiff would instead gather the cotangent at every entry and scatter it back to
    the levels (InstEval: 1.3M entries each way, ~6 ms of a 51 ms evaluation). ``W`` gets no
    cotangent from here (its dependence on ``t`` is accounted for); everything in the forward
    pass is ordinary JAX code, so second derivatives (reverse or forward over reverse) stay exact.
    """
    return jax.ops.segment_sum(v * W[a], dest, size, indices_are_sorted=True)


def _scalar_fill_fwd(t, W, S, v, a, dest, size):
    dW = 2.0 * t / (t * t * S + 1.0) ** 2
    both = jax.ops.segment_sum(v[:, None] * jnp.stack([W, dW], axis=1)[a], dest, size, indices_are_sorted=True)
    return both[:, 0], both[:, 1]


def _scalar_fill_bwd(size, dU, ct):
    return jnp.vdot(ct, dU), None, None, None, None, None


scalar_fill.defvjp(_scalar_fill_fwd, _scalar_fill_bwd)


def _times_W(W, C):
    """``V_u = sum_v W_uv C_v`` per level: ``W (q,q,L)``, ``C (q,r,L)`` -> list of ``q`` arrays
    ``(r, L)`` (unrolled over ``q`` only; the ``r`` columns stay one array)."""
    q = W.shape[0]
    return [soa._sum(W[u, v][None, :] * C[v] for v in range(q)) for u in range(q)]


UNROLL_BUDGET = 40  # sandwich sums with at most this many (entry, u) terms are written out


def sandwich_sum(B, W, C=None, sym=None):
    """``sum_j B_j' W_j C_j`` over levels: ``B (q,m,L)``, ``W (q,q,L)``, ``C (q,r,L)`` (default B).

    Two forms, the same sum. Few columns (``q`` times the number of entries at most
    :data:`UNROLL_BUDGET`): written out entry by entry with one stacked reduction (the upper
    triangle only when the result is symmetric); its gradient is the cheapest at many levels.
    More columns (the fixed effects of a factorial design): ``V = W C`` unrolled over ``q``
    only, then one contraction over ``(u, j)``, so that the program's size (and its compile
    time, under nested autodiff) does not grow as ``m r q^2``. Symmetric results are symmetrised.
    """
    sym = C is None if sym is None else sym
    C = B if C is None else C
    q, m, r = B.shape[0], B.shape[1], C.shape[1]
    pairs = [(a, b) for a in range(m) for b in range(a if sym else 0, r)]
    if len(pairs) * q > UNROLL_BUDGET:
        out = jnp.einsum("uaj,ubj->ab", B, jnp.stack(_times_W(W, C)))
        return 0.5 * (out + out.T) if sym else out
    V = soa.mm(soa.to_lists(W), soa.to_lists(C))  # (q, r) lists
    terms = [soa._sum(B[u, a] * V[u][b] for u in range(q) if not soa.is_zero(V[u][b])) for a, b in pairs]
    sums = soa.sum_levels(terms, B[0, 0])
    out = [[None] * r for _ in range(m)]
    for k, (a, b) in enumerate(pairs):
        out[a][b] = sums[k]
        if sym:
            out[b][a] = sums[k]
    return jnp.stack([jnp.stack(row) for row in out])


CHUNK_LEVELS = 1 << 16  # levels per pass of :func:`eliminate_sum` ...
CHUNKED_FROM = 1 << 18  # ... for blocks with at least this many levels (bucketed sizes divide)


def level_slice(A, i):
    """Levels ``i * CHUNK_LEVELS ..`` of a per-level array (levels on the last axis; ``i`` traced)."""
    return jax.lax.dynamic_slice_in_dim(A, i * CHUNK_LEVELS, CHUNK_LEVELS, axis=A.ndim - 1)


def eliminate_sum(theta, S, R, spec):
    """``(sum_j log|M_j|, sum_j R_j' W_j R_j)``: :func:`eliminate` then :func:`sandwich_sum`,
    :data:`CHUNK_LEVELS` levels at a time (rematerialised in the reverse pass).

    The same sums as the two kernels over all levels at once; the working arrays of a pass
    (and of its derivative) are those of one chunk, not of every level: for a random slope on
    a million levels the fit program's temporaries drop from 176 MB to about 12 MB.
    ``S (q,q,L)``, ``R (q,m,L)`` with ``L`` a multiple of :data:`CHUNK_LEVELS`.
    """
    L, m = S.shape[-1], R.shape[1]

    @jax.checkpoint
    def part(theta, i):
        ld, W = eliminate(theta, level_slice(S, i), spec)
        return ld, sandwich_sum(level_slice(R, i), W)

    def body(i, acc):
        ld, sw = part(theta, i)
        return acc[0] + ld, acc[1] + sw

    zero = jnp.zeros((), S.dtype)
    return jax.lax.fori_loop(0, L // CHUNK_LEVELS, body, (zero, jnp.zeros((m, m), S.dtype)))


# ---------------------------------------------------------------------------------------------
# the dense block
# ---------------------------------------------------------------------------------------------
def _host_inv_logdet(M, R):
    """Host (LAPACK) inverse, log-determinant and ``M^{-1} R`` of an SPD matrix; NaNs if not
    positive definite."""
    import scipy.linalg.blas as blas
    import scipy.linalg.lapack as lapack

    # M is symmetric: its transpose is a Fortran-ordered view of the same numbers, which LAPACK
    # takes without a transposing copy, and the transpose of the (Fortran-ordered) result is
    # the C-ordered array the program takes back without one (2 x 10 MB at 1128 columns)
    A = np.asarray(M, dtype=np.float64).T
    R = np.asarray(R, dtype=np.float64)
    with threads.dense_block(A.shape[0]):  # one BLAS thread, two when a core is idle (base/threads.py)
        L, info = lapack.dpotrf(A, lower=1, clean=0)
        if info != 0:
            return np.full(A.shape, np.nan), np.float64(np.nan), np.full(R.shape, np.nan)
        ld = 2.0 * np.sum(np.log(np.diagonal(L)))
        Minv, info = lapack.dpotri(L, lower=1, overwrite_c=1)
        Z = blas.dsymm(1.0, Minv, R, side=0, lower=1)  # R: [X y]'s columns, at least y
    # the upper triangle only (symmetrised in the program where it is read); Z from the lower
    return Minv.T, np.float64(ld), Z


def _host_cholesky(M):
    import scipy.linalg.lapack as lapack

    L, info = lapack.dpotrf(np.asarray(M, dtype=np.float64), lower=1, clean=1)
    return L if info == 0 else np.full(M.shape, np.nan)


def host_cholesky(M):
    """Lower Cholesky factor by LAPACK on the host (not differentiable; NaNs if not SPD)."""
    return jax.pure_callback(_host_cholesky, jax.ShapeDtypeStruct(M.shape, M.dtype), M, vmap_method="sequential")


@jax.custom_jvp
def spd_inv_logdet(M, R):
    """``(M^{-1}, log|M|, M^{-1} R)`` of a dense SPD matrix by LAPACK on the host
    (``pure_callback``; ``M^{-1} R`` by ``dsymm`` there, so the program never forms the whole
    inverse unless it reads all of it); ``d M^{-1} = -M^{-1} dM M^{-1}``,
    ``d log|M| = tr(M^{-1} dM)``, ``d(M^{-1} R) = M^{-1} (dR - dM M^{-1} R)``."""
    shapes = (jax.ShapeDtypeStruct(M.shape, M.dtype), jax.ShapeDtypeStruct((), M.dtype),
              jax.ShapeDtypeStruct(R.shape, R.dtype))
    up, ld, Z = jax.pure_callback(_host_inv_logdet, shapes, M, R, vmap_method="sequential")
    i = jnp.arange(M.shape[-1])
    return jnp.where(i[:, None] <= i[None, :], up, jnp.swapaxes(up, -1, -2)), ld, Z


@spd_inv_logdet.defjvp
def _spd_inv_logdet_jvp(primals, tangents):
    (M, R), (dM, dR) = primals, tangents
    Minv, ld, Z = spd_inv_logdet(M, R)
    return (Minv, ld, Z), (-Minv @ dM @ Minv, jnp.sum(Minv * dM), Minv @ (dR - dM @ Z))


def _xla_inv_logdet(M):
    """``(M^{-1}, log|M|)`` by XLA's Cholesky and one triangular solve (small dense blocks)."""
    L = jax.lax.linalg.cholesky(M, symmetrize_input=False)
    Li = jax.lax.linalg.triangular_solve(L, jnp.eye(M.shape[0], dtype=M.dtype), left_side=True, lower=True)
    return Li.T @ Li, 2.0 * jnp.sum(jnp.log(jnp.diagonal(L)))


def _inv_logdet(M, R):
    """``(M^{-1}, log|M|, M^{-1} R)``: on the host above :data:`SMALL_DENSE` columns, else XLA."""
    if M.shape[0] > SMALL_DENSE:
        return spd_inv_logdet(M, R)
    Minv, ld = _xla_inv_logdet(M)
    return Minv, ld, Minv @ R


@jax.custom_jvp
def dense_eliminate(M, R):
    """``(log|M|, R' M^{-1} R)`` for the dense SPD block ``M`` and its coupling ``R`` with ``[X y]``.

    The inverse comes from XLA's Cholesky up to :data:`SMALL_DENSE` columns and from LAPACK on
    the host above (XLA's CPU Cholesky and its autodiff were several times slower for the 1000+
    columns of crossed designs). Exact JVP, linear in the tangents with thin factors, so reverse
    mode costs no more dense products than the inverse itself (about 1.7x faster than
    differentiating the Cholesky factor at 128 columns):
    ``d log|M| = tr(M^{-1} dM)``, ``d(R'M^{-1}R) = dR' Z + Z' dR - Z' dM Z``, ``Z = M^{-1} R``.
    """
    _, ld, Z = _inv_logdet(M, R)
    return ld, R.T @ Z


@dense_eliminate.defjvp
def _dense_eliminate_jvp(primals, tangents):
    M, R = primals
    dM, dR = tangents
    Minv, ld, Z = _inv_logdet(M, R)
    return (ld, R.T @ Z), (jnp.sum(Minv * dM), dR.T @ Z + Z.T @ dR - Z.T @ (dM @ Z))


def dense_factor(M):
    """Lower Cholesky factor of the dense block (for the conditional modes; not differentiated)."""
    if M.shape[0] > SMALL_DENSE:
        return host_cholesky(M)
    return jax.lax.linalg.cholesky(M, symmetrize_input=False)


def level_sandwich(B, W, C):
    """``B_j' W_j C_j`` for every level (no sum): ``B (q,m,L)``, ``W (q,q,L)``, ``C (q,r,L)`` ->
    ``(m, r, L)``; the rank update of a nested block, summed into parent levels by the caller.
    Unrolled over ``q`` only (``q`` broadcast outer products)."""
    V = _times_W(W, C)
    return soa._sum(B[u][:, None, :] * V[u][None, :, :] for u in range(W.shape[0]))


def level_apply(W, v):
    """``W_j v_j`` per level: ``W (q,q,L)``, ``v (q,L)`` -> ``(q,L)``."""
    q = W.shape[0]
    return jnp.stack([sum(W[a, b] * v[b] for b in range(q)) for a in range(q)])
