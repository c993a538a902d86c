"""A tiny arithmetic evaluator for numbers in specs (``${width * 2}``), never `eval`.

Only numbers, names from the scope, + - * / // % **, parentheses, min/max/int/round/abs and
make_divisible are allowed, plus comparisons (``==`` ``!=`` ``<`` ...: 1 or 0), ``and``/``or``/
``not`` and ``a if cond else b``, so a block can switch a layer on (``if: ${stride == 1}``) or pick
a number the way a paper's table does. Exponents and results are bounded so a spec cannot hang or
exhaust memory.
"""

from __future__ import annotations

import ast
import math
import operator
import re

MAX_EXPR_CHARS = 200
MAX_MAGNITUDE = 10**15

_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_COMPARE = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


def make_divisible(value, divisor=8):
    """Round `value` to the nearest multiple of `divisor`, never below `divisor` and never more than
    10% below `value`: the channel rounding of MobileNet, EfficientNet and RegNet (their papers'
    tables list the rounded widths, their squeeze-excitation widths come from this rule)."""
    if divisor <= 0:
        raise ExprError("make_divisible needs a positive divisor")
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


_FUNCS = {"min": min, "max": max, "int": int, "round": round, "abs": abs, "make_divisible": make_divisible}

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_WHOLE = re.compile(r"^\$\{(.*)\}$", re.S)
_DOLLAR_NAME = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)$")


class ExprError(ValueError):
    """A bad expression; the caller adds file/line/key."""


def is_expression(value) -> bool:
    """True for strings this module evaluates: ``${...}`` or ``$name``."""
    return isinstance(value, str) and bool(_WHOLE.match(value.strip()) or _DOLLAR_NAME.match(value.strip()))


def evaluate_string(value: str, scope: dict):
    """Evaluate ``${expr}`` or ``$name`` against `scope`; the value may be any type for ``$name``."""
    text = value.strip()
    m = _DOLLAR_NAME.match(text)
    if m:
        name = m.group(1)
        if name not in scope:
            raise ExprError(_undefined(name, scope))
        return scope[name]
    m = _WHOLE.match(text)
    if not m:
        raise ExprError(f'"{value}" is not an expression (write ${{...}} or $name)')
    return evaluate(m.group(1), scope)


def evaluate(expr: str, scope: dict):
    """Evaluate an arithmetic expression over numeric names in `scope`."""
    if len(expr) > MAX_EXPR_CHARS:
        raise ExprError(f"expression longer than {MAX_EXPR_CHARS} characters")
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError:
        raise ExprError(f'cannot parse expression "{expr.strip()}"') from None
    result = _eval(tree.body, scope)
    if isinstance(result, float) and result.is_integer() and abs(result) < MAX_MAGNITUDE:
        return int(result) if _all_int(tree.body, scope) else result
    return result


def _all_int(node, scope) -> bool:
    """True when the expression uses only ints and no true division (so 256*4 stays an int)."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.BinOp) and isinstance(sub.op, ast.Div):
            return False
        if isinstance(sub, ast.Constant) and isinstance(sub.value, float):
            return False
        if isinstance(sub, ast.Name) and isinstance(scope.get(sub.id), float):
            return False
    return True


def names_in(text: str) -> set[str]:
    """The names an expression string (``$name`` or ``${...}``) refers to; empty if it is not one."""
    text = text.strip()
    m = _DOLLAR_NAME.match(text)
    if m:
        return {m.group(1)}
    m = _WHOLE.match(text)
    if not m:
        return set()
    try:
        tree = ast.parse(m.group(1).strip(), mode="eval")
    except SyntaxError:
        return set()
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}


# Names bound per layer to the shape flowing into it (see layers.base.shape_names).
SHAPE_NAMES = ("in_channels", "in_features", "in_tokens")


def _undefined(name: str, scope: dict) -> str:
    from archspec.errors import did_you_mean

    if name in SHAPE_NAMES and "_shape" in scope:
        shape = "[" + ", ".join(map(str, scope["_shape"])) + "]"
        have = [n for n in SHAPE_NAMES if n in scope]
        return (f'"{name}" is not defined for this layer\'s input {shape}'
                + (f" (defined here: {', '.join(have)})" if have else ""))
    if name in SHAPE_NAMES:
        return f'"{name}" is only defined inside `layers` (it names the shape coming into a layer)'
    known = sorted(k for k, v in scope.items() if not k.startswith("_"))
    return f'undefined name "{name}"{did_you_mean(name, known)}' + (
        f"; defined: {', '.join(known)}" if known else ""
    )


def _check(value):
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ExprError(f"expected a number, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ExprError("result is not a finite number")
    if abs(value) > MAX_MAGNITUDE:
        raise ExprError("result is too large")
    return value


def _eval(node, scope):
    if isinstance(node, ast.Constant):
        return _check(node.value)
    if isinstance(node, ast.Name):
        if node.id not in scope:
            raise ExprError(_undefined(node.id, scope))
        return _check(scope[node.id])
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _check(_UNARY[type(node.op)](_eval(node.operand, scope)))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _eval(node.left, scope), _eval(node.right, scope)
        if isinstance(node.op, ast.Pow) and (abs(right) > 64 or abs(left) > 10**6):
            raise ExprError("exponent too large")
        try:
            return _check(_BINOPS[type(node.op)](left, right))
        except ZeroDivisionError:
            raise ExprError("division by zero") from None
        except OverflowError:
            raise ExprError("result is too large") from None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return int(not _eval(node.operand, scope))
    if isinstance(node, ast.Compare):
        return _compare(node, scope)
    if isinstance(node, ast.BoolOp):
        values = [_eval(v, scope) for v in node.values]  # both sides checked, then Python's rule
        return int(all(values) if isinstance(node.op, ast.And) else any(values))
    if isinstance(node, ast.IfExp):
        return _eval(node.body, scope) if _eval(node.test, scope) else _eval(node.orelse, scope)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS:
        if node.keywords or not node.args or len(node.args) > 8:
            raise ExprError(f"bad call to {node.func.id}()")
        args = [_eval(a, scope) for a in node.args]
        try:
            return _check(_FUNCS[node.func.id](*args))
        except TypeError as e:
            raise ExprError(f"bad call to {node.func.id}(): {e}") from None
    raise ExprError(f'"{ast.unparse(node)}" is not allowed in an expression (numbers, names, + - * / // % **, '
                    "comparisons, and/or/not, a if c else b, min/max/int/round/abs/make_divisible only)")


def _compare(node: ast.Compare, scope) -> int:
    """``a < b <= c`` as Python chains it, giving 1 or 0 (a number, so it can be a count or an `if`)."""
    left = _eval(node.left, scope)
    for op, right_node in zip(node.ops, node.comparators, strict=True):
        if type(op) not in _COMPARE:
            raise ExprError(f'"{ast.unparse(node)}": only == != < <= > >= compare numbers')
        right = _eval(right_node, scope)
        if not _COMPARE[type(op)](left, right):
            return 0
        left = right
    return 1
