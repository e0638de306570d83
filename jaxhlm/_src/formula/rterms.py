"""R's ``terms()``: a formula's right-hand side as an ordered list of terms, the way R expands it.

A *term* is a set of *variables* (an expression that is not a formula operator: ``x``, ``log(x)``,
``I(x^2)``, ``poly(x, 2)``). The operators act on lists of terms (R's ``terms.formula``):

* ``a + b``: union (first occurrence kept); ``a - b``: ``a`` without the terms of ``b``;
* ``a:b``: every term of ``a`` joined with every term of ``b`` (``a`` outer);
* ``a*b`` = ``a + b + a:b``;  ``a/b`` = ``a + (all variables of a):b``;  ``b %in% a``: every term
  of ``b`` joined with all variables of ``a``;
* ``(a + b + c)^k``: all interactions up to order ``k``; ``x^2`` alone is just ``x`` (a power
  inside ``I()`` is arithmetic: ``I(x^2)``);
* ``1`` / ``0`` / ``- 1`` / ``+ 0`` set or remove the intercept; ``offset(x)`` is no term.

Variables are numbered by first appearance (the response first) and a term's label lists its
variables in that order (``y ~ a*b + c*b`` has the term ``b:c``). Terms are sorted by order (main
effects, then two-way, ...), stable within an order. For every variable of a term,
:attr:`Terms.codes` says how a factor there is coded (R's ``TermCode``): 1 = by contrasts when the
term without that variable is contained in an earlier term (or is empty), 2 = by one indicator per
level otherwise.
"""
from __future__ import annotations

import dataclasses
import functools

from ..base.errors import FormulaError
from .rparse import BinOp, Call, Name, Num, Paren, Unary, deparse, parse_r

__all__ = ["Terms", "r_terms"]


@dataclasses.dataclass(frozen=True)
class Terms:
    """The expanded right-hand side of a formula.

    Fields
    ------
    variables : tuple of str
        Variable labels (R's ``deparse``), in order of first appearance; the response first when
        there is one.
    nodes : tuple
        The parsed expression of each variable.
    terms : tuple of tuple of int
        Each term as the sorted indices of its variables, in R's term order.
    labels : tuple of str
        R's term labels (``a``, ``a:b``, ``I(x^2)``).
    intercept : bool
    offsets : tuple of int
        Variables that are ``offset(...)`` calls.
    response : int or None
        Index of the response variable.
    codes : tuple of tuple of int
        Per term, per variable of the term: 1 (contrasts) or 2 (indicators), R's ``TermCode``.
    notes : tuple of str
        Things worth a warning (``x^2`` outside ``I()``).
    """

    variables: tuple
    nodes: tuple
    terms: tuple
    labels: tuple
    intercept: bool
    offsets: tuple
    response: int | None
    codes: tuple
    notes: tuple = ()


