"""Conditional variances of the random effects (lme4's ``condVar`` / ``postVar``).

Given the data and the estimates, the random effects have the conditional covariance

    Var(b | y) = sigma^2 Lambda (L L')^{-1} Lambda',      L L' = Lambda' Z'Z Lambda + I

(Bates et al. 2015, JSS 67(1), sect. 3.3; lme4's ``ranef(condVar = TRUE)``). Only the diagonal
block of each level is wanted. With the blocked factor of :mod:`suffstats`,
``L = [[L_A, 0], [P, L_B]]`` (``L_A`` block diagonal over the levels of the first factor, ``P``
sparse, ``L_B`` dense), the inverse is never formed: with ``M = (L_B L_B')^{-1}``

    ((L L')^{-1})_BB      = M                                            (dense, Q_B x Q_B)
    ((L L')^{-1})_{aa}    = L_a^{-T} (I + sum_{k,k': a_k = a_k' = a} P_k' M_{l_k l_k'} P_k') L_a^{-1}

for every level ``a`` of the first factor, where ``P_k`` are the blocks of ``P`` coupling level
``a_k`` of the first factor with level ``l_k`` of another factor (the sums run over the
pairs of pairs of :mod:`suffstats`, so the cost is O(levels), not O(Q^2)).
"""
from __future__ import annotations


import jax
import numpy as np
import pandas as pd

from ..base.config import jit
from ..engine._legacy_pls import pls

__all__ = ["ranef_condvar", "ranef_condsd"]


@jit(static_argnames=("struct",))
def _pls_jit(theta, stats, struct):
    try:  # the dense factor L_B is only returned on request in newer engines
        d = pls(theta, stats, struct, full=True)
    except TypeError:
        d = pls(theta, stats, struct)
    d.pop("RZXA", None)
    d.pop("RZXB", None)
    return d


def _relative_condcov(model) -> list:
    """Per factor: ``(nlevels, q_f, q_f)`` blocks of ``(L L')^{-1}`` (spherical scale)."""
    struct, stats = model._struct, model._stats
    theta = np.asarray(model._fit["theta"], dtype=np.float64)
    d = jax.device_get(_pls_jit(theta, stats, struct))
    nlev = [f.nlevels for f in model._design.factors]
    LA = np.moveaxis(np.asarray(d["LA"]), -1, 0)[: nlev[0]]  # (J, qA, qA)
    qA = LA.shape[1]
    LAinv = np.linalg.inv(LA)  # lower triangular, tiny blocks
    middle = np.broadcast_to(np.eye(qA), LA.shape).copy()
    out = [None] * struct.nfactors
    if getattr(struct, "b_diag", False):
        # nested: (L_B L_B')^{-1} is block diagonal too, and each A level has one pair
        LBinv = np.linalg.inv(np.moveaxis(np.asarray(d["LBblk"]), -1, 0))  # (L_B, qB, qB)
        Mb = np.einsum("lki,lkj->lij", LBinv, LBinv)
        out[1] = Mb
        P = np.asarray(d["P"][1])  # (qA, qB, K)
        ca, cl = np.asarray(stats["Ca1"]), np.asarray(stats["Cl1"])
        np.add.at(middle, ca, np.einsum("akm,mkl,blm->mab", P, Mb[cl], P))
    elif struct.nfactors > 1:
        LB = np.asarray(d["LB"])
        import scipy.linalg

        from ..stats._legacy import _pairs_of_pairs

        LBinv = scipy.linalg.solve_triangular(LB, np.eye(LB.shape[0]), lower=True)
        M = LBinv.T @ LBinv
        offs = struct.b_offsets
        P = d["P"]
        for f in range(1, struct.nfactors):
            qf, of = struct.q[f], offs[f]
            idx = of + np.arange(nlev[f])[:, None] * qf + np.arange(qf)[None, :]  # (L_f, q_f)
            out[f] = M[idx[:, :, None], idx[:, None, :]]
        for f in range(1, struct.nfactors):
            Pf = np.asarray(P[f])  # (qA, q_f, K): P_k'
            caf, clf = np.asarray(stats[f"Ca{f}"]), np.asarray(stats[f"Cl{f}"])
            for g in range(1, struct.nfactors):
                Pg = np.asarray(P[g])
                clg = np.asarray(stats[f"Cl{g}"])
                if f"PPi{f}_{g}" in stats:
                    i = np.asarray(stats[f"PPi{f}_{g}"])
                    j = np.asarray(stats[f"PPj{f}_{g}"])
                    msk = np.asarray(stats[f"PPm{f}_{g}"]) > 0
                    i, j = i[msk], j[msk]
                else:  # scalar first factor: the statistics hold Q(w), not the pair lists
                    i, j = _pairs_of_pairs(caf, np.asarray(stats[f"Ca{g}"]))
                if i.size == 0:
                    continue
                qf, qg = struct.q[f], struct.q[g]
                rows = offs[f] + clf[i][:, None] * qf + np.arange(qf)[None, :]  # (m, q_f)
                cols = offs[g] + clg[j][:, None] * qg + np.arange(qg)[None, :]  # (m, q_g)
                Mblk = M[rows[:, :, None], cols[:, None, :]]  # (m, q_f, q_g)
                contrib = np.einsum("akm,mkl,blm->mab", Pf[:, :, i], Mblk, Pg[:, :, j])
                np.add.at(middle, caf[i], contrib)
    out[0] = np.einsum("jka,jkl,jlb->jab", LAinv, middle, LAinv)
    return out


def ranef_condvar(model) -> dict:
    """Conditional covariance matrix of the random effects of every level.

    Parameters
    ----------
    model : LinearMixedModel

    Returns
    -------
    dict of str -> ndarray, shape (nlevels, q_f, q_f)
        Per grouping factor, ``sigma^2 T_f [(L L')^{-1}]_{level} T_f'``: the conditional
        covariance of that level's random effects (columns as in ``model.ranef[name]``), lme4's
        ``attr(ranef(m, condVar = TRUE)[[name]], "postVar")`` with levels first.
    """
    rel = _relative_condcov(model)
    Ts = _factor_T(model)
    s2 = model.sigma**2
    out = {}
    for f, fac in enumerate(model._design.factors):
        T = Ts[f]
        out[fac.name] = s2 * np.einsum("ik,jkl,ml->jim", T, rel[f], T)
    return out


def _factor_T(model) -> list:
    struct = model._struct
    th = np.asarray(model._fit["theta"], dtype=np.float64)
    Ts = [np.zeros((q, q)) for q in struct.q]
    for k in range(struct.ntheta):
        Ts[struct.theta_factor[k]][struct.theta_row[k], struct.theta_col[k]] = th[k]
    return Ts


def ranef_condsd(model) -> dict:
    """Conditional standard deviations of the random effects, shaped like ``model.ranef``.

    Square roots of the diagonals of :func:`ranef_condvar` (lme4: ``sqrt`` of the diagonal of
    ``postVar``; the half-widths of caterpillar-plot intervals are ``1.96`` times these).

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
