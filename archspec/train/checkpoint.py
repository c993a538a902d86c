"""Checkpoints: what `last.pt` / `best.pt` hold, how they are read back, and who may read them.

A checkpoint must be loadable with `torch.load(weights_only=True)`: that loader refuses arbitrary
pickled objects, so a checkpoint downloaded from somewhere cannot run code. Everything saved
here is therefore a tensor, a primitive, or a dict/list of those; random-number-generator
states are stored as tensors.

A checkpoint records which spec produced it (name + a fingerprint of the resolved spec + the
parameter shapes) so that resuming or evaluating with a different spec fails with a sentence
naming the difference ("layer 3.weight is [32, 16, 3, 3] in the checkpoint but [64, 16, 3, 3] in
the spec") instead of PyTorch's wall of missing/unexpected state_dict keys.

A training run's checkpoint (`run_payload`, written by `save_run` at the end of every epoch and
once before the first) holds everything an exact resume needs: the module, optimizer, scheduler,
scaler and EMA states, every RNG state, and the run's `History` (metrics, per-step lr and loss,
timings). `ResumePoint` reads one back and owns the resume checks: the same dataset, spec
(name, fingerprint, layer shapes), number of processes and the recipe keys whose state the
checkpoint carries (`RESUME_FROZEN_KEYS`), and the same data subset (--limit-train/--limit-test).

Every reader (resume, eval, export) goes through the same two gates before using a file: its zip
checksums (`damage`: torch.load does not check them, so flipped bytes would otherwise train on
garbage), then its fields (archspec.train.checkpoint_schema). A damaged run checkpoint is refused
naming the other one of its run directory. last.pt is written before best.pt, and
`reconcile_best` / `weights_file` make a kill between the two writes harmless.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import random
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from archspec.atomic_write import atomic_write_bytes, torch_save_bytes
from archspec.errors import ArchspecError
from archspec.train.checkpoint_schema import FORMAT, VERSION, check_structure
from archspec.train.state import History

if TYPE_CHECKING:
    from archspec.train.state import Run


# Recipe keys a resumed run may not change: their state (optimizer moments, scheduler position,
# steps per epoch) comes from the checkpoint, so a new value would be silently ignored or break.
RESUME_FROZEN_KEYS = ("optimizer", "schedule", "batch_size", "ema", "drop_last")

# Keys of a resolved spec that document a model but do not change it: editing them must not
# make an old checkpoint "a different spec".
_COSMETIC_KEYS = frozenset({"description", "notes", "doc", "tags", "recipe", "reference", "source"})


def plain(obj: Any) -> Any:
    """A JSON/YAML-safe copy: tuples -> lists, paths -> str, numpy/torch scalars -> Python numbers."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return obj.item()
    return str(obj)


def spec_fingerprint(resolved: dict) -> str:
    """A short hash of the resolved spec (cosmetic top-level keys excluded), stable across runs."""
    body = {k: v for k, v in plain(resolved).items() if k not in _COSMETIC_KEYS}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def param_shapes(state_dict: dict[str, torch.Tensor]) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in state_dict.items() if isinstance(v, torch.Tensor)}


# --- random-number-generator state --------------------------------------------------------------


def capture_rng(device: torch.device | None = None) -> dict[str, Any]:
    """Every RNG a run draws from (torch CPU, CUDA/MPS, Python `random`, NumPy), as tensors."""
    py_version, py_state, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": torch.tensor(py_state, dtype=torch.int64),
        "python_version": int(py_version),
        "python_gauss": py_gauss,
        "numpy_kind": str(np_kind),
        "numpy": torch.from_numpy(np.asarray(np_keys, dtype=np.int64).copy()),
        "numpy_pos": int(np_pos),
        "numpy_has_gauss": int(np_has_gauss),
        "numpy_gauss": float(np_gauss),
        "cuda": [],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    if device is not None and device.type == "mps":
        state["mps"] = torch.mps.get_rng_state()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Put every RNG back exactly as `capture_rng` found it."""
    torch.set_rng_state(state["torch"].cpu())
    random.setstate((
        int(state["python_version"]),
        tuple(int(v) for v in state["python"].tolist()),
        state.get("python_gauss"),
    ))
    np.random.set_state((
        state["numpy_kind"],
        state["numpy"].numpy().astype(np.uint32),
        int(state["numpy_pos"]),
        int(state["numpy_has_gauss"]),
        float(state["numpy_gauss"]),
    ))
    cuda_states = state.get("cuda") or []
    if cuda_states and torch.cuda.is_available():
        count = min(len(cuda_states), torch.cuda.device_count())
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states[:count]])
    if "mps" in state and torch.backends.mps.is_available():
        torch.mps.set_rng_state(state["mps"].cpu())


def seed_everything(seed: int) -> None:
    """Seed torch (all devices), Python `random` and NumPy from the recipe seed."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


