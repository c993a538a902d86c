"""The run directory: its name, the pre-flight checks, and the metrics/summary files inside it.

Layout (see docs/training.md): spec.yaml, recipe.yaml, metrics.csv, metrics.jsonl, summary.json,
curves.png, lr.png, last.pt, best.pt. Metrics are rewritten whole (atomically) every epoch from
the run's in-memory history rather than appended, so a run killed at any instant, then resumed,
still has each epoch exactly once.
"""

from __future__ import annotations

import contextlib
import contextvars
import csv
import functools
import io
import json
import math
import re
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from archspec.atomic_write import atomic_write_bytes, atomic_write_json, atomic_write_text
from archspec.errors import ArchspecError

METRIC_FIELDS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "epoch_seconds",
                 "images_per_second")
MIN_FREE_BYTES = 64 * 1024 * 1024


def _slug(text: str) -> str:
    """Keep names filesystem-friendly: letters, digits, dot, dash, underscore."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-.")
    return slug or "run"


# The run directories created during the current `removes_unused_run_dir` call (None outside one).
_CREATED: contextvars.ContextVar[list[Path] | None] = contextvars.ContextVar("archspec_created_run_dirs",
                                                                              default=None)


def _created(path: Path) -> None:
    created = _CREATED.get()
    if created is not None:
        created.append(path)


def removes_unused_run_dir(fn):
    """Decorator for `train`: a run directory it created is removed again if it fails before its
    first checkpoint (data missing, a bad option found at start-up, a full disk, Ctrl-C while loading).

    The directory is made early, so that an unwritable disk is found before any data is loaded;
    a start that fails after that must not leave an empty or half-written `runs/<name>/` behind.
    A directory that holds a checkpoint is always kept: it may be resumed.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        token = _CREATED.set([])
        try:
            return fn(*args, **kwargs)
        except BaseException:
            for path in _CREATED.get() or []:
                _remove_if_unused(path)
            raise
        finally:
            _CREATED.reset(token)

    return wrapper


# What a start writes before its first checkpoint (last.pt): without one, nothing to resume.
START_FILES = ("spec.yaml", "recipe.yaml", "metrics.csv", "metrics.jsonl", "steps.csv", "summary.json")


def _remove_if_unused(path: Path) -> None:
    if not (path / "last.pt").exists():
        for name in START_FILES:
            with contextlib.suppress(OSError):
                (path / name).unlink()
    remove_stale_temp_files(path)
    try:
        path.rmdir()  # only succeeds when empty: anything else in it is kept
    except OSError:
        pass


def new_run_dir(runs_root: str | Path, spec_name: str, recipe_name: str, *, now: float | None = None) -> Path:
    """Create and return `runs_root/<spec>-<recipe>-<YYYYmmdd-HHMMSS>` (suffix -2, -3... if taken).

    `mkdir` without exist_ok is the uniqueness test, so two runs started in the same second
    (even by two processes) never share a directory.
    """
    root = Path(runs_root)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    base = f"{_slug(spec_name)}-{_slug(recipe_name)}-{stamp}"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArchspecError(f"cannot create runs directory: {exc.strerror or exc}", file=str(root)) from None
    for n in range(1, 10_000):
        candidate = root / (base if n == 1 else f"{base}-{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise ArchspecError(f"cannot create run directory: {exc.strerror or exc}", file=str(candidate)) from None
        _created(candidate)
        return candidate
    raise ArchspecError(f"too many runs named {base} in {root}")  # pragma: no cover


def use_run_dir(path: str | Path) -> Path:
    """An explicitly named run directory (`--run-dir`): created if needed, refused if it holds a run."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ArchspecError("run directory path exists and is not a directory", file=str(path))
    if (path / "last.pt").exists():
        raise ArchspecError("this run directory already holds a run", file=str(path),
                            hint=f"continue it with --resume {path}, or choose another --run-dir")
    existed = path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArchspecError(f"cannot create run directory: {exc.strerror or exc}", file=str(path)) from None
    if not existed:
        _created(path)
    return path


def check_writable(path: Path, *, need_bytes: int = 0) -> None:
    """Fail before training if the run directory cannot take our files (permissions, full disk).

    Discovering this after an hour of training, when the first checkpoint is written, is the
    failure this check exists to prevent.
    """
    probe = path / ".archspec-write-test"
    try:
        atomic_write_bytes(probe, b"ok\n")
        probe.unlink()
    except OSError as exc:
        raise ArchspecError(f"run directory is not writable: {exc.strerror or exc}", file=str(path),
                            hint="choose another --runs-dir / --run-dir, or fix its permissions") from None
    try:
        free = shutil.disk_usage(path).free
    except OSError:  # pragma: no cover - exotic filesystems
        return
    need = max(MIN_FREE_BYTES, int(need_bytes))
    if free < need:
        raise ArchspecError(f"not enough free disk for the run: {free / 2**20:.0f} MiB free, "
                            f"about {need / 2**20:.0f} MiB needed for checkpoints and metrics", file=str(path),
                            hint="free some space or use another --runs-dir")


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_metrics(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    """Rewrite metrics.csv and metrics.jsonl from the full history (one row per epoch)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(METRIC_FIELDS), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in METRIC_FIELDS})
    atomic_write_text(run_dir / "metrics.csv", buffer.getvalue())
    lines = [json.dumps({k: _finite_or_none(row.get(k)) for k in METRIC_FIELDS}) for row in rows]
    atomic_write_text(run_dir / "metrics.jsonl", "".join(line + "\n" for line in lines))


