"""The profiled (RE)ML deviance of a linear mixed model as a pure JAX function of theta.

Model (Bates, Maechler, Bolker & Walker 2015, JSS 67(1), sect. 3):
``y | b ~ N(X beta + Z b, sigma^2 I)``, ``b = Lambda_theta u``, ``u ~ N(0, sigma^2 I)``.
With the Cholesky factor of the augmented system

    [Lambda'Z'Z Lambda + I   Lambda'Z'X   Lambda'Z'y]   [L      0    0]   [L      0    0]'
    [X'Z Lambda              X'X          X'y       ] = [R_ZX'  L_X  0] . [R_ZX'  L_X  0]
    [y'Z Lambda              y'X          y'y       ]   [c_u'   c_b' r]   [c_u'   c_b' r]

the penalised residual sum of squares at the conditional optimum is ``r^2`` and

    ML:    d(theta)   = log|L|^2 + n (1 + log(2 pi r^2 / n))                         (eq. 34)
    REML:  d_R(theta) = log|L|^2 + log|L_X|^2 + (n-p)(1 + log(2 pi r^2 / (n-p)))   (eq. 41)

``L`` is computed block by block (see :mod:`suffstats`): the batched ``qA x qA`` blocks of the
first factor by unrolled scalar formulas vectorised over levels (structure of arrays, much
faster than batched ``jnp.linalg`` on tiny blocks), the remaining factors densely. Two designs
get cheaper forms of the same algebra: a first factor nested in a single second one keeps the
second block batched too (:func:`_nested_block`), and a scalar first factor turns the fill-in of
the dense block into one sparse map of its level weights (``Q(w)`` in :func:`pls`). One grouping
factor alone is handled by :mod:`onefactor` in the optimiser (hand-derived gradient).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from ..base import config  # noqa: F401  (float64)

__all__ = ["make_T", "pls", "objective", "objective_vp", "conditional_modes"]

LOG2PI = math.log(2.0 * math.pi)
SMALL_DENSE = 128  # dense blocks up to this size stay in XLA (autodiff); larger go to LAPACK


# --------------------------------------------------------------------------------------------
# small dense algebra over a batch, structure of arrays: leading (static) q dims, trailing batch
# --------------------------------------------------------------------------------------------
def chol_soa(M):
    """Lower Cholesky factor of ``M[:, :, k]`` for every k; ``M`` has shape (q, q, ...)."""
    q = M.shape[0]
    L = [[None] * q for _ in range(q)]
    for j in range(q):
        s = M[j, j]
        for k in range(j):
            s = s - L[j][k] * L[j][k]
        d = jnp.sqrt(s)
        L[j][j] = d
        for i in range(j + 1, q):
            t = M[i, j]
            for k in range(j):
                t = t - L[i][k] * L[j][k]
            L[i][j] = t / d
    zero = jnp.zeros_like(M[0, 0])
    return jnp.stack([jnp.stack([L[i][j] if j <= i else zero for j in range(q)]) for i in range(q)])


def fsolve_soa(L, B):
    """Solve ``L X = B`` for lower-triangular ``L (q,q,...)``; ``B (q, m, ...)`` (m broadcast)."""
    q = L.shape[0]
    X = []
    for i in range(q):
        t = B[i]
        for k in range(i):
            t = t - L[i, k][None] * X[k]
        X.append(t / L[i, i][None])
    return jnp.stack(X)


def bsolve_soa(L, B):
    """Solve ``L' X = B`` for lower-triangular ``L (q,q,...)``; ``B (q, m, ...)``."""
    q = L.shape[0]
    X = [None] * q
    for i in reversed(range(q)):
        t = B[i]
        for k in range(i + 1, q):
            t = t - L[k, i][None] * X[k]
        X[i] = t / L[i, i][None]
    return jnp.stack(X)


def make_T(theta, struct):
    """The relative covariance factors: lower-triangular ``T_f (q_f x q_f)``, one per factor."""
    Ts = []
    for f in range(struct.nfactors):
        idx = [k for k in range(struct.ntheta) if struct.theta_factor[k] == f]
        rows = [struct.theta_row[k] for k in idx]
        cols = [struct.theta_col[k] for k in idx]
        T = jnp.zeros((struct.q[f], struct.q[f]), dtype=theta.dtype)
        T = T.at[jnp.array(rows), jnp.array(cols)].set(theta[jnp.array(idx)])
        Ts.append(T)
    return Ts


