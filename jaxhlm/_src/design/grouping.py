"""Grouping factors of random-effect terms: integer codes and level labels in R's order.

One column is coded as R's ``factor()``: numbers sorted numerically, text sorted as R sorts it
(:func:`~jaxhlm._src.design.rvalues.r_sort_key`), categoricals in their category order with unused
categories dropped. The labels keep the column's own values (integers stay integers), so results
are indexed by what the user wrote. A column mixing numbers and text (``1`` in some rows, ``"1"``
in others, as ``read_csv`` gives for a mixed column) is read as R's ``factor(as.character(x))``:
``1`` and ``"1"`` are one level, and a :class:`~jaxhlm._src.design.rvalues.MixedTypesWarning`
names the column. An interaction ``a:b`` has the combinations present, ordered as R's
interaction of factors (by the levels of ``a``, then of ``b``), labelled ``"a_label:b_label"``.
"""
from __future__ import annotations

import dataclasses
import numbers

import numpy as np
import pandas as pd

from ..base.errors import MixedTypesWarning, warn
from .rvalues import code_point_order_is_r, r_label, r_sort_key

__all__ = ["GroupingFactor", "single_factor", "grouping_factor"]


@dataclasses.dataclass
class GroupingFactor:
    """A grouping factor: the integer code of every row and the level labels.

    Fields
    ------
    name : str
        lme4's name (``"sch_id"``, ``"cask:batch"``).
    codes : ndarray of int64, shape (n,)
        Level index of each row, in ``0 .. nlevels-1``.
    levels : pandas.Index
        Level labels in lme4's order (sorted as R's ``factor()`` sorts them).
    """

    name: str
    codes: np.ndarray
    levels: pd.Index

    @property
    def nlevels(self) -> int:
        return len(self.levels)


def _mixed_as_text(col: pd.Series, name) -> pd.Series:
    vals = col.to_numpy(dtype=object)
    kinds = {type(v) for v in vals if v is not None and not (isinstance(v, float) and np.isnan(v))}
    has_num = any(issubclass(k, numbers.Number) for k in kinds)
    has_str = any(issubclass(k, str) for k in kinds)
    if has_num and has_str:
        ex_n = next(v for v in vals if isinstance(v, numbers.Number))
        ex_s = next(v for v in vals if isinstance(v, str))
        warn(
            f"grouping column {name!r} mixes numbers and text (e.g. {ex_n!r} and {ex_s!r}); its values are used as "
            f"text labels, as R's factor(as.character(x)) would (1 and \"1\" are the same level). Give the column one "
            "type to silence this",
            MixedTypesWarning,
        )
    return pd.Series([r_label(v) for v in vals], index=col.index, dtype=object)


def _compact_int_codes(x: np.ndarray):
    """``pd.factorize(x, sort=True)`` of an integer array whose values span at most a few times
    as many integers as it has rows (ids 1..J, as most grouping columns are), by one pass over a
    table of the span instead of a hash table and a sort (8k rows: 15 instead of 90 us); None
    for a wider span."""
    if x.size == 0:
        return None
    lo, hi = x.min(), x.max()
    span = int(hi) - int(lo) + 1
    if span > 4 * x.size + 4096:
        return None
    present = np.zeros(span, bool)
    if x.dtype.kind == "u":  # x - lo in [0, span) in x's own type
        off = (x - lo).astype(np.intp, copy=False)
        present[off] = True
        uniques = np.flatnonzero(present).astype(x.dtype) + lo
    else:  # in int64: an int8 column's 127 - (-128) does not fit its own type
        off = x.astype(np.int64, copy=False) - np.int64(lo)
        present[off] = True
        uniques = (np.flatnonzero(present) + np.int64(lo)).astype(x.dtype)
    rank = np.cumsum(present, dtype=np.int64) - 1
    return rank[off], uniques


def single_factor(col: pd.Series, name=None) -> tuple:
    """Codes and levels of one column, levels sorted as R's ``factor()`` (categoricals keep
    their category order, unused categories dropped)."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        col = col.cat.remove_unused_categories()
        return col.cat.codes.to_numpy().astype(np.int64, copy=False), pd.Index(col.cat.categories)
    # (a NumPy integer column is coded from its array: same codes, less overhead)
    plain_int = isinstance(col.dtype, np.dtype) and col.dtype.kind in "iu"
    if plain_int:
        found = _compact_int_codes(col.to_numpy())
        if found is not None:
            return found[0], pd.Index(found[1])
    try:
        if not plain_int and pd.api.types.is_object_dtype(col.dtype) and \
                pd.api.types.infer_dtype(col, skipna=True).startswith("mixed"):
            raise TypeError
        codes, uniques = pd.factorize(col.to_numpy() if plain_int else col, sort=True)
    except TypeError:  # a mixture of numbers and text: as R's factor(as.character(x))
        codes, uniques = pd.factorize(_mixed_as_text(col, name if name is not None else col.name), sort=True)
    if len(uniques) and all(isinstance(u, str) for u in uniques) and not code_point_order_is_r(uniques):
        # (factorize sorted them by code point, which is R's order for plain ids: kept as is)
        order = sorted(range(len(uniques)), key=lambda i: r_sort_key(uniques[i]))
        if order != list(range(len(uniques))):
            rank = np.empty(len(order), np.int64)
            rank[np.asarray(order)] = np.arange(len(order))
            codes = rank[codes]
            uniques = pd.Index([uniques[i] for i in order])
    return codes.astype(np.int64, copy=False), pd.Index(uniques)


def grouping_factor(name: str, frame, cols: tuple) -> GroupingFactor:
    """The grouping factor of the columns ``cols`` of ``frame`` (a DataFrame or a dict of Series),
    their interaction when several."""
    if len(cols) == 1:
        codes, levels = single_factor(frame[cols[0]], cols[0])
        return GroupingFactor(name=name, codes=codes, levels=levels.rename(name))
    parts = [single_factor(frame[c], c) for c in cols]
    comb = np.zeros(len(parts[0][0]), np.int64)
    for codes, levels in parts:  # mixed radix, first column most significant
        comb = comb * len(levels) + codes
    uniq, codes = np.unique(comb, return_inverse=True)
    rem = uniq.copy()
    digits = []
    for codes_c, levels in reversed(parts):
        digits.append(rem % len(levels))
        rem = rem // len(levels)
    digits = digits[::-1]
    strs = [np.asarray([str(v) for v in levels], dtype=object)[d] for (_, levels), d in zip(parts, digits)]
    labels = strs[0]
    for st in strs[1:]:
        labels = labels + ":" + st
    return GroupingFactor(name=name, codes=codes.astype(np.int64).ravel(), levels=pd.Index(list(labels), name=name))
