"""Batched refits: one design, many responses, all fitted inside one compiled call.

The y-columns of the statistics
-------------------------------
Only the parts of the sufficient statistics (:mod:`jaxhlm._src.suffstats`) that involve ``y``
change with the response: ``A_ZtXy[:, -1, :] = Z_A'y`` per level, ``XytXy[-1, :] = [X'y, y'y]``
and ``B_ZtXy[:, -1] = Z_B'y``. All but ``y'y`` are linear in ``y``; one sparse matrix ``G``
(one row per statistic) gives them for a whole block of responses as ``G Y``.

One evaluation, reused for everything
-------------------------------------
Each replicate runs a small state machine inside a single ``while_loop`` whose body evaluates,
at one point ``theta``, the criterion ``d(theta)`` and ``r^2(theta)`` with their gradients
(reverse mode, two cotangents). That one traced evaluation serves

1. BFGS from the fitted theta, with the inverse Hessian seeded by the Hessian of the original
   fit (the replicate optima lie close by, so the first steps are nearly Newton steps);
2. the Hessians needed for Satterthwaite's df, by central differences of the exact gradients
   at the optimum (``2 m`` more evaluations), assembled analytically in ``(theta, sigma)``:

       f(theta, sigma) = ldL2 + r^2 / sigma^2 + n' log(2 pi sigma^2) [+ ldRX2]     (n' = n or n - p)
       d(theta)        = ldL2 + n' log r^2 + const [+ ldRX2]
       f_tt = H_d - n' (H_r2 / r^2 - g_r2 g_r2' / r^2^2) + H_r2 / sigma^2
       f_ts = -2 g_r2 / sigma^3,   f_ss = 6 r^2 / sigma^4 - 2 n' / sigma^2

   (lmerTest differentiates numerically too; the difference from exact second derivatives is
   ~1e-7 relative), and ``d vcov / d theta`` from the ``L_X`` factors at the same points;
3. the seed Hessian itself (a "replicate" on the original response that skips BFGS).

Because every path uses the same traced evaluation, the compiled program holds one copy of the
deviance and its gradient, which keeps compile time low. Replicates run one at a time under
``lax.map`` (fastest on a CPU, ENGINE-NOTES pitfall 6) or ``batch_size`` side by side (vmap).
"""
from __future__ import annotations

import dataclasses
import math
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from ..base.lazy import scipy  # submodules imported on first use
from ..base.config import jit  # (importing config also turns on float64)
from ..engine.pls import LOG2PI, pls
from ..base.errors import ArgumentError, ConvergenceWarning, DataError
from ..stats.suffstats import bucket

__all__ = ["y_operator", "y_stats", "RefitSpec", "spec_of", "refit_design_many", "fd_steps", "progress_bar",
           "chunk_count"]

SINGULAR_TOL = 1e-4
PH_INIT, PH_LS, PH_FD, PH_DONE = 0, 1, 2, 3


# --------------------------------------------------------------------------------------------
# the y-dependent statistics of many responses at once
# --------------------------------------------------------------------------------------------
def factor_Z(design, f: int) -> np.ndarray:
    """The per-row random-effects values of all terms on factor ``f``, side by side."""
    mats = [td.Z for td in design.terms if td.factor == f]
    return mats[0] if len(mats) == 1 else np.concatenate(mats, axis=1)


def y_operator(design, struct) -> scipy.sparse.csr_matrix:
    """Sparse ``G`` with ``G y = [vec(Z_A'y per level) (qA*J), X'y (p), Z_B'y (QB)]``.

    Row ``i*J + j`` of the A part is column ``i`` of ``Z_A`` summed over the rows of level ``j``;
    the B part follows the layout of ``B_ZtXy`` (``offset_f + level*q_f + i``).
    """
    n = design.n
    J, qA, p = struct.nlev[0], struct.q[0], struct.p
    rows, cols, vals = [], [], []
    ar = np.arange(n)
    ZA = factor_Z(design, 0)
    cA = design.factors[0].codes
    for i in range(qA):
        rows.append(i * J + cA)
        cols.append(ar)
        vals.append(ZA[:, i])
    o = qA * J
    for k in range(p):
        rows.append(np.full(n, o + k))
        cols.append(ar)
        vals.append(design.X[:, k])
    o += p
    offs = struct.b_offsets
    for f in range(1, struct.nfactors):
        Zf = factor_Z(design, f)
        cf = design.factors[f].codes
        qf = struct.q[f]
        for i in range(qf):
            rows.append(o + offs[f] + cf * qf + i)
            cols.append(ar)
            vals.append(Zf[:, i])
    G = scipy.sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(o + struct.QB, n)
    )
    G.sum_duplicates()
    return G


