"""Helpers for formulaic model matrices (the out-of-core path still encodes chunks with formulaic)."""
from __future__ import annotations

import functools
import re

import numpy as np

from ..base.lazy import formulaic
from ..base.errors import DataError

__all__ = ["r_name", "numeric_matrix", "cached_formula", "clean_message"]

_T_LEVEL = re.compile(r"\[T\.(.*?)\]")
_F_LEVEL = re.compile(r"\[(.*?)\]")
_ANSI = re.compile(r"\x1b\[[0-9;]*m|[\u29db\u29da]")


@functools.lru_cache(maxsize=512)
def cached_formula(text: str):
    """formulaic's parse of a formula string, cached."""
    return formulaic.Formula(text)


def clean_message(msg) -> str:
    """formulaic's messages carry terminal colour codes; strip them."""
    return _ANSI.sub("", str(msg)).strip()


def r_name(name: str) -> str:
    """A formulaic column name as R writes it: ``Intercept`` -> ``(Intercept)``, ``f[T.b]`` -> ``fb``."""
    if name == "Intercept":
        return "(Intercept)"
    name = _T_LEVEL.sub(lambda m: m.group(1), name)
    name = _F_LEVEL.sub(lambda m: m.group(1), name)
    return name


def numeric_matrix(mm, what: str) -> np.ndarray:
    """A formulaic model matrix as float64, refusing complex and non-finite values by column."""
    raw = np.asarray(mm)
    if np.iscomplexobj(raw):
        j = int(np.nonzero(np.any(np.imag(raw.reshape(len(raw), -1)) != 0, axis=0))[0][0]) if raw.size else 0
        name = list(mm.columns)[j] if hasattr(mm, "columns") else str(j)
        raise DataError(f"{what} column {name!r} has complex values; only real numbers can be modelled")
    try:
        arr = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{what} values are not numeric: {exc}") from None
    if arr.ndim == 1:
        arr = arr[:, None]
    bad = ~np.isfinite(arr)
    if bad.any():
        j = int(np.nonzero(bad.any(axis=0))[0][0])
        name = list(mm.columns)[j] if hasattr(mm, "columns") else str(j)
        raise DataError(f"{what} column {name!r} has infinite or undefined values ({int(bad[:, j].sum())} rows)")
    return arr
