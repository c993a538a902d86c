"""The spec language's JSON Schema, generated from the layer registry.

`TOP_LEVEL` validates a spec file's top-level keys. `full_schema()` describes the whole language
(every kind and its options) for editors and docs; it is shipped as `archspec/spec/spec.schema.json`
and a test checks the shipped file matches the registry. Regenerate with
``python -m archspec.spec.schema > archspec/spec/spec.schema.json``.
"""

from __future__ import annotations

import json

NUMBER_OR_EXPR = {"anyOf": [{"type": "number"}, {"type": "string"}]}

TOP_LEVEL = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "archspec spec",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "description": "model name (default: the file name)"},
        "description": {"type": "string"},
        "dataset": {"type": "string", "description": "cifar10, mnist, ...: implies input and classes"},
        "input": {"type": "array", "minItems": 1, "maxItems": 3, "items": NUMBER_OR_EXPR,
                  "description": "[C, H, W] (or [features])"},
        "classes": {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 1_000_000}, {"type": "string"}]},
        "recipe": {"type": "string", "description": "default recipe for `archspec train`"},
        "extends": {"type": "string", "description": "a spec file (relative to this one) to start from"},
        "vars": {"type": "object", "additionalProperties": {"anyOf": [{"type": "number"}, {"type": "string"}]},
                 "description": "named numbers usable as $name or ${expr}"},
        "blocks": {
            "type": "object",
            "description": "user-defined parameterised blocks, used like kinds",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "required": ["layers"],
                "properties": {
                    "params": {"anyOf": [{"type": "object"}, {"type": "array", "items": {"type": "string"}}],
                               "description": "param -> default (null = required), or a list of names"},
                    "layers": {"type": "array", "minItems": 1},
                    "description": {"type": "string"},
                },
            },
        },
        "layers": {"type": "array", "minItems": 1, "description": "the model, first layer first"},
    },
}


def _loose(option_schema: dict) -> dict:
    """An option's schema before variables are substituted: also accept an expression string."""
    clean = {k: v for k, v in option_schema.items() if k not in ("default",)}
    return {"anyOf": [clean, {"type": "string", "description": "$name, ${expression} or a var name"}], **(
        {"default": option_schema["default"]} if "default" in option_schema else {})}


def full_schema() -> dict:
    """The whole language: top level plus each kind's options (expressions allowed)."""
    from archspec.layers import REGISTRY
    from archspec.layers.base import COMMON_OPTIONS, IF_OPTION

    kinds = {}
    for key in sorted(REGISTRY):
        kind = REGISTRY[key]
        props = {k: _loose(v) for k, v in kind.options.items()}
        props.update(COMMON_OPTIONS)
        props.update(IF_OPTION)
        mapping = {"type": "object", "properties": props, "additionalProperties": False}
        forms = [{"type": "null"}, mapping]
        if kind.main:
            forms.insert(1, _loose(kind.options[kind.main]))
        kinds[key] = {"description": kind.summary, "anyOf": forms}
    kinds["repeat"] = {
        "description": "repeat a list of layers N times",
        "type": "object",
        "required": ["times", "layers"],
        "properties": {"times": NUMBER_OR_EXPR, "layers": {"type": "array"}},
        "additionalProperties": False,
    }
    schema = json.loads(json.dumps(TOP_LEVEL))
    layer = {
        "description": "a kind name (`relu`), or one key: kind (or block) -> value or options",
        "anyOf": [
            {"type": "string"},
            {"type": "object", "minProperties": 1, "maxProperties": 1, "properties": kinds},
        ],
    }
    schema["$defs"] = {"layer": layer}
    schema["properties"]["layers"]["items"] = {"$ref": "#/$defs/layer"}
    return schema


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(full_schema(), indent=1, sort_keys=True))