class _Expander:
    def __init__(self):
        self.labels: list = []
        self.nodes: list = []
        self.intercept = True
        self.offsets: list = []
        self.notes: list = []

    def var(self, node) -> int:
        label = deparse(node)
        if label not in self.labels:
            self.labels.append(label)
            self.nodes.append(node)
        return self.labels.index(label)

    @staticmethod
    def plus(a: list, b: list) -> list:
        out = list(a)
        for t in b:
            if t not in out:
                out.append(t)
        return out

    @staticmethod
    def interact(a: list, b: list) -> list:
        out: list = []
        for s in a:
            for t in b:
                u = s | t
                if u not in out:
                    out.append(u)
        return out

    @staticmethod
    def allvars(a: list) -> frozenset:
        return frozenset().union(*a) if a else frozenset()

    def expand(self, node) -> list:
        if isinstance(node, Paren):
            return self.expand(node.inner)
        if isinstance(node, Num):
            if node.value == 1:
                self.intercept = True
            elif node.value == 0:
                self.intercept = False
            else:
                raise FormulaError(f"invalid model formula: the number {deparse(node)} is not a term (only 0 and 1 are)")
            return []
        if isinstance(node, Unary):
            if node.op == "+":
                return self.expand(node.operand)
            if node.op == "-":
                self.delete([], node.operand)
                return []
            return [frozenset([self.var(node)])]
        if isinstance(node, BinOp):
            op = node.op
            if op == "+":
                left = self.expand(node.left)
                return self.plus(left, self.expand(node.right))
            if op == "-":
                return self.delete(self.expand(node.left), node.right)
            if op == ":":
                return self.interact(self.expand(node.left), self.expand(node.right))
            if op == "*":
                left, right = self.expand(node.left), self.expand(node.right)
                return self.plus(self.plus(left, right), self.interact(left, right))
            if op == "/":
                left, right = self.expand(node.left), self.expand(node.right)
                return self.plus(left, [self.allvars(left) | t for t in right])
            if op == "%in%":
                left, right = self.expand(node.left), self.expand(node.right)
                return [t | self.allvars(right) for t in left]
            if op == "^":
                return self.power(node)
            return [frozenset([self.var(node)])]
        if isinstance(node, Call) and node.fn == "offset":
            if len(node.args) != 1 or node.args[0][0] is not None:
                raise FormulaError(f"offset() takes one argument: {deparse(node)}")
            self.offsets.append(self.var(node))
            return []
        if isinstance(node, Name) and node.id == ".":
            raise FormulaError("'.' (all other columns) is not supported; list the predictors")
        return [frozenset([self.var(node)])]

    def delete(self, left: list, right_node) -> list:
        inner = right_node
        while isinstance(inner, Paren):
            inner = inner.inner
        if isinstance(inner, Num) and inner.value in (0, 1):
            self.intercept = inner.value == 0
            return left
        keep_int = self.intercept
        right = self.expand(right_node)
        self.intercept = keep_int  # an intercept inside the subtracted part does not count
        return [t for t in left if t not in right]

    def power(self, node) -> list:
        k = node.right
        while isinstance(k, Paren):
            k = k.inner
        if not (isinstance(k, Num) and k.value >= 1 and float(k.value).is_integer()):
            raise FormulaError(
                f"invalid power in formula {deparse(node)!r}: outside I() '^' expands interactions and needs a "
                f"positive whole number; for arithmetic write I({deparse(node)})"
            )
        base = self.expand(node.left)
        if len(base) == 1 and len(base[0]) == 1 and k.value > 1:
            self.notes.append(
                f"{deparse(node)!r} outside I() is R's interaction power of a single term, which is just "
                f"{deparse(node.left)!r}; write I({deparse(node)}) for the arithmetic power"
            )
        out = base
        for _ in range(int(k.value) - 1):
            out = self.interact(base, out)
        return out


def _term_codes(terms: list) -> tuple:
    codes = []
    for j, t in enumerate(terms):
        row = []
        for v in sorted(t):
            rest = t - {v}
            if not rest or any(rest <= terms[i] for i in range(j)):
                row.append(1)
            else:
                row.append(2)
        codes.append(tuple(row))
    return tuple(codes)


@functools.lru_cache(maxsize=1024)
def r_terms(rhs: str, response: str | None = None) -> Terms:
    """R's ``terms()`` of ``response ~ rhs`` (``rhs`` in R syntax; ``response`` optional).

    Raises
    ------
    FormulaError
        For text that is not an R expression, numbers other than 0/1 as terms, a non-integer
        power, or ``.``.
    """
    ex = _Expander()
    resp = None
    if response is not None:
        resp = ex.var(parse_r(response))
    node = parse_r(rhs)
    terms = ex.expand(node)
    if resp is not None and frozenset([resp]) in terms:
        terms = [t for t in terms if t != frozenset([resp])]
        ex.notes.append(f"the response {ex.labels[resp]!r} appeared on the right-hand side and was dropped (as in R)")
    terms = sorted(terms, key=len)  # stable: R's order within an order is the order of expansion
    labels = tuple(":".join(ex.labels[v] for v in sorted(t)) for t in terms)
    return Terms(
        variables=tuple(ex.labels),
        nodes=tuple(ex.nodes),
        terms=tuple(tuple(sorted(t)) for t in terms),
        labels=labels,
        intercept=ex.intercept,
        offsets=tuple(ex.offsets),
        response=resp,
        codes=_term_codes(terms),
        notes=tuple(ex.notes),
    )
