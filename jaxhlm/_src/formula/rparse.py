"""R's expression grammar: the parser and ``deparse`` that model formulas need.

A formula is R code, so it is read with R's grammar, not Python's: ``^`` is a power (``**`` is its
synonym, as in R), ``-2^2`` is ``-(2^2)``, ``-1:3`` is ``(-1):3``, ``%in%`` / ``%%`` bind tighter than
``*``, names may contain dots (``Sepal.Length``, ``np.log``), backticks quote any name.
Precedence, from loose to tight (R's ``?Syntax``)::

    ~  <  | ||  <  & &&  <  !  <  == != < > <= >=  <  + - (binary)  <  * /  <  %any%
       <  :  <  + - (unary)  <  ^ (right-associative)  <  calls f(...)

:func:`deparse` writes a parsed expression back as R's ``deparse`` does, which is how R names the
columns of a model matrix: spaces around ``+ - * == & |`` and ``%in%``, none around ``^ : / %% %/%``,
``", "`` between arguments, ``name = value`` for named ones, numbers in R's format (``1e+05``,
``0.001``, ``2``), strings in double quotes, non-syntactic names in backticks.
"""
from __future__ import annotations

import dataclasses
import math
import re

from ..base.errors import FormulaError

__all__ = ["Num", "Str", "Name", "Call", "BinOp", "Unary", "Paren", "parse_r", "deparse", "r_number",
           "is_syntactic", "walk_names"]


# ---------------------------------------------------------------------------------------------
# syntax tree
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Num:
    value: float
    integer: bool = False  # written with an L suffix


@dataclasses.dataclass(frozen=True)
class Str:
    value: str


@dataclasses.dataclass(frozen=True)
class Name:
    id: str


@dataclasses.dataclass(frozen=True)
class Call:
    fn: str
    args: tuple  # of (name or None, node)


@dataclasses.dataclass(frozen=True)
class BinOp:
    op: str
    left: object
    right: object


@dataclasses.dataclass(frozen=True)
class Unary:
    op: str
    operand: object


@dataclasses.dataclass(frozen=True)
class Paren:
    inner: object


_RESERVED = {"if", "else", "repeat", "while", "function", "for", "next", "break", "TRUE", "FALSE", "NULL",
             "Inf", "NaN", "NA", "NA_integer_", "NA_real_", "NA_character_", "in"}
_SYNTACTIC = re.compile(r"^(?:[^\W\d_]|\.(?![0-9]))[\w.]*$|^\.$")


def is_syntactic(name: str) -> bool:
    """Whether R writes ``name`` without backticks."""
    return bool(_SYNTACTIC.match(name)) and name not in _RESERVED


# ---------------------------------------------------------------------------------------------
# tokens
# ---------------------------------------------------------------------------------------------
_NUMBER = re.compile(r"(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)L?")
_NAMETOK = re.compile(r"(?:[^\W\d]|\.(?![0-9]))[\w.]*|\.")  # (a leading _ is allowed, unlike R)
_OPS = ("**", "<=", ">=", "==", "!=", "&&", "||", "<-", "+", "-", "*", "/", "^", ":", "~", "(", ")",
        ",", "=", "<", ">", "!", "&", "|", "[", "]", "{", "}", "$", "@", "?")
_CONSTANTS = {"TRUE", "FALSE", "NULL", "Inf", "NaN", "NA", "NA_integer_", "NA_real_", "NA_character_"}


def _error(text: str, pos: int, msg: str) -> FormulaError:
    return FormulaError(f"{msg} (position {pos})", formula=text, position=pos)


