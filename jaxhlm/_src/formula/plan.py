"""A parsed lme4 formula compiled into R terms: the fixed part (with the response) and one
:class:`~jaxhlm._src.formula.rterms.Terms` per random-effect term. Cached per formula."""
from __future__ import annotations

import dataclasses
import functools

from ..base.errors import FormulaError
from .rparse import BinOp, Call, Paren, Str, Unary, walk_names
from .rterms import Terms, r_terms
from .terms import ParsedFormula

__all__ = ["FormulaPlan", "formula_plan", "referenced_names"]


@dataclasses.dataclass(frozen=True)
class FormulaPlan:
    """Fields: ``fixed`` (Terms of ``response ~ fixed``, the response is variable ``fixed.response``),
    ``random`` (Terms of each random term's expression, in ``parsed.random`` order)."""

    fixed: Terms
    random: tuple

    @property
    def response_node(self):
        return self.fixed.nodes[self.fixed.response]


def _q_names(node, out: list) -> list:
    """Column names quoted as ``Q("name")``."""
    if isinstance(node, Call):
        if node.fn == "Q" and len(node.args) == 1 and isinstance(node.args[0][1], Str):
            out.append(node.args[0][1].value)
        for _, v in node.args:
            _q_names(v, out)
    elif hasattr(node, "left"):
        _q_names(node.left, out)
        _q_names(node.right, out)
    elif hasattr(node, "operand"):
        _q_names(node.operand, out)
    elif hasattr(node, "inner"):
        _q_names(node.inner, out)
    return out


def _data_names(node, out: list) -> list:
    """:func:`walk_names`, except the contrasts argument of ``C(f, sum)`` (a function, not a column)."""
    if isinstance(node, Call) and node.fn == "C":
        for k, v in node.args[:1]:
            if k in (None, "object"):
                _data_names(v, out)
        for k, v in node.args[1:]:
            if k == "object":
                _data_names(v, out)
        return out
    if isinstance(node, Call):
        for _, v in node.args:
            _data_names(v, out)
        return out
    if isinstance(node, (BinOp,)):
        _data_names(node.left, out)
        _data_names(node.right, out)
        return out
    if isinstance(node, Unary):
        return _data_names(node.operand, out)
    if isinstance(node, Paren):
        return _data_names(node.inner, out)
    return walk_names(node, out)


def referenced_names(nodes) -> list:
    """Names (possible columns) the expressions read, in order of appearance, without repeats."""
    out: list = []
    for node in nodes:
        for nm in _data_names(node, []) + _q_names(node, []):
            if nm not in out:
                out.append(nm)
    return out


@functools.lru_cache(maxsize=512)
def formula_plan(parsed: ParsedFormula) -> FormulaPlan:
    try:
        fixed = r_terms(parsed.fixed, parsed.response)
    except FormulaError as exc:
        raise FormulaError(f"cannot read the fixed-effects part of {parsed.formula!r}: {exc}") from None
    random = []
    for t in parsed.random:
        try:
            random.append(r_terms(t.expr))
        except FormulaError as exc:
            raise FormulaError(f"cannot read the random-effect term {t}: {exc}") from None
        if random[-1].offsets:
            raise FormulaError(f"offset() inside the random-effect term {t}; put it in the fixed part")
    return FormulaPlan(fixed=fixed, random=tuple(random))
