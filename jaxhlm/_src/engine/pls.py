"""The profiled (RE)ML criterion of a linear mixed model: one blocked factorisation for every design.

Model (Bates, Maechler, Bolker & Walker 2015, JSS 67(1), sect. 3):
``y | b ~ N(X beta + Z b, sigma^2 W^{-1})`` (prior weights ``W``), ``b = Lambda_theta u``,
``u ~ N(0, sigma^2 I)``. With the Cholesky factor of the augmented system

    [Lambda'Z'Z Lambda + I   Lambda'Z'X   Lambda'Z'y]   [L      0    0]   [L      0    0]'
    [X'Z Lambda              X'X          X'y       ] = [R_ZX'  L_X  0] . [R_ZX'  L_X  0]
    [y'Z Lambda              y'X          y'y       ]   [c_u'   c_b' r]   [c_u'   c_b' r]

the penalised residual sum of squares at the conditional optimum is ``r^2`` and

    ML:    d(theta)   = log|L|^2 - log|W| + n (1 + log(2 pi r^2 / n))                         (eq. 34)
    REML:  d_R(theta) = log|L|^2 - log|W| + log|L_X|^2 + (n-p)(1 + log(2 pi r^2 / (n-p)))   (eq. 41)

:func:`factorize` eliminates the random effects block by block in the order of the layout's
:class:`~jaxhlm._src.stats.layout.Plan` (as MixedModels.jl's ``updateL!``): each block is
eliminated by :func:`~jaxhlm._src.engine.kernels.eliminate` (batched) or
:func:`~jaxhlm._src.engine.kernels.dense_eliminate` (dense), and its ``W = T M^{-1} T'`` updates
the Z-scale Schur complement of every later block and of ``[X y]`` through the kernel of the
coupling's type (per-level sums, nested segment sums, a dense product, the scalar fill map, or
pairs of pairs). What is left of ``[X y]`` is ``L_XX L_XX'``.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ..base import config  # noqa: F401  (float64)
from . import kernels as K
from . import pattern as P

__all__ = ["Factor", "Solution", "factorize", "criterion", "objective", "objective_vp", "beta_and_cov", "vp_derivatives",
           "modes", "solve", "LOG2PI"]

LOG2PI = math.log(2.0 * math.pi)


class Factor(NamedTuple):
    """A factorisation at theta: ``log|L|^2``, ``L_XX`` and (with ``keep``) what the
    conditional modes need: per batched block ``W``, ``R`` (its updated Z'[X y]) and couplings,
    and for the dense block its matrix ``M``, ``R_D`` and ``T`` blocks."""

    ldL2: object
    Lxx: object
    W: tuple = ()
    R: tuple = ()
    C: tuple = ()
    MD: object = None
    RD: object = None
    S: tuple = ()


def _seg(x, ids, num):
    """Sum the last axis of ``x`` into ``num`` segments (``ids`` per entry)."""
    return jnp.moveaxis(jax.ops.segment_sum(jnp.moveaxis(x, -1, 0), ids, num), 0, -1)


# ---------------------------------------------------------------------------------------------
# plans
# ---------------------------------------------------------------------------------------------
def _chain(theta, stats, layout, keep):
    """All factors batched, each nested in the next (one factor: the closed form alone)."""
    F = layout.nfactors
    if F == 1 and not keep and layout.nlev[0] >= K.CHUNKED_FROM and layout.nlev[0] % K.CHUNK_LEVELS == 0:
        lv = stats.levels[0]  # many levels: a slice at a time (memory; the same sums)
        ld, RWR = K.eliminate_sum(theta, lv.ZtZ, lv.ZtXy, K.elim_spec(layout, 0))
        return ld, stats.XytXy - RWR, None
    S = [lv.ZtZ for lv in stats.levels]
    R = [lv.ZtXy for lv in stats.levels]
    C = [[lk.C for lk in row] for row in stats.links] if F > 1 else [[]]
    Sxy = stats.XytXy
    ld = 0.0
    Ws, Rs, Cs, Ss = [], [], [], []
    for h in range(F):
        ldh, W = K.eliminate(theta, S[h], K.elim_spec(layout, h))
        ld = ld + ldh
        Sxy = Sxy - K.sandwich_sum(R[h], W)
        if keep:
            Ws.append(W)
            Ss.append(S[h])
            Rs.append(R[h])
            Cs.append(tuple(C[h]) if F > 1 else ())
        for x, i in enumerate(range(h + 1, F)):
            par = stats.links[h][x].parent
            Ci = C[h][x]  # Z_h'Z_i per level of h
            L_i = layout.nlev[i]
            S[i] = S[i] - _seg(K.level_sandwich(Ci, W, Ci), par, L_i)
            R[i] = R[i] - _seg(K.level_sandwich(Ci, W, R[h]), par, L_i)
            for y, k in enumerate(range(i + 1, F)):
                Ck = C[h][k - h - 1]  # Z_h'Z_k per level of h
                C[i][y] = C[i][y] - _seg(K.level_sandwich(Ci, W, Ck), par, L_i)
    return ld, Sxy, Factor(None, None, tuple(Ws), tuple(Rs), tuple(Cs), S=tuple(Ss)) if keep else None


def _dense_scales(Ts, layout):
    """The diagonal of ``Lambda_D`` when every dense factor is scalar: its theta, level by level."""
    parts = [jnp.broadcast_to(Ts[f][0, 0], (layout.nlev[f],)) for f in layout.dense_factors]
    return jnp.concatenate(parts) if len(parts) > 1 else parts[0]


def _scale_dense(A, Ts, layout, right=True):
    """``Lambda_D' A [Lambda_D]`` for a dense-block matrix ``A`` (rows, and columns if ``right``).

    Scalar dense factors (every ``q_f = 1``, InstEval's lecturers and departments): ``Lambda_D``
    is diagonal, one fused scaling by ``s s'`` (the block-wise products and their concatenation
    copied the 1142-column block three times per evaluation)."""
    offs = layout.dense_offsets
    if all(layout.q[f] == 1 for f in layout.dense_factors):
        sc = _dense_scales(Ts, layout)
        return A * sc[:, None] * sc[None, :] if right else A * sc[:, None]
    rows = []
    for f in layout.dense_factors:
        qf, Lf, of = layout.q[f], layout.nlev[f], offs[f]
        blk = A[of:of + Lf * qf]
        if right:
            parts = []
            for g in layout.dense_factors:
                qg, Lg, og = layout.q[g], layout.nlev[g], offs[g]
                b = blk[:, og:og + Lg * qg].reshape(Lf, qf, Lg, qg)
                parts.append(jnp.einsum("ki,akbl,lj->aibj", Ts[f], b, Ts[g]).reshape(Lf * qf, Lg * qg))
            rows.append(jnp.concatenate(parts, axis=1) if len(parts) > 1 else parts[0])
        else:
            b = blk.reshape(Lf, qf, -1)
            rows.append(jnp.einsum("ki,akc->aic", Ts[f], b).reshape(Lf * qf, -1))
    return jnp.concatenate(rows, axis=0) if len(rows) > 1 else rows[0]


def _dense_fill(W, RA, stats, layout, Ts, with_fill=True):
    """``Z_D'Z_A W Z_A'Z_D`` (None unless ``with_fill``) and ``Z_D'Z_A W Z_A'[X y]`` by the
    coupling's kernel (``Ts``: the ``T_f``)."""
    QD = layout.QD
    qA = layout.q[0]
    plan = layout.plan
    if plan.coupling == "dense":
        Cd = stats.coupling.C  # (qA, J, QD)
        G = jnp.stack([sum(W[u, v][:, None] * Cd[v] for v in range(qA)) for u in range(qA)])
        fill = jnp.einsum("ujk,ujl->kl", Cd, G)
        cross = jnp.einsum("ujk,ucj->kc", G, RA)
        return 0.5 * (fill + fill.T), cross
    m = RA.shape[1]
    cross = jnp.zeros((QD, m), W.dtype)
    Gs = []
    for x, f in enumerate(layout.dense_factors):
        pr = stats.coupling[x]
        Wa = W[:, :, pr.a]  # (qA, qA, K)
        G = jnp.stack([jnp.stack([sum(pr.C[r, v] * Wa[v, u] for v in range(qA)) for u in range(qA)])
                       for r in range(layout.q[f])])  # (q_f, qA, K): C_k W_a
        Gs.append(G)
        vals = jnp.einsum("ruk,uck->rck", G, RA[:, :, pr.a])  # (q_f, m, K)
        rows = pr.row[None, :] + jnp.arange(layout.q[f])[:, None]  # (q_f, K)
        cross = cross.at[rows].add(jnp.swapaxes(vals, 1, 2))
    if not with_fill:
        return None, cross
    if plan.fill == "scalar":
        fm = stats.fill
        U = K.scalar_fill(Ts[0][0, 0], W[0, 0], stats.levels[0].ZtZ[0, 0], fm.v, fm.a, fm.d, QD * QD).reshape(QD, QD)
        return U + U.T - jnp.diag(jnp.diagonal(U)), cross
    diag = jnp.zeros((QD * QD,), W.dtype)
    off = jnp.zeros((QD * QD,), W.dtype)
    t = 0
    nd = len(layout.dense_factors)
    for x in range(nd):
        f = layout.dense_factors[x]
        for y in range(x, nd):
            g = layout.dense_factors[y]
            i, j, d = stats.fill.i[t], stats.fill.j[t], stats.fill.d[t]
            t += 1
            vals = jnp.einsum("aum,bum->abm", Gs[x][:, :, i], stats.coupling[y].C[:, :, j])
            tgt = diag if x == y else off
            for a in range(layout.q[f]):
                for b in range(layout.q[g]):
                    tgt = tgt.at[d + (a * QD + b)].add(vals[a, b], indices_are_sorted=True, mode="drop")
            if x == y:
                diag = tgt
            else:
                off = tgt
    off = off.reshape(QD, QD)
    return diag.reshape(QD, QD) + off + off.T, cross


def _pattern_values(W, stats, layout, Ts):
    """``M_D = I + Lambda_D' (Z_D'Z_D - fill) Lambda_D`` for scalar dense factors, by its values
    on its nonzero pattern (:func:`~jaxhlm._src.stats.fillmap.scalar_pattern`): the fill summed
    into the slots and scaled by ``s_i s_j`` (:func:`~jaxhlm._src.engine.pattern.pattern_matrix`
    places them; :func:`~jaxhlm._src.engine.pattern.pattern_eliminate` takes them as they are)."""
    fm, QD = stats.fill, layout.QD
    U = K.scalar_fill(Ts[0][0, 0], W[0, 0], stats.levels[0].ZtZ[0, 0], fm.v, fm.a, fm.slot, fm.up.shape[0])
    Z = jnp.take(stats.dense.ZtZ.reshape(-1), fm.up, mode="fill", fill_value=0.0)
    return _slot_scales(Ts, layout, fm.up) * (Z - U) + (fm.up == fm.lo).astype(W.dtype)


def _slot_scales(Ts, layout, up):
    """``s_i s_j`` at each slot: the product of the two dense factors' theta, chosen by
    comparisons with the factors' offsets (not gathered from ``s``: the reverse pass of a
    gather scatters into the levels, 0.4 ms a slot list for InstEval)."""
    fs, QD = layout.dense_factors, layout.QD
    t = [Ts[f][0, 0] for f in fs]
    if len(fs) == 1:
        return t[0] * t[0]

    def pick(k):  # the theta of the factor holding row (or column) k
        out = t[0]
        for f, tf in zip(fs[1:], t[1:]):
            out = jnp.where(k >= layout.dense_offsets[f], tf, out)
        return out

    return pick(up // QD) * pick(up % QD)


def _crossed(theta, stats, layout, keep):
    """First factor batched, every other factor in one dense block."""
    lv = stats.levels[0]
    ld, W = K.eliminate(theta, lv.ZtZ, K.elim_spec(layout, 0))
    Sxy = stats.XytXy - K.sandwich_sum(lv.ZtXy, W)
    Ts = layout.T_arrays(theta, jnp)
    pattern = layout.plan.fill == "scalar" and getattr(stats.fill, "up", None) is not None
    fill, cross = _dense_fill(W, lv.ZtXy, stats, layout, Ts, with_fill=not pattern)
    RD = _scale_dense(stats.dense.ZtXy - cross, Ts, layout, right=False)
    if pattern:  # the block by its values on the pattern; on the host when large
        vals, fm = _pattern_values(W, stats, layout, Ts), stats.fill
        MD = P.pattern_matrix(vals, fm.up, fm.lo, layout.QD) if keep or layout.QD <= K.SMALL_DENSE else None
        ldD, G = K.dense_eliminate(MD, RD) if layout.QD <= K.SMALL_DENSE else P.pattern_eliminate(vals, RD, fm.up, fm.lo)
    else:
        MD = _scale_dense(stats.dense.ZtZ - fill, Ts, layout) + jnp.eye(layout.QD, dtype=W.dtype)
        ldD, G = K.dense_eliminate(MD, RD)
    aux = Factor(None, None, (W,), (lv.ZtXy,), (), MD, RD, S=(lv.ZtZ,)) if keep else None
    return ld + ldD, Sxy - G, aux


def factorize(theta, stats, layout, keep: bool = False) -> Factor:
    """Blocked Cholesky factorisation at ``theta``: ``log|L|^2`` and ``L_XX`` (lower; its last
    diagonal element is ``r``); with ``keep``, also the parts :func:`modes` needs."""
    run = _crossed if layout.plan.kind == "crossed" else _chain
    ld, Sxy, aux = run(theta, stats, layout, keep)
    Lxx = jax.lax.linalg.cholesky(Sxy, symmetrize_input=False)
    if aux is None:
        return Factor(ld, Lxx)
    return aux._replace(ldL2=ld, Lxx=Lxx)


def criterion(ldL2, Lxx, n, p, reml, logw=0.0):
    """The (RE)ML criterion from ``log|L|^2`` and ``L_XX`` (eqs. 34 and 41)."""
    r2 = Lxx[p, p] ** 2
    if reml:
        ldRX2 = 2.0 * jnp.sum(jnp.log(jnp.diagonal(Lxx)[:p]))
        nmp = n - p
        return ldL2 - logw + ldRX2 + nmp * (1.0 + LOG2PI + jnp.log(r2 / nmp))
    return ldL2 - logw + n * (1.0 + LOG2PI + jnp.log(r2 / n))


def objective(theta, stats, layout, reml):
    """Profiled deviance (ML) or REML criterion at ``theta`` (lme4's ``devfun``)."""
    fc = factorize(theta, stats, layout)
    return criterion(fc.ldL2, fc.Lxx, stats.n, layout.p, reml, stats.logw)


def _deviance_vp(fc, sigma, stats, layout, reml):
    p = layout.p
    r2 = fc.Lxx[p, p] ** 2
    s2 = sigma**2
    dev = fc.ldL2 - stats.logw + r2 / s2 + stats.n * (LOG2PI + jnp.log(s2))
    if reml:
        dev = dev + 2.0 * jnp.sum(jnp.log(jnp.diagonal(fc.Lxx)[:p])) - p * (LOG2PI + jnp.log(s2))
    return dev


def _beta_cov(fc, sigma, layout):
    p = layout.p
    Lx = fc.Lxx[:p, :p]
    solve = jax.lax.linalg.triangular_solve
    beta = solve(Lx, fc.Lxx[p, :p][:, None], left_side=True, lower=True, transpose_a=True)[:, 0]
    Li = solve(Lx, jnp.eye(p, dtype=Lx.dtype), left_side=True, lower=True)
    return beta, sigma**2 * (Li.T @ Li)


def objective_vp(varpar, stats, layout, reml):
    """Deviance in ``(theta, sigma)`` with beta profiled (lmerTest's ``devfun_vp``):
    ``log|L|^2 - log|W| + r^2/sigma^2 + n log(2 pi sigma^2)``, plus
    ``log|L_X|^2 - p log(2 pi sigma^2)`` for REML."""
    return _deviance_vp(factorize(varpar[:-1], stats, layout), varpar[-1], stats, layout, reml)


def beta_and_cov(theta, sigma, stats, layout):
    """``beta_hat(theta)`` and ``vcov(beta) = sigma^2 (L_X L_X')^{-1}`` (differentiable)."""
    return _beta_cov(factorize(theta, stats, layout), sigma, layout)


VP_STEP = 1e-3  # relative step of vp_derivatives' central differences ...
VP_FLOOR = 1e-2  # ... of |v_i|, at least this (theta = 0 on the boundary)


DIFFERENCES_MAX_DENSE = 512  # single fits with a dense block up to this wide: differences (below)


def vp_derivatives(varpar, stats, layout, reml, method: str = "auto"):
    """Second-order quantities of Satterthwaite's df at ``varpar = (theta, sigma)``: the Hessian
    ``H`` of :func:`objective_vp`, the Jacobian ``J = dC/d(theta, sigma)`` (p, p, m+1) of
    ``C = vcov(beta)``, and ``C``; traceable.

    ``method="autodiff"``: exact, ``H`` by forward over reverse mode through the engine and
    ``J`` by reverse mode. ``method="differences"``: ``H`` from the exact gradient and ``J``
    from ``C`` by central differences with Richardson's extrapolation,
    ``(8 (f(v + h_i) - f(v - h_i)) - (f(v + 2 h_i) - f(v - 2 h_i))) / (12 h_i)``,
    ``h_i = VP_STEP max(|v_i|, VP_FLOOR)`` (relative to each parameter: a slope's theta is often
    0.01-0.05), error ``O(h^4)``: the df agree with the exact ones to 1e-10 (lmerTest
    differentiates numerically too). One compiled evaluation of the deviance, its gradient and
    ``C`` (one factorisation) is mapped over ``v`` and its ``4 (m + 1)`` neighbours, which
    compiles 2-3x faster than forward over reverse mode (a random-slope model's first summary:
    2.6 s of compiling) but evaluates the gradient ``4 m + 5`` times instead of about
    ``2 (m + 1)``. ``"auto"`` (single fits): differences unless the dense block is wider than
    :data:`DIFFERENCES_MAX_DENSE` (there the evaluations, not the compile, cost the time);
    batched refits, compiled once for many replicates, use ``"autodiff"``."""
    if method == "auto":
        method = "differences" if layout.QD <= DIFFERENCES_MAX_DENSE else "autodiff"
    if method == "autodiff":
        H = jax.jacfwd(jax.grad(objective_vp))(varpar, stats, layout, reml)
        cov = lambda vp: beta_and_cov(vp[:-1], vp[-1], stats, layout)[1]  # noqa: E731
        return H, jax.jacrev(cov)(varpar), cov(varpar)
    if method != "differences":
        raise ValueError(f"method must be 'auto', 'autodiff' or 'differences', got {method!r}")
    m1 = varpar.shape[0]

    def f(vp):
        fc = factorize(vp[:-1], stats, layout)
        return _deviance_vp(fc, vp[-1], stats, layout, reml), _beta_cov(fc, vp[-1], layout)[1]

    h = VP_STEP * jnp.maximum(jnp.abs(varpar), VP_FLOOR)
    E = jnp.diag(h)
    pts = jnp.concatenate([varpar[None, :]] + [varpar[None, :] + k * E for k in (1.0, -1.0, 2.0, -2.0)])
    (_, covs), G = jax.lax.map(jax.value_and_grad(f, has_aux=True), pts)

    def richardson(V, scale):  # (4 D(h) - D(2h)) / 3, D(t) = (v(x + t) - v(x - t)) / (2 t): O(h^4)
        b = [V[1 + k * m1:1 + (k + 1) * m1] for k in range(4)]
        return (8.0 * (b[0] - b[1]) - (b[2] - b[3])) / (12.0 * scale)

    H = richardson(G, h[:, None])
    J = jnp.moveaxis(richardson(covs, h[:, None, None]), 0, -1)
    return 0.5 * (H + H.T), J, covs[0]


class Solution(NamedTuple):
    """The penalised least-squares solution at theta: ``beta``, the conditional modes ``b`` and
    the spherical modes ``u`` (``b = Lambda u``) per factor (``(q_f, L_f)`` arrays), ``log|L|^2``,
    ``L_XX`` and the penalised residual sum of squares ``r2 = ||W^{1/2}(y - X beta - Z b)||^2 + ||u||^2``."""

    beta: object
    b: tuple
    u: tuple
    ldL2: object
    Lxx: object
    r2: object


def modes(theta, stats, layout) -> tuple:
    """Conditional modes ``b`` per factor at ``theta``: a tuple of ``(q_f, L_f)`` arrays."""
    return solve(theta, stats, layout).b


def _spherical(theta, S, r, layout, h):
    """``u_h = M_h^{-1} T_h' r_h`` per level (``M_h = T_h' S_h T_h + I``), by small Cholesky factors."""
    from . import soa

    spec = K.elim_spec(layout, h)
    T = K._T(theta, spec)
    q = spec.q
    M = soa.mm(soa.tr(T), soa.mm(soa.to_lists(S), T))
    for i in range(q):
        M[i][i] = M[i][i] + 1.0 if not soa.is_zero(M[i][i]) else jnp.ones_like(S[0, 0])
    Tr = soa.mm(soa.tr(T), [[r[i]] for i in range(q)])
    L = soa.chol(M)
    y = []
    for i in range(q):  # L y = T'r, then L' u = y
        t = Tr[i][0] if not soa.is_zero(Tr[i][0]) else jnp.zeros_like(S[0, 0])
        for k in range(i):
            if not soa.is_zero(L[i][k]):
                t = t - L[i][k] * y[k]
        y.append(t / L[i][i])
    u = [None] * q
    for i in reversed(range(q)):
        t = y[i]
        for k in range(i + 1, q):
            if not soa.is_zero(L[k][i]):
                t = t - L[k][i] * u[k]
        u[i] = t / L[i][i]
    return jnp.stack(u)


def solve(theta, stats, layout) -> Solution:
    """The penalised least-squares solution at ``theta`` (:class:`Solution`; traceable).

    Back substitution through the eliminations in reverse order: the dense block first
    (``u_D = M_D^{-1} R_D [-beta; 1]``, ``b_D = Lambda_D u_D``), then every batched block
    ``b_h = W_h r_h``, ``u_h = M_h^{-1} T_h' r_h`` with ``r_h = R_h [-beta; 1] - sum_{later k}
    C_hk b_k``, its Schur-complement-updated ``R_h`` and couplings ``C_hk`` (Z scale) as they
    were when it was eliminated. (This is what PIRLS solves at each step of a GLMM fit.)
    """
    fc = factorize(theta, stats, layout, keep=True)
    p = layout.p
    Lxx = fc.Lxx
    beta = jax.lax.linalg.triangular_solve(Lxx[:p, :p], Lxx[p, :p][:, None], left_side=True, lower=True,
                                           transpose_a=True)[:, 0]
    bfull = jnp.concatenate([-beta, jnp.ones((1,), beta.dtype)])
    F = layout.nfactors
    if layout.plan.kind == "crossed":
        LD = K.dense_factor(fc.MD)
        solve = jax.lax.linalg.triangular_solve
        v = fc.RD @ bfull
        uD = solve(LD, solve(LD, v[:, None], left_side=True, lower=True), left_side=True, lower=True,
                   transpose_a=True)[:, 0]
        Ts = layout.T_arrays(theta, jnp)
        offs = layout.dense_offsets
        bD = jnp.zeros_like(uD)
        out, us = [None] * F, [None] * F
        for f in layout.dense_factors:
            qf, Lf, of = layout.q[f], layout.nlev[f], offs[f]
            bf = uD[of:of + Lf * qf].reshape(Lf, qf) @ Ts[f].T
            bD = bD.at[of:of + Lf * qf].set(bf.reshape(-1))
            out[f] = bf.T
            us[f] = uD[of:of + Lf * qf].reshape(Lf, qf).T
        W, RA = fc.W[0], fc.R[0]
        r = jnp.einsum("ucj,c->uj", RA, bfull)
        if layout.plan.coupling == "dense":
            r = r - jnp.einsum("ujk,k->uj", stats.coupling.C, bD)
        else:
            for x, f in enumerate(layout.dense_factors):
                pr = stats.coupling[x]
                idx = pr.row[None, :] + jnp.arange(layout.q[f])[:, None]  # (q_f, K)
                contrib = jnp.einsum("ruk,rk->uk", pr.C, bD[idx])  # (qA, K)
                r = r - _seg(contrib, pr.a, layout.nlev[0])
        out[0] = K.level_apply(W, r)
        us[0] = _spherical(theta, fc.S[0], r, layout, 0)
        return Solution(beta, tuple(out), tuple(us), fc.ldL2, Lxx, Lxx[p, p] ** 2)
    out, us = [None] * F, [None] * F
    for h in reversed(range(F)):
        r = jnp.einsum("ucj,c->uj", fc.R[h], bfull)
        for x, k in enumerate(range(h + 1, F)):
            par = stats.links[h][x].parent
            bk = out[k][:, par]  # (q_k, L_h)
            r = r - jnp.einsum("ukj,kj->uj", fc.C[h][x], bk)
        out[h] = K.level_apply(fc.W[h], r)
        us[h] = _spherical(theta, fc.S[h], r, layout, h)
    return Solution(beta, tuple(out), tuple(us), fc.ldL2, Lxx, Lxx[p, p] ** 2)