def y_stats(G, Y: np.ndarray, struct) -> dict:
    """The y-columns of the statistics for every column of ``Y (n, B)``; arrays lead with B."""
    Y = np.asarray(Y, dtype=np.float64)
    B = Y.shape[1]
    L = np.asarray(G @ Y).T  # (B, m)
    J, qA, p = struct.nlev[0], struct.q[0], struct.p
    o = qA * J
    out = {
        "yA": np.ascontiguousarray(L[:, :o].reshape(B, qA, J)),
        "yX": np.ascontiguousarray(L[:, o:o + p]),
        "yy": np.einsum("ij,ij->j", Y, Y),
    }
    if struct.nfactors > 1:
        out["yB"] = np.ascontiguousarray(L[:, o + p:])
    return out


def base_y_stats(stats: dict, struct) -> dict:
    """The y-columns of ``stats`` itself, in the layout of :func:`y_stats` (B = 1)."""
    p = struct.p
    out = {
        "yA": np.asarray(stats["A_ZtXy"])[None, :, p, :],
        "yX": np.asarray(stats["XytXy"])[None, p, :p],
        "yy": np.asarray(stats["XytXy"])[p, p][None],
    }
    if struct.nfactors > 1:
        out["yB"] = np.asarray(stats["B_ZtXy"])[None, :, p]
    return out


def with_y(base: dict, ys: dict, struct) -> dict:
    """The statistics of one replicate: ``base`` with its y-columns replaced (traceable)."""
    p = struct.p
    st = dict(base)
    st["A_ZtXy"] = base["A_ZtXy"].at[:, p, :].set(ys["yA"])
    row = jnp.concatenate([ys["yX"], ys["yy"][None]])
    M = base["XytXy"].at[p, :].set(row)
    st["XytXy"] = M.at[:, p].set(row)
    if struct.nfactors > 1:
        st["B_ZtXy"] = base["B_ZtXy"].at[:, p].set(ys["yB"])
    return st


# --------------------------------------------------------------------------------------------
# one replicate: a state machine around a single evaluation
# --------------------------------------------------------------------------------------------
FD_REL, FD_FLOOR = 1e-4, 1e-2


def fd_steps(theta, xp=jnp):
    """Central-difference steps ``FD_REL * max(|theta_i|, FD_FLOOR)``."""
    return FD_REL * xp.maximum(xp.abs(theta), FD_FLOOR)


def _chol_lists(M, q):
    """Cholesky factor of a symmetric matrix given as nested lists of equal-shape arrays."""
    L = [[None] * q for _ in range(q)]
    for j in range(q):
        s = M[j][j]
        for k in range(j):
            s = s - L[j][k] * L[j][k]
        L[j][j] = jnp.sqrt(s)
        for i in range(j + 1, q):
            t = M[i][j]
            for k in range(j):
                t = t - L[i][k] * L[j][k]
            L[i][j] = t / L[j][j]
    return L


def _sum(terms):
    """Sum of an iterable of arrays; None when it is empty (a structural zero)."""
    out = None
    for t in terms:
        out = t if out is None else out + t
    return out


def pls_one_factor(theta, stats, struct):
    """``log|L|^2``, the diagonal of ``L_xx`` and ``L_xx`` for a model with one grouping factor.

    The same algebra as :func:`jaxhlm._src.deviance.pls`, written entry by entry over the static
    ``q`` (and ``p + 1``) as Python lists of ``(J,)`` vectors: no stacking and slicing, whose
    reverse-mode derivatives (pads, scatters) cost more than the arithmetic at these sizes.
    One value and gradient took about 0.07 ms against 0.15 ms through ``deviance.pls`` (J = 896,
    q = 2, p = 2, CPU).
    """
    q = struct.q[0]
    T = [[None] * q for _ in range(q)]
    for k in range(struct.ntheta):
        T[struct.theta_row[k]][struct.theta_col[k]] = theta[k]
    A = stats["A_ZtZ"]
    R = stats["A_ZtXy"]
    # M = T' A T + I, lower triangle
    AT = [[None] * q for _ in range(q)]
    for k in range(q):
        for j in range(q):
            AT[k][j] = _sum(A[k, l] * T[l][j] for l in range(j, q) if T[l][j] is not None)
    M = [[None] * q for _ in range(q)]
    for i in range(q):
        for j in range(i + 1):
            M[i][j] = _sum(T[k][i] * AT[k][j] for k in range(i, q) if T[k][i] is not None and AT[k][j] is not None)
            M[i][j] = (M[i][j] if M[i][j] is not None else jnp.zeros_like(A[0, 0])) + (1.0 if i == j else 0.0)
            M[j][i] = M[i][j]
    L = _chol_lists(M, q)
    ldL2 = 2.0 * sum(jnp.sum(jnp.log(L[i][i])) for i in range(q))
    # R_ZX rows: solve L r = T' [Z'X Z'y] per level
    r = []
    for i in range(q):
        c = _sum(T[k][i] * R[k] for k in range(i, q) if T[k][i] is not None)
        for k in range(i):
            c = c - L[i][k] * r[k]
        r.append(c / L[i][i])
    S = stats["XytXy"] - sum(ri @ ri.T for ri in r)
    m = S.shape[0]
    Lx = _chol_lists([[S[i, j] for j in range(m)] for i in range(m)], m)
    diag = [Lx[i][i] for i in range(m)]
    zero = jnp.zeros_like(diag[0])
    Lxx = jnp.stack([jnp.stack([Lx[i][j] if j <= i else zero for j in range(m)]) for i in range(m)])
    return {"ldL2": ldL2, "diag": diag, "Lxx": Lxx}


