"""Conditional variances of the random effects (lme4's ``condVar`` / ``postVar``).

Given the data and the estimates, the random effects have the conditional covariance

    Var(b | y) = sigma^2 Lambda (Lambda'Z'Z Lambda + I)^{-1} Lambda'

(Bates et al. 2015, JSS 67(1), sect. 3.3). Only the diagonal block of each level is wanted, and
the engine's eliminations give it without forming the inverse. In the b scale the precision of
the random effects is ``Z'Z + (Lambda Lambda')^{-1}``; eliminating a block ``h`` leaves
``W_h = T_h M_h^{-1} T_h'`` (its inverse Schur block) and its coupling ``C_hR`` with the blocks
``R`` after it, and the block inverse gives, with ``S_RR`` the covariance of those blocks,

    S_hR = -W_h C_hR S_RR,        S_hh = W_h + W_h C_hR S_RR C_Rh W_h.

Nested chains run this from the last factor back, level by level (each level has one parent
per later factor); crossed designs have ``S_DD = Lambda_D M_D^{-1} Lambda_D'`` for the dense
block and sum ``C_a S_DD C_a'`` over the pairs (of pairs) of each level ``a`` of the first factor.
"""
from __future__ import annotations

import jax
import numpy as np
import pandas as pd

from ..base.config import jit
from ..engine.pls import factorize

__all__ = ["ranef_condvar", "ranef_condsd"]


@jit(static_argnames=("layout",))
def _factor_program(theta, stats, layout):
    fc = factorize(theta, stats, layout, keep=True)
    return fc._replace(R=(), RD=None)


def _crossed(fc, theta, stats, layout, nlev) -> list:
    from ..stats.fillmap import pairs_of_pairs

    MD = np.asarray(fc.MD)
    Ts = layout.T_arrays(theta)
    Lam = np.zeros_like(MD)
    offs = layout.dense_offsets
    for f in layout.dense_factors:
        qf, Lf, of = layout.q[f], layout.nlev[f], offs[f]
        for lv in range(Lf):
            s = of + lv * qf
            Lam[s:s + qf, s:s + qf] = Ts[f]
    SDD = Lam @ np.linalg.solve(MD, Lam.T)
    SDD = 0.5 * (SDD + SDD.T)
    out = [None] * layout.nfactors
    for f in layout.dense_factors:
        qf, of = layout.q[f], offs[f]
        idx = of + np.arange(nlev[f])[:, None] * qf + np.arange(qf)[None, :]
        out[f] = SDD[idx[:, :, None], idx[:, None, :]]
    W = np.moveaxis(np.asarray(fc.W[0]), -1, 0)[:nlev[0]]  # (J, qA, qA)
    qA = W.shape[1]
    if layout.plan.coupling == "dense":
        C = np.asarray(stats.coupling.C)[:, :nlev[0], :]  # (qA, J, QD)
        mid = np.einsum("ujk,kl,vjl->juv", C, SDD, C)
    else:
        mid = np.zeros((nlev[0], qA, qA))
        for x, f in enumerate(layout.dense_factors):
            pf = stats.coupling[x]
            Cf, af, rf = np.asarray(pf.C), np.asarray(pf.a), np.asarray(pf.row)
            for y, g in enumerate(layout.dense_factors):
                pg = stats.coupling[y]
                Cg, ag, rg = np.asarray(pg.C), np.asarray(pg.a), np.asarray(pg.row)
                okf, okg = np.any(Cf != 0, axis=(0, 1)), np.any(Cg != 0, axis=(0, 1))
                i, j = pairs_of_pairs(np.where(okf, af, -1), np.where(okg, ag, -2))
                if i.size == 0:
                    continue
                rows = rf[i][:, None] + np.arange(layout.q[f])[None, :]
                cols = rg[j][:, None] + np.arange(layout.q[g])[None, :]
                blk = SDD[rows[:, :, None], cols[:, None, :]]  # (m, q_f, q_g)
                np.add.at(mid, af[i], np.einsum("rum,mrs,svm->muv", Cf[:, :, i], blk, Cg[:, :, j]))
    out[0] = W + np.einsum("juv,jvw,jwx->jux", W, mid, W)
    return out


