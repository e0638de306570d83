"""The statistics of reweighted rows, computed inside a compiled program (PIRLS changes the
weights at every step).

For per-row weights ``w`` and a working response ``z``, :func:`weighted_stats` returns the same
:class:`~jaxhlm._src.stats.suffstats.Stats` as :func:`~jaxhlm._src.stats.suffstats.compute_stats`
of the design with prior weights ``w`` and response ``z`` (to rounding: sums are taken in
another order), for every :class:`~jaxhlm._src.stats.layout.Plan`. Every statistic is a sum over
rows, by level or pair of levels, of ``w_i`` times a product of two of the model's columns
(``Z_f``, ``X``, ``z``):

* per level of a batched factor ``f``: ``sum w Z_f Z_f'`` and ``sum w Z_f [X z]'`` (one
  segment sum over the level codes);
* chain links: ``sum w Z_h Z_i'`` per level of ``h``;
* the dense block: per dense factor its diagonal blocks and ``Z_f'W[X z]``, and for two dense
  factors the blocks of the (f level, g level) pairs present;
* the coupling with the first factor: ``Z_f'W Z_A`` per (A level, f level) pair (one segment sum
  over the pair index of each row), scattered into the dense ``(q_A, J, Q_D)`` array or kept as
  the padded pair lists; the scalar fill map's values are products of two pair values
  (gathered); the pairs-of-pairs fill holds indices only.

The host builds, once per design and layout, a :class:`WeightedOp`: the row arrays (``X``,
``Z_f``, level codes), the pair index of every row and the index arrays of the scatters and
gathers, taken from the design's own statistics so that the layout (order of pairs, fill
entries, padding) is exactly that of :func:`compute_stats`. The op is a pytree of arrays (an
argument of compiled programs, never closed over).

``wz`` and ``z'Wz`` can also be given directly (:func:`weighted_stats_wz`): a Newton step of
PIRLS needs ``Z'(W eta + r)`` where ``W`` may vanish on some rows.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .fillmap import ScalarFill, fill_entries
from .layout import Layout
from .suffstats import Dense, DenseCoupling, Level, Link, Pairs, Stats, compute_stats, factor_Z

__all__ = ["WeightedOp", "build_weighted_op", "weighted_stats", "weighted_stats_wz", "linear_predictor_re",
           "re_transpose"]


class WeightedOp(NamedTuple):
    """Row arrays and index arrays of :func:`weighted_stats` (a pytree; see the module docstring).

    ``X (n,p)``; per factor ``Z[f] (n,q_f)`` and ``codes[f] (n,)``; ``n`` (a float). Crossed
    plans: per dense factor ``pair_of_row[x] (n,)`` (its (A level, f level) pair) and the
    template's padded pair lists ``pairs``; ``cross[k] = (pair_of_row, dest_f, dest_g)`` for
    dense factor pairs ``g < f``; ``fill_src`` (two flat indices into the concatenated pair
    values per scalar-fill entry, -1 for padding) or the pairs-of-pairs ``fill`` itself;
    ``links_parent`` (chains).
    """

    X: object
    Z: tuple
    codes: tuple
    n: object
    pair_of_row: tuple = ()
    pairs: tuple = ()
    cross: tuple = ()
    fill_src: object = None
    fill: object = None
    links_parent: tuple = ()


def _scalar_fill_sources(pairs_raw, layout: Layout, template: ScalarFill, sizes: list):
    """For each scalar-fill entry of ``template`` (in its order), the flat indices of the two
    pair values whose product it is (into the concatenated ``(q_f, Kp_f)`` pair values, ``sizes``
    the padded ``Kp_f``), generated in :func:`~jaxhlm._src.stats.fillmap.fill_entries`' order
    as the map itself."""
    QD = layout.QD
    base = np.concatenate([[0], np.cumsum([layout.q[f] * k for f, k in zip(layout.dense_factors, sizes)])])
    dests, s1, s2 = [], [], []
    for x, y, r_, c_, i, j in fill_entries(pairs_raw, layout):  # the fill map's own order
        dests.append((pairs_raw[x][2][i] + r_) * QD + pairs_raw[y][2][j] + c_)
        s1.append(base[x] + r_ * sizes[x] + i)
        s2.append(base[y] + c_ * sizes[y] + j)
    d = np.concatenate(dests)
    order = np.argsort(d, kind="stable")
    m, mp = len(d), len(np.asarray(template.d))
    if not np.array_equal(d[order], np.asarray(template.d)[:m]):
        raise AssertionError("scalar fill layout differs from compute_stats'")  # an internal invariant
    src = np.full((2, mp), -1, np.int64)
    src[0, :m] = np.concatenate(s1)[order]
    src[1, :m] = np.concatenate(s2)[order]
    return src


def build_weighted_op(design, layout: Layout, template: Stats | None = None) -> WeightedOp:
    """The :class:`WeightedOp` of ``design`` for ``layout`` (host, once per design).

    ``template``: the design's statistics (``compute_stats(design, layout)``), whose constant
    index arrays (pair lists, fill map, chain parents) are reused; computed when not given.
    """
    if template is None:
        template = compute_stats(design, layout, precondition=False)
    F = layout.nfactors
    Zs = tuple(np.ascontiguousarray(factor_Z(design, f), dtype=np.float64) for f in range(F))
    codes = tuple(np.asarray(fac.codes, dtype=np.int64) for fac in design.factors)
    base = dict(X=np.ascontiguousarray(design.X, dtype=np.float64), Z=Zs, codes=codes, n=np.float64(design.n))
    if layout.plan.kind != "crossed":
        parents = tuple(tuple(np.asarray(lk.parent) for lk in row) for row in template.links)
        return WeightedOp(**base, links_parent=parents)
    offs = layout.dense_offsets
    pair_rows, raw = [], []
    for f in layout.dense_factors:
        key = codes[0] * layout.nlev[f] + codes[f]
        ukey, inv = np.unique(key, return_inverse=True)
        pair_rows.append(inv.ravel().astype(np.int64))
        raw.append((np.zeros((layout.q[f], layout.q[0], len(ukey))), ukey // layout.nlev[f],
                    offs[f] + (ukey % layout.nlev[f]) * layout.q[f]))
    cross = []
    for f in layout.dense_factors:
        for g in layout.dense_factors:
            if g >= f:
                break
            key = codes[f] * layout.nlev[g] + codes[g]
            uk, inv = np.unique(key, return_inverse=True)
            cross.append((inv.ravel().astype(np.int64), offs[f] + (uk // layout.nlev[g]) * layout.q[f],
                          offs[g] + (uk % layout.nlev[g]) * layout.q[g]))
    pairs = template.coupling if layout.plan.coupling != "dense" else tuple(
        Pairs(None, a, row) for _, a, row in raw)
    pairs = tuple(Pairs(None, np.asarray(p.a), np.asarray(p.row)) for p in pairs)
    fill_src, fill = None, None
    if layout.plan.coupling != "dense":
        if layout.plan.fill == "scalar":
            fill_src = _scalar_fill_sources(raw, layout, template.fill, [len(p.a) for p in pairs])
        fill = template.fill
    return WeightedOp(**base, pair_of_row=tuple(pair_rows), pairs=pairs, cross=tuple(cross), fill_src=fill_src,
                      fill=fill)


# ---------------------------------------------------------------------------------------------
# traceable
# ---------------------------------------------------------------------------------------------
def _seg(v, ids, num):
    return jax.ops.segment_sum(v, ids, num_segments=num)


def _level(op, f, w, cols, L):
    """``(q, m, L)`` sums per level of ``w Z_f[:, a] cols[:, c]``."""
    P = w[:, None] * op.Z[f]  # (n, q)
    return jnp.moveaxis(_seg(P[:, :, None] * cols[:, None, :], op.codes[f], L), 0, -1)


def weighted_stats(op: WeightedOp, w, z, layout: Layout, fixed: bool = True) -> Stats:
    """:func:`compute_stats` of the rows with prior weights ``w`` and response ``z`` (traceable).

    ``fixed=False`` leaves out the fixed effects (the statistics of the layout with ``p = 0``,
    for problems in the random effects alone). ``logw = sum log w`` over the rows with ``w > 0``.
    """
    wz = w * z
    return weighted_stats_wz(op, w, wz, jnp.sum(wz * z), layout, fixed=fixed)


def weighted_stats_wz(op: WeightedOp, w, wz, zwz, layout: Layout, fixed: bool = True) -> Stats:
    """:func:`weighted_stats` from ``w``, ``wz = w z`` and ``z'Wz`` (see the module docstring)."""
    F = layout.nfactors
    plan = layout.plan
    X = op.X if fixed else op.X[:, :0]
    p = X.shape[1]
    Xw = X * w[:, None]
    XtX = Xw.T @ X
    Xtz = X.T @ wz
    XytXy = jnp.concatenate([jnp.concatenate([XtX, Xtz[:, None]], axis=1),
                             jnp.concatenate([Xtz, zwz[None]])[None, :]], axis=0)
    logw = jnp.sum(jnp.where(w > 0, jnp.log(jnp.where(w > 0, w, 1.0)), 0.0))
    base = dict(n=jnp.asarray(op.n, w.dtype), XytXy=XytXy, logw=logw)

    def level(f):
        Zf = op.Z[f]
        L = layout.nlev[f]
        ZZ = _level(op, f, w, Zf, L)
        Zx = _level(op, f, w, X, L) if p else jnp.zeros((layout.q[f], 0, L), w.dtype)
        Zz = jnp.moveaxis(_seg(op.Z[f] * wz[:, None], op.codes[f], L), 0, -1)[:, None, :]
        return Level(ZZ, jnp.concatenate([Zx, Zz], axis=1))

    if plan.kind in ("one", "chain"):
        levels = tuple(level(f) for f in range(F))
        links = []
        for h in range(F):
            row = []
            for x, i in enumerate(range(h + 1, F)):
                C = _level(op, h, w, op.Z[i], layout.nlev[h])
                row.append(Link(C, jnp.asarray(op.links_parent[h][x])))
            links.append(tuple(row))
        return Stats(**base, levels=levels, links=tuple(links) if F > 1 else ())
    first = level(0)
    QD, offs = layout.QD, layout.dense_offsets
    ZtZ = jnp.zeros((QD * QD,), w.dtype)
    rows_xy = []
    for f in layout.dense_factors:
        qf, Lf, of = layout.q[f], layout.nlev[f], offs[f]
        blk = level(f)
        idx = of + np.arange(Lf) * qf
        for a in range(qf):
            for b in range(qf):
                ZtZ = ZtZ.at[(idx + a) * QD + idx + b].add(blk.ZtZ[a, b])
        rows_xy.append(jnp.transpose(blk.ZtXy, (2, 0, 1)).reshape(Lf * qf, p + 1))
    k = 0
    for f in layout.dense_factors:
        for g in layout.dense_factors:
            if g >= f:
                break
            inv, rf, rg = op.cross[k]
            k += 1
            K = rf.shape[0]
            P = w[:, None] * op.Z[f]
            cr = _seg(P[:, :, None] * op.Z[g][:, None, :], inv, K)  # (K, qf, qg)
            for a in range(layout.q[f]):
                for b in range(layout.q[g]):
                    ZtZ = ZtZ.at[(rf + a) * QD + rg + b].add(cr[:, a, b])
                    ZtZ = ZtZ.at[(rg + b) * QD + rf + a].add(cr[:, a, b])
    dense = Dense(ZtZ.reshape(QD, QD), jnp.concatenate(rows_xy, axis=0) if len(rows_xy) > 1 else rows_xy[0])
    Cs = []
    for x, f in enumerate(layout.dense_factors):
        Kp = op.pairs[x].a.shape[0]
        P = w[:, None] * op.Z[f]
        C = _seg(P[:, :, None] * op.Z[0][:, None, :], op.pair_of_row[x], Kp)  # (Kp, qf, qA)
        Cs.append(jnp.transpose(C, (1, 2, 0)))  # (qf, qA, Kp)
    out = dict(base, levels=(first,), dense=dense)
    qA, J = layout.q[0], layout.nlev[0]
    if plan.coupling == "dense":
        Cd = jnp.zeros((qA, J, QD), w.dtype)
        for x, f in enumerate(layout.dense_factors):
            pr = op.pairs[x]
            for r_ in range(layout.q[f]):
                Cd = Cd.at[:, pr.a, pr.row + r_].add(Cs[x][r_])
        return Stats(**out, coupling=DenseCoupling(Cd))
    coupling = tuple(Pairs(C, jnp.asarray(pr.a), jnp.asarray(pr.row)) for C, pr in zip(Cs, op.pairs))
    if plan.fill == "scalar":
        flat = jnp.concatenate([C[:, 0, :].reshape(-1) for C in Cs])
        s1, s2 = op.fill_src[0], op.fill_src[1]
        ok = s1 >= 0
        v = jnp.where(ok, flat[jnp.maximum(s1, 0)] * flat[jnp.maximum(s2, 0)], 0.0)
        fill = op.fill._replace(v=v)  # the map's indices and pattern as they are, these weights' values
    else:
        fill = op.fill
    return Stats(**out, coupling=coupling, fill=fill)


# ---------------------------------------------------------------------------------------------
# rows <-> random effects
# ---------------------------------------------------------------------------------------------
def linear_predictor_re(op: WeightedOp, b: tuple):
    """``Z b`` per row from ``b`` per factor (``(q_f, L_f)`` arrays)."""
    out = 0.0
    for f, bf in enumerate(b):
        out = out + jnp.sum(op.Z[f] * bf.T[op.codes[f]], axis=1)
    return out


def re_transpose(op: WeightedOp, v, layout: Layout) -> tuple:
    """``Z_f' v`` per factor as ``(q_f, L_f)`` arrays."""
    return tuple(jnp.moveaxis(_seg(op.Z[f] * v[:, None], op.codes[f], layout.nlev[f]), 0, -1)
                 for f in range(layout.nfactors))
