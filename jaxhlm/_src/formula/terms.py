"""lme4 formula syntax: split ``y ~ fixed + (expr | group)`` into its parts.

The fixed part and each random-effect expression are kept as text in R syntax (read by
:mod:`~jaxhlm._src.formula.rparse` and expanded by :mod:`~jaxhlm._src.formula.rterms`); this
module finds the bar terms, expands ``||`` and ``/`` the way lme4's ``findbars`` /
``expandDoubleVerts`` / ``expandSlash`` do, and names the grouping factors as lme4 does:

* ``(x || g)``          -> ``(1 | g) + (0 + x | g)`` (one term per R term of ``x``);
* ``(1 | a/b)``         -> ``(1 | b:a) + (1 | a)``;
* ``(1 | a/b/c)``       -> ``(1 | c:(b:a)) + (1 | b:a) + (1 | a)``;
* ``(x || a/b)``        -> ``(1 | b:a) + (1 | a) + (0 + x | b:a) + (0 + x | a)``.

Before any of that, :func:`~jaxhlm._src.formula.syntax.check_syntax` (in
:mod:`~jaxhlm._src.formula.syntax`, re-exported here) scans the formula once and reports the
first syntax error with its position (a caret under the offending character), so that a typo
never reaches the evaluation or JAX as an obscure failure.

R and Python differ in places; R wins: ``^`` is a power inside ``I()`` (``**`` is its synonym)
and an interaction power outside it, names may contain dots, ``%in%`` and ``/`` nest terms.
"""
from __future__ import annotations

import dataclasses
import functools
import re

from ..base.errors import FormulaError
from .rterms import r_terms
from .syntax import check_syntax
from .syntax import _err

__all__ = ["RandomTerm", "ParsedFormula", "parse_formula", "check_syntax"]


@dataclasses.dataclass(frozen=True)
class RandomTerm:
    """One random-effects term ``(expr | group)``.

    Fields
    ------
    expr : str
        Right-hand side (R syntax) giving the term's model matrix (its columns are the
        random effects per level), e.g. ``"1"``, ``"1 + x"``, ``"0 + x"``.
    group : tuple of str
        Data columns whose interaction forms the grouping factor, e.g. ``("cask", "batch")``.
    label : str, optional
        lme4's name of the grouping factor when it differs from the columns joined by ``:``
        (nesting of three or more levels: ``c:(b:a)``).
    """

    expr: str
    group: tuple
    label: str | None = None

    @property
    def group_name(self) -> str:
        """lme4's name of the grouping factor (``g``, ``b:a``, ``c:(b:a)``)."""
        return self.label if self.label is not None else ":".join(self.group)

    def __str__(self) -> str:
        return f"({self.expr} | {self.group_name})"


@dataclasses.dataclass(frozen=True)
class ParsedFormula:
    """A formula split into response, fixed-effects part and random-effects terms.

    Fields
    ------
    formula : str
        The formula as given.
    response : str
        Left-hand side (an R expression: a column, ``log(y)``, ``cbind(s, f)``).
    fixed : str
        Right-hand side of the fixed effects (``"1"`` when only an intercept).
    random : tuple of RandomTerm
        Random-effect terms after expanding ``||`` and ``/``, in lme4's order.
    """

    formula: str
    response: str
    fixed: str
    random: tuple

    @property
    def fixed_formula(self) -> str:
        return f"{self.response} ~ {self.fixed}"


# ---------------------------------------------------------------------------------------------
# splitting
# ---------------------------------------------------------------------------------------------
def _split_top(s: str, seps: str) -> list:
    """Split ``s`` at characters in ``seps`` outside brackets, quotes and backticks; keep the
    separators as their own items."""
    out, depth, cur = [], 0, []
    quote = None
    for ch in s:
        if quote is not None:
            cur.append(ch)
            if ch == quote:
                quote = None
            continue
        if ch in "'\"`":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth < 0:
                raise FormulaError(f"unbalanced ')' in formula term {s!r}")
        if depth == 0 and ch in seps and quote is None:
            out.append("".join(cur))
            out.append(ch)
            cur = []
        else:
            cur.append(ch)
    if depth != 0:
        raise FormulaError(f"unbalanced '(' in formula {s!r}")
    out.append("".join(cur))
    return out


def _strip_outer_parens(s: str) -> str | None:
    """Return the inside of ``s`` if the whole of ``s`` is one parenthesised group."""
    s = s.strip()
    if not (s.startswith("(") and s.endswith(")")):
        return None
    depth = 0
    for i, ch in enumerate(s):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0 and i != len(s) - 1:
                return None
    return s[1:-1]


_CALL = re.compile(r"^[^\W\d][\w.]*\s*\(")
_NAME = re.compile(r"^(?:[^\W\d][\w.]*|\.[\w.]*|`[^`]+`)$")


def _parse_group(spec: str, term: str) -> list:
    """Grouping factors of a bar term, innermost first, with lme4's names.

    ``a`` -> [((a,), "a")]; ``a:b`` -> [((a, b), "a:b")];
    ``a/b`` -> [((b, a), "b:a"), ((a,), "a")];  ``a/b/c`` -> [((c, b, a), "c:(b:a)"), ...].
    """
    spec = spec.strip()
    if not spec:
        raise FormulaError(f"random-effect term {term!r} has no grouping factor after '|'")
    inner = _strip_outer_parens(spec)
    if inner is not None:
        spec = inner.strip()
    parts = [p.strip() for p in _split_top(spec, "/")[::2]]
    levels = []
    for part in parts:
        cols = [c.strip() for c in _split_top(part, ":")[::2]]
        for c in cols:
            if not _NAME.match(c):
                raise FormulaError(
                    f"cannot read grouping factor {part!r} in term {term!r}: a grouping factor is a column "
                    f"name, an interaction of names (a:b) or a nesting (a/b)"
                )
        levels.append(tuple(c.strip("`") for c in cols))
    out = []
    acc: tuple = ()
    name = ""
    for cols in levels:
        here = ":".join(cols)
        if not acc:
            acc, name = cols, here
        else:
            name = f"{here}:({name})" if ":" in name else f"{here}:{name}"
            acc = cols + acc
        out.append((acc, name))
    return out[::-1]


