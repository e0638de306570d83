"""Kenward-Roger adjusted covariance and denominator df for REML fits (as pbkrtest / lmerTest).

Model ``y ~ N(X beta, V)``, ``V = sum_i psi_i G_i`` linear in the covariance parameters ``psi``:
the elements (variances and covariances) of each random term's covariance matrix, with
``G_i = Z E_i Z'``, and the residual variance with ``G = I`` (pbkrtest's parametrisation).
With ``Phi = (X'V^{-1}X)^{-1}`` (Kenward & Roger 1997, Biometrics 53, 983-997):

    P_i  = -X'V^{-1} G_i V^{-1} X
    Q_ij =  X'V^{-1} G_i V^{-1} G_j V^{-1} X
    I_ij = 1/2 [tr(V^{-1}G_i V^{-1}G_j) - 2 tr(Phi Q_ij) + tr(Phi P_i Phi P_j)]   (REML information)
    W    = I^{-1}
    Phi_A = Phi + 2 Phi [sum_ij W_ij (Q_ij - P_i Phi P_j)] Phi                    (adjusted vcov)

and for a contrast matrix ``L`` (q rows), with ``Theta = L'(L Phi L')^{-1} L``,
``A1 = sum_ij W_ij tr(Theta Phi P_i Phi) tr(Theta Phi P_j Phi)``,
``A2 = sum_ij W_ij tr(Theta Phi P_i Phi Theta Phi P_j Phi)`` give the scaling and the
denominator df of the approximate F test (pbkrtest's ``Lb_ddf`` / ``.KR_adjust``).

Everything is computed in the space of the random effects (``Q = ncol(Z)``), never with the
``n x n`` matrix ``V``: with ``S = Z'Z``, ``R = Z'X``, ``K = Lambda (Lambda'S Lambda + I)^{-1}
Lambda'`` (Woodbury), ``V^{-1} = sigma^{-2}(I - Z K Z')``, so

    Z'V^{-1}X = sigma^{-2}(I - SK)R,   Z'V^{-1}Z = sigma^{-2}(I - SK)S,   X'V^{-1}X = sigma^{-2}(X'X - R'KR)

and the residual-variance terms use ``V^{-2}``, ``V^{-3}`` expanded the same way. The cost is
O(Q^3) time and O(Q^2) memory, independent of n; above ``max_q`` random effects a clear error
is raised.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..base.lazy import scipy  # submodules imported on first use
from ..base.errors import InferenceError
from ..stats.layout import factor_columns
from ..base import dist

__all__ = ["kr_parts", "kr_df", "kr_test", "coef_table_kr", "MAX_Q"]

MAX_Q = 3000


def _z_layout(design):
    """Column offset of every factor in the full Z (factor-major, then level, then column)."""
    offs, o = [], 0
    qf = [0] * len(design.factors)
    for td in design.terms:
        qf[td.factor] += td.p
    for f, fac in enumerate(design.factors):
        offs.append(o)
        o += fac.nlevels * qf[f]
    return offs, qf, o


def _full_z(design) -> scipy.sparse.csr_matrix:
    offs, qf, Q = _z_layout(design)
    n = design.n
    rows, cols, vals = [], [], []
    for f, lst in enumerate(factor_columns(design)):
        codes = design.factors[f].codes
        for i, o in lst:
            td = design.terms[i]
            for c in range(td.p):
                rows.append(np.arange(n))
                cols.append(offs[f] + codes * qf[f] + o + c)
                vals.append(td.Z[:, c])
    Z = scipy.sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, Q)
    )
    return Z


def _param_index(design):
    """Per covariance parameter: (A, B) index arrays of E_i, and a label; residual last."""
    offs, qf, Q = _z_layout(design)
    out = []
    for f, lst in enumerate(factor_columns(design)):
        L = design.factors[f].nlevels
        base = offs[f] + np.arange(L) * qf[f]
        for i, o in lst:
            td = design.terms[i]
            for c in range(td.p):
                for r in range(c, td.p):
                    a = base + o + r
                    b = base + o + c
                    if r == c:
                        A, B = a, b
                    else:
                        A, B = np.concatenate([a, b]), np.concatenate([b, a])
                    out.append((A, B, f"{td.term.group_name}.{td.names[r]}.{td.names[c]}"))
    return out


def factor_T(model) -> list:
    """The relative covariance factor ``T_f`` of each grouping factor (``q_f x q_f``, lower)."""
    return model.T_blocks()


def _lambda(model, Q) -> np.ndarray:
    design = model.design
    offs, qf, _ = _z_layout(design)
    Lam = np.zeros((Q, Q))
    Ts = factor_T(model)
    for f, fac in enumerate(design.factors):
        for lv in range(fac.nlevels):
            s = offs[f] + lv * qf[f]
            Lam[s:s + qf[f], s:s + qf[f]] = Ts[f]
    return Lam


def _trace_pairs(M, A1, B1, A2, B2, chunk=2_000_000) -> float:
    """``sum_{(a,b) in E1} sum_{(c,d) in E2} M[b,c] M[d,a]`` = tr(E1 M E2 M), in chunks."""
    total = 0.0
    step = max(1, chunk // max(len(A2), 1))
    for s in range(0, len(A1), step):
        a, b = A1[s:s + step], B1[s:s + step]
        total += float(np.sum(M[np.ix_(b, A2)] * M[np.ix_(B2, a)].T))
    return total


def _pieces_dense(model, max_q):
    """P_i, Q_ij, tr(V^-1 G_i V^-1 G_j) and Phi with dense Q x Q matrices (several factors)."""
    d = model.design
    Z = _full_z(d)
    Q = Z.shape[1]
    if Q > max_q:
        raise InferenceError(
            f"Kenward-Roger needs dense {Q} x {Q} matrices (one row/column per random effect); "
            f"that is above max_q={max_q}. Use the Satterthwaite df, or pass a larger max_q"
        )
    X = d.X
    n, p = X.shape
    s2 = model.sigma**2
    S = (Z.T @ Z).toarray()
    R = np.asarray(Z.T @ X)
    XtX = X.T @ X
    Lam = _lambda(model, Q)
    C = Lam.T @ S @ Lam + np.eye(Q)
    cf = scipy.linalg.cho_factor(C, lower=True)
    K = Lam @ scipy.linalg.cho_solve(cf, Lam.T)
    K = 0.5 * (K + K.T)
    ImSK = np.eye(Q) - S @ K
    U = ImSK @ R / s2  # Z'V^-1 X
    W = ImSK @ S / s2  # Z'V^-1 Z
    W = 0.5 * (W + W.T)
    M = K @ R
    XVX = (XtX - R.T @ M) / s2
    Y = ImSK @ U / s2  # Z'V^-2 X
    ZV2Z = ImSK @ W / s2  # Z'V^-2 Z
    XV2X = (XtX - 2 * R.T @ M + M.T @ S @ M) / s2**2
    RSM = R - S @ M
    XV3X = (XtX - R.T @ M - M.T @ R + M.T @ S @ M - RSM.T @ K @ RSM) / s2**3
    KS = K @ S
    trV2 = (n - 2 * np.trace(KS) + np.sum(KS * KS.T)) / s2**2

    params = _param_index(d)
    r = len(params)
    m = r + 1
    Qm = [[None] * m for _ in range(m)]
    Kt = np.zeros((m, m))
    P = []
    EU = []
    for A, B, _ in params:
        eu = np.zeros((Q, p))
        np.add.at(eu, A, U[B])
        EU.append(eu)
        P.append(-(U.T @ eu))
    P.append(-XV2X)
    WEU = [W @ eu for eu in EU]
    for i in range(r):
        for j in range(i, r):
            Qm[i][j] = EU[i].T @ WEU[j]
            Kt[i, j] = _trace_pairs(W, params[i][0], params[i][1], params[j][0], params[j][1])
        Qm[i][r] = EU[i].T @ Y
        A, B, _ = params[i]
        Kt[i, r] = float(np.sum(ZV2Z[B, A]))
    Qm[r][r] = XV3X
    Kt[r, r] = trV2
    return XVX, P, Qm, Kt, [nm for _, _, nm in params]


def _pieces_blocked(model):
    """The same from the per-level sufficient statistics (one grouping factor: V is block diagonal).

    Every Q x Q matrix is block diagonal with one ``q x q`` block per level, so all products
    are batched over levels (O(J q^3)) and no row of the data is touched. The fixed-effects
    pieces are those of the statistics' preconditioned columns ``X_c = X A``
    (``X_c'V^{-1}X_c = A'X'V^{-1}X A``, and so on: congruent by ``A``); ``y`` is not used.
    """
    d = model.design
    st = model.stats
    J = d.factors[0].nlevels
    p = d.p
    s2 = model.sigma**2
    S = np.moveaxis(np.asarray(st.levels[0].ZtZ)[:, :, :J], -1, 0)  # (J, q, q)
    R = np.moveaxis(np.asarray(st.levels[0].ZtXy)[:, :p, :J], -1, 0)  # (J, q, p)
    XtX = np.asarray(st.XytXy)[:p, :p]
    n = float(st.n)
    q = S.shape[1]
    T = model.T_blocks()[0]
    C = np.einsum("ki,jkl,lm->jim", T, S, T) + np.eye(q)
    K = np.einsum("ik,jkl,ml->jim", T, np.linalg.inv(C), T)
    K = 0.5 * (K + np.swapaxes(K, 1, 2))
    ImSK = np.eye(q) - S @ K
    U = ImSK @ R / s2
    W = ImSK @ S / s2
    W = 0.5 * (W + np.swapaxes(W, 1, 2))
    M = K @ R
    tr = lambda a: np.swapaxes(a, 1, 2)  # noqa: E731
    RtM = np.sum(tr(R) @ M, axis=0)
    MtSM = np.sum(tr(M) @ S @ M, axis=0)
    XVX = (XtX - RtM) / s2
    Y = ImSK @ U / s2
    ZV2Z = ImSK @ W / s2
    XV2X = (XtX - 2 * RtM + MtSM) / s2**2
    RSM = R - S @ M
    XV3X = (XtX - RtM - RtM.T + MtSM - np.sum(tr(RSM) @ K @ RSM, axis=0)) / s2**3
    KS = K @ S
    trV2 = (n - 2 * np.einsum("jii->", KS) + np.einsum("jab,jba->", KS, KS)) / s2**2

    pats, names = [], []
    for i, o in factor_columns(d)[0]:
        td = d.terms[i]
        for c in range(td.p):
            for r_ in range(c, td.p):
                e = np.zeros((q, q))
                e[o + r_, o + c] = e[o + c, o + r_] = 1.0
                pats.append(e)
                names.append(f"{td.term.group_name}.{td.names[r_]}.{td.names[c]}")
    r = len(pats)
    m = r + 1
    EU = [e @ U for e in pats]  # (J, q, p)
    P = [-np.sum(tr(U) @ eu, axis=0) for eu in EU] + [-XV2X]
    EW = [e @ W for e in pats]
    Qm = [[None] * m for _ in range(m)]
    Kt = np.zeros((m, m))
    for i in range(r):
        for j in range(i, r):
            Qm[i][j] = np.sum(tr(EU[i]) @ W @ EU[j], axis=0)
            Kt[i, j] = float(np.einsum("jab,jba->", EW[i], EW[j]))
        Qm[i][r] = np.sum(tr(EU[i]) @ Y, axis=0)
        Kt[i, r] = float(np.einsum("ab,jba->", pats[i], ZV2Z))
    Qm[r][r] = XV3X
    Kt[r, r] = trV2
    return XVX, P, Qm, Kt, names


def kr_parts(model, max_q: int = MAX_Q) -> dict:
    """Kenward-Roger ingredients of a REML fit.

    Returns
    -------
    dict with ``Phi`` (unadjusted vcov, p x p), ``PhiA`` (adjusted vcov), ``P`` (list of p x p,
    last for the residual variance), ``W`` (twice the inverse REML information of the
    covariance parameters, as pbkrtest), ``names``. For a fit whose random-effect columns were
    searched centred (:mod:`jaxhlm._src.optim.recentre`) they are those of its centred twin
    (``W`` then refers to the centred terms' covariance parameters).
    """
    if not model.reml:
        raise InferenceError(
            "Kenward-Roger df need a REML fit (as pbkrtest/lmerTest); refit with reml=True "
            "or use the Satterthwaite df (coef_table)"
        )
    twin = model.centred_twin() if hasattr(model, "centred_twin") else None
    if twin is not None:  # random-effect columns searched centred: the same model, well conditioned
        model = twin  # (Phi, PhiA and the df do not depend on how the covariance is written)
    if model.layout.nfactors == 1:  # from the statistics: in the preconditioned columns X_c = X A
        XVX, P, Qm, Kt, names = _pieces_blocked(model)
        Am = np.asarray(model.xform.A, dtype=np.float64)
    else:
        XVX, P, Qm, Kt, names = _pieces_dense(model, max_q)
        Am = None
    m = len(P)
    for i in range(m):
        for j in range(i):
            Qm[i][j] = Qm[j][i].T
            Kt[i, j] = Kt[j, i]
    P = [0.5 * (Pi + Pi.T) for Pi in P]
    Phi = np.linalg.inv(XVX)
    Phi = 0.5 * (Phi + Phi.T)
    IE2 = np.zeros((m, m))
    PhiP = [Phi @ Pi for Pi in P]
    for i in range(m):
        for j in range(i, m):
            IE2[i, j] = IE2[j, i] = Kt[i, j] - 2 * np.sum(Phi * Qm[i][j]) + np.sum(PhiP[i] * PhiP[j].T)
    ev = np.linalg.eigvalsh(IE2)
    Wk = 2 * (np.linalg.inv(IE2) if np.min(np.abs(ev)) > 1e-10 else np.linalg.pinv(IE2))
    Wk = 0.5 * (Wk + Wk.T)
    UU = np.zeros_like(Phi)
    for i in range(m):
        for j in range(m):
            UU += Wk[i, j] * (Qm[i][j] - P[i] @ Phi @ P[j])
    UU = 0.5 * (UU + UU.T)
    PhiA = Phi + 2 * Phi @ UU @ Phi
    centred = None
    if Am is not None:  # back to the original columns: Phi = A Phi_c A', P_i = A^{-T} P_ci A^{-1}
        centred = (Phi, P, Am)  # (what _kr_A uses: no cancellation for badly scaled columns)
        Ai = np.linalg.inv(Am)
        Phi, PhiA = (0.5 * (M + M.T) for M in (Am @ Phi @ Am.T, Am @ PhiA @ Am.T))
        P = [0.5 * (M + M.T) for M in (Ai.T @ Pi @ Ai for Pi in P)]
    return {"Phi": Phi, "PhiA": PhiA, "P": P, "W": Wk, "names": names + ["sigma2"], "centred": centred}


def _kr_A(parts, L):
    """``A1``, ``A2`` of the contrasts ``L``. They depend on ``L`` only through its row space
    and are invariant under ``X -> X A`` (``L -> L A``, ``Phi -> A^{-1} Phi A^{-T}``,
    ``P_i -> A' P_i A``): with ``parts["centred"] = (Phi_c, P_c, A)`` they are computed in the
    preconditioned columns, rows of ``L A`` scaled to a largest entry of 1."""
    Phi, P, Wk = parts["Phi"], parts["P"], parts["W"]
    if parts.get("centred") is not None:
        Phi, P, Am = parts["centred"]
        L = L @ Am
        mx = np.max(np.abs(L), axis=1, keepdims=True)
        L = L / np.where(mx > 0, mx, 1.0)
    Theta = L.T @ np.linalg.solve(L @ Phi @ L.T, L)
    TP = Theta @ Phi
    u = [TP @ Pi @ Phi for Pi in P]
    tr = np.array([np.trace(ui) for ui in u])
    A1 = float(tr @ Wk @ tr)
    m = len(P)
    A2 = 0.0
    for i in range(m):
        for j in range(m):
            A2 += Wk[i, j] * np.sum(u[i] * u[j].T)
    return A1, float(A2)


BALANCED_RTOL = 1e-10


def _kr_scaling(A1, A2, q):
    """pbkrtest's df2 and F scaling from A1, A2 and the rank q.

    Kenward & Roger (1997, sect. 4) with ``a = A2 / q``::

        B = (A1 + 6 A2) / (2q),   g = ((q+1) A1 - (q+4) A2) / ((q+2) A2),
        c1, c2, c3 = g, q - g, q + 2 - g  over  3q + 2(1 - g),
        rho = (1/q) [(1 - a) / (1 - c2 B)]^2 (1 + c1 B) / (1 - c3 B),
        df2 = 4 + (q + 2) / (q rho - 1),   F scaling = df2 (1 - a) / (df2 - 2).

    When ``A1 = q A2`` -- always for one contrast (``q = 1``: ``Theta Phi P_i Phi`` has rank
    one, so the squared trace equals the trace of the square), and for multi-df tests in
    balanced designs -- ``c2 B = a`` identically, the ratio ``(1 - a) / (1 - c2 B)`` is exactly
    1 and the formulas reduce to ``df2 = 2 q / A2`` and a scaling of exactly 1. They are used
    in that case: the general expression is 0/0 at ``a = 1`` (``df2 = 2``, e.g. the whole-plot
    contrast of a balanced split plot with 3 blocks) and gives rounding noise there (pbkrtest
    guards the 0/0 only when both parts are below 1e-14 in absolute value).
    """
    if not (np.isfinite(A1) and np.isfinite(A2)):
        return float("nan"), float("nan")
    if A2 <= 0:  # no variance parameter moves the contrast: the t/F reference is exact
        return float("inf"), 1.0
    if q == 1 or abs(A1 - q * A2) <= BALANCED_RTOL * max(abs(A1), q * abs(A2)):
        return float(2 * q / A2), 1.0
    B = (A1 + 6 * A2) / (2 * q)
    g = ((q + 1) * A1 - (q + 4) * A2) / ((q + 2) * A2)
    den = 3 * q + 2 * (1 - g)
    c1, c2, c3 = g / den, (q - g) / den, (q + 2 - g) / den
    V0 = 1 + c1 * B
    V1 = 1 - c2 * B
    V2 = 1 - c3 * B
    V0 = 0.0 if abs(V0) < 1e-10 else V0
    num = 1 - A2 / q
    ratio = 1.0 if (abs(num) < 1e-14 and abs(V1) < 1e-14) else (num / V1 if V1 != 0 else float("inf"))
    rho = (1 / q) * ratio**2 * V0 / V2
    df2 = 4 + (q + 2) / (q * rho - 1)
    scaling = 1.0 if abs(df2 - 4) < 1e-2 else df2 * (1 - A2 / q) / (df2 - 2)
    return float(df2), float(scaling)


def kr_df(model, L) -> np.ndarray:
    """Kenward-Roger denominator df of each row of ``L`` (one-dimensional contrasts)."""
    parts = _cached_parts(model)
    L = np.atleast_2d(np.asarray(L, dtype=np.float64))
    out = []
    for row in L:
        A1, A2 = _kr_A(parts, row[None, :])
        out.append(_kr_scaling(A1, A2, 1)[0])
    return np.array(out)


def kr_test(model, L, rhs=None) -> dict:
    """Kenward-Roger F test of ``L beta = rhs`` (pbkrtest's ``.KR_adjust``)."""
    parts = _cached_parts(model)
    L = np.atleast_2d(np.asarray(L, dtype=np.float64))
    q = int(np.linalg.matrix_rank(L))
    beta = model.fixef.to_numpy()
    rhs = np.zeros(L.shape[0]) if rhs is None else np.broadcast_to(np.asarray(rhs, float), (L.shape[0],))
    diff = L @ beta - rhs
    wald = float(diff @ np.linalg.solve(L @ parts["PhiA"] @ L.T, diff))
    A1, A2 = _kr_A(parts, L)
    df2, scaling = _kr_scaling(A1, A2, q)
    F = scaling * wald / q
    return {"F": F, "F_unscaled": wald / q, "ndf": q, "ddf": df2, "scaling": scaling,
            "p": float(dist.f_sf(F, q, df2))}


def _cached_parts(model, max_q: int | None = None) -> dict:
    parts = model.cache.get("kenward_roger")
    if parts is None:
        parts = kr_parts(model, MAX_Q if max_q is None else max_q)
        model.cache["kenward_roger"] = parts
    return parts


def coef_table_kr(model, max_q: int | None = None) -> pd.DataFrame:
    """Fixed effects with Kenward-Roger df (lmerTest's ``summary(m, ddf = "Kenward-Roger")``).

    Estimate, Std. Error (from the adjusted covariance ``Phi_A``), df, t value, Pr(>|t|).
    Only for REML fits (:class:`InferenceError` otherwise). With one grouping factor the cost
    is O(levels); with several, dense matrices of the ``Q`` random effects are formed, and
    ``Q > max_q`` (default :data:`MAX_Q` = 3000) raises :class:`InferenceError`.
    """
    parts = _cached_parts(model, max_q)
    beta = model.fixef
    p = len(beta)
    se = np.sqrt(np.diag(parts["PhiA"]))
    df = kr_df(model, np.eye(p))
    t = beta.to_numpy() / se
    pval = 2.0 * dist.t_sf(np.abs(t), df)
    return pd.DataFrame(
        {"Estimate": beta.to_numpy(), "Std. Error": se, "df": df, "t value": t, "Pr(>|t|)": pval},
        index=beta.index,
    )