# --- reading: the file's integrity, then its fields ---------------------------------------------------

CHECKPOINT_NAMES = ("last.pt", "best.pt")  # what a run directory holds


def checkpoint_path(where: str | Path, *, prefer: str = "last.pt") -> Path:
    """A checkpoint file from either a file path or a run directory (`prefer` inside it)."""
    path = Path(where)
    if path.is_dir():
        candidate = path / prefer
        if candidate.is_file():
            return candidate
        fallback = path / ("last.pt" if prefer != "last.pt" else "best.pt")
        if prefer != "last.pt" and fallback.is_file():
            return fallback
        raise ArchspecError(f"no {prefer} in {path}", file=str(path),
                            hint="is this an archspec run directory (runs/<spec>-<recipe>-<time>/)?")
    if not path.exists():
        raise ArchspecError("checkpoint not found", file=str(path))
    return path


def damage(path: Path) -> str | None:
    """What is wrong with `path` as a checkpoint container, or None when it is intact.

    `torch.save` writes a zip archive in which every member carries a CRC-32 of its bytes, but
    `torch.load` never checks them: a checkpoint with flipped bytes loads and trains on garbage.
    Reading every member through `zipfile` recomputes the checksums (about the cost of reading
    the file once), so damage anywhere - weights, pickle or directory - is found before use.
    OSError (missing file, no permission) is the caller's to report.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except zipfile.BadZipFile as exc:
        return f"not an intact zip archive: {exc}"
    except (zlib.error, EOFError, ValueError, NotImplementedError, struct.error) as exc:
        return f"unreadable archive: {type(exc).__name__}: {exc}"
    return f"checksum mismatch in {bad}" if bad else None


def _peek(path: Path) -> dict[str, Any] | None:
    """`epoch` and `best_epoch` of an intact checkpoint (memory-mapped: the tensors are not read), else None."""
    try:
        if damage(path) is not None:
            return None
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - any unreadable file is simply not an alternative
        return None
    epoch = data.get("epoch") if isinstance(data, dict) else None
    if not isinstance(epoch, int):
        return None
    best = data.get("best_epoch")
    return {"epoch": epoch, "best_epoch": best if isinstance(best, int) else None}


def last_good_alternative(path: Path) -> tuple[Path, int] | None:
    """The other checkpoint of `path`'s run directory (best.pt for last.pt, and back) with its epoch,
    when that one is intact; None for files that are not a run's checkpoints."""
    if path.name not in CHECKPOINT_NAMES:
        return None
    for name in CHECKPOINT_NAMES:
        other = path.parent / name
        meta = _peek(other) if name != path.name and other.is_file() else None
        if meta is not None:
            return other, meta["epoch"]
    return None


def _damaged(path: Path, problem: str) -> ArchspecError:
    if path.name not in CHECKPOINT_NAMES:
        return ArchspecError(f"cannot read checkpoint: it is damaged or not a PyTorch checkpoint ({problem})",
                             file=str(path))
    alternative = last_good_alternative(path)
    if alternative is None:
        return ArchspecError(f"checkpoint is damaged ({problem}); no intact checkpoint is left in its run directory",
                             file=str(path), hint="restore the file from a backup, or start a new run")
    other, epoch = alternative
    return ArchspecError(f"checkpoint is damaged ({problem}); the last good alternative is {other} (epoch {epoch})",
                         file=str(path),
                         hint=f"resume from it with --resume {other} (later epochs are trained again), "
                              f"or evaluate it with --checkpoint {other}")


def _load_error(path: Path, exc: Exception) -> ArchspecError:
    """torch.load's failure in one line of our own: torch's text advises loading with
    weights_only=False, i.e. running whatever code the file holds, which archspec never suggests."""
    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError):
        found = re.search(r"GLOBAL ([\w.]+)", text)
        what = f" ({found.group(1)})" if found else ""
        return ArchspecError(f"the checkpoint holds a pickled Python object{what} that archspec does not load: "
                             "checkpoints may hold only tensors, numbers, strings and containers of those",
                             file=str(path),
                             hint="archspec reads the last.pt / best.pt files that `archspec train` writes")
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    if "weights_only" in first:
        first = type(exc).__name__
    return ArchspecError(f"cannot read checkpoint: {first[:200]}", file=str(path),
                         hint="the file is damaged or is not a PyTorch checkpoint")


