"""The fill-in maps of crossed designs: which products of the first factor's coupling with the
dense block land where in ``Z_D'Z_A W Z_A'Z_D``, built once per design on the host.

For a first factor ``A`` crossed with the dense factors ``D``, the coupling ``Z_D'Z_A`` is held
as sorted lists of the (A level, D row) pairs present in the data (:func:`~jaxhlm._src.stats.
suffstats.compute_stats`). The fill-in of the dense block is then ``sum_a c_a W_a c_a'`` over
the A levels (``c_a``: level a's column of ``Z_D'Z_A``):

* :class:`ScalarFill` (``q_A = 1``, ``W_a`` scalar): every upper-triangle entry as
  (destination, level, value), sorted by destination (one gather and one sorted segment sum
  per evaluation);
* :class:`PairFill`: the pairs of pairs of every pair of dense factors, sorted by destination.

These are the largest arrays of a crossed fit (39M entries for 1M ratings of 20k users x 2k
items); their construction is written for memory traffic: int32 indices, no masks where the
pair order already decides the triangle, one packed sort.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..base.memory import as_aligned, padded
from .layout import Layout, bucket

__all__ = ["ScalarFill", "PairFill", "fill_entries", "scalar_fill", "scalar_pattern", "pair_fill", "upper_pairs", "pairs_of_pairs", "sort_fill"]


class ScalarFill(NamedTuple):
    """``Z_D'Z_A W Z_A'Z_D`` for scalar ``W_a`` as a sparse map: upper-triangle entries with
    flat destination ``d`` (sorted), A level ``a`` and value ``v``: ``sum_m v_m W[a_m] e_{d_m}``.

    With scalar dense factors (:func:`scalar_pattern`), the block's nonzero pattern as well:
    ``up`` the flat upper-triangle index of each slot (sorted; the fill's destinations, the
    nonzeros of ``Z_D'Z_D`` and the diagonal; padding slots ``QD * QD``, past the end), ``lo``
    its mirror below the diagonal, and ``slot`` the slot of each entry."""

    d: object
    a: object
    v: object
    slot: object = None
    up: object = None
    lo: object = None


class PairFill(NamedTuple):
    """Pairs of pairs sharing an A level, for dense factors ``f <= g``: per (f, g) the pair
    indices ``i``, ``j`` and the flat destination ``d`` of the block's (0, 0) entry (sorted)."""

    i: tuple
    j: tuple
    d: tuple


def pairs_of_pairs(a_f: np.ndarray, a_g: np.ndarray) -> tuple:
    """All (k, k') with ``a_f[k] == a_g[k']`` (indices into the two pair lists)."""
    of = np.argsort(a_f, kind="stable")
    og = np.argsort(a_g, kind="stable")
    af, ag = a_f[of], a_g[og]
    keys = np.union1d(af, ag)
    sf = np.searchsorted(af, keys, "left"), np.searchsorted(af, keys, "right")
    sg = np.searchsorted(ag, keys, "left"), np.searchsorted(ag, keys, "right")
    cf, cg = sf[1] - sf[0], sg[1] - sg[0]
    tot = cf * cg
    m = int(tot.sum())
    if m == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    grp = np.repeat(np.arange(len(keys)), tot)
    local = np.arange(m) - np.repeat(np.cumsum(tot) - tot, tot)
    return of[sf[0][grp] + local // cg[grp]], og[sg[0][grp] + local % cg[grp]]


def upper_pairs(a: np.ndarray) -> tuple:
    """All ``(k, k')`` with ``k <= k'`` and ``a[k] == a[k']``, for sorted ``a`` (int32 when the
    indices fit: these lists are the largest arrays of a crossed fit)."""
    K = len(a)
    it = _index_type(K)
    if K == 0:
        return np.zeros(0, it), np.zeros(0, it)
    start = np.flatnonzero(np.r_[True, a[1:] != a[:-1]])
    size = np.diff(np.r_[start, K])
    pos = np.arange(K, dtype=it) - np.repeat(start, size).astype(it)
    emit = np.repeat(size, size).astype(it) - pos
    i = np.repeat(np.arange(K, dtype=it), emit)
    # j = i + (position within i's run of emits)
    first = np.cumsum(emit, dtype=np.int64) - emit
    j = np.arange(len(i), dtype=np.int64)
    j -= np.repeat(first, emit)
    j += i
    return i, j.astype(it, copy=False)


def _index_type(limit: int):
    return np.int32 if limit < 2**31 else np.int64


def _bits(n: int) -> int:
    return max(int(n) - 1, 1).bit_length()


def sort_fill(d, lev, val, n_dest: int, n_lev: int, it):
    """``(d, lev, val)`` sorted by ``d``, ties in their order (stable).

    Entries of one destination have distinct levels, generated in level order, so the result is
    also the order of ``(d, lev)``. With no more destinations than about twice the entries, a
    counting sort: SciPy's COO -> CSR conversion of the ``destination x level`` matrix (linear
    in the entries and destinations; within a destination its levels stay in order, so no sort
    follows it): 0.75 instead of 5.7 s for the 39M entries of the MovieLens-shaped fill map.
    Otherwise the keys are packed into one int64 with the level and the position,
    ``d | lev | k``, and sorted once: the sorted destinations and levels are read off the keys and
    only the values are gathered (not at all when they are all 1, as for unit columns); 4x
    faster than ``argsort`` and three gathers, which remains for keys too wide to pack."""
    m = len(d)
    ones = val is None
    if n_dest <= 2 * m + (1 << 20):
        import scipy.sparse

        M = scipy.sparse.coo_array((np.ones(m) if ones else val, (d, lev)), shape=(n_dest, n_lev)).tocsr()
        D = np.repeat(np.arange(n_dest, dtype=it), np.diff(M.indptr))
        return D, M.indices.astype(it, copy=False), M.data
    bk, bl, bd = _bits(m), _bits(n_lev), _bits(n_dest)
    if bd + bl + (0 if ones else bk) <= 63:
        key = d.astype(np.int64) << (bl + (0 if ones else bk))
        key |= lev.astype(np.int64) << (0 if ones else bk)
        if not ones:
            key |= np.arange(m, dtype=np.int64)
        key.sort()
        sh = 0 if ones else bk
        D = (key >> (bl + sh)).astype(it)
        A = ((key >> sh) & ((1 << bl) - 1)).astype(it)
        V = np.ones(m) if ones else val[key & ((1 << bk) - 1)]
        return D, A, V
    order = np.argsort(d, kind="stable")
    return d[order].astype(it), lev[order].astype(it), (np.ones(m) if ones else val[order])


def fill_entries(pairs: list, layout: Layout):
    """The upper-triangle entries of ``sum_a c_a W_a c_a'`` block by block, in the fill map's
    generation order: yields ``(x, y, r_, c_, i, j)`` for dense factors ``x <= y`` and their
    columns ``r_``, ``c_``, with ``i``, ``j`` the indices of the two pairs (into the pair lists
    ``pairs[x]``, ``pairs[y]``) of each entry, whose row is ``rows_x[i] + r_`` and column
    ``rows_y[j] + c_``. The one owner of that order (:func:`scalar_fill`, and the weighted
    statistics' sources of each entry).

    The pair lists are sorted by A level, then by row
    (:func:`~jaxhlm._src.stats.suffstats._pair_list`), so within one dense factor ``k < k'`` of
    the same level has row ``r_k + q <= r_k'``: only the pairs ``k = k'`` need the test
    ``r <= c`` (kept when ``r_ <= c_``); across factors the later factor's rows come after."""
    for x, (_, af, _) in enumerate(pairs):
        f = layout.dense_factors[x]
        for y in range(x, len(pairs)):
            g = layout.dense_factors[y]
            i, j = upper_pairs(af) if y == x else pairs_of_pairs(af, pairs[y][1])
            strict = (i < j) if y == x else None
            for r_ in range(layout.q[f]):
                for c_ in range(layout.q[g]):
                    if y == x and r_ > c_:
                        yield x, y, r_, c_, i[strict], j[strict]
                    else:
                        yield x, y, r_, c_, i, j


def scalar_fill(pairs: list, layout: Layout) -> ScalarFill:
    """Upper triangle of ``sum_a W_a c_a c_a'`` (``c_a``: the ``Z_D'Z_A`` column of level a) as
    entries (destination, level, value) in :func:`fill_entries`' order, sorted by destination:
    one gather and one sorted segment sum per evaluation (2.5x faster per evaluation than
    unsorted destinations)."""
    QD = layout.QD
    it = _index_type(QD * QD)
    ones = all(np.all(C == 1.0) for C, _, _ in pairs)  # unit columns: every value is 1
    rows = [r.astype(it) for _, _, r in pairs]
    levs = [a.astype(it) for _, a, _ in pairs]
    dests, levels, vals = [], [], []
    for x, y, r_, c_, i, j in fill_entries(pairs, layout):
        d = rows[x][i] * it(QD)
        d += rows[y][j]
        d += it(r_ * QD + c_)
        dests.append(d)
        levels.append(levs[x][i])
        if not ones:
            vals.append(pairs[x][0][r_, 0][i] * pairs[y][0][c_, 0][j])
    cat = lambda parts: parts[0] if len(parts) == 1 else np.concatenate(parts)  # noqa: E731
    d, lv = cat(dests), cat(levels)
    del dests, levels
    D0, A0, V0 = sort_fill(d, lv, None if ones else cat(vals), QD * QD, layout.nlev[0], it)
    del d, lv, vals
    mp = bucket(len(D0))  # padding: the last destination, level 0, no value (aligned: base/memory.py)
    return ScalarFill(padded(D0, mp, QD * QD - 1, it), padded(A0, mp, 0, it), padded(V0, mp, 0.0))


def scalar_pattern(fill: ScalarFill, ZtZ: np.ndarray, QD: int) -> ScalarFill:
    """``fill`` with the dense block's nonzero pattern (slots, see :class:`ScalarFill`): with
    scalar dense factors ``M_D = I + s s' o (Z_D'Z_D - fill)`` is zero off the pattern, so the
    engine forms it from the slots' values (one segment sum into the slots, two placements)
    instead of passes over the whole ``QD x QD`` block (InstEval: 130k slots of 1.27M)."""
    n = QD * QD
    D = np.asarray(fill.d)
    it = D.dtype if n < np.iinfo(D.dtype).max else np.int64
    start = np.flatnonzero(np.r_[True, D[1:] != D[:-1]])  # D is sorted: its distinct values
    dest = D[start].astype(np.int64)
    extra = np.union1d(np.arange(QD, dtype=np.int64) * (QD + 1), np.flatnonzero(np.triu(np.asarray(ZtZ))))
    pos = np.searchsorted(dest, extra)  # (D is padded, never empty)
    new = ~((pos < len(dest)) & (dest[np.minimum(pos, len(dest) - 1)] == extra))
    P = np.insert(dest, pos[new], extra[new])  # a merge of two sorted lists
    slot = as_aligned(np.repeat(np.searchsorted(P, dest).astype(it), np.diff(np.r_[start, len(D)])))
    mp = bucket(len(P))
    return fill._replace(slot=slot, up=padded(P, mp, n, it), lo=padded((P % QD) * QD + P // QD, mp, n, it))


def pair_fill(pairs: list, layout: Layout) -> PairFill:
    """Pairs of pairs for every ``f <= g`` (all orders for ``f == g``), sorted by destination."""
    QD = layout.QD
    I, Jl, Dl = [], [], []
    for x, (Cf, af, rf) in enumerate(pairs):
        for y in range(x, len(pairs)):
            Cg, ag, rg = pairs[y]
            i, j = pairs_of_pairs(af, ag)
            dest = rf[i] * QD + rg[j]
            order = np.argsort(dest, kind="stable")
            i, j, dest = i[order], j[order], dest[order]
            mp = bucket(len(i))
            I.append(padded(i, mp, 0, np.int64))
            Jl.append(padded(j, mp, 0, np.int64))
            dp = padded(dest, mp, QD * QD, np.int64)  # padding entries fall outside and are dropped
            Dl.append(dp)
    return PairFill(tuple(I), tuple(Jl), tuple(Dl))


# ---------------------------------------------------------------------------------------------
# the statistics
