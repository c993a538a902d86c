"""Safe YAML loading that remembers where every value came from.

Why not `yaml.safe_load`: errors must point at ``file:line:col`` of the offending key, duplicate
keys must be errors (PyYAML silently keeps the last one), and every input must be bounded so a
hostile file fails fast with one line instead of eating memory or the stack: at most MAX_BYTES are
read (whatever `stat` says), nesting stops at MAX_DEPTH levels and alias expansion at MAX_NODES
values. We compose the node graph with PyYAML's safe loader and build plain Python objects
ourselves, recording a position for each key path. Every YAML file archspec reads (specs, recipes,
`--set` values, run directories) goes through `load_yaml`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from archspec.errors import ArchspecError

Positions = dict[tuple, tuple[int, int]]

MAX_NODES = 200_000  # values built, aliases expanded: a bound on "billion laughs" files
# Lists and mappings inside each other. Generous enough for the spec language's own limit of 32
# nested layers (each level costs up to 4 YAML levels: `parallel: {paths: [[...]]}`), small enough
# that PyYAML's recursive composer never nears Python's recursion limit.
MAX_DEPTH = 160
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


def read_text_capped(path: str | Path, *, file: str | None = None, max_bytes: int = MAX_BYTES) -> str:
    """A file's UTF-8 text, read with a hard cap on the bytes read.

    Why not trust `stat`: /dev/zero, /dev/urandom, pipes and /proc files report size 0, so a size
    check before reading lets them through and `read()` then never ends. Reading at most
    `max_bytes + 1` bytes is the only bound that holds for every kind of file.
    """
    file = file or str(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(max_bytes + 1)
    except FileNotFoundError:
        raise ArchspecError("file not found", file=file) from None
    except IsADirectoryError:
        raise ArchspecError("is a directory, expected a file", file=file) from None
    except OSError as e:
        raise ArchspecError(f"cannot read file ({e.strerror or e})", file=file) from None
    if len(raw) > max_bytes:
        raise ArchspecError(f"file is larger than {max_bytes / 1_000_000:g} MB", file=file)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line, col = _line_col(raw[: e.start].decode("utf-8", "replace"), e.start)
        raise ArchspecError(f"not UTF-8 text ({e.reason})", file=file, line=line, col=col) from None


def load_yaml(source: str | Path, *, file: str | None = None, text: str | None = None) -> tuple[Any, Positions]:
    """Load YAML from a path (or `text`), returning (data, positions).

    `positions[("layers", 3, "conv", "out")] == (line, col)`, 1-based, of that value;
    `positions[("layers", 3, "conv", "out", "<key>")]` is where the key itself is written.
    """
    if text is None:
        file = file or str(source)
        text = read_text_capped(source, file=file)
    file = file or "<string>"
    if len(text) > MAX_BYTES:
        raise ArchspecError(f"text is longer than {MAX_BYTES:,} characters", file=file)
    node, loader = _compose(text, file)
    if node is None:
        raise ArchspecError("file is empty", file=file, line=1, col=1)
    builder = _Builder(loader, file, text)
    data = builder.build(node, (), 0)
    return data, builder.positions


class _TooDeep(Exception):
    def __init__(self, mark) -> None:
        super().__init__()
        self.mark = mark


class _DepthLimitedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, but composing refuses to nest deeper than MAX_DEPTH.

    PyYAML's composer recurses once per nesting level, so `[[[[...]]]]` 500 deep would end in a
    RecursionError; counting levels here turns that into a located error long before.
    """

    _depth = 0

    def compose_node(self, parent, index):
        if self._depth >= MAX_DEPTH:
            raise _TooDeep(self.peek_event().start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _compose(text: str, file: str):
    """(root node or None, the loader that built it): syntax and reader errors become located errors."""
    loader = None
    try:
        loader = _DepthLimitedLoader(text)  # checks every character first (a NUL byte is refused here)
        return loader.get_single_node(), loader
    except _TooDeep as e:
        raise ArchspecError(f"lists and mappings nested deeper than {MAX_DEPTH} levels", file=file,
                            line=e.mark.line + 1, col=e.mark.column + 1) from None
    except yaml.reader.ReaderError as e:
        line, col = _line_col(text, e.position)
        what = f"#x{e.character:04x}" if isinstance(e.character, int) else repr(e.character)
        raise ArchspecError(f"character {what} is not allowed in YAML (control characters must be escaped "
                            "inside double quotes)", file=file, line=line, col=col) from None
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
        raise ArchspecError(f"YAML error: {' '.join(str(e).split())}", file=file) from None
    finally:
        if loader is not None:
            loader.dispose()


def _line_col(text: str, position: int) -> tuple[int, int]:
    """1-based (line, column) of a character offset."""
    before = text[:position]
    return before.count("\n") + 1, position - (before.rfind("\n") + 1) + 1


def locate(positions: Positions, path: tuple) -> tuple[int | None, int | None]:
    """(line, col) of `path`, or of its nearest ancestor that has a recorded position."""
    path = tuple(path)
    while True:
        if path in positions:
            return positions[path]
        if not path:
            return None, None
        path = path[:-1]


def _caret(text: str, mark, width: int = 100) -> str | None:
    """The offending source line with a caret under the column (a window of it, for long lines)."""
    if mark is None:
        return None
    lines = text.splitlines()
    if not 0 <= mark.line < len(lines):
        return None
    line, col = lines[mark.line], mark.column
    start = max(0, min(col - width // 2, len(line) - width))
    return f"  {line[start:start + width]}\n  {' ' * (col - start)}^"


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
        if depth >= MAX_DEPTH:  # only aliases get here: the composer already limits written nesting
            raise self._error(f"nesting deeper than {MAX_DEPTH} levels through aliases (recursive alias?)", node)
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
