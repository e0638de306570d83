"""Sufficient statistics: one pass over the rows, after which no fit step touches them again.

Everything the engine needs is a sum over rows of products of the model's columns (``Z``,
``X``, ``y``; with prior weights ``w`` every product carries ``w_i``), grouped by levels or by
pairs of levels of the grouping factors. They are held in the *Z scale* (no theta in them), as
typed pytrees (NamedTuples) whose shape follows the :class:`~jaxhlm._src.stats.layout.Plan`:

* :class:`Level` — a batched factor: ``Z_j'Z_j (q,q,L)`` and ``Z_j'[X y] (q,p+1,L)`` per level;
* :class:`Link` — a nested chain: factor ``h``'s levels each inside one level of factor ``i``:
  ``Z_i'Z_h`` per level of ``h`` and that parent level;
* :class:`Dense` — the dense block of crossed designs: ``Z_D'Z_D``, ``Z_D'[X y]``;
* its coupling with the first factor: :class:`DenseCoupling` ``Z_A'Z_D`` per level of ``A``, or
  per dense factor a :class:`Pairs` list of the (A level, D level) pairs present, with one of
  the fill-in maps :class:`ScalarFill` (``q_A = 1``) or :class:`PairFill` (pairs of pairs).

Arrays are padded to bucketed sizes so that similar designs share compiled programs; padding
is zero and adds exactly nothing to any sum.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..base.memory import aligned_full, padded
from .fillmap import PairFill, ScalarFill, pair_fill, scalar_fill, scalar_pattern
from .layout import Layout, bucket
from .xform import _PRECONDITION
from .xform import Xform
from .xform import ROW_CHUNK, ScaledColumn, precondition_xy, preconditioner, raw_screen

__all__ = ["Level", "Link", "Dense", "DenseCoupling", "Pairs", "ScalarFill", "PairFill", "Stats", "Xform",
           "compute_stats", "preconditioner", "factor_Z", "y_columns", "transform_xy"]


class Level(NamedTuple):
    """Per-level blocks of a batched factor: ``ZtZ (q,q,L)``, ``ZtXy (q,p+1,L)``."""

    ZtZ: object
    ZtXy: object


class Link(NamedTuple):
    """Coupling of a chain factor ``h`` with a later one ``i``: ``C = Z_h'Z_i (q_h,q_i,L_h)`` per
    level of ``h``, and ``parent (L_h,)``: the level of ``i`` that holds it."""

    C: object
    parent: object


class Dense(NamedTuple):
    """The dense block: ``ZtZ (Q_D,Q_D)``, ``ZtXy (Q_D,p+1)``."""

    ZtZ: object
    ZtXy: object


class DenseCoupling(NamedTuple):
    """``C (q_A, J, Q_D)``: ``Z_A'Z_D`` for every level of the first factor."""

    C: object


class Pairs(NamedTuple):
    """The (A level, level of dense factor f) pairs: ``C (q_f,q_A,K)``, A level ``a (K,)``, and
    ``row (K,)``: the pair's first column in the dense block (sorted by ``a``, then level)."""

    C: object
    a: object
    row: object


class Stats(NamedTuple):
    """All sufficient statistics of a model (a pytree; the engine's data argument).

    ``levels``: the batched factors (the first; all of them for nested chains); ``links[h]``:
    the chain links of factor ``h`` with every later factor; ``dense``, ``coupling``, ``fill``:
    crossed designs only. ``logw = sum log w_i`` (0 without weights). ``xform``: the
    preconditioner of ``[X y]`` (:class:`Xform`; None: the identity). The engine never reads it.
    """

    n: object
    XytXy: object
    logw: object
    levels: tuple
    links: tuple = ()
    dense: object = None
    coupling: object = None
    fill: object = None
    xform: object = None


# ---------------------------------------------------------------------------------------------
# products of columns, summed by segment
# ---------------------------------------------------------------------------------------------
def factor_Z(design, f: int) -> np.ndarray:
    """The per-row random-effects values of all terms on factor ``f``, side by side."""
    mats = [td.Z for td in design.terms if td.factor == f]
    return mats[0] if len(mats) == 1 else np.concatenate(mats, axis=1)


def _columns(M) -> list:
    if isinstance(M, list):
        return M
    return [np.ascontiguousarray(M[:, j], dtype=np.float64) for j in range(M.shape[1])]


def _part(c, rows):
    return c.part(rows) if isinstance(c, ScaledColumn) else c[rows]


