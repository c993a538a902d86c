"""Checkpoints: what `last.pt` / `best.pt` hold, how they are read back, and who may read them.

A checkpoint must be loadable with `torch.load(weights_only=True)`: that loader refuses arbitrary
pickled objects, so a checkpoint downloaded from somewhere cannot run code. Everything saved
here is therefore a tensor, a primitive, or a dict/list of those; random-number-generator
states are stored as tensors.

A checkpoint records which spec produced it (name + a fingerprint of the resolved spec + the
parameter shapes) so that resuming or evaluating with a different spec fails with a sentence
naming the difference ("layer 3.weight is [32, 16, 3, 3] in the checkpoint but [64, 16, 3, 3] in
the spec") instead of PyTorch's wall of missing/unexpected state_dict keys.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from archspec.errors import ArchspecError

FORMAT = "archspec.checkpoint"
VERSION = 1

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
        state["python_gauss"],
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


# --- reading ------------------------------------------------------------------------------------


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


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load an archspec checkpoint safely (`weights_only=True`) onto the CPU, with clear errors."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ArchspecError("checkpoint not found", file=str(path)) from None
    except IsADirectoryError:
        raise ArchspecError("expected a checkpoint file, got a directory", file=str(path)) from None
    except Exception as exc:  # torch raises many types for truncated or foreign files
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ArchspecError(f"cannot read checkpoint: {first_line}", file=str(path),
                            hint="the file is corrupt, not a checkpoint, or holds pickled objects "
                                 "that weights_only loading refuses") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ArchspecError("not an archspec checkpoint (no archspec metadata)", file=str(path),
                            hint="archspec reads the last.pt / best.pt files that `archspec train` writes")
    if int(ckpt.get("version", 0)) > VERSION:
        raise ArchspecError(f"checkpoint format version {ckpt.get('version')} is newer than this archspec "
                            f"understands ({VERSION})", file=str(path))
    return ckpt


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
    shapes = shape_differences(ckpt.get("param_shapes") or param_shapes(ckpt["model"]), param_shapes(model_state))
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