def _evaluate(x, w, stats, struct, reml):
    """One evaluation at ``x``: ``ld = log|L|^2 [+ log|L_X|^2]``, ``r^2``, and ``grad(ld + w r^2)``.

    With ``w = n'/r^2(x)`` the gradient is that of the profiled criterion ``d``; with
    ``w = 1/sigma^2`` that of ``f(., sigma)``. Returns ``(d, grad, L_xx, log|L|^2)``.
    """
    p = struct.p

    def parts(t):
        if struct.nfactors == 1 and struct.p < 8:
            dd = pls_one_factor(t, stats, struct)
            diag = dd["diag"]
        else:
            dd = pls(t, stats, struct)
            diag = [dd["Lxx"][i, i] for i in range(p + 1)]
        ld = dd["ldL2"]
        if reml:
            ld = ld + 2.0 * sum(jnp.log(diag[i]) for i in range(p))
        return jnp.stack([ld, diag[p] ** 2]), (jax.lax.stop_gradient(dd["Lxx"]), dd["ldL2"])

    vals, vjp_fn, (Lxx, ldL2) = jax.vjp(parts, x, has_aux=True)
    ld, r2 = vals[0], vals[1]
    nn = stats["n"] - p if reml else stats["n"]
    crit = ld + nn * (1.0 + LOG2PI + jnp.log(r2 / nn))
    w = jnp.where(jnp.isnan(w), nn / r2, w)
    grad = vjp_fn(jnp.stack([jnp.ones_like(w), w]))[0]
    return crit, grad, Lxx, ldL2