def _distinct_columns(*mats) -> tuple:
    """Label every column by content: equal columns share a label, -1 is all ones (a
    :class:`ScaledColumn` equals only itself)."""
    uniq: list = []
    labels = []
    seen: dict = {}  # id -> (label, column): a column passed again (Z with Z and with [X y]) is not
    # compared again; the column is held so that its id cannot pass to a temporary of _columns
    for M in mats:
        lab = []
        for c in _columns(M):
            if id(c) in seen:
                lab.append(seen[id(c)][0])
                continue
            if not isinstance(c, ScaledColumn) and c.size and c[0] == 1.0 and np.all(c == 1.0):
                lab.append(-1)
                seen[id(c)] = (-1, c)
                continue
            for k, u in enumerate(uniq):
                if u is c or (not isinstance(u, ScaledColumn) and not isinstance(c, ScaledColumn)
                              and np.array_equal(u, c)):
                    lab.append(k)
                    break
            else:
                uniq.append(c)
                lab.append(len(uniq) - 1)
            seen[id(c)] = (lab[-1], c)
        labels.append(lab)
    return uniq, labels


def _summed(codes, cols, w, out) -> None:
    """``out[s] = sum_{rows r: codes[r]=s} prod(cols)[r] w[r]`` (``out`` zero on entry),
    :data:`ROW_CHUNK` rows at a time: no product of full columns is ever formed, and up to that
    many rows the single pass gives the same bits."""
    n, nseg = len(codes), out.shape[-1]
    facs = list(cols) + ([] if w is None else [w])
    for start in range(0, n, ROW_CHUNK):
        rows = slice(start, min(n, start + ROW_CHUNK))
        v = None
        for c in facs:
            c = _part(c, rows)
            v = c if v is None else v * c
        out += np.bincount(codes[rows], weights=v, minlength=nseg)[:nseg]


def _zeros(shape) -> np.ndarray:
    """Zeros that XLA on the CPU reads in place (:mod:`jaxhlm._src.base.memory`): others are
    copied into every program call (80 MB per call for 1M levels of a random slope)."""
    return aligned_full(shape, 0.0)


def _segment_products(codes, nseg: int, pairs: list, w=None) -> list:
    """``out[i,j,s] = sum_{rows r: codes[r]=s} w_r U[r,i] V[r,j]`` for each ``(U, V, sym)``;
    each distinct product of columns summed once, straight into its place (an all-ones column
    costs a plain count)."""
    mats = [m for U, V, _ in pairs for m in (U, V)]
    uniq, labels = _distinct_columns(*mats)
    done: dict = {}  # (a, b) -> the row of an output that holds it
    outs = []
    for k, (U, V, sym) in enumerate(pairs):
        lu, lv = labels[2 * k], labels[2 * k + 1]
        out = _zeros((len(lu), len(lv), nseg))
        for i in range(len(lu)):
            for j in range(len(lv)):
                key = tuple(sorted((lu[i], lv[j])))
                if sym and j < i:
                    out[i, j] = out[j, i]
                elif key in done:
                    out[i, j] = done[key]
                else:
                    _summed(codes, [uniq[x] for x in key if x != -1], w, out[i, j])
                    done[key] = out[i, j]
        outs.append(out)
    return outs


def _row_parts(c):
    """The row slices over which a column is formed: all rows at once, or :data:`ROW_CHUNK` at
    a time for a long :class:`ScaledColumn`."""
    n = len(c.x) if isinstance(c, ScaledColumn) else len(c)
    if not isinstance(c, ScaledColumn) or n <= ROW_CHUNK:
        return [slice(None)]
    return [slice(s, s + ROW_CHUNK) for s in range(0, n, ROW_CHUNK)]


def _dot(A, c) -> np.ndarray:
    """``A' c`` for a column ``c``."""
    return sum(A[r].T @ _part(c, r) for r in _row_parts(c))


def _sumsq(c, w=None):
    """``sum_r w_r c_r^2``."""
    total = 0.0
    for r in _row_parts(c):
        v = _part(c, r)
        total = total + (v if w is None else v * w[r]) @ v
    return total


def _level_blocks(codes, L: int, Z, Xy, w) -> Level:
    ZZ, ZXy = _segment_products(codes, L, [(Z, Z, True), (Z, Xy, False)], w)
    return Level(ZZ, ZXy)


# ---------------------------------------------------------------------------------------------
# crossed designs: pairs, pairs of pairs, the scalar fill map
# ---------------------------------------------------------------------------------------------
def _pair_list(codes_a, codes_f, Lf: int, Zf, ZA, w) -> tuple:
    """The (A level, f level) pairs present in the rows, sorted, with ``C_k = Z_f'Z_A`` per pair."""
    key = codes_a.astype(np.int64) * Lf + codes_f
    ukey, inv = np.unique(key, return_inverse=True)
    C = _segment_products(inv.ravel(), len(ukey), [(Zf, ZA, False)], w)[0]  # (qf, qA, K)
    return C, ukey // Lf, ukey % Lf


