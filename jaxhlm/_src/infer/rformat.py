"""R's number formatting: numeric vectors, p-values, ``zapsmall`` and significance stars.

Re-implementations (from R's documented behaviour, checked against R 4.2 output in
``tests/data/rformat_reference.json``) of

* ``format(x, digits =, nsmall =)`` for a numeric vector (:func:`format_real`): one common
  layout for all elements -- fixed notation with as many decimals as the element needing most
  requires to show ``digits`` significant digits, unless scientific notation is narrower;
  :func:`format_number` writes one number in such a layout;
* ``format.pval`` (:func:`format_pval`), ``zapsmall`` (:func:`zapsmall`), ``symnum``
  significance stars (:func:`signif_stars`, with their legend :data:`SIGNIF_LEGEND`).

The layout of tables and text (``print`` of matrices, ``cat``, ``strwrap``, ``abbreviate``,
``deparse``) is in :mod:`jaxhlm._src.infer.rprint`, which re-exports these names.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["format_real", "format_pval", "zapsmall", "signif_stars", "SIGNIF_LEGEND", "format_number"]

SIGNIF_LEGEND = "Signif. codes:  0 \u2018***\u2019 0.001 \u2018**\u2019 0.01 \u2018*\u2019 0.05 \u2018.\u2019 0.1 \u2018 \u2019 1"


def _sci(x: float, digits: int) -> tuple:
    """``(negative, exponent, significant digits)`` of ``x`` shown with ``digits`` significant digits."""
    if x == 0:
        return False, 0, 1
    mant, exp = f"{abs(x):.{digits - 1}e}".split("e")
    sig = mant.replace(".", "").rstrip("0")
    return x < 0, int(exp), max(1, len(sig))


def _layout(values, digits: int, nsmall: int = 0) -> tuple:
    """R's ``formatReal``: ``(fixed, decimals)`` common to the finite values."""
    fin = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not fin:
        return True, 0
    neg = rgt = 0
    mxsl = mxns = mxe = -10**9
    mnl = 10**9
    for v in fin:
        negative, kp, nsig = _sci(v, digits)
        left = kp + 1
        sleft = int(negative) + (1 if left <= 0 else left)
        rgt = max(rgt, nsig - left)
        mxsl, mxns = max(mxsl, sleft), max(mxns, nsig)
        mxe, mnl = max(mxe, left), min(mnl, left)
        neg = neg or negative
    wf = mxsl + rgt + (rgt != 0)
    e = 2 if (mxe > 100 or mnl <= -99) else 1
    d = mxns - 1
    we = int(neg) + (d > 0) + d + 4 + e
    if wf <= we:
        return True, max(rgt, nsmall)
    return False, d


def format_number(v, fixed: bool, dec: int) -> str:
    """One number in a layout of :func:`format_real` (no padding).

    Parameters
    ----------
    v : float or None
    fixed : bool
        Fixed notation (else scientific, R's two-digit exponents ``e+05``).
    dec : int
        Decimals (of the mantissa in scientific notation).

    Returns
    -------
    str
        ``"NA"`` for None, ``"NaN"``, ``"Inf"``, ``"-Inf"`` for those values.
    """
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "NaN" if v is not None else "NA"
    if math.isinf(v):
        return "Inf" if v > 0 else "-Inf"
    if fixed:
        return f"{v:.{dec}f}"
    mant, exp = f"{v:.{dec}e}".split("e")
    sign, digs = exp[0], exp[1:].lstrip("0")
    return f"{mant}e{sign}{digs.rjust(2, '0')}"


def format_real(values, digits: int = 7, nsmall: int = 0, pad: bool = True, na: str = "NA") -> list:
    """R's ``format(x, digits = digits, nsmall = nsmall)`` of a numeric vector.

    Parameters
    ----------
    values : sequence of float
    digits : int
        Significant digits the element needing most decimals keeps (R's ``digits``).
    nsmall : int
        At least this many decimals in fixed notation.
    pad : bool
        Right-justify all to a common width (as R's ``format``); else no padding.
    na : str
        Text of missing values (None); NaN is written ``NaN``, infinities ``Inf``/``-Inf``.

    Returns
    -------
    list of str
    """
    vals = [None if v is None else float(v) for v in values]
    fixed, dec = _layout(vals, digits, nsmall)
    out = []
    for v in vals:
        out.append(na if v is None else format_number(v, fixed, dec))
    if pad and out:
        w = max(len(s) for s in out)
        out = [s.rjust(w) for s in out]
    return out


def zapsmall(values, digits: int) -> np.ndarray:
    """R's ``zapsmall``: values tiny next to the largest become 0.

    Parameters
    ----------
    values : sequence of float
    digits : int

    Returns
    -------
    numpy.ndarray
        ``values`` rounded to ``round(digits - log10(max |x|))`` decimals (at least 0; R 4.2
        rounds that number of decimals to the nearest integer); non-finite values unchanged.
    """
    x = np.asarray(values, dtype=float)
    fin = x[np.isfinite(x)]
    mx = float(np.max(np.abs(fin))) if fin.size else 0.0
    d = int(math.floor(max(0.0, digits - math.log10(mx)) + 0.5)) if mx > 0 else digits
    return np.array([round(float(v), d) if math.isfinite(v) else v for v in x])


def signif_stars(p) -> str:
    """R's significance stars (``symnum`` with the cut points of ``printCoefmat``).

    Parameters
    ----------
    p : float or None
        A p-value.

    Returns
    -------
    str
        ``"***"`` (p < 0.001), ``"**"`` (< 0.01), ``"*"`` (< 0.05), ``"."`` (< 0.1), else
        ``""`` (also for a missing p-value).
    """
    if p is None or not math.isfinite(p):
        return ""
    for cut, s in ((0.001, "***"), (0.01, "**"), (0.05, "*"), (0.1, ".")):
        if p < cut:
            return s
    return ""


def format_pval(pvalues, digits: int = 3, eps: float = 2.220446049250313e-16, na: str = "NA") -> list:
    """R's ``format.pval(pv, digits, eps)``.

    Parameters
    ----------
    pvalues : sequence of float
    digits : int
        Significant digits (``printCoefmat`` uses 3).
    eps : float
        Values below it are written ``<2e-16`` (``< 2e-16`` when the other entries are wider
        than 6 characters), R's ``.Machine$double.eps``.
    na : str
        Text of missing values.

    Returns
    -------
    list of str
        The other values formatted together with :func:`format_real` (those from 1e-4 up and
        the smaller ones separately, as R).
    """
    pv = [None if p is None or not math.isfinite(p) else float(p) for p in pvalues]
    out = [na] * len(pv)
    idx = [i for i, p in enumerate(pv) if p is not None and p >= eps]
    small = [i for i, p in enumerate(pv) if p is not None and p < eps]
    if idx:
        expo = {i: math.floor(math.log10(pv[i])) if pv[i] > 0 else -50 for i in idx}
        fix = [i for i in idx if expo[i] >= -3 or (expo[i] == -4 and digits > 1)]
        sci = [i for i in idx if i not in fix]
        for group in (fix, sci):
            if group:
                for i, s in zip(group, format_real([pv[i] for i in group], digits)):
                    out[i] = s
    if small:
        d = max(1, digits - 2)
        if idx:
            nc = max(len(out[i]) for i in idx)
            if d > 1 and d + 6 > nc:
                d = max(1, nc - 7)
            sep = "" if (d == 1 and nc <= 6) else " "
        else:
            sep = "" if d == 1 else " "
        text = "<" + sep + format_real([eps], d)[0]
        for i in small:
            out[i] = text
    return out