def _sandwich(T, A):
    """``T' A T`` over the leading two dims of ``A (q,q,...)``."""
    return jnp.einsum("ki,kl...,lj->ij...", T, A, T)


def _b_lambda_blocks(Ts, struct, BZtZ, BZtXy):
    """``Lambda_B' Z_B'Z_B Lambda_B`` and ``Lambda_B' Z_B'[X y]`` using the per-level block structure."""
    offs = struct.b_offsets
    m = BZtXy.shape[1]
    rows = []
    rhs = []
    for f in range(1, struct.nfactors):
        qf, Lf, of = struct.q[f], struct.nlev[f], offs[f]
        row = []
        for g in range(1, struct.nfactors):
            qg, Lg, og = struct.q[g], struct.nlev[g], offs[g]
            blk = BZtZ[of:of + Lf * qf, og:og + Lg * qg].reshape(Lf, qf, Lg, qg)
            blk = jnp.einsum("ki,akbl,lj->aibj", Ts[f], blk, Ts[g]).reshape(Lf * qf, Lg * qg)
            row.append(blk)
        rows.append(jnp.concatenate(row, axis=1) if len(row) > 1 else row[0])
        r = BZtXy[of:of + Lf * qf].reshape(Lf, qf, m)
        rhs.append(jnp.einsum("ki,akc->aic", Ts[f], r).reshape(Lf * qf, m))
    M = jnp.concatenate(rows, axis=0) if len(rows) > 1 else rows[0]
    R = jnp.concatenate(rhs, axis=0) if len(rhs) > 1 else rhs[0]
    return M, R


def _host_inv_logdet(M):
    """Host (LAPACK) inverse and log-determinant of an SPD matrix; NaNs if not positive definite."""
    import scipy.linalg.lapack as lapack

    M = np.asarray(M, dtype=np.float64)
    L, info = lapack.dpotrf(M, lower=1, clean=0)
    if info != 0:
        nan = np.full(M.shape, np.nan)
        return nan, np.float64(np.nan)
    ld = 2.0 * np.sum(np.log(np.diagonal(L)))
    Minv, info = lapack.dpotri(L, lower=1)
    Minv = np.tril(Minv)
    Minv += np.triu(Minv.T, 1)  # symmetric from the lower triangle
    return Minv, np.float64(ld)


def _host_cholesky(M):
    import scipy.linalg.lapack as lapack

    L, info = lapack.dpotrf(np.asarray(M, dtype=np.float64), lower=1, clean=1)
    return L if info == 0 else np.full(M.shape, np.nan)


def host_cholesky(M):
    """Lower Cholesky factor by LAPACK on the host (not differentiable; NaNs if not SPD).

    For the dense block of crossed designs XLA's CPU Cholesky is several times slower.
    """
    return jax.pure_callback(_host_cholesky, jax.ShapeDtypeStruct(M.shape, M.dtype), M, vmap_method="sequential")


@jax.custom_jvp
def spd_inv_logdet(M):
    """``(M^{-1}, log|M|)`` of a dense SPD matrix by LAPACK on the host (``pure_callback``).

    XLA's CPU Cholesky and triangular solves, and above all their autodiff, are many times
    slower than LAPACK for the dense block of crossed designs; the derivatives are exact:
    ``d M^{-1} = -M^{-1} dM M^{-1}``, ``d log|M| = tr(M^{-1} dM)``.
    """
    shapes = (jax.ShapeDtypeStruct(M.shape, M.dtype), jax.ShapeDtypeStruct((), M.dtype))
    return jax.pure_callback(_host_inv_logdet, shapes, M, vmap_method="sequential")


@spd_inv_logdet.defjvp
def _spd_inv_logdet_jvp(primals, tangents):
    (M,), (dM,) = primals, tangents
    Minv, ld = spd_inv_logdet(M)
    return (Minv, ld), (-Minv @ dM @ Minv, jnp.sum(Minv * dM))