def _replicate(theta0, Hi0, base, ys, flags, struct, reml, maxit=200, max_halvings=30, max_restarts=3,
               step_cap=1.0, dec_tol=1e-10, conv_tol=1e-6, rel_tol=1e-14):
    """Fit one replicate. ``flags = (valid, do_bfgs, do_fd)``.

    BFGS stops when the predicted decrease ``g' Hi g / 2`` is below ``dec_tol + rel_tol |d|``
    (deviance units; the second term is the rounding noise of ``d``), or when the Armijo line
    search fails ``max_halvings`` times after ``max_restarts`` restarts from the seed ``Hi0``;
    ``converged`` means the predicted decrease is then below ``conv_tol + 100 rel_tol |d|``.
    Steps are capped at ``step_cap`` in every theta coordinate; an update whose curvature
    ``s'y`` is not clearly positive is skipped (near ``theta_ii = 0`` the symmetric deviance can
    make it tiny, and the updated inverse Hessian explode).
    """
    stats = with_y(base, ys, struct)
    valid, do_bfgs, do_fd = flags[0], flags[1], flags[2]
    m = theta0.shape[0]
    p = struct.p
    dt = theta0.dtype
    eye = jnp.eye(m, dtype=dt)
    zf = jnp.asarray(0.0, dt)
    s0 = {
        "x": theta0, "f": jnp.asarray(jnp.nan, dt), "g": jnp.zeros(m, dt),
        "Lxx": jnp.zeros((p + 1, p + 1), dt), "ldL2": zf,
        "Hi": Hi0, "d": jnp.zeros(m, dt), "a": jnp.asarray(1.0, dt), "nls": jnp.asarray(0), "z": theta0,
        "phase": jnp.where(valid, PH_INIT, PH_DONE), "nev": jnp.asarray(0), "nit": jnp.asarray(0), "nrs": jnp.asarray(0),
        "k": jnp.asarray(0), "conv": jnp.asarray(False), "dec": zf,
        "FDg": jnp.zeros((2 * m, m), dt), "FDL": jnp.zeros((2 * m, p + 1, p + 1), dt),
    }
    max_evals = (maxit + max_restarts) * (max_halvings + 1) + 2 * m + 2
    nn = stats["n"] - p if reml else stats["n"]

    def cond(s):
        return (s["phase"] != PH_DONE) & (s["nev"] < max_evals)

    def body(s):
        ph = s["phase"]
        # profiled gradient while fitting; at fixed sigma = sigma(x) for the finite differences
        s2x = s["Lxx"][p, p] ** 2 / nn
        w = jnp.where(ph == PH_FD, 1.0 / s2x, jnp.nan)
        fz, gz, Lxx, ldL2 = _evaluate(s["z"], w, stats, struct, reml)
        init, ls, fd = ph == PH_INIT, ph == PH_LS, ph == PH_FD
        slope = jnp.dot(s["g"], s["d"])
        armijo = jnp.isfinite(fz) & (fz <= s["f"] + 1e-4 * s["a"] * slope)
        take = (init & jnp.isfinite(fz)) | (ls & armijo)
        # BFGS update of the inverse Hessian on an accepted line-search step
        sv = s["z"] - s["x"]
        yv = gz - s["g"]
        sy = jnp.dot(sv, yv)
        rho = 1.0 / jnp.where(sy > 0, sy, 1.0)
        V = eye - rho * jnp.outer(sv, yv)
        Hup = V @ s["Hi"] @ V.T + rho * jnp.outer(sv, sv)
        curv = sy > 1e-10 * jnp.sqrt(jnp.dot(sv, sv) * jnp.dot(yv, yv))
        Hi = jnp.where(ls & armijo & curv, Hup, s["Hi"])
        x = jnp.where(take, s["z"], s["x"])
        f = jnp.where(take, fz, s["f"])
        g = jnp.where(take, gz, s["g"])
        dec = 0.5 * jnp.dot(g, Hi @ g)
        conv_now = dec <= dec_tol + rel_tol * jnp.abs(f)
        nit = s["nit"] + (ls & armijo).astype(jnp.int32)
        # where to go after an accepted point
        more = do_bfgs & ~conv_now & (nit < maxit)
        d_new = -Hi @ g
        bad = ~(jnp.dot(g, d_new) < 0)
        d_new = jnp.where(bad, -g, d_new)
        # line search failure
        halve = ls & ~armijo
        nls = jnp.where(halve, s["nls"] + 1, 0)
        failed_ls = halve & (nls > max_halvings)
        restart = failed_ls & (s["nrs"] < max_restarts)
        stuck = failed_ls & ~restart
        Hi = jnp.where(restart, Hi0, Hi)
        nls = jnp.where(restart, 0, nls)
        d_rs = -Hi0 @ g
        # leaving the BFGS phase (converged, not asked for, out of iterations, or stuck)
        leave = (take & ~more) | stuck
        conv_leave = jnp.where(
            do_bfgs, dec <= conv_tol + 100.0 * rel_tol * jnp.abs(f), jnp.isfinite(f)
        )
        failed = init & ~jnp.isfinite(fz)
        # finite-difference phase bookkeeping
        FDg = jnp.where(fd, s["FDg"].at[s["k"]].set(gz), s["FDg"])
        FDL = jnp.where(fd, s["FDL"].at[s["k"]].set(Lxx), s["FDL"])
        k = jnp.where(fd, s["k"] + 1, jnp.where(leave, 0, s["k"]))
        h = fd_steps(x)
        kk = jnp.minimum(k, 2 * m - 1)
        e = jnp.where(jnp.arange(m) == kk % m, 1.0, 0.0) * h * jnp.where(kk < m, 1.0, -1.0)
        fd_done = fd & (k >= 2 * m)
        # next phase and point
        phase = jnp.where(
            failed, PH_DONE,
            jnp.where(take & more, PH_LS,
                      jnp.where(leave, jnp.where(do_fd, PH_FD, PH_DONE),
                                jnp.where(fd_done, PH_DONE, ph))))
        d = jnp.where(take, d_new, jnp.where(restart, d_rs, s["d"]))
        a_full = jnp.minimum(1.0, step_cap / jnp.maximum(jnp.max(jnp.abs(d)), 1e-300))
        a = jnp.where(take | restart, a_full, jnp.where(halve, 0.5 * s["a"], s["a"]))
        z = jnp.where(phase == PH_LS, x + a * d, jnp.where(phase == PH_FD, x + e, x))
        return {
            "x": x, "f": f, "g": g,
            "Lxx": jnp.where(take, Lxx, s["Lxx"]),
            "ldL2": jnp.where(take, ldL2, s["ldL2"]),
            "Hi": Hi, "d": d, "a": a, "nls": nls, "z": z, "phase": phase,
            "nev": s["nev"] + 1, "nit": nit, "k": k, "nrs": s["nrs"] + restart.astype(jnp.int32),
            "conv": jnp.where(leave, conv_leave, s["conv"]), "dec": dec,
            "FDg": FDg, "FDL": FDL,
        }

    s = jax.lax.while_loop(cond, body, s0)
    done = s["phase"] == PH_DONE
    return {
        "theta": s["x"], "objective": s["f"], "grad": s["g"], "Lxx": s["Lxx"],
        "ldL2": s["ldL2"], "converged": s["conv"] & done & valid, "iterations": s["nit"], "evaluations": s["nev"],
        "FDg": s["FDg"], "FDL": s["FDL"], "fd_ok": done & do_fd & (s["k"] >= 2 * m),
    }


