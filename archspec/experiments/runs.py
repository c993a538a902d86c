"""Reading run directories back: what compare, sweep, report and export look at.

A run directory may be complete, still training, interrupted, or damaged (a file deleted, a copy
cut short). Comparing experiments is exactly when such runs turn up, so a run that is missing
files is still loaded and shown, with its problems listed, rather than aborting the whole command.
Only a path that is not a run directory at all (and holds none) is an error.

No torch import: everything here is JSON, CSV and YAML.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from archspec.errors import ArchspecError
from archspec.figures import Curves

# Any one of these marks a directory as a run directory (a run killed early may have only some).
RUN_FILES = ("summary.json", "metrics.jsonl", "metrics.csv", "spec.yaml", "recipe.yaml", "last.pt", "best.pt")
# What a finished run always has; a missing one is listed as a problem.
EXPECTED_FILES = ("summary.json", "spec.yaml", "recipe.yaml", "metrics.csv")


@dataclass
class Run:
    """One run directory, read leniently: missing or unreadable files become `problems`."""

    path: Path
    summary: dict[str, Any] = field(default_factory=dict)
    recipe: dict[str, Any] | None = None
    spec: dict[str, Any] | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    _steps: list[dict[str, Any]] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def status(self) -> str:
        """completed | running | interrupted | diverged, or "incomplete" when summary.json is absent."""
        status = self.summary.get("status")
        return str(status) if status else "incomplete"

    @property
    def spec_name(self) -> str:
        return str(self.summary.get("spec") or (self.spec or {}).get("name") or "?")

    @property
    def recipe_name(self) -> str:
        return str(self.summary.get("recipe") or (self.recipe or {}).get("name") or "?")

    @property
    def dataset(self) -> str | None:
        value = self.summary.get("dataset") or (self.spec or {}).get("dataset")
        return None if value is None else str(value)

    @property
    def steps(self) -> list[dict[str, Any]]:
        """The rows of steps.csv (step, epoch, loss, lr), read on first use; empty when the run has
        none (runs made before archspec recorded per-step losses) or an unreadable one (noted in
        `problems`)."""
        if self._steps is None:
            self._steps = []
            path = self.path / "steps.csv"
            if path.is_file():
                from archspec.train.rundir import read_steps_csv

                try:
                    self._steps = read_steps_csv(path)
                except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
                    self.problems.append("steps.csv unreadable")
        return self._steps

    def curves(self, label: str | None = None) -> Curves:
        """What the figures draw of this run, under `label` (default: the run directory's name)."""
        return Curves(label=self.name if label is None else label, metrics=self.metrics, steps=self.steps)

    def stats(self) -> dict[str, Any]:
        """The numbers a comparison shows, from summary.json, falling back to the metrics rows."""
        s = self.summary
        rows = self.metrics
        evals = [r for r in rows if _finite(r.get("test_acc"))]
        best = max(evals, key=lambda r: r["test_acc"]) if evals else None
        last = rows[-1] if rows else {}
        seconds = [r["epoch_seconds"] for r in rows if _finite(r.get("epoch_seconds"))]
        speeds = [r["images_per_second"] for r in rows if _finite(r.get("images_per_second"))]

        def pick(key: str, fallback: Any) -> Any:
            value = s.get(key)
            return fallback if value is None else value

        return {
            "params": s.get("params"),
            "epochs": pick("epochs", len(rows) if rows else None),
            "epochs_planned": pick("epochs_planned", (self.recipe or {}).get("epochs")),
            "best_test_acc": pick("best_test_acc", best["test_acc"] if best else None),
            "best_epoch": pick("best_epoch", best["epoch"] if best else None),
            "final_test_acc": pick("final_test_acc", evals[-1]["test_acc"] if evals else None),
            "final_train_loss": pick("final_train_loss", last.get("train_loss")),
            "final_test_loss": pick("final_test_loss", evals[-1].get("test_loss") if evals else None),
            "train_seconds": pick("train_seconds", sum(seconds) if seconds else None),
            "images_per_second": pick("images_per_second", sum(speeds) / len(speeds) if speeds else None),
        }


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and any((path / name).exists() for name in RUN_FILES)


def _read_yaml(path: Path, run: Run) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        run.problems.append(f"{path.name} unreadable")
        return None
    if not isinstance(data, dict):
        run.problems.append(f"{path.name} is not a mapping")
        return None
    return data


def _read_metrics(path: Path, run: Run) -> list[dict[str, Any]]:
    """metrics.jsonl (exact, NaN as null) if present, else metrics.csv."""
    jsonl = path / "metrics.jsonl"
    if jsonl.is_file():
        try:
            rows = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines() if line.strip()]
            if all(isinstance(r, dict) for r in rows):
                return rows
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            pass
        run.problems.append("metrics.jsonl unreadable")
    csv_path = path / "metrics.csv"
    if csv_path.is_file():
        from archspec.train.rundir import read_metrics_csv

        try:
            return read_metrics_csv(csv_path)
        except (OSError, UnicodeDecodeError, ValueError, TypeError):
            run.problems.append("metrics.csv unreadable")
    return []