STEP_FIELDS = ("step", "epoch", "loss", "lr")


def step_rows(lr_history: list[float], losses: list[float], steps_per_epoch: int, *,
              after: int = 0) -> list[dict[str, Any]]:
    """One row per optimisation step after step `after`: step (from 1), its epoch, the mini-batch's
    training loss and the learning rate it used. A run resumed from a checkpoint written before
    losses were recorded has fewer losses than steps: they belong to the last steps, and the earlier
    rows get loss None."""
    missing = len(lr_history) - len(losses)
    per_epoch = max(1, steps_per_epoch)
    return [{"step": i + 1, "epoch": i // per_epoch + 1, "loss": losses[i - missing] if i >= missing else None,
             "lr": lr_history[i]} for i in range(max(0, after), len(lr_history))]


def write_steps(run_dir: Path, lr_history: list[float], losses: list[float], steps_per_epoch: int) -> None:
    """Rewrite steps.csv from `step_rows`. Per-epoch means hide what a loss curve is read for
    (spikes, the noise band of a learning-rate sweep), so the loop keeps every step's loss. Under
    DDP the loss is rank 0's mini-batch; a loss not recorded is left empty."""
    buffer = io.StringIO()
    buffer.write(",".join(STEP_FIELDS) + "\n")
    for row in step_rows(lr_history, losses, steps_per_epoch):
        loss = "" if row["loss"] is None else repr(row["loss"])
        buffer.write(f"{row['step']},{row['epoch']},{loss},{row['lr']!r}\n")
    atomic_write_text(run_dir / "steps.csv", buffer.getvalue())


def read_steps_csv(path: Path) -> list[dict[str, Any]]:
    """Parse steps.csv back: step and epoch ints, loss and lr floats (loss None where not recorded)."""
    with open(path, newline="", encoding="utf-8") as handle:
        return [{"step": int(raw["step"]), "epoch": int(raw["epoch"]),
                 "loss": float(raw["loss"]) if raw["loss"] else None, "lr": float(raw["lr"])}
                for raw in csv.DictReader(handle)]


def read_metrics_csv(path: Path) -> list[dict[str, Any]]:
    """Parse metrics.csv back into typed rows (epoch int, the rest float or None)."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = []
        for raw in csv.DictReader(handle):
            row: dict[str, Any] = {}
            for key, value in raw.items():
                if key == "epoch":
                    row[key] = int(value)
                else:
                    row[key] = float(value) if value not in ("", None) else None
            rows.append(row)
    return rows


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    atomic_write_json(run_dir / "summary.json", {k: _finite_or_none(v) for k, v in summary.items()})


def write_yaml(path: Path, data: Any) -> None:
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def remove_stale_temp_files(run_dir: Path) -> list[str]:
    """Delete temp files left by a write that was killed before its rename (`.name.XXXX.tmp`).

    They are harmless (the real files are intact) but would accumulate over many kill/resume cycles.
    """
    removed = []
    for path in run_dir.glob(".*.tmp"):
        try:
            path.unlink()
            removed.append(path.name)
        except OSError:
            pass
    return removed
