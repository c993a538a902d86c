"""Safe YAML loading that remembers where every value came from.

Why not `yaml.safe_load`: errors must point at ``file:line:col`` of the offending key, duplicate
keys must be errors (PyYAML silently keeps the last one), and alias expansion must be bounded so a
"billion laughs" file fails fast instead of eating memory. We compose the node graph with PyYAML's
safe loader and build plain Python objects ourselves, recording a position for each key path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from archspec.errors import ArchspecError

Positions = dict[tuple, tuple[int, int]]

MAX_NODES = 200_000  # values built, aliases expanded: a bound on "billion laughs" files
MAX_DEPTH = 64  # nesting depth
MAX_BYTES = 5_000_000

_SAFE_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:seq",
    "tag:yaml.org,2002:map",
}


def load_yaml(source: str | Path, *, file: str | None = None, text: str | None = None) -> tuple[Any, Positions]:
    """Load YAML from a path (or `text`), returning (data, positions).

    `positions[("layers", 3, "conv", "out")] == (line, col)`, 1-based, of that value;
    `positions[("layers", 3, "conv", "out", "<key>")]` is where the key itself is written.
    """
    if text is None:
        path = Path(source)
        file = file or str(source)
        try:
            if path.stat().st_size > MAX_BYTES:
                raise ArchspecError(f"file is larger than {MAX_BYTES // 1_000_000} MB", file=file)
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ArchspecError("file not found", file=file) from None
        except IsADirectoryError:
            raise ArchspecError("is a directory, expected a YAML file", file=file) from None
        except UnicodeDecodeError as e:
            raise ArchspecError(f"not UTF-8 text ({e.reason})", file=file) from None
        except OSError as e:
            raise ArchspecError(f"cannot read file ({e.strerror})", file=file) from None
    file = file or "<string>"
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        what = (e.problem or e.context or "invalid YAML").strip()
        raise ArchspecError(
            f"YAML syntax error: {what}",
            file=file,
            line=mark.line + 1 if mark else None,
            col=mark.column + 1 if mark else None,
            hint=_caret(text, mark),
        ) from None
    except yaml.YAMLError as e:
        raise ArchspecError(f"YAML error: {e}", file=file) from None
    finally:
        loader.dispose()
    if node is None:
        raise ArchspecError("file is empty", file=file, line=1, col=1)
    builder = _Builder(loader, file, text)
    data = builder.build(node, (), 0)
    return data, builder.positions


def locate(positions: Positions, path: tuple) -> tuple[int | None, int | None]:
    """(line, col) of `path`, or of its nearest ancestor that has a recorded position."""
    path = tuple(path)
    while True:
        if path in positions:
            return positions[path]
        if not path:
            return None, None
        path = path[:-1]


def _caret(text: str, mark) -> str | None:
    if mark is None:
        return None
    lines = text.splitlines()
    if not 0 <= mark.line < len(lines):
        return None
    line = lines[mark.line]
    return f"  {line}\n  {' ' * mark.column}^"


class _Builder:
    def __init__(self, loader: yaml.SafeLoader, file: str, text: str) -> None:
        self.loader = loader
        self.file = file
        self.text = text
        self.positions: Positions = {}
        self.count = 0

    def _error(self, message: str, node) -> ArchspecError:
        m = node.start_mark
        return ArchspecError(message, file=self.file, line=m.line + 1, col=m.column + 1)

    def build(self, node, path: tuple, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise self._error(
                f"document expands to more than {MAX_NODES:,} values (alias/anchor bomb?)", node
            )
        if depth > MAX_DEPTH:
            raise self._error(f"nesting deeper than {MAX_DEPTH} levels (recursive alias?)", node)
        if node.tag not in _SAFE_TAGS:
            raise self._error(f"tag {node.tag!r} is not allowed (only plain YAML data)", node)
        self.positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.ScalarNode):
            try:
                return self.loader.construct_object(node, deep=True)
            except yaml.YAMLError as e:
                raise self._error(f"bad value: {e}", node) from None
        if isinstance(node, yaml.SequenceNode):
            return [self.build(child, path + (i,), depth + 1) for i, child in enumerate(node.value)]
        if isinstance(node, yaml.MappingNode):
            try:
                self.loader.flatten_mapping(node)  # resolves `<<:` merge keys
            except yaml.YAMLError as e:
                raise self._error(f"bad merge key: {e}", node) from None
            out: dict = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in _SAFE_TAGS:
                    raise self._error("mapping keys must be plain scalars", key_node)
                key = self.loader.construct_object(key_node)
                if not isinstance(key, str | int | float | bool) and key is not None:
                    raise self._error("mapping keys must be plain scalars", key_node)
                if key is None:
                    key = "null"
                if isinstance(key, bool | int | float):
                    key = str(key).lower() if isinstance(key, bool) else key
                if key in out:
                    first = self.positions.get(path + (key, "<key>"))
                    where = f" (first defined at line {first[0]})" if first else ""
                    raise self._error(f'duplicate key "{key}"{where}', key_node)
                self.positions[path + (key, "<key>")] = (
                    key_node.start_mark.line + 1,
                    key_node.start_mark.column + 1,
                )
                out[key] = self.build(value_node, path + (key,), depth + 1)
            return out
        raise self._error("unsupported YAML node", node)  # pragma: no cover