@jit(static_argnames=("struct", "reml", "batch_size"))
def _refit_chunk(theta0, Hi0, base, ys, flags, struct, reml, batch_size):
    """Fit every replicate of a chunk (leading axis of ``ys`` and ``flags``)."""
    one = lambda args: _replicate(theta0, Hi0, base, args[0], args[1], struct, reml)  # noqa: E731
    return jax.lax.map(one, (ys, flags), batch_size=None if batch_size == 1 else batch_size)


# --------------------------------------------------------------------------------------------
# second-order quantities from the finite differences (numpy, batched over replicates)
# --------------------------------------------------------------------------------------------
def _fd_jac(FD, h):
    """Central differences: ``FD (B, 2m, ...)`` (``+h`` rows first) -> derivative along axis -1 ... (B, ..., m)."""
    m = h.shape[1]
    diff = (FD[:, :m] - FD[:, m:]) / (2.0 * h.reshape(h.shape + (1,) * (FD.ndim - 2)))
    return np.moveaxis(diff, 1, -1)


def second_order(res: dict, n: float, p: int, reml: bool) -> dict:
    """Second-order quantities at each replicate's optimum, from the central differences.

    Returns the Hessian of ``f(theta, sigma)`` (``H_vp``, lmerTest's ``devfun_vp`` scale), the
    Hessian of the profiled criterion in theta (``H_theta``, its Schur complement), and
    ``J = d vcov(beta) / d (theta, sigma)`` of shape (B, p, p, m+1).
    """
    TH = res["theta"]
    B, m = TH.shape
    h = fd_steps(TH, np)
    Ftt = _fd_jac(res["FDg"][..., None, :], h)[:, 0]  # (B, m, m)
    Ftt = 0.5 * (Ftt + np.swapaxes(Ftt, 1, 2))
    r2 = res["Lxx"][:, p, p] ** 2
    nn = (n - p) if reml else n
    sigma = np.sqrt(r2 / nn)
    s2 = sigma**2
    gr2 = _fd_jac(res["FDL"][:, :, p, p] ** 2, h)  # (B, m)
    Hvp = np.zeros((B, m + 1, m + 1))
    Hvp[:, :m, :m] = Ftt
    Hvp[:, :m, m] = Hvp[:, m, :m] = -2.0 * gr2 / (sigma**3)[:, None]
    Hvp[:, m, m] = 6.0 * r2 / sigma**4 - 2.0 * nn / s2
    fts = Hvp[:, :m, m]
    Hth = Ftt - np.einsum("bi,bj->bij", fts, fts) / Hvp[:, m, m][:, None, None]
    W = _w_of(res["Lxx"], p)
    WFD = _w_of(res["FDL"], p)  # (B, 2m, p, p)
    Jc = np.zeros((B, p, p, m + 1))
    Jc[..., :m] = s2[:, None, None, None] * _fd_jac(WFD, h)
    Jc[..., m] = 2.0 * sigma[:, None, None] * W
    return {"H_theta": Hth, "H_vp": Hvp, "J": Jc, "W": W, "sigma": sigma}


def _w_of(Lxx, p):
    """``(L_X L_X')^{-1}`` from ``L_xx (..., p+1, p+1)``; NaN where ``L_X`` is not usable."""
    Lx = Lxx[..., :p, :p]
    diag = np.diagonal(Lx, axis1=-2, axis2=-1)
    ok = np.all(np.isfinite(Lx), axis=(-2, -1)) & np.all(diag != 0, axis=-1)
    safe = np.where(ok[..., None, None], Lx, np.eye(p))
    Li = np.linalg.inv(safe)
    W = np.einsum("...ki,...kj->...ij", Li, Li)
    return np.where(ok[..., None, None], W, np.nan)