@jax.custom_jvp
def dense_block(M, R):
    """``(log|M|, R' M^{-1} R)`` for the dense SPD block of several grouping factors.

    JVP: ``d log|M| = tr(M^{-1} dM)``, ``d(R'M^{-1}R) = dR' Z + Z' dR - Z' dM Z`` with
    ``Z = M^{-1} R``: linear in the tangents with thin factors, so reverse mode costs no more
    dense products than the inverse itself.
    """
    Minv, ld = spd_inv_logdet(M)
    return ld, R.T @ (Minv @ R)


@dense_block.defjvp
def _dense_block_jvp(primals, tangents):
    M, R = primals
    dM, dR = tangents
    Minv, ld = spd_inv_logdet(M)
    Z = Minv @ R
    G = R.T @ Z
    dld = jnp.sum(Minv * dM)
    dG = dR.T @ Z + Z.T @ dR - Z.T @ (dM @ Z)
    return (ld, G), (dld, dG)


@jax.custom_vjp
def pair_products(Pf, Pg, i, j, msk, perm_i, perm_j):
    """``out[a, b, m] = msk[m] * sum_c Pf[c, a, i[m]] Pg[c, b, j[m]]``: the blocks of ``L_BA L_BA'``.

    Its reverse pass accumulates into ``Pf``/``Pg`` with *sorted* segment sums (``perm_i``,
    ``perm_j`` sort ``i`` and ``j``), avoiding XLA's slow unsorted scatter-add on CPU.
    """
    return jnp.einsum("cam,cbm->abm", Pf[:, :, i], Pg[:, :, j]) * msk


def _pair_products_plain(Pf, Pg, i, j, msk, perm_i, perm_j):
    """:func:`pair_products` without the custom reverse pass (forward-mode differentiable)."""
    return jnp.einsum("cam,cbm->abm", Pf[:, :, i], Pg[:, :, j]) * msk


def _pair_products_fwd(Pf, Pg, i, j, msk, perm_i, perm_j):
    return pair_products(Pf, Pg, i, j, msk, perm_i, perm_j), (Pf, Pg, i, j, msk, perm_i, perm_j)


def _pair_products_bwd(res, ct):
    Pf, Pg, i, j, msk, perm_i, perm_j = res
    ctm = ct * msk
    wf = jnp.einsum("abm,cbm->cam", ctm, Pg[:, :, j])  # contributions to Pf[:, :, i[m]]
    wg = jnp.einsum("abm,cam->cbm", ctm, Pf[:, :, i])  # contributions to Pg[:, :, j[m]]
    K = Pf.shape[2]
    gf = jax.ops.segment_sum(jnp.moveaxis(wf[:, :, perm_i], 2, 0), i[perm_i], K, indices_are_sorted=True)
    gg = jax.ops.segment_sum(jnp.moveaxis(wg[:, :, perm_j], 2, 0), j[perm_j], Pg.shape[2], indices_are_sorted=True)
    return (jnp.moveaxis(gf, 0, 2), jnp.moveaxis(gg, 0, 2), None, None, None, None, None)


pair_products.defvjp(_pair_products_fwd, _pair_products_bwd)


def _pls_b_blocks(Ts, TA, LA, RZXA, stats, struct, plain, Ps):
    """``M_B = Lambda_B'Z_B'Z_B Lambda_B + I - L_BA L_BA'`` and ``R_B`` by pairs of pairs (any ``q_A``).

    Appends the per-factor ``P`` (``L_BA`` blocks, transposed) to ``Ps``.
    """
    offs = struct.b_offsets
    QB = struct.QB
    MB, RB = _b_lambda_blocks(Ts, struct, stats["B_ZtZ"], stats["B_ZtXy"])
    for f in range(1, struct.nfactors):
        C, ca = stats[f"C{f}"], stats[f"Ca{f}"]
        U = jnp.einsum("ki,kl...,lj->ij...", Ts[f], C, TA)  # (qf, qA, K)
        La = LA[:, :, ca]
        # P_k = U_k L_A[a_k]^{-T}; stored transposed as (qA, qf, K)
        Ps.append(fsolve_soa(La, jnp.swapaxes(U, 0, 1)))
    Sb = jnp.zeros((QB * QB,), dtype=MB.dtype)
    for f in range(1, struct.nfactors):
        qf = struct.q[f]
        for g in range(1, struct.nfactors):
            qg = struct.q[g]
            key = f"{f}_{g}"
            pp = _pair_products_plain if plain else pair_products
            vals = pp(Ps[f], Ps[g], stats[f"PPi{key}"], stats[f"PPj{key}"], stats[f"PPm{key}"],
                      stats[f"PPpi{key}"], stats[f"PPpj{key}"])
            dest = stats[f"PPd{key}"]
            for a in range(qf):
                for b in range(qg):
                    Sb = Sb.at[dest + (a * QB + b)].add(vals[a, b], indices_are_sorted=True, mode="drop")
    MB = MB + jnp.eye(QB, dtype=MB.dtype) - Sb.reshape(QB, QB)
    for f in range(1, struct.nfactors):
        qf, of = struct.q[f], offs[f]
        ca, cl = stats[f"Ca{f}"], stats[f"Cl{f}"]
        vals = jnp.einsum("cik,cdk->idk", Ps[f], RZXA[:, :, ca])  # (qf, p+1, K)
        r = of + cl[None, :] * qf + jnp.arange(qf)[:, None]  # (qf, K)
        RB = RB.at[r].add(-jnp.swapaxes(vals, 1, 2))
    return MB, RB


