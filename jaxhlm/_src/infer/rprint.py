"""R's printing layout, for summaries and tables that read like R's.

These are re-implementations (from R's documented behaviour, checked against R 4.2 output in
``tests/data/rformat_reference.json``) of

* ``abbreviate(names, minlength)`` (:func:`abbreviate`, the row and column labels of lme4's
  correlation of fixed effects);
* ``print()`` of a character matrix or a named vector (:func:`print_matrix`,
  :func:`print_named`), ``cat(..., fill = TRUE)`` (:func:`cat_fill`) and ``strwrap``;
* ``deparse()`` of a model formula (:func:`deparse_formula`): ``y ~ x + (x | g)``.

R's number formatting (``format``, ``format.pval``, ``zapsmall``, significance stars) is in
:mod:`jaxhlm._src.infer.rformat`; its names are re-exported here.
"""
from __future__ import annotations

import re

from .rformat import SIGNIF_LEGEND
from .rformat import format_number
from .rformat import format_pval
from .rformat import format_real
from .rformat import signif_stars
from .rformat import zapsmall

__all__ = ["format_real", "format_pval", "zapsmall", "signif_stars", "abbreviate", "print_matrix",
           "print_named", "cat_fill", "strwrap", "deparse_formula", "SIGNIF_LEGEND", "format_number"]

WIDTH = 80  # R's getOption("width")


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
