"""The syntax check of an lme4 formula: the first error, with its position.

:func:`check_syntax` scans the formula once, before :func:`~jaxhlm._src.formula.terms.parse_formula`
splits it, and reports the first syntax error with its position (a caret under the offending
character, :class:`~jaxhlm._src.base.errors.FormulaError`), so that a typo never reaches the
evaluation or JAX as an obscure failure. It checks brackets, quotes, backticks, operands of the
binary operators, the one ``~`` and that ``|`` appears only in a parenthesised random-effect term;
the insides of function calls (``np.log(x)``, ``I(x^2)``) are left to the R parser
(:mod:`~jaxhlm._src.formula.rparse`).
"""
from __future__ import annotations

import re

from ..base.errors import FormulaError

__all__ = ["check_syntax"]


def _err(formula: str, pos: int, msg: str) -> FormulaError:
    return FormulaError(f"{msg} (position {pos})", formula=formula, position=pos)


_OPERAND_START = re.compile(r"[\w.]")
_WORD = re.compile(r"[\w.]+")
_BINARY = ("*", "/", ":", "^", "**", "|", "||", "%in%")
_CLOSE = {"(": ")", "[": "]", "{": "}"}


def _skip_code(s: str, i: int, opener: str) -> int:
    """From just after ``opener`` (a call's ``(``, ``[`` or ``{``), return the index after its
    matching closer; strings and nested brackets are skipped. Python code inside is not checked."""
    start = i - 1
    stack = [opener]
    while i < len(s):
        ch = s[i]
        if ch in "'\"":
            j = s.find(ch, i + 1)
            if j < 0:
                raise _err(s, i, f"unterminated string starting with {ch}")
            i = j + 1
            continue
        if ch == "`":
            j = s.find("`", i + 1)
            if j < 0:
                raise _err(s, i, "unterminated backtick-quoted name")
            i = j + 1
            continue
        if ch in _CLOSE:
            stack.append(ch)
        elif ch in ")]}":
            if _CLOSE[stack[-1]] != ch:
                raise _err(s, i, f"{ch!r} does not match {stack[-1]!r}")
            stack.pop()
            if not stack:
                return i + 1
        i += 1
    raise _err(s, start, f"{opener!r} is never closed")


def check_syntax(formula: str) -> None:
    """Raise :class:`FormulaError` with the position of the first syntax error in ``formula``.

    Checks brackets, quotes and backticks, and at the level of the formula (outside function
    calls such as ``np.log(x)`` or ``I(x^2)``, whose insides the R parser checks) that every
    binary operator has two operands, that two operands are joined by an operator, that there
    is exactly one ``~``, and that ``|`` appears only inside a parenthesised random-effect term.
    """
    s = formula
    n = len(s)
    # state: what the previous token was: "start" (beginning of a side / after '('),
    # "operand", "operator"
    prev = "start"
    prev_pos = 0
    prev_text = ""
    groups: list = []  # positions of open grouping parentheses
    tildes = 0
    i = 0
    while i < n:
        ch = s[i]
        if ch.isspace():
            i += 1
            continue
        if ch == "~":
            if groups:
                raise _err(s, i, "'~' inside parentheses")
            tildes += 1
            if tildes > 1:
                raise _err(s, i, "a second '~'; a model formula has one '~' between response and predictors")
            if prev == "operator":
                raise _err(s, prev_pos, f"operator {prev_text!r} has no right operand")
            prev, prev_pos, prev_text = "start", i, "~"
            i += 1
            continue
        if ch == "(":
            if prev == "operand":
                raise _err(s, i, f"missing operator between {prev_text!r} and '('")
            groups.append(i)
            prev, prev_pos, prev_text = "start", i, "("
            i += 1
            continue
        if ch == ")":
            if not groups:
                raise _err(s, i, "')' without a matching '('")
            if prev == "operator":
                raise _err(s, prev_pos, f"operator {prev_text!r} has no right operand")
            if prev == "start":
                raise _err(s, i, "empty parentheses '()'")
            groups.pop()
            prev, prev_pos, prev_text = "operand", i, ")"
            i += 1
            continue
        if ch in "]}":
            raise _err(s, i, f"{ch!r} without a matching opening bracket")
        if ch in "[{":
            if prev == "operand":
                raise _err(s, i, f"missing operator between {prev_text!r} and {ch!r}")
            j = _skip_code(s, i + 1, ch)
            prev, prev_pos, prev_text = "operand", i, s[i:j]
            i = j
            continue
        if ch == "`":
            j = s.find("`", i + 1)
            if j < 0:
                raise _err(s, i, "unterminated backtick-quoted name")
            if prev == "operand":
                raise _err(s, i, f"missing operator between {prev_text!r} and {s[i:j + 1]!r}")
            prev, prev_pos, prev_text = "operand", i, s[i:j + 1]
            i = j + 1
            continue
        if ch in "'\"":
            raise _err(s, i, "a quoted string is only allowed inside a function call such as C(f, Treatment('a'))")
        if _OPERAND_START.match(ch):
            m = _WORD.match(s, i)
            j = m.end()
            word = s[i:j]
            if prev == "operand":
                raise _err(s, i, f"missing operator between {prev_text!r} and {word!r}")
            k = j
            while k < n and s[k] == " ":
                k += 1
            if k < n and s[k] == "(":  # function call: skip its Python arguments
                j = _skip_code(s, k + 1, "(")
            prev, prev_pos, prev_text = "operand", i, s[i:j]
            i = j
            continue
        # operators
        op = None
        for cand in ("%in%", "||", "**", "+", "-", "*", "/", ":", "^", "|"):
            if s.startswith(cand, i):
                op = cand
                break
        if op is None:
            raise _err(s, i, f"unexpected character {ch!r}")
        if op in ("|", "||") and not groups:
            raise _err(
                s, i, f"{op!r} outside parentheses; write a random-effect term as (expr {op} group)"
            )
        if op in _BINARY and prev != "operand":
            what = f"after {prev_text!r}" if prev == "operator" else "at the start of an expression"
            raise _err(s, i, f"operator {op!r} {what} has no left operand")
        prev, prev_pos, prev_text = "operator", i, op
        i += len(op)
    if groups:
        raise _err(s, groups[-1], "'(' is never closed")
    if prev == "operator":
        raise _err(s, prev_pos, f"operator {prev_text!r} has no right operand")
    if tildes == 0:
        raise FormulaError(
            f"formula {formula!r} has no '~' separating the response from the predictors", formula=formula
        )
    if prev == "start":
        raise _err(s, n, "nothing on the right of '~'")
