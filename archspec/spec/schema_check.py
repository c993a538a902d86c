"""JSON Schema validation whose errors read like compiler errors.

jsonschema tells us *what* failed and the path in the data; the YAML positions tell us *where*.
We turn the most relevant jsonschema error into one `ArchspecError` line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from archspec.errors import ArchspecError, did_you_mean
from archspec.spec.yamlload import Positions, locate


def dotted(path) -> str:
    """("layers", 3, "conv", "out") -> "layers[3].conv.out"."""
    out = ""
    for part in path:
        if part == "<key>":
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if value is None:
        return "null"
    if isinstance(value, str):
        return f'string "{value}"'
    if isinstance(value, int | float):
        return f"{value:g}" if isinstance(value, float) else str(value)
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return repr(value)


_TYPE_WORDS = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping",
    "null": "null",
}


def message_for(error: ValidationError) -> tuple[tuple, str]:
    """(path, human message) for one jsonschema error."""
    path = tuple(error.absolute_path)
    v = error.validator
    inst = error.instance
    if v == "additionalProperties":
        allowed = list(error.schema.get("properties", {}))
        extras = [k for k in inst if k not in allowed] if isinstance(inst, dict) else []
        key = extras[0] if extras else "?"
        return path + (key, "<key>"), f'unknown key "{key}"{did_you_mean(key, allowed)}; allowed: {", ".join(allowed)}'
    if v == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return path, f'missing required key "{missing}"'
    if v == "type":
        types = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        words = " or ".join(_TYPE_WORDS.get(t, t) for t in types)
        return path, f"expected {words}, got {_describe(inst)}"
    if v == "enum":
        choices = [str(c).lower() if isinstance(c, bool) else str(c) for c in error.validator_value]  # YAML words
        return path, f"must be one of {', '.join(choices)}; got {_describe(inst)}{did_you_mean(str(inst), choices)}"
    if v in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        op = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}[v]
        return path, f"must be {op} {error.validator_value}, got {_describe(inst)}"
    if v in ("minItems", "maxItems"):
        n = error.validator_value
        word = "at least" if v == "minItems" else "at most"
        return path, f"needs {word} {n} item{'s' if n != 1 else ''}, got {len(inst)}"
    if v == "pattern":
        return path, f"{_describe(inst)} does not match the expected form"
    if v in ("oneOf", "anyOf") and error.context:
        if all(not e.relative_path for e in error.context):  # the value itself fits no alternative
            choices = [c for s in error.validator_value for c in s.get("enum", [])]
            words = " or ".join(_expected(s) for s in error.validator_value)
            hint = did_you_mean(str(inst), [str(c) for c in choices]) if isinstance(inst, str) else ""
            return path, f"must be {words}; got {_describe(inst)}{hint}"
        inner = best_match(error.context)
        sub_path, msg = message_for(inner)
        return sub_path, msg
    return path, error.message


def _expected(schema: dict) -> str:
    """One alternative of an anyOf in words: 'an integer >= 0', 'one of same, valid', 'a list'."""
    if "enum" in schema:
        words = [str(c).lower() if isinstance(c, bool) else str(c) for c in schema["enum"]]
        return words[0] if len(words) == 1 else f"one of {', '.join(words)}"
    types = schema.get("type", "a value")
    types = types if isinstance(types, list) else [types]
    text = " or ".join(_TYPE_WORDS.get(t, t) for t in types)
    for key, op in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")):
        if key in schema:
            text += f" {op} {schema[key]}"
    return text


def check_schema(
    data: Any,
    schema: dict,
    error_at: Callable[[tuple, str], ArchspecError],
    *,
    choose: Callable[[list[ValidationError]], ValidationError] = best_match,
) -> None:
    """Raise the most relevant way `data` breaks `schema`, or return if it fits.

    The one schema-check helper: specs, layer options and recipes differ only in how they turn a
    key path into a position (`error_at(path, message)`), and recipes in which error they prefer
    (`choose`, default jsonschema's best match).
    """
    errors = list(Draft202012Validator(schema).iter_errors(data))
    if errors:
        path, message = message_for(choose(errors))
        raise error_at(path, message)


def validate_against(
    data: Any, schema: dict, positions: Positions, file: str | None, *, prefix: tuple = ()
) -> None:
    """`check_schema` for data read from one YAML file: errors point at its positions."""

    def error_at(path: tuple, message: str) -> ArchspecError:
        full = prefix + path
        line, col = locate(positions, full)
        return ArchspecError(message, file=file, line=line, col=col, path=dotted(full) or "(top level)")

    check_schema(data, schema, error_at)