def satterthwaite_df(Hvp, J, C) -> np.ndarray:
    """Satterthwaite df of each coefficient per replicate: ``2 var^2 / (g' A g)``, ``A = 2 H^+``."""
    H = 0.5 * (Hvp + np.swapaxes(Hvp, 1, 2))
    with np.errstate(all="ignore"):
        ok = np.all(np.isfinite(H), axis=(1, 2))
        Hs = np.where(ok[:, None, None], H, np.eye(H.shape[1]))
        w, V = np.linalg.eigh(Hs)
        scale = np.maximum(1.0, np.max(np.abs(w), axis=1, keepdims=True))
        pos = w > 1e-8 * scale
        winv = np.where(pos, 1.0 / np.where(w == 0, 1.0, w), 0.0)
        A = 2.0 * np.einsum("bij,bj,bkj->bik", V, winv, V)
        var = np.einsum("bkk->bk", C)
        g = np.einsum("bkkm->bkm", J)
        den = np.einsum("bkm,bmn,bkn->bk", g, A, g)
        df = np.where(den > 0, 2.0 * var**2 / den, np.inf)
    return np.where(ok[:, None], df, np.nan)


def abs_inverse(H: np.ndarray) -> np.ndarray:
    """``V |w|^{-1} V'`` with eigenvalues floored at ``1e-8 max|w|``: a positive definite inverse."""
    H = 0.5 * (H + H.T)
    w, V = np.linalg.eigh(H)
    scale = max(float(np.max(np.abs(w))), 1e-300)
    w = np.maximum(np.abs(w), 1e-8 * scale)
    return (V / w) @ V.T


# --------------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class RefitSpec:
    """What the batched refit needs: a design, its structure and statistics, and a start."""

    design: object
    struct: object
    stats: dict
    reml: bool
    theta0: np.ndarray
    fixef_names: list
    theta_names: list
    G: object = None
    Hi0: np.ndarray = None

    @property
    def n(self) -> float:
        return float(self.stats["n"])


def start_theta(theta, struct) -> np.ndarray:
    """The replicates' start: the fitted theta, with (near-)zero diagonal elements moved off 0.

    The criterion is even in every column of ``T_f``, so its gradient is exactly 0 where a
    diagonal element is 0 (ENGINE-NOTES, pitfall 2): replicates started there could never leave
    a singular fit. Such elements start at ``max(1e-2, 0.1 max|theta_ii|)`` instead.
    """
    th = np.array(theta, dtype=np.float64)
    diag = struct.theta_is_diag()
    small = diag & (np.abs(th) < SINGULAR_TOL)
    if small.any():
        th[small] = max(1e-2, 0.1 * float(np.max(np.abs(th[diag]))))
    return th


def spec_of(model) -> RefitSpec:
    """The :class:`RefitSpec` of a fitted model (cached on the model)."""
    spec = model.__dict__.get("_jaxhlm_refit_spec")
    if spec is None:
        spec = RefitSpec(
            design=model._design, struct=model._struct, stats=model._stats, reml=model.reml,
            theta0=start_theta(model._fit["theta"], model._struct),
            fixef_names=list(model._design.fixef_names), theta_names=list(model.theta.index),
        )
        model.__dict__["_jaxhlm_refit_spec"] = spec
    return spec


def _default_batch_size() -> int:
    return 1 if jax.default_backend() == "cpu" else 64


