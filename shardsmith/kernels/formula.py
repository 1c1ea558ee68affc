"""One definition per elementwise op: a formula over the value and the op's parameters.

An elementwise op (ops/numeric.py) writes its per-value meaning once, as an expression built from
this module's small language: the value ``x``, the op's parameters ``p[name]`` (per column:
scalars, or arrays such as bucketize's boundaries), constants, arithmetic (``+ - * /``),
comparisons (``< <= > >=``), :func:`where`, :func:`isnan`, :func:`log1p` and :func:`bucketize`.
Three renderers turn the one expression into the three things that run it:

* :func:`evaluate`: NumPy (or CuPy) array code over a block of rows x columns: the reference,
  which the CPU engine's NumPy path runs and every other path must equal bit for bit;
* :func:`to_cuda`: a C expression for the GPU's generated kernels (kernels/codegen.py);
* :func:`to_python`: a scalar Python expression for the CPU's compiled kernels (kernels/cpujit.py).

Every construct means the same thing in all three: float64 arithmetic, comparisons with NaN are
false, ``where`` picks without evaluating side effects, ``log1p`` of values below -1 is NaN, and
``bucketize(x, b)`` is the number of boundaries <= x (NaN stays NaN).

>>> x, p = VALUE, PARAMS
>>> f = where(isnan(x), p["fill"], x)
>>> to_cuda(f, "v", {"fill": "p[0]"})
'(isnan(v) ? p[0] : v)'
>>> to_python(f, "v", {"fill": "p[0]"})
'(p[0] if isnan(v) else v)'
>>> import numpy as np
>>> evaluate(f, np.array([[1.0], [np.nan]]), {"fill": np.array([7.0])}, np).ravel().tolist()
[1.0, 7.0]
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

import numpy as np


class Expr:
    """A node of a formula; Python's operators build larger ones (``x - p["mean"]``, ``x < 0``)."""


def _operator(op: str):
    return lambda self, other: Binary(op, self, lift(other))


for _name, _op in (("add", "+"), ("sub", "-"), ("mul", "*"), ("truediv", "/"),
                   ("lt", "<"), ("le", "<="), ("gt", ">"), ("ge", ">=")):
    setattr(Expr, f"__{_name}__", _operator(_op))


# eq=False: nodes compare by identity, so that ``==`` is left free and shared subexpressions are
# recognised by ``evaluate``'s memo (a clip's value appears in its condition and its result).
@dataclass(frozen=True, eq=False)
class Value(Expr):
    """The value being transformed (float64, NaN for missing)."""


@dataclass(frozen=True, eq=False)
class Param(Expr):
    """A per-column parameter of the op, by the name its ``params()`` gives it."""

    name: str


@dataclass(frozen=True, eq=False)
class Const(Expr):
    value: float


@dataclass(frozen=True, eq=False)
class Binary(Expr):
    op: str
    a: Expr
    b: Expr


@dataclass(frozen=True, eq=False)
class Call(Expr):
    fn: str  # isnan, log1p, bucketize
    args: tuple


@dataclass(frozen=True, eq=False)
class Where(Expr):
    cond: Expr
    a: Expr
    b: Expr


class _Params:
    """``p[name]``: the parameter symbols handed to an op's ``formula``."""

    def __getitem__(self, name: str) -> Param:
        return Param(name)


VALUE = Value()
PARAMS = _Params()
COMPARISONS = ("<", "<=", ">", ">=")


def lift(v) -> Expr:
    return v if isinstance(v, Expr) else Const(float(v))


def where(cond: Expr, a, b) -> Expr:
    """``a`` where ``cond`` holds, else ``b``."""
    return Where(cond, lift(a), lift(b))


def isnan(x: Expr) -> Expr:
    return Call("isnan", (x,))


def log1p(x: Expr) -> Expr:
    return Call("log1p", (x,))


def bucketize(x: Expr, boundaries: Param) -> Expr:
    """The number of ``boundaries`` (an array parameter) <= x; NaN stays NaN."""
    return Call("bucketize", (x, boundaries))


def functions(expr: Expr) -> set[str]:
    """The functions a formula calls (``{"log1p"}``): what a renderer must be able to run exactly."""
    if isinstance(expr, Call):
        return {expr.fn}.union(*(functions(a) for a in expr.args))
    if isinstance(expr, Binary):
        return functions(expr.a) | functions(expr.b)
    if isinstance(expr, Where):
        return functions(expr.cond) | functions(expr.a) | functions(expr.b)
    return set()