def _expand_double_bar(expr: str, term: str) -> list:
    """``x || g``: one term per R term of ``expr`` (the intercept first, separate), as lme4's
    ``expandDoubleVerts`` does with ``terms(~ x)``."""
    try:
        t = r_terms(expr)
    except FormulaError as exc:
        raise FormulaError(f"cannot parse {expr!r} in term {term!r}: {exc}") from None
    return (["1"] if t.intercept else []) + [f"0 + {lab}" for lab in t.labels]


@functools.lru_cache(maxsize=512)
def _parse_cached(formula: str) -> ParsedFormula:
    return _parse_formula(formula)


def parse_formula(formula: str) -> ParsedFormula:
    """Parse an lme4 model formula (cached per string).

    Parameters
    ----------
    formula : str
        ``"response ~ fixed + (expr | group) + ..."``; random terms may use ``||``
        (uncorrelated) and ``/`` (nested) as in lme4.

    Returns
    -------
    ParsedFormula

    Raises
    ------
    FormulaError
        A syntax error (with its position) or a formula without random-effect terms; see
        :func:`_parse_formula`.
    """
    if isinstance(formula, str):
        return _parse_cached(formula)
    return _parse_formula(formula)


def _parse_formula(formula: str) -> ParsedFormula:
    """Parse an lme4 model formula.

    Parameters
    ----------
    formula : str
        ``"response ~ fixed + (expr | group) + ..."``; random terms may use ``||`` (uncorrelated)
        and ``/`` (nested) as in lme4.

    Returns
    -------
    ParsedFormula

    Raises
    ------
    FormulaError
        With the offending part and, for syntax errors, its position: a missing or second
        ``~``, unbalanced brackets, an operator without operand, ``|`` outside parentheses, a bar
        term without grouping factor, or a formula without random-effect terms.
    """
    if not isinstance(formula, str):
        raise FormulaError(f"formula must be a string like 'y ~ x + (1 | g)', got {type(formula).__name__}")
    check_syntax(formula)
    lhs, _, rhs = _split_top(formula, "~")
    lhs = lhs.strip()
    if not lhs:
        raise _err(formula, 0, "no response on the left of '~'")

    pieces = _split_top(rhs, "+-")
    fixed_tokens: list = []
    random: list = []
    sign = "+"
    for piece in pieces:
        if piece in ("+", "-"):
            sign = piece
            continue
        if not piece.strip():
            continue
        inner = _strip_outer_parens(piece)
        while inner is not None and _strip_outer_parens(inner) is not None:  # ((1 | g))
            inner = _strip_outer_parens(inner)
        bar = None
        if inner is not None:
            segs = _split_top(inner, "|")
            if len(segs) == 3:
                bar = ("|", segs[0], segs[2])
            elif len(segs) == 5 and segs[2] == "":
                bar = ("||", segs[0], segs[4])
            elif len(segs) > 3:
                raise FormulaError(f"cannot read random-effect term {piece.strip()!r}: too many '|'")
        if bar is None:
            if "|" in piece and not _CALL.match(piece.strip()):
                raise FormulaError(
                    f"cannot read {piece.strip()!r}: a random-effect term is a parenthesised (expr | group) "
                    "added to the formula with '+'"
                )
            fixed_tokens.append((sign, piece.strip()))
            continue
        if sign == "-":
            raise FormulaError(f"random-effect term {piece.strip()!r} cannot be subtracted")
        kind, expr, grp = bar
        expr = expr.strip()
        if not expr:
            raise FormulaError(f"random-effect term {piece.strip()!r} has nothing before '|'")
        groups = _parse_group(grp, piece.strip())
        exprs = _expand_double_bar(expr, piece.strip()) if kind == "||" else [expr]
        for e in exprs:  # lme4: '||' is expanded before '/'
            for cols, name in groups:
                label = name if name != ":".join(cols) else None
                random.append(RandomTerm(expr=e, group=cols, label=label))
    for _, tok in fixed_tokens:
        dot = re.search(r"(?<![\w.`'\"])\.(?![\w.])", tok)
        if dot and not _CALL.match(tok):
            pos = formula.find("~") + 1 + rhs.find(tok) + dot.start()
            raise _err(formula, pos, "'.' (all other columns) is not supported; list the predictors")
    fixed = ""
    for sign, tok in fixed_tokens:
        if not fixed:
            fixed = tok if sign == "+" else f"1 - {tok}"
        else:
            fixed += f" {sign} {tok}"
    if not fixed:
        fixed = "1"
    try:
        r_terms(fixed, lhs)
    except FormulaError as exc:
        raise FormulaError(f"cannot parse the fixed-effects part {fixed!r} of {formula!r}: {exc}") from None
    if not random:
        raise FormulaError(
            f"formula {formula!r} has no random-effect term such as '(1 | group)'; "
            "for a model without random effects use ordinary least squares"
        )
    return ParsedFormula(formula=formula, response=lhs, fixed=fixed, random=tuple(random))
