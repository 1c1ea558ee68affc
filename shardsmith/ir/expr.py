"""Expressions: the language of ``filter`` predicates and ``derive`` columns, parsed from text
(never evaluated as Python) into small immutable nodes that each backend evaluates::

    I1 >= 0 and (C1 != 'x' or is_null(C2)) and C3 in ('a', 'b') and I2 + I3 < 10
    if_else(dep_delay > 15, 1, 0)        hour(ts) * 60 + minute(ts)        coalesce(price, 0.0)

Syntax: columns are bare names, or ``col('any name')``; literals are integers (``12``), floats
(``1.5``, ``2e3``), quoted strings (``'x'`` or ``"x"``), ``true``, ``false`` and ``null``.
Operators, loosest first: ``or``; ``and``; ``not``; comparisons ``== != < <= > >=`` (chained like
``0 < x < 5``) and ``in`` / ``not in`` with a literal list; ``+ -``; ``* / // %``; unary ``-``.
Functions: ``is_null(x)``, ``not_null(x)``, ``if_else(cond, a, b)``, ``coalesce(a, b, ...)``,
``abs``, ``floor``, ``ceil``, ``round(x[, digits])``, ``least(a, b, ...)``, ``greatest(a, b, ...)``;
on strings ``lower``, ``upper``, ``length``, ``substr(s, start[, length])``, ``starts_with(s, 'p')``,
``contains(s, 'p')``; on dates and timestamps ``year``, ``month``, ``day``, ``hour``, ``minute``,
``day_of_week``, ``day_of_year``, ``epoch_seconds``.

Types and their rules (``ir/expr_types.py`` checks them at plan time; ``backends/evaluate.py``
implements them once for both engines):

* Kinds: bool, int, float, string, date, timestamp. Integer columns of any width are int and
  compute as int64 (uint64 values of 2**63 and above wrap to negative); float16/32/64 columns are
  float and compute as float64; binary columns are strings. A date is a day count since 1970-01-01;
  a timestamp is microseconds since 1970-01-01 UTC, whatever the unit it is stored in (seconds and
  milliseconds scale up; nanoseconds are floored to microseconds; a time zone is read as UTC).
* Arithmetic takes numbers (not bools): int op int is int for ``+ - * // %`` (wrapping on int64
  overflow), and float as soon as one operand is float; ``/`` is always float. ``//`` rounds toward
  minus infinity and ``%`` takes the sign of the divisor (Python's rules); an integer ``// 0`` or
  ``% 0`` is null; a float one follows IEEE (infinity or NaN).
* Missing values: null, and NaN in float columns, are *missing*. An operation with a missing operand
  is missing (arithmetic on NaN gives NaN); a comparison with null is null, and NaN compares false
  (IEEE); ``and``/``or``/``not`` follow Kleene logic (false and null is false); ``is_null`` and
  ``coalesce`` count NaN as missing; ``least``/``greatest`` skip missing operands; ``if_else`` with a
  null condition is null. A ``filter`` keeps the rows whose predicate is true; a ``derive`` writes
  missing results as null (a float NaN result included).
* Comparisons: numbers with numbers (two ints exactly, otherwise in float64), strings with strings
  (by their UTF-8 bytes), bools with bools, dates and timestamps with each other (a date is its
  midnight UTC) or with a string literal in ISO form (``'2024-03-01'``, ``'2024-03-01T12:30:00'``)
  read at plan time. ``in`` compares the same way against its literal list. Compare with null
  through ``is_null`` (``x == null`` is an error).
* Functions: ``abs``/``floor``/``ceil`` keep the kind (an int stays int); ``round(x, n)`` rounds half
  to even, for a float as ``rint(x * 10**n) / 10**n`` in float64 (``n`` an integer literal; negative
  ``n`` rounds to tens, hundreds, ...; an int is rounded exactly); ``if_else``, ``coalesce``,
  ``least``, ``greatest`` need operands of one kind (int and float mix as float; a string literal
  beside a date or timestamp is read as one). ``length`` counts Unicode code points; ``substr``
  takes code points from the 0-based ``start`` (integer literals, ``start``, ``length`` >= 0);
  ``lower``/``upper`` map one code point to one, as Arrow's utf8_lower / utf8_upper (utf8proc) do (``ß``
  upper-cases to ``ẞ``, not ``SS``); ``starts_with`` and
  ``contains`` match a literal string's bytes. Date parts are in UTC and are ints: ``day_of_week``
  is 0 for Monday to 6 for Sunday, ``day_of_year`` 1 to 366, ``epoch_seconds`` the whole seconds
  since 1970-01-01 (floored); ``hour`` and ``minute`` need a timestamp.
* A derived column's dtype is bool, int64, float64, string, date or timestamp by its kind; ``dtype:``
  converts it: to an integer rounding half to even, out-of-range and missing values becoming null;
  to float32 rounding to nearest; to bool as ``!= 0``.

Errors name the config key and the column (1-based character position) in the expression.
Expressions nest at most :data:`MAX_DEPTH` levels; long chains of one operator (``a + b + c``,
``x > 0 and y > 0 and ...``) are one node however many terms they have.

>>> str(parse_predicate("I1 >= 0 and C1 in ('a', 'b')", "filter.expr"))
"((I1 >= 0) and (C1 in ('a', 'b')))"
>>> str(parse_expression("-x + 2 * round(y, 1)", "derive.expr"))
'(-x + (2 * round(y, 1)))'
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import Any

from shardsmith.errors import ConfigError, did_you_mean

MAX_DEPTH = 50
_CMP = {"==": "eq", "!=": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge"}
_ADD = {"+": "add", "-": "sub"}
_MUL = {"*": "mul", "/": "div", "//": "floordiv", "%": "mod"}
SYMBOLS = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">=",
           "add": "+", "sub": "-", "mul": "*", "div": "/", "floordiv": "//", "mod": "%"}
ARITH = ("add", "sub", "mul", "div", "floordiv", "mod")
COMPARISONS = ("eq", "ne", "lt", "le", "gt", "ge")
# name -> (fewest arguments, most arguments or None for any number)
FUNCTIONS = {
    "is_null": (1, 1), "not_null": (1, 1), "if_else": (3, 3), "coalesce": (2, None), "abs": (1, 1),
    "floor": (1, 1), "ceil": (1, 1), "round": (1, 2), "least": (2, None), "greatest": (2, None),
    "lower": (1, 1), "upper": (1, 1), "length": (1, 1), "substr": (2, 3), "starts_with": (2, 2),
    "contains": (2, 2), "year": (1, 1), "month": (1, 1), "day": (1, 1), "hour": (1, 1), "minute": (1, 1),
    "day_of_week": (1, 1), "day_of_year": (1, 1), "epoch_seconds": (1, 1),
}
KEYWORDS = {"and", "or", "not", "in", "true", "false", "True", "False", "null", "None"}


@dataclass(frozen=True)
class Col:
    name: str
    pos: int = field(default=0, compare=False, repr=False)  # 1-based column in the text

    def columns(self) -> set[str]:
        return {self.name}

    def __str__(self) -> str:
        return self.name if self.name.isidentifier() and self.name not in KEYWORDS else f"col({self.name!r})"


@dataclass(frozen=True)
class Lit:
    value: Any  # int, float, str, bool or None (null)
    pos: int = field(default=0, compare=False, repr=False)

    def columns(self) -> set[str]:
        return set()

    def __str__(self) -> str:
        if isinstance(self.value, bool):
            return "true" if self.value else "false"
        return "null" if self.value is None else repr(self.value)


@dataclass(frozen=True)
class Expr:
    """An operation: ``fn`` is an operator name (and or not eq ne lt le gt ge add sub mul div
    floordiv mod neg is_in) or a function name; ``args`` its operands (``is_in``: the operand and a
    tuple of literal values). ``and``, ``or`` and each arithmetic operator take two or more
    operands, applied left to right."""

    fn: str
    args: tuple
    pos: int = field(default=0, compare=False, repr=False)

    def columns(self) -> set[str]:
        out: set[str] = set()
        stack: list = [self]
        while stack:  # iterative: a long chain of terms must not recurse
            node = stack.pop()
            if isinstance(node, Col):
                out.add(node.name)
            elif isinstance(node, Expr):
                stack.extend(a for a in node.args if isinstance(a, (Col, Lit, Expr)))
        return out

    def __str__(self) -> str:
        if self.fn in SYMBOLS:
            return "(" + f" {SYMBOLS[self.fn]} ".join(map(str, self.args)) + ")"
        if self.fn in ("and", "or"):
            return "(" + f" {self.fn} ".join(map(str, self.args)) + ")"
        if self.fn == "not":
            return f"not {self.args[0]}"
        if self.fn == "neg":
            return f"-{self.args[0]}"
        if self.fn == "is_in":
            return f"({self.args[0]} in {tuple(self.args[1])!r})"
        return f"{self.fn}({', '.join(map(str, self.args))})"


Node = Col | Lit | Expr  # an expression tree


def parse_predicate(text: str, key: str) -> Node:
    """Parse a ``filter`` predicate; errors name ``key`` and the position."""
    return _Parser(text, key, "predicate").parse()


def parse_expression(text: str, key: str) -> Node:
    """Parse a ``derive`` expression; errors name ``key`` and the position."""
    return _Parser(text, key, "expression").parse()


# --- tokens --------------------------------------------------------------------------------------
_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<num>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
  | (?P<str>'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|//|[<>+\-*/%(),\[\]])
""", re.VERBOSE)