def _nested_block(Ts, LA, RZXA, stats, struct):
    """The B block of a nested design (``struct.b_diag``): batched per B level like A.

    Each A level ``a`` couples with one B level ``l``, so ``L_BA L_BA'`` has a ``q_B x q_B``
    block per B level, ``sum_{a in l} P_a' P_a`` with ``P_a = L_A[a]^{-1} T_A' C_a' T_B``, and
    ``M_B``, its Cholesky factor and ``R_ZXB`` are batched over B levels (structure of arrays).
    Returns ``log|L_B|^2``, ``R_ZXB'R_ZXB``, ``P (qA,qB,K)``, ``L_B (qB,qB,L_B)``, ``R_ZXB (qB,p+1,L_B)``.
    """
    TA, TB = Ts[0], Ts[1]
    qB, nB = struct.q[1], struct.nlev[1]
    C, ca, cl = stats["C1"], stats["Ca1"], stats["Cl1"]
    U = jnp.einsum("ki,kl...,lj->ij...", TB, C, TA)  # (qB, qA, K)
    P = fsolve_soa(LA[:, :, ca], jnp.swapaxes(U, 0, 1))  # (qA, qB, K)

    def per_level(x):  # sum over pairs into B levels, last axis
        return jnp.moveaxis(jax.ops.segment_sum(jnp.moveaxis(x, -1, 0), cl, nB), 0, -1)

    Sb = per_level(jnp.einsum("cak,cbk->abk", P, P))
    MB = _sandwich(TB, stats["B_blk"]) + jnp.eye(qB, dtype=TB.dtype)[:, :, None] - Sb
    yB = jnp.moveaxis(stats["B_ZtXy"].reshape(nB, qB, -1), 0, -1)  # (qB, p+1, nB)
    RB = jnp.einsum("ki,kc...->ic...", TB, yB) - per_level(jnp.einsum("cik,cdk->idk", P, RZXA[:, :, ca]))
    LB = chol_soa(MB)
    ldB = 2.0 * sum(jnp.sum(jnp.log(LB[i, i])) for i in range(qB))
    W = fsolve_soa(LB, RB)
    return ldB, jnp.einsum("icl,idl->cd", W, W), P, LB, W


