"""R's number formatting and printing layout, for summaries and tables that read like R's.

These are re-implementations (from R's documented behaviour, checked against R 4.2 output in
``tests/data/rformat_reference.json``) of

* ``format(x, digits =, nsmall =)`` for a numeric vector (:func:`format_real`): one common
  layout for all elements -- fixed notation with as many decimals as the element needing most
  requires to show ``digits`` significant digits, unless scientific notation is narrower;
* ``format.pval`` (:func:`format_pval`), ``zapsmall``, ``symnum`` significance stars
  (:func:`signif_stars`);
* ``abbreviate(names, minlength)`` (:func:`abbreviate`, the row and column labels of lme4's
  correlation of fixed effects);
* ``print()`` of a character matrix or a named vector (:func:`print_matrix`,
  :func:`print_named`), ``cat(..., fill = TRUE)`` (:func:`cat_fill`) and ``strwrap``;
* ``deparse()`` of a model formula (:func:`deparse_formula`): ``y ~ x + (x | g)``.
"""
from __future__ import annotations

import math
import re

import numpy as np

__all__ = ["format_real", "format_pval", "zapsmall", "signif_stars", "abbreviate", "print_matrix",
           "print_named", "cat_fill", "strwrap", "deparse_formula", "SIGNIF_LEGEND", "format_number"]

SIGNIF_LEGEND = "Signif. codes:  0 \u2018***\u2019 0.001 \u2018**\u2019 0.01 \u2018*\u2019 0.05 \u2018.\u2019 0.1 \u2018 \u2019 1"
WIDTH = 80  # R's getOption("width")


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


# --------------------------------------------------------------------------------------------
# abbreviate
# --------------------------------------------------------------------------------------------
_VOWELS = set("aeiou")


def _abbrev1(name: str, minlength: int) -> str:
    """R's ``abbreviate`` of one name (``use.classes = TRUE``): drop lower-case vowels from the
    right (first those ending a word), then lower-case letters, then anything but the first
    letter of a word, until ``minlength`` characters are left."""
    s = list(name.strip())
    if len(s) <= minlength:
        return "".join(s)

    def first(i):  # first character of a word
        return s[i - 1].isspace()

    def last(i):  # last character of a word
        return not s[i - 1].isspace() and (i + 1 >= len(s) or s[i + 1].isspace())

    nspace = sum(c.isspace() for c in s)
    rules = [
        lambda i: s[i] in _VOWELS and last(i),
        lambda i: s[i] in _VOWELS and not first(i),
        lambda i: s[i].islower() and last(i),
        lambda i: s[i].islower() and not first(i),
        lambda i: not first(i) and not s[i].isspace(),
    ]
    done = False
    for rule in rules:
        i = len(s) - 1
        while i > 0:
            if i < len(s) and rule(i):
                del s[i]
            if len(s) - nspace <= minlength:
                done = True
                break
            i -= 1
        if done:
            break
    if len(s) > minlength:
        s = [c for k, c in enumerate(s) if k == 0 or not c.isspace()]
    return "".join(s)


def abbreviate(names, minlength: int = 4) -> list:
    """R's ``abbreviate(names, minlength)`` (``use.classes = TRUE``, ``method = "left.kept"``).

    Parameters
    ----------
    names : sequence of str
    minlength : int
        Abbreviations are shortened to this many characters where the rules allow.

    Returns
    -------
    list of str
        One abbreviation per name, unique: names whose abbreviations clash are abbreviated
        again with one more character, repeatedly. lme4 labels the correlation of fixed
        effects with ``minlength`` 11 (rows) and 6 (columns).
    """
    names = [str(n).strip() for n in names]
    uniq = list(dict.fromkeys(names))
    out = {n: _abbrev1(n, minlength) for n in uniq}
    ml = minlength
    while True:
        vals = list(out.values())
        clash = {v for v in vals if vals.count(v) > 1}
        if not clash or ml > max(len(n) for n in uniq):
            break
        ml += 1
        for n in uniq:
            if out[n] in clash:
                out[n] = _abbrev1(n, ml)
    return [out[n] for n in names]


# --------------------------------------------------------------------------------------------
# layout
# --------------------------------------------------------------------------------------------
def print_matrix(cells, colnames, rownames=None, right: bool = False) -> list:
    """R's ``print(m, quote = FALSE, right = right)`` of a character matrix, as lines.

    Parameters
    ----------
    cells : sequence of sequences of str
        The rows.
    colnames : sequence of str
    rownames : sequence of str, optional
        Default: empty names (each line then starts with one space, as R's).
    right : bool
        Right-justify entries and column names (else left-justify, R's default for text).

    Returns
    -------
    list of str
        The header line, then one line per row: row names left-justified, each column as
        wide as its widest entry or name and preceded by one space; trailing blanks removed.
    """
    rows = [list(map(str, r)) for r in cells]
    rn = [str(r) for r in (rownames if rownames is not None else [""] * len(rows))]
    wr = max([len(r) for r in rn] + [0])
    widths = [max([len(colnames[j])] + [len(r[j]) for r in rows]) for j in range(len(colnames))]
    just = (lambda t, w: t.rjust(w)) if right else (lambda t, w: t.ljust(w))
    lines = [(" " * wr + "".join(" " + just(c, w) for c, w in zip(colnames, widths))).rstrip()]
    for name, r in zip(rn, rows):
        lines.append((name.ljust(wr) + "".join(" " + just(c, w) for c, w in zip(r, widths))).rstrip())
    return lines


