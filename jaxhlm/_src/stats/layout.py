"""The model's static layout: grouping factors, the theta -> T map, and the plan of the factor L.

This module is the one owner of the theta layout (names, positions in the relative covariance
factors ``T_f``, lower bounds, sign rectification, the lifted start for zero components) and of
the decision, made once per design, of how the blocked Cholesky factor of

    Lambda' Z'Z Lambda + I        (Bates et al. 2015, JSS 67(1), sect. 3)

is stored: which diagonal blocks are batched (one small ``q x q`` block per level) and which
dense, and how the first factor is coupled to the dense block (see :class:`Plan`).

Theta is lme4's: per random-effects term, the lower triangle of its block of ``T_f``, column by
column; terms on the same grouping factor share one ``T_f`` (block diagonal over the terms).
A :class:`Layout` is hashable and holds no data: it is the static argument of every compiled
program, so designs of the same shape share programs.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

__all__ = ["Plan", "Layout", "build_layout", "bucket", "theta_names", "factor_columns"]

SINGULAR_TOL = 1e-4  # lme4's isSingular tolerance on diagonal theta elements


def bucket(n: int, minimum: int = 8) -> int:
    """Round ``n`` up to the next of 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, ... (<= 25% padding)."""
    n = max(int(n), 1)
    if n <= minimum:
        return minimum
    e = 2 ** (int(math.log2(n)) - 2)
    return int(math.ceil(n / e) * e)


@dataclasses.dataclass(frozen=True)
class Plan:
    """How the blocked factor is stored and which kernels update it.

    Fields
    ------
    kind : {"one", "chain", "crossed"}
        ``"one"``: a single grouping factor (one batched block). ``"chain"``: every factor is
        nested in the next (classes in schools in districts): all blocks batched, each level
        coupled to one level of every later factor. ``"crossed"``: the first factor batched,
        all other factors in one dense block ``D``.
    coupling : {"", "dense", "sparse"}
        ``"crossed"`` only: ``Z_D'Z_A`` held as a dense ``(q_A, J, Q_D)`` array (every level of
        ``A`` meets most levels of ``D``: subjects x items) or as a list of (level, level) pairs.
    fill : {"", "dense", "scalar", "pairs"}
        The kernel of the fill-in ``Z_D'Z_A W_A Z_A'Z_D``: a matrix product (dense coupling),
        one sparse linear map of the scalar weights ``W_a`` (``q_A = 1``), or products over
        pairs of pairs sharing a level of ``A``.
    """

    kind: str
    coupling: str = ""
    fill: str = ""


@functools.lru_cache(maxsize=256)
def _theta_index(theta_factor: tuple, theta_row: tuple, theta_col: tuple) -> tuple:
    rows, cols, facs = map(np.asarray, (theta_row, theta_col, theta_factor))
    diag = rows == cols
    src = np.full(len(rows), -1, np.int64)
    for k in np.nonzero(diag)[0]:
        src[(facs == facs[k]) & (cols == cols[k])] = k
    diag.flags.writeable = False
    src.flags.writeable = False
    return diag, src


@dataclasses.dataclass(frozen=True)
class Layout:
    """Static description of a model: the jit static argument of the engine.

    Fields
    ------
    p : int
        Number of fixed effects.
    q : tuple of int
        Random effects per level, per grouping factor (factor 0 has the most levels).
    nlev : tuple of int
        Levels per factor (factor 0 padded to a bucketed size: zero levels add nothing).
    theta_factor, theta_row, theta_col : tuple of int
        Position of each theta element in ``T_f`` (any positions; lme4's are lower triangles).
    plan : Plan
    weighted : bool
        Prior weights (the criterion gains ``-sum log w_i``).
    """

    p: int
    q: tuple
    nlev: tuple
    theta_factor: tuple
    theta_row: tuple
    theta_col: tuple
    plan: Plan = Plan("one")
    weighted: bool = False

    # ------------------------------------------------------------------ sizes
    @property
    def nfactors(self) -> int:
        return len(self.q)

    @property
    def ntheta(self) -> int:
        return len(self.theta_factor)

    @property
    def dense_factors(self) -> tuple:
        """Factors held in the dense block (``"crossed"`` plans): all but the first."""
        return tuple(range(1, self.nfactors)) if self.plan.kind == "crossed" else ()

    @property
    def dense_offsets(self) -> dict:
        """Column offset of each dense factor inside the dense block."""
        out, o = {}, 0
        for f in self.dense_factors:
            out[f] = o
            o += self.nlev[f] * self.q[f]
        return out

    @property
    def QD(self) -> int:
        """Columns of the dense block."""
        return sum(self.nlev[f] * self.q[f] for f in self.dense_factors)

    # ------------------------------------------------------------------ theta -> T
    def theta_of(self, f: int) -> list:
        """Indices of theta that belong to factor ``f``."""
        return [k for k in range(self.ntheta) if self.theta_factor[k] == f]

    def T_lists(self, theta, f: int) -> list:
        """``T_f`` as nested lists, with literal ``0.0`` for structural zeros (unrolled kernels)."""
        q = self.q[f]
        T = [[0.0] * q for _ in range(q)]
        for k in self.theta_of(f):
            T[self.theta_row[k]][self.theta_col[k]] = theta[k]
        return T

    def T_arrays(self, theta, xp=np) -> list:
        """``[T_f]`` as square arrays (``xp`` = numpy or jax.numpy)."""
        out = []
        for f, q in enumerate(self.q):
            ks = self.theta_of(f)
            if xp is np:
                T = np.zeros((q, q), dtype=np.float64)
                for k in ks:
                    T[self.theta_row[k], self.theta_col[k]] = theta[k]
            elif not ks:
                T = xp.zeros((q, q), dtype=theta.dtype)
            else:  # a constant 0/1 placement matrix: one small product (a scatter traces ~40 ops)
                E = np.zeros((q * q, len(theta)), dtype=np.float64)
                for k in ks:
                    E[self.theta_row[k] * q + self.theta_col[k], k] = 1.0
                T = (xp.asarray(E, dtype=theta.dtype) @ theta).reshape(q, q)
            out.append(T)
        return out

    @property
    def _theta_index(self) -> tuple:
        """(diagonal mask, the diagonal element of each element's column of ``T_f`` or -1),
        read-only, computed once per theta pattern (:func:`_theta_index`: every fit builds a new
        layout, and the checks after it read them)."""
        return _theta_index(self.theta_factor, self.theta_row, self.theta_col)

    def is_diag(self) -> np.ndarray:
        """True for theta elements on a diagonal of ``T_f`` (variances; bounded below by 0)."""
        return self._theta_index[0].copy()

    def lower_bounds(self) -> np.ndarray:
        """lme4's lower bounds: 0 for diagonal elements, -inf otherwise."""
        return np.where(self.is_diag(), 0.0, -np.inf)

    def lme4_start(self) -> np.ndarray:
        """lme4's starting value: 1 on the diagonal of every ``T_f``, 0 elsewhere."""
        return self.is_diag().astype(np.float64)

    def column_signs(self, theta, xp=np) -> np.ndarray:
        """``+-1`` per element of ``theta``: -1 in every column of ``T_f`` whose diagonal element
        is negative, so that ``theta * signs`` has diagonals >= 0 (gradients and Hessians in
        theta change by the same signs; the matching rows of ``u_f`` flip too). Works on
        ``(m,)`` or ``(B, m)`` arrays; ``xp=jax.numpy`` inside a compiled program."""
        th = xp.atleast_2d(xp.asarray(theta, dtype=np.float64))
        src = self._theta_index[1]
        has = src >= 0
        sg = xp.where(has & (th[:, np.where(has, src, 0)] < 0), -1.0, 1.0)
        return sg if np.ndim(theta) == 2 else sg[0]

    def rectify(self, theta) -> np.ndarray:
        """Flip the sign of every column of ``T_f`` whose diagonal element is negative
        (:meth:`column_signs`).

        The criterion depends on ``T_f`` only through ``T_f T_f'`` (MixedModels.jl's
        ``rectify!``); works on ``(m,)`` or ``(B, m)`` arrays.
        """
        th = np.array(theta, dtype=np.float64)
        return th * self.column_signs(th)

    def lifted(self, theta) -> np.ndarray:
        """``theta`` with (near-)zero diagonal elements moved to ``max(1e-2, 0.1 max|theta_ii|)``.

        The criterion is even in every column of ``T_f``, so its gradient vanishes exactly
        where a diagonal element is 0 (ENGINE-NOTES pitfall 2): a search started there never
        leaves it. Refits and restarts begin from this point instead.
        """
        th = np.array(theta, dtype=np.float64)
        diag = self.is_diag()
        small = diag & (np.abs(th) < SINGULAR_TOL)
        if small.any():
            th[small] = max(1e-2, 0.1 * float(np.max(np.abs(th[diag]))))
        return th

    def singular(self, theta) -> bool:
        """lme4's ``isSingular``: a diagonal element of theta within 1e-4 of 0."""
        th = np.asarray(theta, dtype=np.float64)
        return bool(np.any(np.abs(th[self._theta_index[0]]) < SINGULAR_TOL))

    def term_blocks(self, f: int) -> list:
        """Column indices of each term's block inside ``T_f`` (from theta's positions)."""
        first: dict = {}
        for k in self.theta_of(f):
            r, c = self.theta_row[k], self.theta_col[k]
            first[r] = min(first.get(r, c), c)
        blocks: dict = {}
        for i, c0 in first.items():
            blocks.setdefault(c0, []).append(i)
        return [sorted(idx) for idx in blocks.values()]

    def full_T(self) -> "Layout":
        """The same layout with every ``T_f`` a full square matrix (row-major entries).

        Profiles reparametrise the covariance (a standard deviation or a correlation held
        fixed); the resulting ``T`` need not be lower triangular.
        """
        tf, tr, tc = [], [], []
        for f, q in enumerate(self.q):
            for r in range(q):
                for c in range(q):
                    tf.append(f)
                    tr.append(r)
                    tc.append(c)
        return dataclasses.replace(self, theta_factor=tuple(tf), theta_row=tuple(tr), theta_col=tuple(tc))


# ---------------------------------------------------------------------------------------------
# from a design
# ---------------------------------------------------------------------------------------------
def factor_columns(design) -> list:
    """For each factor: list of (term index, column offset within the factor's block)."""
    out = [[] for _ in design.factors]
    sizes = [0] * len(design.factors)
    for i, td in enumerate(design.terms):
        out[td.factor].append((i, sizes[td.factor]))
        sizes[td.factor] += td.p
    return out


def theta_names(design) -> list:
    """lme4's names of theta: ``g.(Intercept)``, ``g.x.(Intercept)`` (row, column)."""
    names = []
    for td in design.terms:
        g = td.term.group_name
        for c in range(td.p):
            for r in range(c, td.p):
                names.append(f"{g}.{td.names[c]}" if r == c else f"{g}.{td.names[r]}.{td.names[c]}")
    return names


def nested_chain(design) -> bool:
    """Every factor nested in the next one (each level of factor i within one level of i+1)."""
    fs = design.factors
    if len(fs) < 2:
        return False
    for a, b in zip(fs[:-1], fs[1:]):
        if len(a.codes) == 0 or len(a.codes) != len(b.codes):  # no rows held: not known here
            return False
        owner = np.full(a.nlevels, -1, np.int64)
        owner[a.codes] = b.codes
        if not np.all(owner[a.codes] == b.codes):
            return False
    return True


DENSE_COUPLING_BYTES = 64 * 2**20


def choose_plan(design, q: tuple, nlev: tuple, pairs: int | None = None) -> Plan:
    """Decide the storage of L from the design (see :class:`Plan`).

    ``"crossed"``: the coupling ``Z_D'Z_A`` is dense when a dense fill-in (``2 q_A J Q_D^2``
    flops) costs at most about four times the sparse one (pairs of pairs sharing a level of
    ``A``, each a ``q_f x q_g`` block of ``q_A + 8`` operations) and the dense array stays under
    64 MB; kb07-like designs (every subject meets every item) are dense, InstEval sparse.
    """
    F = len(q)
    if F == 1:
        return Plan("one")
    if nested_chain(design):
        return Plan("chain")
    qA, J = q[0], nlev[0]
    QD = sum(q[f] * nlev[f] for f in range(1, F))
    fA = design.factors[0]
    sparse_work = 0.0
    if len(fA.codes):
        per_level = np.zeros(J)
        for f in range(1, F):
            key = np.unique(fA.codes.astype(np.int64) * nlev[f] + design.factors[f].codes)
            cnt = np.bincount(key // nlev[f], minlength=J).astype(np.float64)
            per_level += cnt * q[f]
        sparse_work = float(np.sum(per_level**2)) * (qA + 8)
    elif pairs is not None:
        sparse_work = float(pairs) * QD * (qA + 8)
    dense_work = 2.0 * qA * J * QD * QD
    dense_bytes = 8.0 * qA * J * QD
    if dense_bytes <= DENSE_COUPLING_BYTES and dense_work <= 4.0 * sparse_work:
        return Plan("crossed", "dense", "dense")
    return Plan("crossed", "sparse", "scalar" if qA == 1 else "pairs")


def build_layout(design, pad: bool = True, weighted: bool | None = None) -> Layout:
    """The layout of ``design``: theta in lme4's order and the plan of the factor."""
    fcols = factor_columns(design)
    offset_of_term = {}
    q = []
    for lst in fcols:
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
    plan = choose_plan(design, tuple(q), tuple(nlev))
    if pad:
        nlev[0] = bucket(nlev[0])
    if weighted is None:
        weighted = getattr(design, "weights", None) is not None
    return Layout(p=design.p, q=tuple(q), nlev=tuple(nlev), theta_factor=tuple(tf), theta_row=tuple(tr),
                  theta_col=tuple(tc), plan=plan, weighted=bool(weighted))