def load_run(path: str | Path) -> Run:
    """Read one run directory; raises ArchspecError only if `path` is not a run directory."""
    path = Path(path)
    if not is_run_dir(path):
        raise _not_a_run(path)
    run = Run(path=path)
    summary_path = path / "summary.json"
    if summary_path.is_file():
        try:
            data = json.loads(summary_path.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                run.summary = data
            else:
                run.problems.append("summary.json is not an object")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            run.problems.append("summary.json unreadable")
    run.recipe = _read_yaml(path / "recipe.yaml", run)
    run.spec = _read_yaml(path / "spec.yaml", run)
    run.metrics = _read_metrics(path, run)
    missing = [name for name in EXPECTED_FILES if not (path / name).exists()]
    if missing:
        run.problems.insert(0, "missing " + ", ".join(missing))
    return run


def _not_a_run(path: Path) -> ArchspecError:
    if not path.exists():
        return ArchspecError("no such run directory", file=str(path))
    if not path.is_dir():
        return ArchspecError("not a run directory (this is a file)", file=str(path),
                             hint="pass run directories (runs/<spec>-<recipe>-<time>/) or a folder of them")
    return ArchspecError("not a run directory, and none of its sub-directories is one", file=str(path),
                         hint=f"a run directory holds {', '.join(EXPECTED_FILES)} (written by `archspec train`)")


_NUMBER = re.compile(r"\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def natural_key(text: Any) -> tuple:
    """A sort key that orders the numbers inside strings by value, not character by character:
    "lr=3e-4" < "lr=0.001" < "lr=0.01", "epochs=5" < "epochs=10", "run-2" < "run-10". Numbers
    are unsigned (a "-" in a run name is a separator, not a minus)."""
    text = str(text)
    parts: list[tuple[int, Any]] = []
    position = 0
    for match in _NUMBER.finditer(text):
        if match.start() > position:
            parts.append((0, text[position:match.start()]))
        parts.append((1, float(match.group())))
        position = match.end()
    if position < len(text):
        parts.append((0, text[position:]))
    return tuple(parts)


def _by_name(paths) -> list[Path]:
    return sorted(paths, key=lambda path: natural_key(path.name))


def _runs_under(folder: Path) -> list[Path]:
    """Run directories among `folder`'s children and grandchildren (runs/ holds sweep folders of runs),
    in natural order of their names (a sweep's lr=0.001, lr=0.003, lr=0.01 come in that order)."""
    found = []
    for child in _by_name(folder.iterdir()):
        if is_run_dir(child):
            found.append(child)
        elif child.is_dir():
            found.extend(_by_name(grandchild for grandchild in child.iterdir() if is_run_dir(grandchild)))
    return found


def find_runs(paths: list[str | Path]) -> list[Run]:
    """Runs from run directories and/or parents of run directories, in the order given (children sorted).

    A folder that is not a run directory contributes the run directories among its children and
    grandchildren, so `archspec compare runs/sweep-lr/` and `archspec compare runs/` (single runs and
    every sweep's cells) both work. Duplicates are dropped.
    """
    if not paths:
        raise ArchspecError("no run directories given", hint="example: archspec compare runs/")
    found: list[Run] = []
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if is_run_dir(path):
            candidates = [path]
        elif path.is_dir():
            candidates = _runs_under(path)
            if not candidates:
                raise _not_a_run(path)
        else:
            raise _not_a_run(path)
        for candidate in candidates:
            key = candidate.resolve()
            if key not in seen:
                seen.add(key)
                found.append(load_run(candidate))
    return found
