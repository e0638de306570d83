"""R's ``update.formula``: a new formula from an old one with the dot syntax.

``update_formula("y ~ a * b + (1 | g)", ". ~ . - a:b + (1 | h)")`` gives
``"y ~ a + b + (1 | g) + (1 | h)"``. As in R:

* in the new formula, ``.`` on the left of ``~`` stands for the old response and ``.`` on the
  right for the old right-hand side; a new formula without a left side keeps the old one;
* the result is simplified with R's formula algebra: ``a * b = a + b + a:b``,
  ``a / b = a + a:b``, ``a %in% b = a:b``, ``(a + b)^2 = a + b + a:b``, ``-`` removes terms,
  ``- 1`` / ``+ 0`` remove the intercept and ``+ 1`` / ``- 0`` restore it; duplicated terms
  are dropped;
* terms are written by increasing order (main effects, then two-way interactions, ...),
  first appearance within an order, and the variables of an interaction in order of first
  appearance;
* a random-effect term ``(expr | g)`` or ``(expr || g)`` is one variable (a main effect): it
  can be added or removed as a whole (``. ~ . - (1 | g)``), matched with spaces ignored.

Function calls (``log(x)``, ``np.log(x + 1)``, ``C(f, Sum)``, ``I(x**2)``) are variables whose
text is kept as written.
"""
from __future__ import annotations

import dataclasses
import re

from ..base.errors import FormulaError

__all__ = ["update_formula", "formula_terms", "normalize_atom"]

_OPS = ("%in%", "||", "**", "~", "+", "-", "*", "/", ":", "^", "|", "(", ")")
_NAME = re.compile(r"[A-Za-z_.][\w.]*|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|`[^`]*`")


def _matching(s: str, i: int) -> int:
    """Index of the bracket closing the one at ``s[i]`` (quotes skipped)."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    stack = [pairs[s[i]]]
    j = i + 1
    while j < len(s):
        ch = s[j]
        if ch in "'\"`":
            k = s.find(ch, j + 1)
            if k < 0:
                raise FormulaError(f"unterminated quote in {s!r}")
            j = k + 1
            continue
        if ch in pairs:
            stack.append(pairs[ch])
        elif ch in ")]}":
            if ch != stack[-1]:
                raise FormulaError(f"unbalanced brackets in {s!r}")
            stack.pop()
            if not stack:
                return j
        j += 1
    raise FormulaError(f"unbalanced '(' in {s!r}")


def _has_top_bar(s: str) -> bool:
    depth = 0
    for ch in s:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "|" and depth == 0:
            return True
    return False


def normalize_atom(text: str) -> str:
    """Canonical text of a variable: spaces collapsed; a bar term as ``(lhs | group)``."""
    t = " ".join(text.split())
    if t.startswith("(") and _matching(t, 0) == len(t) - 1 and _has_top_bar(t[1:-1]):
        inner = t[1:-1]
        bar = "||" if "||" in inner else "|"
        lhs, _, grp = inner.partition(bar)
        lhs = re.sub(r"\s*([+\-*])\s*", r" \1 ", lhs.strip()).strip()
        lhs = re.sub(r"^([+\-]) ", r"\1", lhs)
        return f"({lhs} {bar} {''.join(grp.split())})"
    return t


def _tokens(s: str) -> list:
    out, i = [], 0
    while i < len(s):
        ch = s[i]
        if ch.isspace():
            i += 1
            continue
        if ch == "(":
            j = _matching(s, i)
            inner = s[i + 1:j]
            if _has_top_bar(inner):
                out.append(("atom", normalize_atom(s[i:j + 1])))
                i = j + 1
                continue
            out.append(("op", "("))
            i += 1
            continue
        for op in _OPS:
            if s.startswith(op, i):
                out.append(("op", op))
                i += len(op)
                break
        else:
            m = _NAME.match(s, i)
            if not m:
                raise FormulaError(f"cannot read {s[i:]!r} in formula {s!r}")
            j = m.end()
            if j < len(s) and s[j] in "([" and not m.group().startswith("`"):  # a call: keep its text
                j = _matching(s, j) + 1
                while j < len(s) and s[j] in "[(":  # np.log(x)[...] or f(x)(y)
                    j = _matching(s, j) + 1
            out.append(("atom", " ".join(s[i:j].split())))
            i = j
    return out


@dataclasses.dataclass
class _Value:
    terms: list  # list of frozenset of variable keys
    icpt: bool | None = None  # explicit intercept state (None: unspecified)
    order: dict = dataclasses.field(default_factory=dict)  # (the dot's) variable order


class _Parser:
    """Recursive descent over R's precedence: ``+ -`` < ``* /`` < ``%in%`` < ``:`` < ``^``."""

    def __init__(self, tokens, dot: _Value | None, order: dict, text: dict):
        self.t = tokens
        self.i = 0
        self.dot = dot
        self.order = order
        self.text = text
        self.dot_order = getattr(dot, "order", {}) if dot is not None else {}

    def peek(self):
        return self.t[self.i] if self.i < len(self.t) else (None, None)

    def take(self):
        tok = self.peek()
        self.i += 1
        return tok

    def parse(self) -> _Value:
        v = self.sum()
        if self.i != len(self.t):
            raise FormulaError(f"unexpected {self.peek()[1]!r} in formula")
        return v

    def sum(self) -> _Value:
        kind, tok = self.peek()
        if tok in ("+", "-"):
            v = _Value([])
        else:
            v = self.prod()
        while self.peek()[1] in ("+", "-"):
            op = self.take()[1]
            rhs = self.prod()
            v = _plus(v, rhs) if op == "+" else _minus(v, rhs)
        return v

    def prod(self) -> _Value:
        v = self.inop()
        while self.peek()[1] in ("*", "/"):
            op = self.take()[1]
            rhs = self.inop()
            if op == "*":
                v = _plus(_plus(v, rhs), _colon(v, rhs))
            else:
                allv = frozenset().union(*v.terms) if v.terms else frozenset()
                v = _plus(v, _colon(_Value([allv]), rhs))
        return v

    def inop(self) -> _Value:
        v = self.colon()
        while self.peek()[1] == "%in%":
            self.take()
            v = _colon(v, self.colon())
        return v

    def colon(self) -> _Value:
        v = self.power()
        while self.peek()[1] == ":":
            self.take()
            v = _colon(v, self.power())
        return v

    def power(self) -> _Value:
        v = self.atom()
        if self.peek()[1] in ("^", "**"):
            self.take()
            kind, tok = self.take()
            try:
                k = int(float(tok))
            except (TypeError, ValueError):
                raise FormulaError(f"the power of a term must be a number, got {tok!r}") from None
            base = v
            for _ in range(k - 1):
                v = _plus(v, _colon(v, base))
        return v

    def atom(self) -> _Value:
        kind, tok = self.take()
        if tok is None:
            raise FormulaError("formula ends where a term was expected")
        if kind == "op" and tok == "(":
            v = self.sum()
            if self.take()[1] != ")":
                raise FormulaError("unbalanced '(' in formula")
            return v
        if kind == "op":
            raise FormulaError(f"unexpected {tok!r} in formula")
        if tok == ".":
            if self.dot is None:
                raise FormulaError("'.' in the new formula, but the old formula has nothing for it to stand for")
            keys = set().union(*self.dot.terms) if self.dot.terms else set()
            for k in sorted(keys, key=lambda k: self.dot_order.get(k, 0)):  # where the dot stands
                self.order.setdefault(k, len(self.order))
            return _Value(list(self.dot.terms), self.dot.icpt)
        if re.fullmatch(r"\d+(\.\d*)?", tok):
            if float(tok) == 1:
                return _Value([], True)
            if float(tok) == 0:
                return _Value([], False)
            raise FormulaError(f"a number ({tok}) is not a term of a formula")
        key = "".join(tok.split())
        if key not in self.order:
            self.order[key] = len(self.order)
            self.text[key] = tok
        return _Value([frozenset([key])])