def read_torch_file(path: str | Path) -> Any:
    """`torch.load(weights_only=True)` onto the CPU of a file whose checksums were verified first."""
    path = Path(path)
    if path.is_dir():
        raise ArchspecError("expected a checkpoint file, got a directory", file=str(path))
    if not path.is_file():
        raise ArchspecError("checkpoint not found", file=str(path))
    try:
        problem = damage(path)
    except OSError as exc:
        raise ArchspecError(f"cannot read checkpoint: {exc.strerror or exc}", file=str(path)) from None
    if problem:
        raise _damaged(path, problem)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for foreign files
        raise _load_error(path, exc) from None


def load_checkpoint(path: str | Path, *, resume: bool = False) -> dict[str, Any]:
    """An intact archspec checkpoint with well-formed fields (all a resume needs when `resume`)."""
    path = Path(path)
    ckpt = read_torch_file(path)
    check_structure(ckpt, str(path), resume=resume)
    return ckpt


def weights_file(where: str | Path) -> tuple[Path, str | None]:
    """The checkpoint whose weights `eval` / `export` use, and a note when it is not the obvious one.

    A file is used as given. A run directory means its best model: best.pt, except when last.pt
    says that its own epoch is the best and best.pt does not hold it - the state a kill between
    the two writes of `save_run` leaves - in which case last.pt holds the best weights.
    """
    path = Path(where)
    if not path.is_dir():
        return checkpoint_path(path), None
    best, last = path / "best.pt", path / "last.pt"
    if best.is_file() and last.is_file():
        newest = _peek(last)
        if newest is not None and newest["best_epoch"] is not None and newest["best_epoch"] == newest["epoch"]:
            held = _peek(best)
            if held is None or held["epoch"] != newest["epoch"]:
                return last, (f"best.pt does not hold the run's best epoch ({newest['epoch']}); "
                              "using last.pt, which does")
    return checkpoint_path(path, prefer="best.pt"), None


def _fmt_shape(shape: list[int]) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def shape_differences(saved: dict[str, list[int]], current: dict[str, list[int]]) -> list[str]:
    """Human sentences for each layer whose presence or shape differs between two state dicts."""
    problems = []
    for key, shape in current.items():
        if key not in saved:
            problems.append(f'the spec has layer "{key}" {_fmt_shape(shape)} that the checkpoint lacks')
        elif list(saved[key]) != list(shape):
            problems.append(f'layer "{key}" is {_fmt_shape(saved[key])} in the checkpoint '
                            f"but {_fmt_shape(shape)} in the spec")
    for key, shape in saved.items():
        if key not in current:
            problems.append(f'the checkpoint has layer "{key}" {_fmt_shape(shape)} that the spec lacks')
    return problems


def check_compatible(ckpt: dict[str, Any], *, spec_name: str, fingerprint: str,
                     model_state: dict[str, torch.Tensor], file: str | None = None,
                     strict: bool = True) -> list[str]:
    """Refuse a checkpoint written by a different spec; return warnings for softer differences.

    `strict` (resume): name and fingerprint must match too, because continuing a run with an
    edited spec would silently not be the run it claims to be. Non-strict (eval): only the
    parameter shapes must match; a renamed/edited spec gives a warning.
    """
    saved_name = ckpt.get("spec_name")
    saved_fp = ckpt.get("spec_fingerprint")
    shapes = shape_differences(param_shapes(ckpt["model"]), param_shapes(model_state))  # the tensors, not what they claim
    if shapes:
        more = f" (and {len(shapes) - 3} more differences)" if len(shapes) > 3 else ""
        origin = f'from spec "{saved_name}"' if saved_name != spec_name else f'from a different "{spec_name}"'
        raise ArchspecError(f"checkpoint is {origin}: " + "; ".join(shapes[:3]) + more, file=file,
                            hint="pass the spec this checkpoint was trained with")
    warnings = []
    if saved_name != spec_name:
        msg = f'checkpoint is from spec "{saved_name}", not "{spec_name}" (layer shapes agree)'
        if strict:
            raise ArchspecError(msg, file=file, hint="resume with the spec the run was started with")
        warnings.append(msg)
    if saved_fp != fingerprint:
        msg = (f'spec "{spec_name}" has changed since this checkpoint was written '
               f"(fingerprint {saved_fp} in the checkpoint, {fingerprint} now; layer shapes agree)")
        if strict:
            raise ArchspecError(msg, file=file,
                                hint="resuming needs the identical resolved spec (see spec.yaml in the run directory)")
        warnings.append(msg)
    return warnings