def pls(theta, stats, struct, full=False, plain=False):
    """Blocked Cholesky factorisation at ``theta``.

    Returns
    -------
    dict with ``LA (qA,qA,J)``, ``RZXA (qA,p+1,J)``, ``Lxx (p+1,p+1)`` (lower; ``Lxx[p,p] = r``),
    ``ldL2`` and, with several factors, ``P`` (per B factor, ``(qA,q_f,K)``) and, when
    ``full``, ``LB`` and ``RZXB`` (needed for the conditional modes, not for the criterion).
    ``plain=True`` avoids custom reverse rules so that forward-mode autodiff (``jax.hessian``,
    ``jax.jacfwd``) works; use it for second-order quantities only (its reverse pass is slower).
    """
    Ts = make_T(theta, struct)
    TA = Ts[0]
    qA = struct.q[0]
    ZtZ = stats["A_ZtZ"]
    eye = jnp.eye(qA, dtype=ZtZ.dtype)
    MA = _sandwich(TA, ZtZ) + eye[:, :, None]
    LA = chol_soa(MA)
    ldL2 = 2.0 * sum(jnp.sum(jnp.log(LA[i, i])) for i in range(qA))
    RZXA = fsolve_soa(LA, jnp.einsum("ki,kc...->ic...", TA, stats["A_ZtXy"]))
    S = stats["XytXy"] - jnp.einsum("icj,idj->cd", RZXA, RZXA)
    out = {"LA": LA, "RZXA": RZXA, "Ts": Ts}
    if struct.b_diag:
        ldB, G, P, LBb, W = _nested_block(Ts, LA, RZXA, stats, struct)
        out.update(P=[None, P], LBblk=LBb, RZXBblk=W)
        S = S - G
        ldL2 = ldL2 + ldB
    elif struct.nfactors > 1:
        offs = struct.b_offsets
        QB = struct.QB
        Ps = [None]
        if qA == 1 and "Qd" in stats:
            # scalar first factor: L_BA L_BA' = t_A^2 Lambda_B' Q(w) Lambda_B (suffstats._scalar_a_products)
            tA2 = TA[0, 0] ** 2
            w = 1.0 / MA[0, 0]
            U = jax.ops.segment_sum(stats["Qv"] * w[stats["Qa"]], stats["Qd"], QB * QB,
                                    indices_are_sorted=True).reshape(QB, QB)
            Q = U + U.T - jnp.diag(jnp.diagonal(U))
            Rw = jnp.zeros_like(stats["B_ZtXy"])
            yA = stats["A_ZtXy"][0] * w[None, :]  # (p+1, J)
            for f in range(1, struct.nfactors):
                qf, of = struct.q[f], offs[f]
                C, ca, cl = stats[f"C{f}"], stats[f"Ca{f}"], stats[f"Cl{f}"]
                vals = C[:, 0, None, :] * yA[None, :, ca]  # (qf, p+1, K)
                r = of + cl[None, :] * qf + jnp.arange(qf)[:, None]  # (qf, K)
                Rw = Rw.at[r].add(jnp.swapaxes(vals, 1, 2))
            MB, RB = _b_lambda_blocks(Ts, struct, stats["B_ZtZ"] - tA2 * Q, stats["B_ZtXy"] - tA2 * Rw)
            MB = MB + jnp.eye(QB, dtype=MB.dtype)
            if full:
                for f in range(1, struct.nfactors):
                    C, ca = stats[f"C{f}"], stats[f"Ca{f}"]
                    U_ = jnp.einsum("ki,kl...,lj->ij...", Ts[f], C, TA)
                    Ps.append(fsolve_soa(LA[:, :, ca], jnp.swapaxes(U_, 0, 1)))
        else:
            MB, RB = _pls_b_blocks(Ts, TA, LA, RZXA, stats, struct, plain, Ps)
        if full:
            LB = host_cholesky(MB) if QB > SMALL_DENSE else jnp.linalg.cholesky(MB)
            ldB = 2.0 * jnp.sum(jnp.log(jnp.diagonal(LB)))
            RZXB = jax.scipy.linalg.solve_triangular(LB, RB, lower=True)
            G = RZXB.T @ RZXB
            out.update(LB=LB, RZXB=RZXB)
        elif QB <= SMALL_DENSE:
            LB = jnp.linalg.cholesky(MB)
            ldB = 2.0 * jnp.sum(jnp.log(jnp.diagonal(LB)))
            W = jax.scipy.linalg.solve_triangular(LB, RB, lower=True)
            G = W.T @ W
        else:
            ldB, G = dense_block(MB, RB)
        ldL2 = ldL2 + ldB
        S = S - G
        out.update(P=Ps)
    Lxx = jnp.linalg.cholesky(S)
    out["Lxx"] = Lxx
    out["ldL2"] = ldL2
    return out


def _criterion(ldL2, Lxx, n, p, reml):
    r2 = Lxx[p, p] ** 2
    if reml:
        ldRX2 = 2.0 * jnp.sum(jnp.log(jnp.diagonal(Lxx)[:p]))
        nmp = n - p
        return ldL2 + ldRX2 + nmp * (1.0 + LOG2PI + jnp.log(r2 / nmp))
    return ldL2 + n * (1.0 + LOG2PI + jnp.log(r2 / n))