def _tokenize(text: str) -> list:
    """``(kind, value, pos)`` with kind one of num, str, name, op, end."""
    out = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch in "'\"":
            j, buf = i + 1, []
            while j < n and text[j] != ch:
                if text[j] == "\\" and j + 1 < n:
                    nxt = text[j + 1]
                    buf.append({"n": "\n", "t": "\t", "\\": "\\", "'": "'", '"': '"'}.get(nxt, "\\" + nxt))
                    j += 2
                    continue
                buf.append(text[j])
                j += 1
            if j >= n:
                raise _error(text, i, f"unterminated string starting with {ch}")
            out.append(("str", "".join(buf), i))
            i = j + 1
            continue
        if ch == "`":
            j = text.find("`", i + 1)
            if j < 0:
                raise _error(text, i, "unterminated backtick-quoted name")
            out.append(("name", text[i + 1:j], i))
            i = j + 1
            continue
        m = _NUMBER.match(text, i) if (ch.isdigit() or (ch == "." and i + 1 < n and text[i + 1].isdigit())) else None
        if m:
            out.append(("num", m.group(0), i))
            i = m.end()
            continue
        m = _NAMETOK.match(text, i)
        if m:
            out.append(("name", m.group(0), i))
            i = m.end()
            continue
        if ch == "%":
            j = text.find("%", i + 1)
            if j < 0:
                raise _error(text, i, "unterminated %operator%")
            out.append(("op", text[i:j + 1], i))
            i = j + 1
            continue
        for op in _OPS:
            if text.startswith(op, i):
                out.append(("op", op, i))
                i += len(op)
                break
        else:
            raise _error(text, i, f"unexpected character {ch!r}")
    out.append(("end", None, n))
    return out


# ---------------------------------------------------------------------------------------------
# Pratt parser
# ---------------------------------------------------------------------------------------------
_BINARY_BP = {  # left binding power; right = lbp + 1 (left-assoc) or lbp (right-assoc ^)
    "~": 3, "|": 5, "||": 5, "&": 6, "&&": 6, "==": 8, "!=": 8, "<": 8, ">": 8, "<=": 8, ">=": 8,
    "+": 9, "-": 9, "*": 10, "/": 10, ":": 12, "^": 14,
}
_SPECIAL_BP = 11  # %any%
_UNARY_MINUS_BP = 13
_NOT_BP = 7


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0

    def peek(self):
        return self.toks[self.i]

    def take(self):
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, value):
        tok = self.take()
        if tok[0] != "op" or tok[1] != value:
            raise _error(self.text, tok[2], f"expected {value!r}" + (f", found {tok[1]!r}" if tok[1] else ""))
        return tok

    def lbp(self, tok) -> int:
        kind, val, _ = tok
        if kind != "op":
            return 0
        if val == "**":
            return _BINARY_BP["^"]
        if val.startswith("%") and len(val) >= 2:
            return _SPECIAL_BP
        if val == "(":
            return 16
        return _BINARY_BP.get(val, 0)

    def expression(self, rbp: int = 0):
        left = self.prefix()
        while rbp < self.lbp(self.peek()):
            left = self.infix(left)
        return left

    def prefix(self):
        kind, val, pos = self.take()
        if kind == "num":
            return _number(val, self.text, pos)
        if kind == "str":
            return Str(val)
        if kind == "name":
            return Name(val)
        if kind == "op":
            if val in ("-", "+"):
                return Unary(val, self.expression(_UNARY_MINUS_BP))
            if val == "!":
                return Unary("!", self.expression(_NOT_BP))
            if val == "(":
                inner = self.expression(0)
                self.expect(")")
                return Paren(inner)
            if val == "~":
                return Unary("~", self.expression(_BINARY_BP["~"]))
        if kind == "end":
            raise _error(self.text, pos, "the expression ends too early")
        raise _error(self.text, pos, f"unexpected {val!r}")

    def infix(self, left):
        kind, val, pos = self.take()
        if val == "(":
            return self.call(left, pos)
        if val in ("^", "**"):
            return BinOp("^", left, self.expression(_BINARY_BP["^"] - 1))
        bp = self.lbp((kind, val, pos))
        if val in ("==", "!=", "<", ">", "<=", ">="):
            right = self.expression(bp)
            if self.peek()[0] == "op" and self.peek()[1] in ("==", "!=", "<", ">", "<=", ">="):
                raise _error(self.text, self.peek()[2], "comparisons cannot be chained; add parentheses")
            return BinOp(val, left, right)
        return BinOp(val, left, self.expression(bp))

    def call(self, fn, pos):
        if not isinstance(fn, Name):
            raise _error(self.text, pos, "only a named function can be called here")
        args = []
        if self.peek()[0] == "op" and self.peek()[1] == ")":
            self.take()
            return Call(fn.id, ())
        while True:
            tok = self.peek()
            nxt = self.toks[self.i + 1]
            name = None
            if tok[0] in ("name", "str") and nxt[0] == "op" and nxt[1] == "=":
                name = tok[1]
                self.i += 2
            args.append((name, self.expression(_BINARY_BP["~"])))
            tok = self.take()
            if tok[0] == "op" and tok[1] == ")":
                break
            if not (tok[0] == "op" and tok[1] == ","):
                raise _error(self.text, tok[2], f"expected ',' or ')' in the call of {fn.id}()")
        return Call(fn.id, tuple(args))


