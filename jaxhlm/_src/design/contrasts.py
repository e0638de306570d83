"""Contrast matrices of factors, with R's column names.

For a factor with ``k`` levels, a contrast matrix ``C`` (``k x m``) gives row ``C[level]`` of the
model matrix; R names the columns ``f`` + ``colnames(C)``:

==============  ==============================================================  ===============
R               ``C``                                                           names
==============  ==============================================================  ===============
contr.treatment identity without the column of the base level (the first)        levels 2..k
contr.SAS       identity without the column of the last level                    levels 1..k-1
contr.sum       ``I_{k-1}`` on top of a row of ``-1``                            ``1`` .. ``k-1``
contr.helmert   column ``j``: ``-1`` for levels ``1..j``, ``j`` for level ``j+1``  ``1`` .. ``k-1``
contr.poly      orthonormal polynomials in the scores ``1..k`` (degrees ``1..k-1``) ``.L .Q .C ^4``
==============  ==============================================================  ===============

Unordered factors default to treatment contrasts and ordered ones to polynomial contrasts, as R's
``options(contrasts = c("contr.treatment", "contr.poly"))``. A factor that must be coded by one
indicator per level (R's rule for a factor whose margin is absent) gets ``identity`` and the level
names whatever its contrasts.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..base.errors import ArgumentError

__all__ = ["Contrast", "contrast_matrix", "as_contrast", "KINDS"]

KINDS = ("treatment", "sum", "helmert", "poly", "SAS")
_ALIASES = {
    "treatment": "treatment", "contr.treatment": "treatment", "treat": "treatment",
    "sum": "sum", "contr.sum": "sum", "deviation": "sum",
    "helmert": "helmert", "contr.helmert": "helmert",
    "poly": "poly", "contr.poly": "poly", "polynomial": "poly",
    "sas": "SAS", "contr.sas": "SAS",
}


@dataclasses.dataclass(frozen=True)
class Contrast:
    """A contrast specification: a kind (and for treatment an optional base level), or a matrix."""

    kind: str
    base: object = None  # treatment: label of the base level (default the first)
    matrix: object = None  # custom: ndarray (k, m)
    names: tuple | None = None  # custom: column names


def as_contrast(spec, what: str) -> Contrast:
    """Read a user's contrast: ``"sum"``, ``"contr.sum"``, ..., a :class:`Contrast`, or a k x m array
    (pandas DataFrame: its column names become the coefficient suffixes)."""
    if isinstance(spec, Contrast):
        return spec
    if isinstance(spec, str):
        kind = _ALIASES.get(spec.strip().lower())
        if kind is None:
            raise ArgumentError(
                f"unknown contrasts {spec!r} for {what}; use one of 'treatment', 'sum', 'helmert', 'poly', 'SAS' "
                "(or R's names contr.treatment, contr.sum, ...) or a levels x columns matrix"
            )
        return Contrast(kind)
    names = None
    if hasattr(spec, "columns") and hasattr(spec, "to_numpy"):
        names = tuple(str(c) for c in spec.columns)
        spec = spec.to_numpy()
    try:
        mat = np.asarray(spec, dtype=np.float64)
    except (TypeError, ValueError):
        raise ArgumentError(f"contrasts for {what} must be a name such as 'sum' or a numeric matrix, got {type(spec).__name__}") from None
    if mat.ndim != 2 or not np.isfinite(mat).all():
        raise ArgumentError(f"a contrast matrix for {what} must be a finite 2-d array (levels x columns), got shape {mat.shape}")
    return Contrast("custom", matrix=mat, names=names)


def _poly(k: int) -> np.ndarray:
    scores = np.arange(1, k + 1, dtype=np.float64)
    x = scores - scores.mean()
    V = np.vander(x, k, increasing=True)
    Q, R = np.linalg.qr(V)
    Z = Q * np.diag(R)  # the part of x^j orthogonal to lower powers: independent of QR's signs
    Z = Z / np.sqrt(np.sum(Z * Z, axis=0))
    return Z[:, 1:]


def _poly_names(m: int) -> tuple:
    base = [".L", ".Q", ".C"]
    return tuple(base[:m] + [f"^{d}" for d in range(4, m + 1)])


def contrast_matrix(contrast: Contrast, levels: tuple, what: str) -> tuple:
    """``(C, colnames)`` for a factor with ``levels``.

    Raises
    ------
    ArgumentError
        A treatment base that is not a level, or a custom matrix with the wrong number of rows.
    """
    k = len(levels)
    kind = contrast.kind
    if kind == "treatment":
        base = 0
        if contrast.base is not None:
            lab = str(contrast.base)
            if lab not in levels:
                raise ArgumentError(f"the base level {lab!r} of {what} is not one of its levels {list(levels)}")
            base = levels.index(lab)
        keep = [j for j in range(k) if j != base]
        return np.eye(k)[:, keep], tuple(levels[j] for j in keep)
    if kind == "SAS":
        return np.eye(k)[:, : k - 1], tuple(levels[: k - 1])
    if kind == "sum":
        C = np.vstack([np.eye(k - 1), -np.ones((1, k - 1))])
        return C, tuple(str(j) for j in range(1, k))
    if kind == "helmert":
        C = np.zeros((k, k - 1))
        for j in range(1, k):
            C[:j, j - 1] = -1.0
            C[j, j - 1] = float(j)
        return C, tuple(str(j) for j in range(1, k))
    if kind == "poly":
        return _poly(k), _poly_names(k - 1)
    if kind == "custom":
        mat = contrast.matrix
        if mat.shape[0] != k:
            raise ArgumentError(f"the contrast matrix for {what} has {mat.shape[0]} rows for {k} levels {list(levels)}")
        names = contrast.names or tuple(str(j) for j in range(1, mat.shape[1] + 1))
        return mat, names
    raise ArgumentError(f"unknown contrast kind {kind!r} for {what}")
