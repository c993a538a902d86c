"""A spec file and its `extends` chain, merged into one `Document` that remembers where each key
came from, so an error in an inherited key still points at the file and line that wrote it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from archspec.errors import ArchspecError
from archspec.spec.schema import TOP_LEVEL
from archspec.spec.schema_check import dotted, validate_against
from archspec.spec.yamlload import Positions, load_yaml, locate

MAX_EXTENDS = 16


class Document:
    """Spec data merged over `extends`, remembering which file each key came from."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.origin: dict[tuple, tuple[str, Positions]] = {}
        self.files: list[str] = []

    def where(self, path: tuple) -> tuple[str | None, int | None, int | None]:
        for n in range(len(path), 0, -1):
            if path[:n] in self.origin:
                file, positions = self.origin[path[:n]]
                line, col = locate(positions, path)
                return file, line, col
        if self.files:
            return self.files[-1], 1, 1
        return None, None, None

    def error(self, path: tuple, message: str) -> ArchspecError:
        file, line, col = self.where(path)
        return ArchspecError(message, file=file, line=line, col=col, path=dotted(path) or None)

    def merge(self, data: dict, file: str, positions: Positions) -> None:
        """Lay `data` over what the base files gave: `vars` and `blocks` merge per entry, any
        other key replaces the base's value wholesale."""
        self.files.append(file)
        for key, value in data.items():
            if key == "extends":
                continue
            if key in ("vars", "blocks") and isinstance(value, dict) and isinstance(self.data.get(key), dict):
                for sub, sub_value in value.items():
                    self.data[key][sub] = sub_value
                    self.origin[(key, sub)] = (file, positions)
            else:
                self.data[key] = value
                # forget deeper origins from the base for a key replaced wholesale
                for k in [k for k in self.origin if k and k[0] == key]:
                    del self.origin[k]
                self.origin[(key,)] = (file, positions)


def read_document(path: Path, chain: list[Path] | None = None) -> Document:
    """Read `path`, check its top-level keys, and merge it over the file it extends (if any)."""
    chain = chain or []
    file = str(path)
    data, positions = load_yaml(path, file=file)
    if not isinstance(data, dict):
        raise ArchspecError(
            f"a spec must be a mapping with at least `layers:`, got {type(data).__name__}",
            file=file, line=1, col=1,
        )
    validate_against(data, TOP_LEVEL, positions, file)
    doc = _read_base(path, data, positions, chain) if "extends" in data else Document()
    doc.merge(data, file, positions)
    if "name" not in data and chain == []:
        doc.data["name"] = path.stem
    return doc


def _read_base(path: Path, data: dict, positions: Positions, chain: list[Path]) -> Document:
    file = str(path)
    line, col = locate(positions, ("extends",))
    if len(chain) >= MAX_EXTENDS:
        raise ArchspecError(f"more than {MAX_EXTENDS} levels of extends", file=file, line=line, path="extends")
    base_path = (path.parent / data["extends"]).resolve()
    if base_path in chain or base_path == path.resolve():
        cycle = " -> ".join(p.name for p in [*chain, path.resolve(), base_path])
        raise ArchspecError(f"extends cycle: {cycle}", file=file, line=line, col=col, path="extends")
    if not base_path.exists():
        raise ArchspecError(f'extends "{data["extends"]}": no such file ({base_path})', file=file, line=line,
                            col=col, path="extends")
    return read_document(base_path, [*chain, path.resolve()])