def _chain(fc, stats, layout, nlev) -> list:
    F = layout.nfactors
    Ws = [np.moveaxis(np.asarray(w), -1, 0) for w in fc.W]  # (L_h, q_h, q_h)
    Cs = [[np.moveaxis(np.asarray(c), -1, 0) for c in row] for row in fc.C]  # C[h][x]: (L_h, q_h, q_k)
    par = [[np.asarray(lk.parent) for lk in row] for row in stats.links] if F > 1 else [[]]
    S = [None] * F  # S[h]: (L_h, q_h, q_h)
    X = [None] * F  # X[h][x]: covariance of a level of h with its parent in factor k (L_h, q_h, q_k)
    for h in reversed(range(F)):
        later = list(range(h + 1, F))
        if not later:
            S[h], X[h] = Ws[h], []
            continue
        Lh = Ws[h].shape[0]
        # covariance of the later factors at the parents of each level of h
        G = []
        for xk, k in enumerate(later):
            acc = np.zeros((Lh, layout.q[h], layout.q[k]))
            for xj, j in enumerate(later):
                pj = par[h][xj]
                if j == k:
                    Sjk = S[j][pj]
                elif j < k:
                    Sjk = X[j][k - j - 1][pj]
                else:
                    Sjk = np.swapaxes(X[k][j - k - 1][par[h][xk]], 1, 2)
                acc += Cs[h][xj] @ Sjk
            G.append(acc)  # sum_j C_hj S_jk
        X[h] = [-Ws[h] @ g for g in G]
        mid = sum(G[xk] @ np.swapaxes(Cs[h][xk], 1, 2) for xk in range(len(later)))
        S[h] = Ws[h] + Ws[h] @ mid @ Ws[h]
    return S


def _relative(model) -> list:
    """Per factor: ``(nlevels, q_f, q_f)`` blocks of ``Var(b | y) / sigma^2``."""
    layout = model.layout
    theta, stats = model.search_point
    theta = np.asarray(theta, dtype=np.float64)
    fc = jax.device_get(_factor_program(theta, stats, layout))
    nlev = [f.nlevels for f in model.design.factors]
    if layout.plan.kind == "crossed":
        out = _crossed(fc, theta, stats, layout, nlev)
    else:
        out = _chain(fc, stats, layout, nlev)
    out = [np.asarray(o)[:L] for o, L in zip(out, nlev)]
    search = getattr(model.opt, "search", None)
    if search is not None:  # blocks of the centred terms: V = M V_c M' (optim/recentre.py)
        out = [M @ o @ M.T for M, o in zip(search.M, out)]
    return out


def ranef_condvar(model) -> dict:
    """Conditional covariance matrix of the random effects of every level.

    Parameters
    ----------
    model : LinearMixedModel

    Returns
    -------
    dict of str -> ndarray, shape (nlevels, q_f, q_f)
        Per grouping factor, the conditional covariance of each level's random effects
        (columns as in ``model.ranef[name]``), lme4's ``attr(ranef(m, condVar = TRUE)[[name]],
        "postVar")`` with levels first.
    """
    found = model.cache.get("condvar")
    if found is None:
        rel = _relative(model)
        s2 = model.sigma**2
        found = {fac.name: s2 * r for fac, r in zip(model.design.factors, rel)}
        model.cache["condvar"] = found
    return found


def ranef_condsd(model) -> dict:
    """Conditional standard deviations of the random effects, shaped like ``model.ranef``.

    Square roots of the diagonals of :func:`ranef_condvar` (the half-widths of caterpillar-plot
    intervals are 1.96 times these).

    Returns
    -------
    dict of str -> pandas.DataFrame
        Indexed by level, one column per random-effect column.
    """
    cv = ranef_condvar(model)
    out = {}
    for name, re in model.ranef.items():
        sd = np.sqrt(np.maximum(np.diagonal(cv[name], axis1=1, axis2=2), 0.0))
        out[name] = pd.DataFrame(sd, index=re.index, columns=re.columns)
    return out