def print_named(values, names, width: int = WIDTH) -> list:
    """R's ``print()`` of a named vector whose entries are already formatted.

    Parameters
    ----------
    values, names : sequence of str
    width : int
        Line width (R's ``getOption("width")``).

    Returns
    -------
    list of str
        Pairs of lines, names above entries, all right-justified to one common width and
        separated by a space, as many per line as fit in ``width``.
    """
    values, names = [str(v) for v in values], [str(n) for n in names]
    w = max(len(s) for s in values + names)
    per = max(1, width // (w + 1))
    out = []
    for k in range(0, len(values), per):
        out.append(" ".join(n.rjust(w) for n in names[k:k + per]).rstrip())
        out.append(" ".join(v.rjust(w) for v in values[k:k + per]).rstrip())
    return out


def cat_fill(items, width: int = WIDTH, sep: str = " ") -> list:
    """R's ``cat(..., sep = sep, fill = TRUE)``.

    Parameters
    ----------
    items : sequence of str
    width : int
    sep : str

    Returns
    -------
    list of str
        The items joined by ``sep``; a new line starts before an item that would make the
        line longer than ``width``.
    """
    lines, cur = [], None
    for it in items:
        it = str(it)
        if cur is None:
            cur = it
        elif len(cur) + len(sep) + len(it) > width:
            lines.append(cur.rstrip())
            cur = it
        else:
            cur = cur + sep + it
    if cur is not None:
        lines.append(cur.rstrip())
    return lines


def strwrap(text: str, width: int, exdent: int = 0) -> list:
    """R's ``strwrap(text, width, exdent)``.

    Parameters
    ----------
    text : str
    width : int
        Lines are shorter than this.
    exdent : int
        Indentation of the lines after the first.

    Returns
    -------
    list of str
        The words of ``text`` filled into lines.
    """
    words = text.split()
    lines, cur = [], ""
    for w in words:
        pad = " " * exdent if lines else ""
        if cur and len(pad + cur + " " + w) >= width:
            lines.append(pad + cur)
            cur = w
        else:
            cur = f"{cur} {w}" if cur else w
    if cur:
        lines.append((" " * exdent if lines else "") + cur)
    return lines


# --------------------------------------------------------------------------------------------
# formula
# --------------------------------------------------------------------------------------------
_TOKEN = re.compile(
    r"\s*(?:(?P<str>'[^']*'|\"[^\"]*\")|(?P<bt>`[^`]*`)|(?P<num>\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+)"
    r"|(?P<name>[A-Za-z_.][A-Za-z0-9_.]*)|(?P<op>%[^%]*%|\|\||\*\*|==|!=|<=|>=|[~+\-*/:^|(),{}\[\]=<>!&]))"
)
_SPACED = {"~", "+", "-", "*", "|", "||", "%in%", "==", "!=", "<=", ">=", "<", ">", "&", "="}
_TIGHT = {":", "/", "^", "**"}


def deparse_formula(formula: str) -> str:
    """A formula as R's ``deparse`` writes it.

    Parameters
    ----------
    formula : str
        As typed, e.g. ``"y~x*z+(1|g)"``.

    Returns
    -------
    str
        One space around ``~ + - * | || %in% ==``, none around ``: / ^``, ``", "`` between
        arguments, unary signs attached: ``"y ~ x * z + (1 | g)"``, ``"I(x^2)"``,
        ``"(1 | a/b)"``, ``"-1 + x"``. Text that cannot be read is returned unchanged.
    """
    pos, toks = 0, []
    text = formula.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            return formula
        kind = m.lastgroup
        toks.append((kind, m.group(kind)))
        pos = m.end()
    out = []
    prev = None  # kind of the previous token: "operand", "op", "open", "sep" or None
    for kind, t in toks:
        if kind == "op" and t in _SPACED and t not in ("~",) and prev in (None, "op", "open", "sep") and t in ("+", "-"):
            out.append(t)  # unary sign
            prev = "unary"
            continue
        if kind == "op" and t == "~" and prev in (None, "open", "sep"):
            out.append("~ ")
            prev = "op"
            continue
        if kind == "op" and t in _SPACED:
            out.append(f" {t} ")
            prev = "op"
        elif kind == "op" and t in _TIGHT:
            out.append(t)
            prev = "op"
        elif kind == "op" and t in "([{":
            if prev == "operand" and t == "(" and out and not out[-1].endswith(")"):
                out.append("(")  # a call: f(
            else:
                out.append(t)
            prev = "open"
        elif kind == "op" and t in ")]}":
            out.append(t)
            prev = "operand"
        elif kind == "op" and t == ",":
            out.append(", ")
            prev = "sep"
        else:
            out.append(t)
            prev = "operand"
    return re.sub(r" {2,}", " ", "".join(out)).strip()