# --- NumPy: the reference --------------------------------------------------------------------------
def evaluate(expr: Expr, x, p: dict, xp=np):
    """The formula over ``x`` (rows x columns) with ``p`` as arrays over the columns (array-valued
    parameters: one array per column). Each shared node is computed once."""
    memo: dict[int, object] = {}

    def ev(e: Expr):
        if id(e) not in memo:
            memo[id(e)] = _eval_node(e, ev, x, p, xp)
        return memo[id(e)]

    out = ev(expr)
    # ``ev`` refers to itself through its closure: without this the function, the memo and every
    # intermediate array wait for the garbage collector (a pause that serving's p99 saw).
    ev = None  # noqa: F841
    return out


_OPERATORS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
              "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def _eval_node(e: Expr, ev, x, p: dict, xp):
    if isinstance(e, Value):
        return x
    if isinstance(e, Param):
        return p[e.name]
    if isinstance(e, Const):
        return e.value
    if isinstance(e, Binary):
        return _OPERATORS[e.op](ev(e.a), ev(e.b))
    if isinstance(e, Where):
        return xp.where(ev(e.cond), ev(e.a), ev(e.b))
    if e.fn == "isnan":
        return xp.isnan(ev(e.args[0]))
    if e.fn == "log1p":
        with np.errstate(invalid="ignore", divide="ignore"):
            return xp.log1p(ev(e.args[0]))
    return _bucketize_columns(ev(e.args[0]), p[e.args[1].name], xp)


def _bucketize_columns(x, boundaries: list, xp):
    out = xp.empty_like(x)
    for j, b in enumerate(boundaries):
        out[:, j] = xp.searchsorted(xp.asarray(b), x[:, j], side="right")
    return xp.where(xp.isnan(x), xp.nan, out)


# --- C (CUDA) and Python (Numba): the compiled kernels -----------------------------------------------
def to_cuda(expr: Expr, x: str, names: dict[str, str]) -> str:
    """A C expression; ``names`` maps scalar parameters to C expressions, and an array parameter
    ``b`` to its pointer, with ``b_len`` its length (kernels/codegen.py's layout)."""
    return _render(expr, x, names, _CUDA)


def to_python(expr: Expr, x: str, names: dict[str, str]) -> str:
    """A scalar Python expression for Numba; ``names`` maps each parameter to a Python expression
    (an array parameter to a 1-D array of float64). Uses ``isnan``, ``log1p``, ``nan``, ``inf``
    and ``bucketize(x, b)``, which the generated module defines (kernels/cpujit.py)."""
    return _render(expr, x, names, _PYTHON)


@dataclass(frozen=True)
class _Syntax:
    where: str  # format of (cond, a, b)
    nan: str
    inf: str
    bucketize: str  # format of (x, name) given the names dict as n

    def const(self, v: float) -> str:
        if math.isnan(v):
            return self.nan
        if math.isinf(v):
            return self.inf if v > 0 else f"(-{self.inf})"
        return repr(float(v))


_CUDA = _Syntax("({c} ? {a} : {b})", "CUDART_NAN", "CUDART_INF", "bucketize({x}, {n[NAME]}, {n[NAME_len]})")
_PYTHON = _Syntax("({a} if {c} else {b})", "nan", "inf", "bucketize({x}, {n[NAME]})")


def _render(e: Expr, x: str, names: dict[str, str], syn: _Syntax, bare: bool = False) -> str:
    """``bare``: the expression stands alone (a ``where`` condition), so needs no parentheses."""
    sub = lambda node: _render(node, x, names, syn)  # noqa: E731
    if isinstance(e, Value):
        return x
    if isinstance(e, Param):
        return names[e.name]
    if isinstance(e, Const):
        return syn.const(e.value)
    if isinstance(e, Binary):
        text = f"{sub(e.a)} {e.op} {sub(e.b)}"
        return text if bare and e.op in COMPARISONS else f"({text})"
    if isinstance(e, Where):
        return syn.where.format(c=_render(e.cond, x, names, syn, bare=True), a=sub(e.a), b=sub(e.b))
    if e.fn == "bucketize":
        name = e.args[1].name
        return syn.bucketize.replace("NAME", name).format(x=sub(e.args[0]), n=names)
    return f"{e.fn}({sub(e.args[0])})"
