"""A tiny arithmetic evaluator for numbers in specs (``${width * 2}``), never `eval`.

Only numbers, names from the scope, + - * / // % **, parentheses and min/max/int/round/abs are
allowed. Exponents and results are bounded so a spec cannot hang or exhaust memory.
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
_FUNCS = {"min": min, "max": max, "int": int, "round": round, "abs": abs}

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


def _undefined(name: str, scope: dict) -> str:
    from archspec.errors import did_you_mean

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
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS:
        if node.keywords or not node.args or len(node.args) > 8:
            raise ExprError(f"bad call to {node.func.id}()")
        args = [_eval(a, scope) for a in node.args]
        try:
            return _check(_FUNCS[node.func.id](*args))
        except TypeError as e:
            raise ExprError(f"bad call to {node.func.id}(): {e}") from None
    raise ExprError(f'"{ast.unparse(node)}" is not allowed in an expression (numbers, names, + - * / // % **, '
                    "min/max/int/round/abs only)")