def _plus(a: _Value, b: _Value) -> _Value:
    terms = list(a.terms) + [t for t in b.terms if t not in a.terms]
    return _Value(terms, b.icpt if b.icpt is not None else a.icpt)


def _minus(a: _Value, b: _Value) -> _Value:
    terms = [t for t in a.terms if t not in b.terms]
    icpt = a.icpt
    if b.icpt is True:
        icpt = False
    elif b.icpt is False:
        icpt = True
    return _Value(terms, icpt)


def _colon(a: _Value, b: _Value) -> _Value:
    at = a.terms or [frozenset()]
    bt = b.terms or [frozenset()]
    out: list = []
    for x in at:
        for y in bt:
            t = x | y
            if t and t not in out:
                out.append(t)
    return _Value(out, None)


def _split(formula: str) -> tuple:
    if not isinstance(formula, str):
        raise FormulaError(f"a formula must be a string, got {type(formula).__name__}")
    depth, pos = 0, -1
    for i, ch in enumerate(formula):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "~" and depth == 0:
            if pos >= 0:
                raise FormulaError(f"formula {formula!r} has more than one '~'")
            pos = i
    if pos < 0:
        raise FormulaError(f"formula {formula!r} has no '~'")
    return formula[:pos].strip(), formula[pos + 1:].strip()


def formula_terms(rhs: str, dot: _Value | None = None, order=None, text=None) -> tuple:
    """``(terms, intercept, order, text)`` of a right-hand side: terms as frozensets of variable
    keys (spaces removed), in R's order; ``text`` maps keys to their written form."""
    order = {} if order is None else order
    text = {} if text is None else text
    rhs = rhs.strip()
    v = _Parser(_tokens(rhs), dot, order, text).parse() if rhs else _Value([], None)
    terms = sorted(v.terms, key=lambda t: len(t))  # stable: first appearance within an order
    return terms, (v.icpt is not False), order, text


def _deparse(terms, intercept, order, text) -> str:
    labels = [":".join(text[k] for k in sorted(t, key=lambda k: order[k])) for t in terms]
    if not labels:
        return "1" if intercept else "-1"
    out = " + ".join(labels)
    return out if intercept else f"{out} - 1"


def update_formula(old: str, new: str) -> str:
    """R's ``update.formula(old, new)`` on formula strings.

    Parameters
    ----------
    old : str
        The formula to modify, e.g. ``"y ~ x * f + (1 | g)"``.
    new : str
        ``". ~ . - x:f"``, ``"~ . + (1 | h)"``, ``"log(.) ~ ."``, ``"~ . - (1 | g)"``, or a
        formula without dots (which replaces the old one).

    Returns
    -------
    str
        The new formula, simplified and written as R writes it.
    """
    olhs, orhs = _split(old)
    nlhs, nrhs = _split(new)
    text: dict = {}
    oterms, oicpt, oorder, _ = formula_terms(orhs, text=text)
    dot = _Value(oterms, None if oicpt else False, oorder)
    terms, icpt, order, _ = formula_terms(nrhs, dot=dot, text=text)
    if not nlhs:
        lhs = olhs
    else:
        lhs = re.sub(r"(?<![\w.])\.(?![\w.])", lambda _: f"({olhs})" if not re.fullmatch(r"[\w.]+", olhs) else olhs, nlhs)
    body = _deparse(terms, icpt, order, text)
    return f"{lhs} ~ {body}" if lhs else f"~{body}"