# ---------------------------------------------------------------------------------------------
def y_columns(design, y=None, offset=True) -> np.ndarray:
    """The response the engine sees: ``y`` (default ``design.y``) less the offset."""
    y = design.y if y is None else y
    y = np.asarray(y, dtype=np.float64)
    off = getattr(design, "offset", None)
    if offset and off is not None:
        y = y - off
    return y


def compute_stats(design, layout: Layout, y: np.ndarray | None = None, precondition: bool | None = None) -> Stats:
    """One pass over the rows: the per-block cross-products the engine needs.

    Parameters
    ----------
    design : Design
    layout : Layout
    y : ndarray, optional
        A response replacing ``design.y`` (refits with the same design); the design's offset
        is subtracted from it as from ``design.y``.
    precondition : bool, optional
        Compute the statistics of the centred and scaled ``[X y]`` (:func:`preconditioner`),
        kept in ``Stats.xform``; False: of ``[X y]`` as it is. Default: the response
        always, the columns of ``X`` where :func:`needs_preconditioning` finds one with a large
        mean or an extreme magnitude (see also :func:`preconditioning`).

    Returns
    -------
    Stats
    """
    y = y_columns(design, y)
    w = getattr(design, "weights", None)
    w = None if w is None else np.asarray(w, dtype=np.float64)
    X = design.X
    on = _PRECONDITION[0] if precondition is None else bool(precondition)
    y = np.ascontiguousarray(y)
    Xw = X if w is None else X * w[:, None]
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):  # extreme columns: the screen sends them on
        XtX, Xty, yy = Xw.T @ X, _dot(Xw, y), _sumsq(y, w)  # raw: the screen reads them, and X often stays raw
    xform = raw_screen(X, y, w, XtX, Xty, yy) if on and precondition is None else None
    if xform is not None:  # the response scaled only (X'W y / s and y'W y / s^2 scaled in place)
        s = float(xform.s)
        Xty, yy = Xty / s, yy / (s * s)
        y = ScaledColumn(y, s) if len(y) > ROW_CHUNK else y / s
    elif on:  # a shifted or extreme column: the full preconditioner, and the products again
        xform, X, y = precondition_xy(X, y, w, True, columns=True if precondition else None, lazy=True)
        if not isinstance(y, ScaledColumn):
            y = np.ascontiguousarray(y)
        Xw = X if w is None else X * w[:, None]
        XtX, Xty, yy = Xw.T @ X, _dot(Xw, y), _sumsq(y, w)
    Xy = _columns(X) + [y]  # [X y] by columns, never joined
    p = XtX.shape[0]
    XytXy = np.empty((p + 1, p + 1))  # [[X'X, X'y], [y'X, y'y]] (np.block took 15 us of an 8k fit's 0.2 ms)
    XytXy[:p, :p], XytXy[:p, p], XytXy[p, :p], XytXy[p, p] = XtX, Xty, Xty, yy
    logw = np.float64(0.0) if w is None else np.float64(np.sum(np.log(w)))
    F, plan = layout.nfactors, layout.plan
    Zs = [_columns(factor_Z(design, f)) for f in range(F)]
    codes = [fac.codes for fac in design.factors]
    base = dict(n=np.float64(design.n), XytXy=XytXy, logw=logw, xform=xform)
    if plan.kind in ("one", "chain"):
        levels = tuple(_level_blocks(codes[f], layout.nlev[f], Zs[f], Xy, w) for f in range(F))
        links = []
        for h in range(F):
            row = []
            for i in range(h + 1, F):
                C = _segment_products(codes[h], layout.nlev[h], [(Zs[h], Zs[i], False)], w)[0]
                parent = np.zeros(layout.nlev[h], np.int64)
                parent[codes[h]] = codes[i]
                row.append(Link(C, parent))
            links.append(tuple(row))
        return Stats(**base, levels=levels, links=tuple(links) if F > 1 else ())
    # crossed: the first factor batched, the rest dense
    J, QD, offs = layout.nlev[0], layout.QD, layout.dense_offsets
    first = _level_blocks(codes[0], J, Zs[0], Xy, w)
    ZtZ = aligned_full((QD, QD), 0.0)  # (read in place by the programs: see base/memory.py)
    ZtXy = np.zeros((QD, len(Xy)))
    for f in layout.dense_factors:
        qf, Lf, of = layout.q[f], layout.nlev[f], offs[f]
        d, r = _segment_products(codes[f], Lf, [(Zs[f], Zs[f], True), (Zs[f], Xy, False)], w)
        idx = of + np.arange(Lf) * qf
        for a in range(qf):
            for b in range(qf):
                ZtZ[idx + a, idx + b] = d[a, b]
        ZtXy[of:of + Lf * qf] = r.transpose(2, 0, 1).reshape(Lf * qf, -1)
        for g in layout.dense_factors:
            if g >= f:
                break
            qg, Lg, og = layout.q[g], layout.nlev[g], offs[g]
            key = codes[f].astype(np.int64) * Lg + codes[g]
            uk, inv = np.unique(key, return_inverse=True)
            cr = _segment_products(inv.ravel(), len(uk), [(Zs[f], Zs[g], False)], w)[0]
            lf, lg = uk // Lg, uk % Lg
            for a in range(qf):
                for b in range(qg):
                    ZtZ[of + lf * qf + a, og + lg * qg + b] = cr[a, b]
                    ZtZ[og + lg * qg + b, of + lf * qf + a] = cr[a, b]
    pairs = []
    for f in layout.dense_factors:
        C, a, lev = _pair_list(codes[0], codes[f], layout.nlev[f], Zs[f], Zs[0], w)
        pairs.append((C, a, offs[f] + lev * layout.q[f]))
    out = dict(base, levels=(first,), dense=Dense(ZtZ, ZtXy))
    if plan.coupling == "dense":
        Cd = aligned_full((layout.q[0], J, QD), 0.0)
        for x, f in enumerate(layout.dense_factors):
            C, a, row = pairs[x]
            for r_ in range(layout.q[f]):
                Cd[:, a, row + r_] = C[r_]
        return Stats(**out, coupling=DenseCoupling(Cd))
    coupling = []
    for C, a, row in pairs:
        Kp = bucket(len(a))
        coupling.append(Pairs(padded(C, Kp), padded(a, Kp), padded(row, Kp)))
    fill = scalar_fill(pairs, layout) if plan.fill == "scalar" else pair_fill(pairs, layout)
    if plan.fill == "scalar" and all(layout.q[f] == 1 for f in layout.dense_factors):
        fill = scalar_pattern(fill, ZtZ, QD)
    return Stats(**out, coupling=tuple(coupling), fill=fill)