def objective(theta, stats, struct, reml):
    """Profiled deviance (ML) or REML criterion at ``theta`` (lme4's ``devfun``)."""
    d = pls(theta, stats, struct)
    return _criterion(d["ldL2"], d["Lxx"], stats["n"], struct.p, reml)


def objective_vp(varpar, stats, struct, reml, plain=True):
    """Deviance as a function of ``(theta, sigma)`` with beta profiled (lmerTest's ``devfun_vp``).

    ``ldL2 + r^2/sigma^2 + n log(2 pi sigma^2)``, plus ``log|L_X|^2 - p log(2 pi sigma^2)`` for REML.
    """
    theta, sigma = varpar[:-1], varpar[-1]
    d = pls(theta, stats, struct, plain=plain)
    p = struct.p
    Lxx = d["Lxx"]
    r2 = Lxx[p, p] ** 2
    s2 = sigma**2
    n = stats["n"]
    dev = d["ldL2"] + r2 / s2 + n * (LOG2PI + jnp.log(s2))
    if reml:
        dev = dev + 2.0 * jnp.sum(jnp.log(jnp.diagonal(Lxx)[:p])) - p * (LOG2PI + jnp.log(s2))
    return dev


def beta_and_cov(theta, sigma, stats, struct, plain=True):
    """``beta_hat(theta)`` and ``vcov(beta) = sigma^2 (L_X L_X')^{-1}`` (forward-mode differentiable)."""
    d = pls(theta, stats, struct, plain=plain)
    p = struct.p
    Lx = d["Lxx"][:p, :p]
    cb = d["Lxx"][p, :p]
    beta = jax.scipy.linalg.solve_triangular(Lx.T, cb, lower=False)
    Li = jax.scipy.linalg.solve_triangular(Lx, jnp.eye(p, dtype=Lx.dtype), lower=True)
    return beta, sigma**2 * (Li.T @ Li)


def conditional_modes(theta, stats, struct):
    """beta, r^2, log-determinants and the spherical modes ``u`` (``b = Lambda u``).

    ``u`` solves ``L' u = c_u - R_ZX beta`` block by block: first the B block, then A.
    """
    d = pls(theta, stats, struct, full=True)
    p = struct.p
    Lxx = d["Lxx"]
    Lx = Lxx[:p, :p]
    beta = jax.scipy.linalg.solve_triangular(Lx.T, Lxx[p, :p], lower=False)
    bfull = jnp.concatenate([-beta, jnp.ones((1,), beta.dtype)])
    out = {
        "beta": beta,
        "r2": Lxx[p, p] ** 2,
        "ldL2": d["ldL2"],
        "ldRX2": 2.0 * jnp.sum(jnp.log(jnp.diagonal(Lx))),
        "Lx": Lx,
        "Ts": d["Ts"],
        "LA": d["LA"],
    }
    vA = jnp.einsum("icj,c->ij", d["RZXA"], bfull)  # (qA, J): c_u - R_ZX beta
    if struct.nfactors > 1:
        if struct.b_diag:
            vB = jnp.einsum("icl,c->il", d["RZXBblk"], bfull)  # (qB, L_B)
            uB = bsolve_soa(d["LBblk"], vB[:, None, :])[:, 0, :].T.reshape(-1)
        else:
            vB = d["RZXB"] @ bfull
            uB = jax.scipy.linalg.solve_triangular(d["LB"].T, vB, lower=False)
        offs = struct.b_offsets
        for f in range(1, struct.nfactors):
            qf, of = struct.q[f], offs[f]
            ca, cl = stats[f"Ca{f}"], stats[f"Cl{f}"]
            ub = uB[of + cl[None, :] * qf + jnp.arange(qf)[:, None]]  # (qf, K)
            contrib = jnp.einsum("cik,ik->ck", d["P"][f], ub)  # (qA, K)
            vA = vA.at[:, ca].add(-contrib)
        out["uB"] = uB
        out["LB"] = d["LBblk"] if struct.b_diag else d["LB"]
        out["P"] = d["P"]
    out["uA"] = bsolve_soa(d["LA"], vA[:, None, :])[:, 0, :]
    return out