@dataclass(frozen=True)
class _Tok:
    kind: str  # num str name op end
    text: str
    pos: int  # 1-based


def _tokens(text: str, fail) -> list[_Tok]:
    out, i = [], 0
    while i < len(text):
        m = _TOKEN.match(text, i)
        if m is None:
            ch = text[i]
            hint = " (use == to compare)" if ch == "=" else " (strings are quoted with ' or \")" if ch in "`" else ""
            if ch in "'\"":
                fail("unterminated string", i + 1)
            fail(f"unexpected character {ch!r}{hint}", i + 1)
        kind = m.lastgroup
        if kind == "num" and m.end() < len(text) and (text[m.end()].isalnum() or text[m.end()] == "_"):
            bad = re.match(r"[0-9A-Za-z_.]+", text[i:]).group(0)
            fail(f"{bad!r} is not a number (integers and decimals only; no complex numbers)", i + 1)
        if kind != "ws":
            out.append(_Tok(kind, m.group(0), i + 1))
        i = m.end()
    out.append(_Tok("end", "", len(text) + 1))
    return out


# --- the parser: precedence climbing; chains of one operator are built in a loop --------------------
class _Parser:
    def __init__(self, text: str, key: str, what: str):
        self.text, self.key, self.what = str(text), key, what
        self.toks = _tokens(self.text, self.fail)
        self.i = 0
        self.depth = 0

    def fail(self, message: str, pos: int):
        raise ConfigError(f"cannot parse {self.what}: {message} at column {pos}{_near(self.text, pos)}", self.key)

    def parse(self) -> Node:
        if self.toks[0].kind == "end":
            self.fail("the expression is empty", 1)
        node = self._or()
        tok = self.peek()
        if tok.kind != "end":
            self.fail(f"unexpected {_show(tok)}", tok.pos)
        check_depth(node, self.text, self.key, self.what)
        return node

    # token helpers
    def peek(self, k: int = 0) -> _Tok:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def take(self) -> _Tok:
        tok = self.peek()
        self.i += 1
        return tok

    def accept(self, text: str) -> _Tok | None:
        tok = self.peek()
        if tok.kind in ("op", "name") and tok.text == text:
            self.i += 1
            return tok
        return None

    def expect(self, text: str, context: str) -> _Tok:
        tok = self.accept(text)
        if tok is None:
            got = self.peek()
            self.fail(f"expected {text!r} {context}, got {_show(got)}", got.pos)
        return tok

    def nested(self, fn):
        """Parse a nested part (parentheses, an operand of not or minus, an argument) with a guard
        against nesting so deep that it could exhaust the interpreter's stack."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.fail(f"the {self.what} nests deeper than {MAX_DEPTH} levels", self.peek().pos)
        try:
            return fn()
        finally:
            self.depth -= 1

    # grammar
    def _chain(self, sub, ops: dict, word: bool = False):
        """Operands of left-associative operators, built in a loop: a run of one operator becomes one
        node (``a + b + c``: add(a, b, c)); a change of operator closes it (``a + b - c``:
        sub(add(a, b), c))."""
        node = sub()
        fn, args, pos = None, [], 0
        while True:
            tok = self.peek()
            if tok.kind not in ("op", "name") or tok.text not in ops or (tok.kind == "name") != word:
                break
            self.i += 1
            right = sub()
            if ops[tok.text] == fn:
                args.append(right)
                continue
            if fn is not None:
                node = Expr(fn, tuple(args), pos)
            fn, args, pos = ops[tok.text], [node, right], tok.pos
        return node if fn is None else Expr(fn, tuple(args), pos)

    def _or(self):
        return self._chain(self._and, {"or": "or"}, word=True)

    def _and(self):
        return self._chain(self._not, {"and": "and"}, word=True)

    def _not(self):
        tok = self.accept("not")
        if tok is not None:
            return Expr("not", (self.nested(self._not),), tok.pos)
        return self._comparison()

    def _comparison(self):
        left = self._sum()
        parts = []
        while True:
            tok = self.peek()
            if tok.kind == "op" and tok.text in _CMP:
                self.i += 1
                right = self._sum()
                parts.append(Expr(_CMP[tok.text], (left, right), tok.pos))
                left = right
            elif tok.kind == "name" and (tok.text == "in" or (tok.text == "not" and self.peek(1).text == "in")):
                negate = tok.text == "not"
                self.i += 2 if negate else 1
                e = Expr("is_in", (left, self._literal_list()), tok.pos)
                parts.append(Expr("not", (e,), tok.pos) if negate else e)
                break
            else:
                break
        if not parts:
            return left
        return parts[0] if len(parts) == 1 else Expr("and", tuple(parts), parts[0].pos)

    def _sum(self):
        return self._chain(self._term, _ADD)

    def _term(self):
        return self._chain(self._unary, _MUL)

    def _unary(self):
        tok = self.peek()
        if tok.kind == "op" and tok.text in ("-", "+"):
            self.i += 1
            operand = self.nested(self._unary)
            if isinstance(operand, Lit):
                if isinstance(operand.value, bool) or not isinstance(operand.value, (int, float)):
                    self.fail(f"cannot apply unary {tok.text} to {_literal_kind(operand.value)} {operand}", tok.pos)
                return Lit(-operand.value if tok.text == "-" else operand.value, tok.pos)
            return Expr("neg", (operand,), tok.pos) if tok.text == "-" else operand
        return self._primary()

    def _primary(self):
        tok = self.take()
        if tok.kind == "num":
            return Lit(_number(tok.text), tok.pos)
        if tok.kind == "str":
            return Lit(ast.literal_eval(tok.text), tok.pos)
        if tok.kind == "name":
            return self._name(tok)
        if tok.kind == "op" and tok.text == "(":
            node = self.nested(self._or)
            self.expect(")", "to close the parenthesis")
            return node
        self.fail(f"unexpected {_show(tok)}", tok.pos)

    def _name(self, tok: _Tok):
        word = tok.text
        if word in ("true", "True", "false", "False"):
            return Lit(word in ("true", "True"), tok.pos)
        if word in ("null", "None"):
            return Lit(None, tok.pos)
        if word in ("and", "or", "not", "in"):
            self.fail(f"unexpected {word!r}", tok.pos)
        if self.peek().text != "(" or self.peek().kind != "op":
            return Col(word, tok.pos)
        self.i += 1
        args = self._arguments()
        if word == "col":
            if len(args) != 1 or not isinstance(args[0], Lit) or not isinstance(args[0].value, str):
                self.fail("col() takes one quoted column name, e.g. col('my column')", tok.pos)
            return Col(args[0].value, tok.pos)
        if word not in FUNCTIONS:
            self.fail(f"unknown function {word}(){did_you_mean(word, (*FUNCTIONS, 'col'))}", tok.pos)
        lo, hi = FUNCTIONS[word]
        if len(args) < lo or (hi is not None and len(args) > hi):
            want = f"{lo}" if lo == hi else f"{lo} or {hi}" if hi == lo + 1 else f"{lo} or more" if hi is None \
                else f"{lo} to {hi}"
            self.fail(f"{word}() takes {want} argument{'s' if want != '1' else ''}, got {len(args)}", tok.pos)
        return Expr(word, tuple(args), tok.pos)

    def _arguments(self) -> list:
        args = []
        if self.accept(")"):
            return args
        while True:
            args.append(self.nested(self._or))
            if self.accept(")"):
                return args
            self.expect(",", "between arguments")

    def _literal_list(self) -> tuple:
        tok = self.peek()
        close = {"(": ")", "[": "]"}.get(tok.text) if tok.kind == "op" else None
        if close is None:
            self.fail("'in' needs a literal list, e.g. C1 in ('a', 'b')", tok.pos)
        self.i += 1
        values = []
        while not self.accept(close):
            item = self.nested(self._unary)
            if not isinstance(item, Lit) or item.value is None:
                self.fail("'in' needs literal values (numbers, strings, true or false)", getattr(item, "pos", tok.pos))
            values.append(item.value)
            if not self.accept(","):
                self.expect(close, "to close the list")
                break
        if not values:
            self.fail("'in' needs at least one value", tok.pos)
        return tuple(values)


def check_depth(node, text: str, key: str, what: str = "expression") -> None:
    """Fail, naming the position, when the tree nests deeper than MAX_DEPTH (walked without recursion)."""
    stack = [(node, 1)]
    while stack:
        n, d = stack.pop()
        if d > MAX_DEPTH:
            pos = getattr(n, "pos", 0)
            raise ConfigError(f"cannot parse {what}: it nests deeper than {MAX_DEPTH} levels at column {pos}"
                              f"{_near(text, pos)} (split it into several steps)", key)
        if isinstance(n, Expr):
            stack.extend((a, d + 1) for a in n.args if isinstance(a, (Col, Lit, Expr)))


def _number(text: str):
    if re.fullmatch(r"\d+", text):
        return int(text)
    return float(text)


def _literal_kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    return "string" if isinstance(value, str) else "number"


def _show(tok: _Tok) -> str:
    return "end of the text" if tok.kind == "end" else repr(tok.text)


STRING_FUNCTIONS = ("lower", "upper", "length", "substr", "starts_with", "contains")


def brief(node, limit: int = 60) -> str:
    """``node`` as text for a message, cut to ``limit`` characters."""
    text = str(node)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _near(text: str, pos: int) -> str:
    """A short excerpt of ``text`` at ``pos`` (1-based) for an error message."""
    if len(text) <= 60:
        return f" in {text!r}"
    start = max(0, pos - 1 - 25)
    excerpt = text[start : start + 50]
    before, after = ("..." if start else ""), ("..." if start + 50 < len(text) else "")
    return f" (near {before}{excerpt}{after})"