def _default_chunk(n: int) -> int:
    """Replicates per compiled call: at most 256, and the (n, chunk) response block under ~256 MB."""
    return int(max(8, min(256, (256 * 2**20) // (8 * max(n, 1)))))


def _padded(cs: int, bs: int) -> int:
    """Replicate slots per compiled call: ``cs`` rounded up to 8, 10, 12, 14, 16, 20, ... (a multiple
    of ``bs``), so that nearby chunk sizes share one compiled program; empty slots cost nothing."""
    padded = bucket(cs, minimum=8)
    if bs > 1:
        padded = int(math.ceil(padded / bs) * bs)
    return padded


def _run_chunk(spec, base, ys, flags_k, padded, bs):
    k = flags_k.shape[0]
    if k < padded:  # pad: one compiled shape per chunk size; padding entries are skipped
        ys = {key: np.concatenate([v, np.repeat(v[-1:], padded - k, axis=0)]) for key, v in ys.items()}
        flags_k = np.concatenate([flags_k, np.zeros((padded - k, 3), bool)])
    Hi0 = spec.Hi0 if spec.Hi0 is not None else np.eye(len(spec.theta0))
    out = _refit_chunk(jnp.asarray(spec.theta0), jnp.asarray(Hi0), base, ys, flags_k, spec.struct, bool(spec.reml), bs)
    out = jax.device_get(out)
    return {key: np.asarray(v)[:k] for key, v in out.items()}


def ensure_seed(spec: RefitSpec, base, padded: int, bs: int) -> dict:
    """The Hessian of the criterion at the start (by the same compiled program), cached in ``spec``."""
    if spec.Hi0 is not None:
        return {}
    ys = base_y_stats(spec.stats, spec.struct)
    flags = np.array([[True, False, True]])
    res = _run_chunk(spec, base, ys, flags, padded, bs)
    so = second_order(res, spec.n, spec.struct.p, spec.reml)
    H = so["H_theta"][0]
    if not np.all(np.isfinite(H)):
        H = np.eye(len(spec.theta0))
    spec.Hi0 = abs_inverse(H)
    return res


# --------------------------------------------------------------------------------------------
# progress bars (tqdm)
# --------------------------------------------------------------------------------------------
def _in_notebook() -> bool:
    """Running in a Jupyter kernel (output goes to a notebook, not a terminal)."""
    ipy = sys.modules.get("IPython")
    try:
        shell = ipy.get_ipython() if ipy is not None else None
    except Exception:  # pragma: no cover
        return False
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def _tqdm_class():
    """tqdm's notebook widget in Jupyter when ipywidgets is installed, else the text bar
    (``tqdm.auto`` without ipywidgets warns and falls back to the text bar anyway)."""
    if _in_notebook():
        try:
            import ipywidgets  # noqa: F401
            from tqdm.notebook import tqdm

            return tqdm
        except ImportError:
            pass
    from tqdm.std import tqdm

    return tqdm


def chunk_count(n: int, nrep: int, chunk_size=None) -> int:
    """Number of compiled calls :func:`refit_design_many` makes for ``nrep`` refits of ``n`` rows."""
    cs = _default_chunk(n) if chunk_size is None else chunk_size
    try:
        return -(-int(nrep) // max(1, int(min(cs, nrep))))
    except (TypeError, ValueError):  # a bad chunk_size: refit_design_many will say so
        return 1


def progress_bar(progress, total: int, label: str, chunks: int = 4):
    """A tqdm bar for ``total`` refits labelled ``label``, or None.

    Parameters
    ----------
    progress : bool, str or None
        None (default): a bar when the work takes 4 or more compiled calls (``chunks``) and
        the output is a terminal or a Jupyter notebook. True / False: always / never. A
        string: always, with that label instead of ``label``.
    total : int
        Number of refits the bar counts.
    label : str
        The task, e.g. ``"bootstrap"``, ``"power"``, ``"refit m0"``.
    chunks : int
        Number of compiled calls the work takes.

    Returns
    -------
    tqdm.tqdm or None
        The bar is opened at once (before anything is compiled) and shows "compiling" until
        the first refits are done; the caller closes it.
    """
    if isinstance(progress, str):
        show, label = True, progress
    elif progress is None:
        show = chunks >= 4 and (sys.stderr.isatty() or _in_notebook())
    else:
        show = bool(progress)
    if not show:
        return None
    return _tqdm_class()(total=int(total), desc=label, unit="fit", dynamic_ncols=True)


def refit_design_many(spec: RefitSpec, Y_chunks, nrep: int, *, satterthwaite: bool = True, batch_size=None,
                      chunk_size=None, progress=None, label: str = "refit", bar=None) -> pd.DataFrame:
    """Refit ``spec`` to ``nrep`` responses yielded by ``Y_chunks(size)`` (arrays ``(n, k)``, ``k <= size``).

    Responses can thus be produced chunk by chunk, never all at once. Returns the tidy
    per-replicate table described in :func:`jaxhlm._src.simulate.refit_many`. ``progress`` and
    ``label`` are those of :func:`progress_bar`; ``bar``, a bar opened by the caller for
    several runs, is advanced and left open instead.
    """
    struct = spec.struct
    bs = _default_batch_size() if batch_size is None else batch_size
    if isinstance(bs, bool) or not isinstance(bs, (int, np.integer)) or bs < 1:
        raise ArgumentError(f"batch_size must be a positive integer, got {batch_size!r}")
    cs = _default_chunk(spec.design.n) if chunk_size is None else chunk_size
    if isinstance(cs, bool) or not isinstance(cs, (int, np.integer)) or cs < 1:
        raise ArgumentError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    cs = int(min(cs, nrep))
    bs = int(min(bs, cs))
    padded = _padded(cs, bs)
    if spec.G is None:
        spec.G = y_operator(spec.design, struct)
    own = bar is None  # (the bar is opened before the first compiled call: compiling shows)
    if own:
        bar = progress_bar(progress, nrep, label, chunks=-(-nrep // cs))
    parts = []
    done = 0
    try:
        if bar is not None:
            bar.set_postfix_str("compiling" if spec.Hi0 is None else "", refresh=True)
        base = jax.device_put(spec.stats)
        ensure_seed(spec, base, padded, bs)
        for Y in Y_chunks(cs):
            Y = np.asarray(Y, dtype=np.float64)
            k = Y.shape[1]
            flags = np.ones((k, 3), bool)
            flags[:, 2] = bool(satterthwaite)
            parts.append(_run_chunk(spec, base, y_stats(spec.G, Y, struct), flags, padded, bs))
            done += k
            if bar is not None:
                bar.set_postfix_str("", refresh=False)
                bar.update(k)
    finally:
        if bar is not None and own:
            bar.close()
    if done != nrep:
        raise DataError(f"expected {nrep} responses, got {done}")
    res = {key: np.concatenate([pt[key] for pt in parts]) for key in parts[0]}
    return tidy(res, spec, satterthwaite)


def _rectify_many(TH: np.ndarray, struct) -> np.ndarray:
    """Flip the sign of every column of ``T_f`` whose diagonal element is negative, per row."""
    TH = np.array(TH, dtype=np.float64)
    rows, cols, facs = map(np.asarray, (struct.theta_row, struct.theta_col, struct.theta_factor))
    for k in np.nonzero(rows == cols)[0]:
        sel = (facs == facs[k]) & (cols == cols[k])
        sgn = np.where(TH[:, k] < 0, -1.0, 1.0)
        TH[:, sel] *= sgn[:, None]
    return TH


def tidy(res: dict, spec: RefitSpec, satterthwaite: bool) -> pd.DataFrame:
    """One row per replicate: estimates, SEs, Satterthwaite df and p-values, flags."""
    struct = spec.struct
    p = struct.p
    n = spec.n
    reml = bool(spec.reml)
    B = res["theta"].shape[0]
    TH = _rectify_many(res["theta"], struct)
    Lxx = res["Lxx"]
    r2 = Lxx[:, p, p] ** 2
    nn = (n - p) if reml else n
    sigma = np.sqrt(r2 / nn)
    with np.errstate(all="ignore"):
        Lx = Lxx[:, :p, :p]
        okL = np.all(np.isfinite(Lxx), axis=(1, 2)) & np.all(np.diagonal(Lx, axis1=1, axis2=2) != 0, axis=1)
        Lsafe = np.where(okL[:, None, None], Lx, np.eye(p))
        beta = np.linalg.solve(np.swapaxes(Lsafe, 1, 2), Lxx[:, p, :p][..., None])[..., 0] if p else np.zeros((B, 0))
        beta = np.where(okL[:, None], beta, np.nan)
        W = _w_of(Lxx, p)
        C = sigma[:, None, None] ** 2 * W
        se = np.sqrt(np.einsum("bkk->bk", C))
        t = beta / se
        s2 = sigma**2
        dev = res["ldL2"] + r2 / s2 + n * np.log(2.0 * np.pi * s2) if reml else res["objective"]
    finite = np.isfinite(res["objective"]) & np.all(np.isfinite(beta), axis=1) & np.isfinite(sigma)
    conv = np.asarray(res["converged"], bool) & finite
    TH = np.where(np.isfinite(res["objective"])[:, None], TH, np.nan)
    cols = {"objective": res["objective"], "deviance": dev, "sigma": sigma}
    for j, nm in enumerate(spec.theta_names):
        cols[f"theta.{nm}"] = TH[:, j]
    for j, nm in enumerate(spec.fixef_names):
        cols[f"beta.{nm}"] = beta[:, j]
    for j, nm in enumerate(spec.fixef_names):
        cols[f"se.{nm}"] = se[:, j]
    if satterthwaite:
        with np.errstate(all="ignore"):
            so = second_order(res, n, p, reml)
        df = satterthwaite_df(so["H_vp"], so["J"], C)
        df = np.where(res["fd_ok"][:, None], df, np.nan)
        for j, nm in enumerate(spec.fixef_names):
            cols[f"df.{nm}"] = df[:, j]
    for j, nm in enumerate(spec.fixef_names):
        cols[f"t.{nm}"] = t[:, j]
    if satterthwaite:
        pv = 2.0 * scipy.stats.t.sf(np.abs(t), df)
        for j, nm in enumerate(spec.fixef_names):
            cols[f"p.{nm}"] = pv[:, j]
    diag = struct.theta_is_diag()
    cols["converged"] = conv
    cols["singular"] = np.any(np.abs(TH[:, diag]) < SINGULAR_TOL, axis=1) if diag.any() else np.zeros(B, bool)
    cols["iterations"] = np.asarray(res["iterations"], np.int64)
    cols["max_abs_grad"] = np.max(np.abs(res["grad"]), axis=1) if res["grad"].shape[1] else np.zeros(B)
    out = pd.DataFrame(cols, index=pd.RangeIndex(B, name="replicate"))
    out.attrs["fixef_names"] = list(spec.fixef_names)
    out.attrs["theta_names"] = list(spec.theta_names)
    out.attrs["reml"] = reml
    nbad = int((~conv).sum())
    if nbad:
        warnings.warn(
            f"{nbad} of {B} refits did not converge; they are kept and flagged (column 'converged')",
            ConvergenceWarning,
            stacklevel=3,
        )
    return out