def _number(text: str, formula: str, pos: int) -> Num:
    integer = text.endswith("L")
    body = text[:-1] if integer else text
    try:
        value = float(int(body, 16)) if body[:2].lower() == "0x" else float(body)
    except ValueError:
        raise _error(formula, pos, f"cannot read the number {text!r}") from None
    return Num(value, integer)


def parse_r(text: str):
    """Parse one R expression (no ``~``); raise :class:`FormulaError` with a position on error."""
    p = _Parser(text)
    if p.peek()[0] == "end":
        raise _error(text, 0, "empty expression")
    node = p.expression(0)
    tok = p.peek()
    if tok[0] != "end":
        raise _error(text, tok[2], f"unexpected {tok[1]!r} after a complete expression")
    return node


# ---------------------------------------------------------------------------------------------
# deparse
# ---------------------------------------------------------------------------------------------
_SPACED = {"+", "-", "*", "==", "!=", "<", ">", "<=", ">=", "&", "&&", "|", "||", "~", "<-", "="}


def r_number(v: float, integer: bool = False) -> str:
    """A double as R prints it with 15 significant digits (``deparse``): fixed or scientific,
    whichever is narrower (fixed on ties): ``1e+05``, ``123456``, ``0.001``, ``1e-04``, ``0.1``."""
    if integer:
        return f"{int(v)}L"
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Inf" if v > 0 else "-Inf"
    if v == 0:
        return "0"
    neg = v < 0
    mant, exp = f"{abs(v):.14e}".split("e")
    e = int(exp)
    digits = mant.replace(".", "").rstrip("0") or "0"
    nsig = len(digits)
    if e >= 0:
        dec = max(0, nsig - e - 1)
        wf = e + 1 + (dec > 0) + dec
    else:
        dec = -e - 1 + nsig
        wf = 2 + dec
    ws = nsig + (nsig > 1) + (4 if abs(e) < 100 else 5)
    if wf <= ws:
        s = f"{abs(v):.{dec}f}"
    else:
        m = digits[0] + ("." + digits[1:] if nsig > 1 else "")
        s = f"{m}e{'-' if e < 0 else '+'}{abs(e):02d}"
    return ("-" if neg else "") + s


def _name(s: str) -> str:
    return s if is_syntactic(s) else "`" + s.replace("`", "\\`") + "`"


def _string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") + '"'


def deparse(node) -> str:
    """R's ``deparse`` of a parsed expression (how model-matrix columns are named)."""
    if isinstance(node, Num):
        return r_number(node.value, node.integer)
    if isinstance(node, Str):
        return _string(node.value)
    if isinstance(node, Name):
        return node.id if node.id in _CONSTANTS else _name(node.id)
    if isinstance(node, Paren):
        return f"({deparse(node.inner)})"
    if isinstance(node, Unary):
        return f"{node.op}{deparse(node.operand)}"
    if isinstance(node, BinOp):
        op = node.op
        if op in _SPACED or (op.startswith("%") and op not in ("%%", "%/%")):
            return f"{deparse(node.left)} {op} {deparse(node.right)}"
        return f"{deparse(node.left)}{op}{deparse(node.right)}"
    if isinstance(node, Call):
        parts = [(f"{_name(k)} = " if k is not None else "") + deparse(v) for k, v in node.args]
        return f"{_name(node.fn)}({', '.join(parts)})"
    raise TypeError(f"not an expression node: {node!r}")


def walk_names(node, out: list) -> list:
    """Every :class:`Name` in ``node`` (function names excluded), in order of appearance."""
    if isinstance(node, Name):
        out.append(node.id)
    elif isinstance(node, Paren):
        walk_names(node.inner, out)
    elif isinstance(node, Unary):
        walk_names(node.operand, out)
    elif isinstance(node, BinOp):
        walk_names(node.left, out)
        walk_names(node.right, out)
    elif isinstance(node, Call):
        for _, v in node.args:
            walk_names(v, out)
    return out