def recipe_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The top-level recipe keys whose values differ (compared as plain data); the keys that only
    document a recipe (its description, the overrides it records) do not count."""
    from archspec.recipes.recipe import NOTE_KEYS

    keys = sorted((set(old) | set(new)) - set(NOTE_KEYS))
    return [k for k in keys if plain(old.get(k)) != plain(new.get(k))]


# --- a training run's checkpoint -----------------------------------------------------------------


def run_payload(run: Run) -> dict[str, Any]:
    """Everything `last.pt` / `best.pt` hold for `run` as it is now (weights_only-loadable)."""
    model_state = run.module.state_dict()
    h = run.history
    return {
        "format": FORMAT, "version": VERSION, "torch_version": str(torch.__version__),
        "spec_name": run.spec.name, "spec_fingerprint": run.fingerprint,
        "param_shapes": param_shapes(model_state),
        "recipe": run.recipe_dict, "dataset": run.dataset, "limits": dict(run.limits),
        "epoch": h.epoch,
        "data_epoch": h.epoch + 1,  # the epoch whose data order comes next
        "model": model_state,
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict() if run.scheduler is not None else None,
        "scheduler_interval": run.sched_interval,
        "scaler": run.scaler.state_dict() if run.scaler is not None else None,
        "ema": run.ema.state_dict() if run.ema is not None else None,  # the averaged weights `archspec eval` uses
        "rng": capture_rng(run.device),
        "metrics": [dict(row) for row in h.metrics],
        "best_test_acc": h.best_test_acc, "best_epoch": h.best_epoch, "first_loss": h.first_loss,
        "lr_history": torch.tensor(h.lr_history, dtype=torch.float64),
        "step_losses": torch.tensor(h.step_losses, dtype=torch.float32),
        "train_seconds": h.train_seconds, "train_phase_seconds": h.train_phase_seconds,
        "images_seen": h.images_seen, "compile_seconds": h.compile_seconds,
        "world_size": run.group.world_size,
    }


def save_run(run: Run, *, best: bool) -> None:
    """Write last.pt (and best.pt when `best`) atomically; only rank 0 writes.

    last.pt first: at every instant the run's best weights are on disk, in best.pt, or - between
    the two renames, when the epoch just saved is the best - in last.pt, whose `best_epoch` then
    equals its `epoch`. `reconcile_best` (resume) and `weights_file` (eval, export) read that state.
    """
    if not run.group.is_main:
        return
    data = torch_save_bytes(run_payload(run))
    atomic_write_bytes(run.out / "last.pt", data)
    if best:
        atomic_write_bytes(run.out / "best.pt", data)


def reconcile_best(file: Path, ckpt: dict[str, Any]) -> str | None:
    """Before a resume continues from `file` (last.pt): make best.pt hold the run's best epoch again.

    A kill between the last.pt and best.pt writes leaves best.pt an improvement behind while
    last.pt (its `best_epoch` == its `epoch`) holds the best weights; the next epoch would
    overwrite last.pt and lose them. Returns a line for the user, or None when all was well.
    """
    best = file.parent / "best.pt"
    target = ckpt.get("best_epoch")
    if target is None or file.name != "last.pt":
        return None
    held = _peek(best) if best.is_file() else None
    if held is not None and held["epoch"] == target:
        return None
    if target == ckpt["epoch"]:
        atomic_write_bytes(best, file.read_bytes())
        return (f"note: best.pt did not hold the run's best epoch {target} (stopped between the checkpoint "
                f"writes); restored it from last.pt")
    now = "is damaged or missing" if held is None else f"holds epoch {held['epoch']}"
    return f"warning: best.pt {now}, but the run's best epoch is {target}, whose weights are no longer on disk"


def _floats(ckpt: dict[str, Any], key: str) -> list[float]:
    return [float(v) for v in ckpt[key].tolist()] if ckpt.get(key) is not None else []


@dataclass
class ResumePoint:
    """A run's checkpoint opened for `train(..., resume=...)`, with the checks a resume must pass."""

    file: Path
    ckpt: dict[str, Any]

    @classmethod
    def open(cls, where: str | Path) -> ResumePoint:
        file = checkpoint_path(where, prefer="last.pt")
        return cls(file, load_checkpoint(file, resume=True))

    def limits(self, limit_train: int | None, limit_test: int | None) -> dict[str, int | None]:
        """The run's own data subset; --limit-train/--limit-test may be repeated but not changed.

        A different subset would change the batches and the steps per epoch (steps.csv numbers its
        epochs by them), so the resumed run would not be the run it continues: refused like the
        frozen recipe keys.
        """
        saved = self.ckpt.get("limits") or {}
        for flag, key, asked in (("--limit-train", "train", limit_train), ("--limit-test", "test", limit_test)):
            if asked is not None and asked != saved.get(key):
                was = "no limit" if saved.get(key) is None else f"{saved[key]:,}"
                raise ArchspecError(f"cannot resume with a different {flag} ({was} in the run, {asked:,} now)",
                                    file=str(self.file),
                                    hint=f"leave out {flag}: a resumed run keeps the data subset it started "
                                         "with; or start a new run")
        return {"train": saved.get("train"), "test": saved.get("test")}

    def check_dataset(self, dataset: str) -> None:
        saved = self.ckpt.get("dataset")
        if saved and str(saved) != dataset:
            raise ArchspecError(f'the run was trained on "{saved}", not "{dataset}"', file=str(self.file),
                                hint="resume on the same dataset (drop --data, or pass the original one)")

    def check_model(self, *, spec_name: str, fingerprint: str, model_state: dict[str, torch.Tensor],
                    world_size: int) -> None:
        """The same spec (strictly: name, fingerprint, shapes) on the same number of processes."""
        check_compatible(self.ckpt, spec_name=spec_name, fingerprint=fingerprint, model_state=model_state,
                         file=str(self.file), strict=True)
        saved_world = int(self.ckpt.get("world_size") or 1)
        if saved_world != world_size:  # the shards and the steps per epoch would differ
            raise ArchspecError(f"the run was trained on {saved_world} process(es), this resume has "
                                f"{world_size}", file=str(self.file),
                                hint=f"resume with --devices {saved_world}" if saved_world > 1
                                else "resume without --devices / torchrun")

    def check_recipe(self, recipe_dict: dict[str, Any]) -> list[str]:
        """The recipe keys that changed since the run started; an error when a frozen one did."""
        old = self.ckpt.get("recipe") or {}
        changed = recipe_differences(old, recipe_dict)
        frozen = [k for k in changed if k in RESUME_FROZEN_KEYS]
        if frozen:
            what = "; ".join(f"{k}: {old.get(k)!r} in the run, {recipe_dict.get(k)!r} now" for k in frozen)
            raise ArchspecError(f"cannot resume with a different {', '.join(frozen)} ({what})",
                                file=str(self.file),
                                hint="the optimizer and LR-schedule state continue from the checkpoint; resume "
                                     "with the run's own recipe (no --recipe/--lr/--batch-size) or start a new run")
        return changed

    def history(self) -> History:
        c = self.ckpt
        return History(
            epoch=int(c["epoch"]), metrics=[dict(row) for row in c.get("metrics") or []],
            best_test_acc=c.get("best_test_acc"), best_epoch=c.get("best_epoch"), first_loss=c.get("first_loss"),
            lr_history=_floats(c, "lr_history"), step_losses=_floats(c, "step_losses"),
            train_seconds=float(c.get("train_seconds") or 0.0),
            train_phase_seconds=float(c.get("train_phase_seconds") or 0.0),
            images_seen=int(c.get("images_seen") or 0), compile_seconds=float(c.get("compile_seconds") or 0.0),
        )

    def restore(self, run: Run, changed: list[str]) -> None:
        """Put the run's module, optimizer, scheduler, scaler, EMA and RNG states back as saved."""
        c = self.ckpt
        run.module.load_state_dict(c["model"])  # shapes were checked against the spec (check_model)
        try:
            run.optimizer.load_state_dict(c["optimizer"])
            if run.scheduler is not None and c.get("scheduler") is not None:
                run.scheduler.load_state_dict(c["scheduler"])
            if run.scaler is not None and c.get("scaler") is not None:
                run.scaler.load_state_dict(c["scaler"])
            if run.ema is not None and c.get("ema") is not None:
                run.ema.load_state_dict(c["ema"])
        except (KeyError, ValueError, RuntimeError, TypeError, IndexError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise ArchspecError(f"cannot restore the optimizer/schedule state ({type(exc).__name__}: {first}): "
                                f"the recipe differs from the run's in {', '.join(changed) or 'its optimizer or schedule'}",
                                file=str(self.file), hint="resume with the run's own recipe (leave out --recipe)") from None
        try:
            restore_rng(c["rng"])
        except (KeyError, ValueError, RuntimeError, TypeError, IndexError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ArchspecError(f"cannot restore the random-number-generator states: {first[:200]}",
                                file=str(self.file), path="rng") from None
