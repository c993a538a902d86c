"""Spec files: YAML with positions, extends, vars, blocks, validation. See docs/spec-language.md."""

from archspec.spec.loader import Node, Spec, load_spec

__all__ = ["Node", "Spec", "load_spec"]
