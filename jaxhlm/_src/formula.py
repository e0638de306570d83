"""lme4 formula syntax: split ``y ~ fixed + (expr | group)`` into its parts.

The fixed part and each random-effect expression are handed to formulaic unchanged; this module
only finds the bar terms, expands ``||`` and ``/`` the way lme4's ``findbars``/``expandSlash``
do, and names the grouping factors as lme4 does (``(1 | batch/cask)`` gives the groups
``cask:batch`` and ``batch``).
"""
from __future__ import annotations

import dataclasses
import re

import formulaic

from .errors import FormulaError

__all__ = ["RandomTerm", "ParsedFormula", "parse_formula"]


@dataclasses.dataclass(frozen=True)
class RandomTerm:
    """One random-effects term ``(expr | group)``.

    Fields
    ------
    expr : str
        Right-hand side for formulaic giving the term's model matrix (its columns are the
        random effects per level), e.g. ``"1"``, ``"1 + x"``, ``"0 + x"``.
    group : tuple of str
        Data columns whose interaction forms the grouping factor, e.g. ``("cask", "batch")``.
    """

    expr: str
    group: tuple

    @property
    def group_name(self) -> str:
        """lme4's name of the grouping factor (columns joined by ``:``)."""
        return ":".join(self.group)

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
        Left-hand side (an expression formulaic evaluates).
    fixed : str
        Right-hand side of the fixed effects (``"1"`` when only an intercept).
    random : tuple of RandomTerm
        Random-effect terms after expanding ``||`` and ``/``, in formula order.
    """

    formula: str
    response: str
    fixed: str
    random: tuple

    @property
    def fixed_formula(self) -> str:
        return f"{self.response} ~ {self.fixed}"


def _split_top(s: str, seps: str) -> list:
    """Split ``s`` at characters in ``seps`` that are outside brackets; keep the separators."""
    out, depth, cur = [], 0, []
    for ch in s:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth < 0:
                raise FormulaError(f"unbalanced ')' in formula term {s!r}")
        if depth == 0 and ch in seps:
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


_NAME = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]*$|^`[^`]+`$")


def _parse_group(spec: str, term: str) -> list:
    """``a/b/c`` -> [(a,), (b, a), (c, b, a)] in lme4's naming order; ``a:b`` -> [(a, b)]."""
    spec = spec.strip()
    if not spec:
        raise FormulaError(f"random-effect term {term!r} has no grouping factor after '|'")
    nested = [p.strip() for p in spec.split("/")]
    groups = []
    for part in nested:
        cols = tuple(c.strip().strip("`") for c in part.split(":"))
        for c in cols:
            if not c or not _NAME.match(c) and not c.strip():
                raise FormulaError(f"cannot read grouping factor {part!r} in term {term!r}")
        groups.append(cols)
    out = []
    acc: tuple = ()
    for cols in groups:
        acc = cols + acc if acc else cols
        out.append(acc)
    return out


def _expand_double_bar(expr: str, term: str) -> list:
    """``x || g``: one term per formulaic term of ``expr`` (intercept separate), as lme4 does."""
    try:
        f = formulaic.Formula(expr)
    except Exception as exc:  # formulaic's own parse errors
        raise FormulaError(f"cannot parse {expr!r} in term {term!r}: {exc}") from None
    rhs = f.rhs if hasattr(f, "rhs") else f
    terms = [str(t) for t in rhs]
    out = []
    for t in terms:
        out.append("1" if t == "1" else f"0 + {t}")
    return out


def parse_formula(formula: str) -> ParsedFormula:
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
        With the offending part named, for a missing ``~``, unbalanced parentheses, a bar term
        without grouping factor, or a formula without random-effect terms.
    """
    if not isinstance(formula, str):
        raise FormulaError(f"formula must be a string like 'y ~ x + (1 | g)', got {type(formula).__name__}")
    parts = _split_top(formula, "~")
    if len(parts) != 3:
        pos = formula.find("~")
        if pos < 0:
            raise FormulaError(f"formula {formula!r} has no '~' separating the response from the predictors")
        raise FormulaError(f"formula {formula!r} has more than one '~' (second at position {formula.find('~', pos + 1)})")
    lhs, _, rhs = parts
    lhs = lhs.strip()
    if not lhs:
        raise FormulaError(f"formula {formula!r} has no response on the left of '~'")
    if not rhs.strip():
        raise FormulaError(f"formula {formula!r} has nothing on the right of '~'")

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
        for g in groups:
            for e in exprs:
                random.append(RandomTerm(expr=e, group=g))
    if not random:
        raise FormulaError(
            f"formula {formula!r} has no random-effect term such as '(1 | group)'; "
            "for a model without random effects use ordinary least squares"
        )
    fixed = ""
    for sign, tok in fixed_tokens:
        if not fixed:
            fixed = tok if sign == "+" else f"1 - {tok}"
        else:
            fixed += f" {sign} {tok}"
    if not fixed:
        fixed = "1"
    try:
        formulaic.Formula(f"{lhs} ~ {fixed}")
    except Exception as exc:
        raise FormulaError(f"cannot parse the fixed-effects part {fixed!r} of {formula!r}: {exc}") from None
    return ParsedFormula(formula=formula, response=lhs, fixed=fixed, random=tuple(random))
