"""The response's part of the statistics, for many responses at once (refits, simulation).

Only the ``y`` column of the statistics changes with the response: ``Z_f'W y`` per level
(every batched factor), ``X'W y``, ``y'W y`` and ``Z_D'W y`` in the dense block. All but
``y'W y`` are linear in ``y``; one sparse matrix ``G`` (a row per statistic, weights folded in)
gives them for a block of responses as ``G Y`` (:func:`y_stats`), and :func:`with_y` puts one
replicate's into the statistics inside a compiled program. The design's offset is subtracted
from every response first, as :func:`~jaxhlm._src.stats.suffstats.compute_stats` does.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..base.lazy import scipy
from .suffstats import Dense, Level, factor_Z

__all__ = ["YStats", "y_operator", "y_stats", "base_y_stats", "with_y"]


class YStats(NamedTuple):
    """The response's statistics: ``levels`` (per batched factor ``(q_f, L_f)``), ``X (p,)``,
    ``yy ()``, ``dense (Q_D,)`` or None; a leading replicate axis when batched."""

    levels: tuple
    X: object
    yy: object
    dense: object = None


def y_operator(design, layout):
    """Sparse ``G`` with ``G y = [vec Z_f'Wy per batched factor, X'Wy, Z_D'Wy]``."""
    n = design.n
    w = getattr(design, "weights", None)
    w = np.ones(n) if w is None else np.asarray(w, dtype=np.float64)
    rows, cols, vals = [], [], []
    ar = np.arange(n)
    o = 0
    nb = layout.nfactors if layout.plan.kind != "crossed" else 1
    for f in range(nb):
        Z = factor_Z(design, f)
        L = layout.nlev[f]
        codes = design.factors[f].codes
        for i in range(layout.q[f]):
            rows.append(o + i * L + codes)
            cols.append(ar)
            vals.append(Z[:, i] * w)
        o += layout.q[f] * L
    for k in range(layout.p):
        rows.append(np.full(n, o + k))
        cols.append(ar)
        vals.append(design.X[:, k] * w)
    o += layout.p
    offs = layout.dense_offsets
    for f in layout.dense_factors:
        Z = factor_Z(design, f)
        codes = design.factors[f].codes
        for i in range(layout.q[f]):
            rows.append(o + offs[f] + codes * layout.q[f] + i)
            cols.append(ar)
            vals.append(Z[:, i] * w)
    G = scipy.sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                                shape=(o + layout.QD, n))
    G.sum_duplicates()
    return G, w


def y_stats(Gw, Y: np.ndarray, layout, offset=None) -> YStats:
    """The response statistics of every column of ``Y (n, B)`` (arrays lead with B)."""
    G, w = Gw
    Y = np.asarray(Y, dtype=np.float64)
    if offset is not None:
        Y = Y - np.asarray(offset, dtype=np.float64)[:, None]
    B = Y.shape[1]
    Lm = np.asarray(G @ Y).T  # (B, m)
    o = 0
    levels = []
    nb = layout.nfactors if layout.plan.kind != "crossed" else 1
    for f in range(nb):
        size = layout.q[f] * layout.nlev[f]
        levels.append(np.ascontiguousarray(Lm[:, o:o + size].reshape(B, layout.q[f], layout.nlev[f])))
        o += size
    X = np.ascontiguousarray(Lm[:, o:o + layout.p])
    o += layout.p
    dense = np.ascontiguousarray(Lm[:, o:]) if layout.plan.kind == "crossed" else None
    yy = np.einsum("ij,ij,i->j", Y, Y, w)
    return YStats(tuple(levels), X, yy, dense)


def base_y_stats(stats, layout) -> YStats:
    """The response statistics held in ``stats`` itself (B = 1)."""
    p = layout.p
    XytXy = np.asarray(stats.XytXy)
    levels = tuple(np.asarray(lv.ZtXy)[None, :, p, :] for lv in stats.levels)
    dense = None if stats.dense is None else np.asarray(stats.dense.ZtXy)[None, :, p]
    return YStats(levels, XytXy[None, p, :p], XytXy[p, p][None], dense)


def with_y(base, ys: YStats):
    """The statistics of one replicate: ``base`` with its response columns replaced (traceable)."""
    import jax.numpy as jnp

    a = jnp.asarray  # host (numpy) statistics too
    p = base.XytXy.shape[0] - 1
    levels = tuple(Level(lv.ZtZ, a(lv.ZtXy).at[:, p, :].set(y)) for lv, y in zip(base.levels, ys.levels))
    row = jnp.concatenate([a(ys.X), a(ys.yy)[None]])
    M = a(base.XytXy).at[p, :].set(row).at[:, p].set(row)
    out = base._replace(levels=levels, XytXy=M)
    if base.dense is not None:
        out = out._replace(dense=Dense(base.dense.ZtZ, a(base.dense.ZtXy).at[:, p].set(ys.dense)))
    return out
