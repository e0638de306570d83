"""Sufficient statistics: one pass over the rows, after which no fit step touches them again.

Block structure (lme4's PLS, Bates et al. 2015, sect. 3; MixedModels.jl's blocked L)
---------------------------------------------------------------------------------
Random-effect terms are merged per grouping factor; factor ``A`` (the first, with most levels)
gives the leading diagonal block of ``Lambda' Z'Z Lambda + I``, which is block diagonal with one
``qA x qA`` block per level and is kept *batched* (structure of arrays, shape ``(qA, qA, J)``).
All other factors ("B", ``QB = sum_f L_f q_f`` columns) form a second block that is held dense;
the coupling ``Z_B'Z_A`` is held sparse as a list of (A level, B level) *pairs*, and the Schur
complement update ``L_BA L_BA'`` as a list of pairs of pairs sharing an A level. For nested
designs every A level pairs with one level of each outer factor, so the sparse parts are O(J).

    [ L_A      0    0  ]   rows: A levels (batched), B columns (dense), [X y] (dense, p+1)
    [ L_BA    L_B   0  ]
    [ R_ZXA'  R_ZXB' L_X ]

Arrays (padded to bucketed sizes so that similar designs reuse compiled code; zero padding
adds exactly nothing to any sum):
  ``A_ZtZ (qA,qA,J)``, ``A_ZtXy (qA,p+1,J)``, ``XytXy (p+1,p+1)``, ``n``;
  for B: ``B_ZtZ (QB,QB)``, ``B_ZtXy (QB,p+1)``, per B factor ``f``: ``C (q_f,qA,K_f)`` with
  pair indices ``Ca, Cl``; per ordered factor pair ``(f, g)``: pair-of-pair indices.

Two special layouts replace parts of this:
  * scalar first factor (``qA = 1``): instead of pair-of-pair lists, the fill-in as a sparse map
    of the level weights, ``Qd, Qa, Qv`` (:func:`_scalar_a_products`);
  * first factor nested in a single second one (``Structure.b_diag``): ``B_blk (qB,qB,L_B)``
    per level instead of the dense ``B_ZtZ``, and no pairs of pairs at all (:func:`_nested_stats`).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

__all__ = ["Structure", "build_structure", "compute_stats", "bucket"]


def bucket(n: int, minimum: int = 8) -> int:
    """Round ``n`` up to the next of 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, ... (<= 25% padding)."""
    n = max(int(n), 1)
    if n <= minimum:
        return minimum
    e = 2 ** (int(math.log2(n)) - 2)
    return int(math.ceil(n / e) * e)


@dataclasses.dataclass(frozen=True)
class Structure:
    """Static (hashable) description of a model's block structure; a jit static argument.

    Fields
    ------
    p : int
        Number of fixed effects.
    q : tuple of int
        Random effects per level, per grouping factor (factor 0 is the batched block A).
    nlev : tuple of int
        Levels per factor (for A the padded count).
    theta_factor, theta_row, theta_col : tuple of int
        Position in ``T_f`` (lower triangular ``q_f x q_f``) of each element of theta.
    b_diag : bool
        Two factors, the first nested in the second (every level of A within one level of B,
        e.g. classes in schools): the B block is then block diagonal, one ``q_B x q_B`` block
        per level, and is kept batched like A (cost O(levels), not O(levels^3)).
    """

    p: int
    q: tuple
    nlev: tuple
    theta_factor: tuple
    theta_row: tuple
    theta_col: tuple
    b_diag: bool = False

    @property
    def nfactors(self) -> int:
        return len(self.q)

    @property
    def ntheta(self) -> int:
        return len(self.theta_factor)

    @property
    def b_offsets(self) -> tuple:
        """Column offset of each B factor inside the dense B block (None for A)."""
        out, o = [None], 0
        for f in range(1, self.nfactors):
            out.append(o)
            o += self.nlev[f] * self.q[f]
        return tuple(out)

    @property
    def QB(self) -> int:
        return sum(self.nlev[f] * self.q[f] for f in range(1, self.nfactors))

    def theta_is_diag(self) -> np.ndarray:
        return np.array([r == c for r, c in zip(self.theta_row, self.theta_col)])


def factor_columns(design) -> list:
    """For each factor: list of (term index, column offset within the factor's block)."""
    out = [[] for _ in design.factors]
    sizes = [0] * len(design.factors)
    for i, td in enumerate(design.terms):
        out[td.factor].append((i, sizes[td.factor]))
        sizes[td.factor] += td.p
    return out


def term_offsets(design) -> dict:
    """Column offset of each term (by index in ``design.terms``) inside its factor's block."""
    return {i: off for lst in factor_columns(design) for i, off in lst}


def build_structure(design, pad: bool = True) -> Structure:
    """Theta layout in lme4's order: per term, the lower triangle of its block, column-major."""
    fcols = factor_columns(design)
    offset_of_term = {}
    q = []
    for f, lst in enumerate(fcols):
        q.append(sum(design.terms[i].p for i, _ in lst))
        for i, off in lst:
            offset_of_term[i] = off
    tf, tr, tc = [], [], []
    for i, td in enumerate(design.terms):
        off = offset_of_term[i]
        for c in range(td.p):
            for r in range(c, td.p):
                tf.append(td.factor)
                tr.append(off + r)
                tc.append(off + c)
    nlev = [f.nlevels for f in design.factors]
    if pad:
        nlev[0] = bucket(nlev[0])
    return Structure(p=design.p, q=tuple(q), nlev=tuple(nlev), theta_factor=tuple(tf), theta_row=tuple(tr),
                     theta_col=tuple(tc), b_diag=is_nested(design))


def is_nested(design) -> bool:
    """Two grouping factors, every level of the first within a single level of the second."""
    if len(design.factors) != 2:
        return False
    a, b = design.factors[0].codes, design.factors[1].codes
    if len(a) == 0 or len(a) != len(b):  # no rows held (out-of-core designs): not known here
        return False
    owner = np.full(design.factors[0].nlevels, -1, np.int64)
    owner[a] = b  # (any row's B level; nested iff all rows agree)
    return bool(np.all(owner[a] == b))


def _factor_Z(design, f: int) -> np.ndarray:
    mats = [td.Z for td in design.terms if td.factor == f]
    return mats[0] if len(mats) == 1 else np.concatenate(mats, axis=1)


def _columns(M) -> list:
    """A matrix as a list of contiguous columns (a list of columns is returned as is)."""
    if isinstance(M, list):
        return M
    return [np.ascontiguousarray(M[:, j]) for j in range(M.shape[1])]


def _distinct_columns(*mats) -> tuple:
    """Label every column of ``mats`` by content: equal columns share a label, -1 is all ones."""
    uniq: list = []
    labels = []
    for M in mats:
        lab = []
        for c in _columns(M):
            if c.size and c[0] == 1.0 and np.all(c == 1.0):
                lab.append(-1)
                continue
            for k, u in enumerate(uniq):
                if np.array_equal(u, c):
                    lab.append(k)
                    break
            else:
                uniq.append(c)
                lab.append(len(uniq) - 1)
        labels.append(lab)
    return uniq, labels


def _segment_cross(codes: np.ndarray, nseg: int, U: np.ndarray, V: np.ndarray, sym: bool) -> np.ndarray:
    """``out[i, j, s] = sum_{rows r with codes[r]==s} U[r,i] V[r,j]`` via bincount."""
    return _segment_products(codes, nseg, [(U, V, sym)])[0]


def _segment_products(codes: np.ndarray, nseg: int, pairs: list) -> list:
    """:func:`_segment_cross` for several ``(U, V, sym)`` on the same ``codes``, each distinct
    product of columns summed once (for ``Z = [1, x]`` and ``[X y] = [1, x, y]`` that is 5
    sums instead of 9; an all-ones column costs a plain count)."""
    mats = [m for U, V, _ in pairs for m in (U, V)]
    uniq, labels = _distinct_columns(*mats)
    done: dict = {}

    def product(a, b):
        a, b = sorted((a, b))
        if (a, b) not in done:
            if a == -1 and b == -1:
                w = None
            elif a == -1:
                w = uniq[b]
            else:
                w = uniq[a] * uniq[b]
            done[(a, b)] = np.bincount(codes, weights=w, minlength=nseg)[:nseg].astype(np.float64, copy=False)
        return done[(a, b)]

    outs = []
    for k, (U, V, sym) in enumerate(pairs):
        lu, lv = labels[2 * k], labels[2 * k + 1]
        out = np.zeros((len(lu), len(lv), nseg))
        for i in range(len(lu)):
            for j in range(len(lv)):
                out[i, j] = out[j, i] if (sym and j < i) else product(lu[i], lv[j])
        outs.append(out)
    return outs


def _pairs_of_pairs(a_f: np.ndarray, a_g: np.ndarray, pad_to: int | None = None) -> tuple:
    """All (k, k') with a_f[k] == a_g[k'] (indices into the two pair lists)."""
    of = np.argsort(a_f, kind="stable")
    og = np.argsort(a_g, kind="stable")
    af, ag = a_f[of], a_g[og]
    keys = np.union1d(af, ag)
    sf = np.searchsorted(af, keys, "left"), np.searchsorted(af, keys, "right")
    sg = np.searchsorted(ag, keys, "left"), np.searchsorted(ag, keys, "right")
    cf = sf[1] - sf[0]
    cg = sg[1] - sg[0]
    tot = cf * cg
    m = int(tot.sum())
    if m == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    grp = np.repeat(np.arange(len(keys)), tot)
    start = np.repeat(np.cumsum(tot) - tot, tot)
    local = np.arange(m) - start
    i = local // cg[grp]
    j = local % cg[grp]
    return of[sf[0][grp] + i], og[sg[0][grp] + j]


def _upper_pairs(a: np.ndarray) -> tuple:
    """All ``(k, k')`` with ``k <= k'`` and ``a[k] == a[k']``, for ``a`` sorted (pairs sorted by
    A level, then B level, as :func:`compute_stats` makes them): the upper triangle directly."""
    K = len(a)
    if K == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    start = np.flatnonzero(np.r_[True, a[1:] != a[:-1]])
    size = np.diff(np.r_[start, K])
    pos = np.arange(K) - np.repeat(start, size)  # position within its A level
    emit = np.repeat(size, size) - pos  # partners at or after it
    i = np.repeat(np.arange(K), emit)
    first = np.cumsum(emit) - emit
    j = i + (np.arange(len(i)) - np.repeat(first, emit))
    return i, j


def _scalar_a_products(pairs: list, struct: Structure) -> dict:
    """The fill-in of a scalar first factor as one sparse linear map of its level weights.

    With ``q_A = 1``, ``L_BA L_BA' = t_A^2 Lambda_B' Q(w) Lambda_B`` where ``w_a = 1/(t_A^2 n_a + 1)``
    and ``Q(w) = sum_a w_a c_a c_a'`` (``c_a``: the ``Z_B'Z_A`` column of level ``a``) does not
    otherwise depend on theta. ``Q``'s upper triangle is stored as entries
    ``(Qd: flat destination, Qa: A level, Qv: c_a[r] c_a[s])`` sorted by destination, so that
    ``Q(w)`` is one gather and one sorted segment sum, and its reverse pass one sequential gather
    and a scatter into the ``J`` weights. (Upper triangle: half the entries; ``Q = U + U' - diag``.)
    """
    QB = struct.QB
    offs = struct.b_offsets
    dests, levels, vals = [], [], []
    for f in range(1, struct.nfactors):
        Cf, caf, clf, Kf = pairs[f]
        for g in range(f, struct.nfactors):
            Cg, cag, clg, Kg = pairs[g]
            i, j = _upper_pairs(caf[:Kf]) if g == f else _pairs_of_pairs(caf[:Kf], cag[:Kg])
            qf, qg = struct.q[f], struct.q[g]
            for a in range(qf):
                r = offs[f] + clf[i] * qf + a
                for b in range(qg):
                    c = offs[g] + clg[j] * qg + b
                    keep = r <= c
                    dests.append(r[keep] * QB + c[keep])
                    levels.append(caf[i[keep]])
                    vals.append(Cf[a, 0, i[keep]] * Cg[b, 0, j[keep]])
    d = np.concatenate(dests)
    order = np.argsort(d.astype(np.int32) if QB * QB < 2**31 else d)
    m = len(d)
    mp = bucket(m)
    itype = np.int32 if QB * QB < 2**31 else np.int64
    Qd = np.full(mp, QB * QB - 1, itype)
    Qa = np.zeros(mp, itype)
    Qv = np.zeros(mp)
    Qd[:m] = d[order]
    Qa[:m] = np.concatenate(levels)[order]
    Qv[:m] = np.concatenate(vals)[order]
    return {"Qd": Qd, "Qa": Qa, "Qv": Qv}


def _nested_stats(design, struct: Structure, stats: dict, Xy: list, ZA: list) -> dict:
    """Statistics of a nested two-factor design (``struct.b_diag``): the B block per level,
    ``B_blk (q_B,q_B,L_B)``, ``B_ZtXy (Q_B,p+1)`` and the (A level, B level) pairs, one per A level."""
    fA, fB = design.factors
    qB, LB = struct.q[1], struct.nlev[1]
    ZB = _columns(_factor_Z(design, 1))
    blk, r = _segment_products(fB.codes, LB, [(ZB, ZB, True), (ZB, Xy, False)])
    stats["B_blk"] = blk
    stats["B_ZtXy"] = r.transpose(2, 0, 1).reshape(LB * qB, -1)
    stats["C1"], stats["Ca1"], stats["Cl1"], _ = _pair_list(fA.codes, fB.codes, LB, ZB, ZA)
    return stats


def _pair_list(codes_a, codes_f, Lf: int, Zf, ZA) -> tuple:
    """The (A level, factor-f level) pairs present in the rows, with ``C_k = Z_f'Z_A`` per pair.

    Returns ``C (q_f, q_A, K_padded)``, the A levels ``ca`` and f levels ``cl`` of the pairs
    (sorted by A level, then f level; padding: zero blocks at level 0) and ``K``.
    """
    key = codes_a * Lf + codes_f
    ukey, inv = np.unique(key, return_inverse=True)
    K = len(ukey)
    C = _segment_cross(inv.ravel(), K, Zf, ZA, sym=False)  # (qf,qA,K)
    Kp = bucket(K)
    Cp = np.zeros(C.shape[:2] + (Kp,))
    Cp[:, :, :K] = C
    ca = np.zeros(Kp, np.int64)
    cl = np.zeros(Kp, np.int64)
    ca[:K] = ukey // Lf
    cl[:K] = ukey % Lf
    return Cp, ca, cl, K


def compute_stats(design, struct: Structure, y: np.ndarray | None = None, scalar_a: bool = True) -> dict:
    """One pass over the rows: the per-block cross-products the deviance needs.

    Parameters
    ----------
    design : Design
    struct : Structure
    y : ndarray, optional
        A response replacing ``design.y`` (for refits with the same design).
    scalar_a : bool, default True
        With a scalar first factor, store the fill-in as :func:`_scalar_a_products` (faster);
        ``False`` keeps the general pairs-of-pairs lists (used to cross-check the two).

    Returns
    -------
    dict of numpy arrays (a pytree; see the module docstring for the layout).
    """
    y = design.y if y is None else y
    X = design.X
    Xy = _columns(X) + [np.ascontiguousarray(y, dtype=np.float64)]  # [X y] by columns, never joined
    XtX, Xty = X.T @ X, X.T @ y
    XytXy = np.block([[XtX, Xty[:, None]], [Xty[None, :], np.array([[y @ y]])]])
    fA = design.factors[0]
    JA = struct.nlev[0]
    ZA = _columns(_factor_Z(design, 0))
    AZZ, AZXy = _segment_products(fA.codes, JA, [(ZA, ZA, True), (ZA, Xy, False)])
    stats = {
        "A_ZtZ": AZZ,
        "A_ZtXy": AZXy,
        "XytXy": XytXy,
        "n": np.float64(design.n),
    }
    if struct.nfactors == 1:
        return stats
    if struct.b_diag:
        return _nested_stats(design, struct, stats, Xy, ZA)
    QB = struct.QB
    offs = struct.b_offsets
    BZtZ = np.zeros((QB, QB))
    BZtXy = np.zeros((QB, len(Xy)))
    Zs = [None] + [_factor_Z(design, f) for f in range(1, struct.nfactors)]
    pairs = [None]
    for f in range(1, struct.nfactors):
        ff = design.factors[f]
        qf, Lf, of = struct.q[f], struct.nlev[f], offs[f]
        # within-factor block (block diagonal) and right-hand side
        d, r = _segment_products(ff.codes, Lf, [(Zs[f], Zs[f], True), (Zs[f], Xy, False)])  # (qf,qf,Lf), (qf,p+1,Lf)
        for lv in range(qf):
            for lw in range(qf):
                idx = of + np.arange(Lf) * qf
                BZtZ[idx + lv, idx + lw] = d[lv, lw]
        BZtXy[of:of + Lf * qf] = r.transpose(2, 0, 1).reshape(Lf * qf, -1)
        # coupling with A: pairs (a, l)
        Cp, ca, cl, K = _pair_list(fA.codes, ff.codes, Lf, Zs[f], ZA)
        pairs.append((Cp, ca, cl, K))
        stats[f"C{f}"] = Cp
        stats[f"Ca{f}"] = ca
        stats[f"Cl{f}"] = cl
        # crossings among B factors
        for g in range(1, f):
            fg = design.factors[g]
            qg, Lg, og = struct.q[g], struct.nlev[g], offs[g]
            key2 = ff.codes * Lg + fg.codes
            uk2, inv2 = np.unique(key2, return_inverse=True)
            cr = _segment_cross(inv2.ravel(), len(uk2), Zs[f], Zs[g], sym=False)  # (qf,qg,K2)
            lf, lg = uk2 // Lg, uk2 % Lg
            for i in range(qf):
                for j in range(qg):
                    BZtZ[of + lf * qf + i, og + lg * qg + j] = cr[i, j]
                    BZtZ[og + lg * qg + j, of + lf * qf + i] = cr[i, j]
    stats["B_ZtZ"] = BZtZ
    stats["B_ZtXy"] = BZtXy
    if struct.q[0] == 1 and scalar_a:
        stats.update(_scalar_a_products(pairs, struct))
        return stats
    # pairs of pairs sharing an A level, for every ordered pair of B factors
    for f in range(1, struct.nfactors):
        for g in range(1, struct.nfactors):
            Cf, caf, _, Kf = pairs[f]
            Cg, cag, _, Kg = pairs[g]
            i, j = _pairs_of_pairs(caf[:Kf], cag[:Kg])
            # destination of entry (0, 0) of each pair-of-pairs block in the flattened QB x QB
            # matrix; sorted, so the scatter-add runs with sorted indices (much faster on CPU)
            clf, clg = pairs[f][2], pairs[g][2]
            qf, qg = struct.q[f], struct.q[g]
            dest = (offs[f] + clf[i] * qf) * QB + offs[g] + clg[j] * qg
            order = np.argsort(dest, kind="stable")
            i, j, dest = i[order], j[order], dest[order]
            m = len(i)
            mp = bucket(m)
            # padded entries point at a padded (all-zero) pair when one exists, else their product is masked
            ip = np.full(mp, Kf if Kf < len(caf) else 0, np.int64)
            jp = np.full(mp, Kg if Kg < len(cag) else 0, np.int64)
            dp = np.full(mp, QB * QB - 1 - (qf - 1) * QB - (qg - 1), np.int64)
            mask = np.zeros(mp)
            ip[:m], jp[:m], dp[:m], mask[:m] = i, j, dest, 1.0
            stats[f"PPi{f}_{g}"] = ip
            stats[f"PPj{f}_{g}"] = jp
            stats[f"PPd{f}_{g}"] = dp
            stats[f"PPpi{f}_{g}"] = np.argsort(ip, kind="stable")
            stats[f"PPpj{f}_{g}"] = np.argsort(jp, kind="stable")
            stats[f"PPm{f}_{g}"] = mask
    return stats