def describe_blocks(design, layout: Layout, stats: Stats):
    """One row per block of the lower triangle of L: rows, columns, storage, size (a DataFrame).

    Storage names the block's type (and so its kernel): ``BlkDiag`` (batched ``q x q`` blocks,
    one per level), ``Sparse`` (pairs of levels), ``Dense``.
    """
    import pandas as pd

    fs = design.factors
    plan = layout.plan
    rows = []
    if plan.kind in ("one", "chain"):
        for h, fac in enumerate(fs):
            rows.append((fac.name, fac.name, "BlkDiag", f"{fac.nlevels} blocks of {layout.q[h]}x{layout.q[h]}"))
            for i in range(h + 1, len(fs)):
                rows.append((fs[i].name, fac.name, "Sparse",
                             f"{fac.nlevels} blocks of {layout.q[i]}x{layout.q[h]} (nested: one per level)"))
    else:
        A = fs[0]
        rows.append((A.name, A.name, "BlkDiag", f"{A.nlevels} blocks of {layout.q[0]}x{layout.q[0]}"))
        for x, f in enumerate(layout.dense_factors):
            Q = fs[f].nlevels * layout.q[f]
            if plan.coupling == "dense":
                rows.append((fs[f].name, A.name, "Dense", f"{Q}x{A.nlevels * layout.q[0]}"))
            else:
                K = int(np.sum(np.any(np.asarray(stats.coupling[x].C) != 0, axis=(0, 1))))
                rows.append((fs[f].name, A.name, "Sparse", f"{K} nonzero {layout.q[f]}x{layout.q[0]} blocks"))
            for g in layout.dense_factors:
                if g > f:
                    break
                rows.append((fs[f].name, fs[g].name, "Dense",
                             f"{Q}x{fs[g].nlevels * layout.q[g]} (part of a {layout.QD}x{layout.QD} dense block)"))
    rows.append(("[X y]", "all", "Dense", f"{layout.p + 1} columns"))
    return pd.DataFrame(rows, columns=["rows", "columns", "storage", "size"])


def transform_xy(stats: Stats, M, xp=None) -> Stats:
    """The statistics of ``[X y] M`` (a linear map of the columns of ``[X y]``; traceable).

    Only the ``[X y]`` parts change: ``Z'[X y] M`` per level and in the dense block,
    ``M' [X y]'[X y] M``.
    """
    if xp is None:
        import jax.numpy as xp
    levels = tuple(Level(lv.ZtZ, xp.einsum("qcj,cd->qdj", lv.ZtXy, M)) for lv in stats.levels)
    out = stats._replace(levels=levels, XytXy=M.T @ stats.XytXy @ M)
    if stats.dense is not None:
        out = out._replace(dense=Dense(stats.dense.ZtZ, stats.dense.ZtXy @ M))
    return out


