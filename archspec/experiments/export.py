"""`archspec export`: a trained model as a file that runs without archspec (TorchScript or ONNX).

The model is rebuilt from the spec, the checkpoint's weights are loaded strictly (a checkpoint of
another spec fails with the layer that differs, not PyTorch's key dump), it is put in eval mode
(dropout off, BatchNorm on its running statistics), traced on one input of the spec's shape, and
the traced model's output is checked against the original on a fixed random input before the
file is written. An export that would silently compute something else is refused. Without a
runtime to run the file (ONNX without onnxruntime) the outputs are not compared, and the result
says so instead of reporting a difference.

TorchScript uses `torch.jit.trace`: archspec models are straight-line module graphs, which
tracing captures exactly, and tracing accepts every layer kind (scripting would reject some).
ONNX needs the `onnx` package, which archspec does not depend on: without it the error says so.
"""

from __future__ import annotations

import importlib.util
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archspec.atomic_write import atomic_write_bytes
from archspec.errors import ArchspecError

FORMATS = ("torchscript", "onnx")
SUFFIX = {"torchscript": ".torchscript.pt", "onnx": ".onnx"}
TOLERANCE = 1e-5


@dataclass
class ExportResult:
    path: Path
    format: str
    params: int
    max_abs_diff: float | None  # exported vs archspec model on the check input; None: not checked
    warnings: list[str]
    unchecked: str | None = None  # why the outputs were not compared (no runtime to run the file)


NO_RUNTIME = ("onnxruntime is not installed, so the exported model was not run (the graph passed "
              "onnx.checker); pip install onnxruntime to compare its outputs")


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def load_weights(checkpoint: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state_dict, the whole checkpoint dict) from a .pt file or a run directory (its best model).

    Accepts an archspec checkpoint (checked like every reader checks it: checksums, format
    version, field types), a bare state_dict, or another trainer's {"model": state_dict, ...};
    always with `torch.load(weights_only=True)`, which refuses pickled code.
    """
    import torch

    from archspec.train.checkpoint import read_torch_file, weights_file
    from archspec.train.checkpoint_schema import FORMAT, check_structure

    path, _ = weights_file(checkpoint)
    data = read_torch_file(path)
    if isinstance(data, dict) and data.get("format") == FORMAT:  # one of ours: the same gate as resume and eval
        check_structure(data, str(path))
        return data["model"], data
    if isinstance(data, dict) and isinstance(data.get("model"), dict) and data["model"] and all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in data["model"].items()):
        return data["model"], {}
    if isinstance(data, dict) and data and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                               for k, v in data.items()):
        return data, {}
    raise ArchspecError("not a model checkpoint (no \"model\" state_dict inside)", file=str(path),
                        hint="pass a last.pt / best.pt written by `archspec train`, or a run directory")


def _load_into(model, state: dict[str, Any], ckpt: dict[str, Any], spec, file: str) -> list[str]:
    from archspec.train.checkpoint import check_compatible, shape_differences, spec_fingerprint

    current = model.state_dict()
    if ckpt.get("format") == "archspec.checkpoint":
        notes = check_compatible(ckpt, spec_name=spec.name, fingerprint=spec_fingerprint(spec.resolved),
                                 model_state=current, file=file, strict=False)
    else:
        problems = shape_differences({k: list(v.shape) for k, v in state.items()},
                                     {k: list(v.shape) for k, v in current.items()})
        if problems:
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            raise ArchspecError("checkpoint does not fit the spec: " + "; ".join(problems[:3]) + more, file=file,
                                hint="pass the spec this checkpoint was trained with")
        notes = []
    model.load_state_dict(state, strict=True)
    return notes


def check_input(spec, *, seed: int = 0):
    """A fixed random batch of two inputs of the spec's shape (the same every call)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    return torch.randn((2, *spec.input_shape), generator=generator)


def export_model(spec, checkpoint: str | Path, *, fmt: str = "torchscript", out: str | Path | None = None
                 ) -> ExportResult:
    """Export `spec` (a loaded Spec) with `checkpoint`'s weights; returns where and how well it matched."""
    if fmt not in FORMATS:
        raise ArchspecError(f'unknown export format "{fmt}"; formats: {", ".join(FORMATS)}', path="--format")
    if fmt == "onnx" and not _installed("onnx"):
        raise ArchspecError("ONNX export needs the onnx package, which is not installed",
                            path="--format onnx", hint="pip install onnx   (or export --format torchscript)")
    import torch

    import archspec

    out_path = Path(out) if out is not None else Path(f"{spec.name}{SUFFIX[fmt]}")
    if not out_path.parent.is_dir():
        raise ArchspecError("the output folder does not exist", file=str(out_path.parent))

    state, ckpt = load_weights(checkpoint)
    model = archspec.build_model(spec)
    notes = _load_into(model, state, ckpt, spec, str(checkpoint))
    model.eval()
    example = check_input(spec)
    with torch.no_grad():
        expected = model(example)
        if fmt == "torchscript":
            data, exported_out = _torchscript(model, example)
        else:
            data, exported_out = _onnx(model, example)
    diff = None
    if exported_out is not None:  # None: nothing to run the file with; never compare the model with itself
        diff = float((exported_out - expected).abs().max()) if expected.numel() else 0.0
        if not torch.allclose(exported_out, expected, atol=TOLERANCE, rtol=TOLERANCE):
            raise ArchspecError(f"the exported {fmt} model computes something else (max difference {diff:.3g}); "
                                "nothing written", path=spec.name,
                                hint="a layer with input-dependent control flow cannot be traced")
    try:
        atomic_write_bytes(out_path, data)
    except OSError as exc:
        raise ArchspecError(f"cannot write the export: {exc.strerror or exc}", file=str(out_path)) from None
    params = sum(p.numel() for p in model.parameters())
    return ExportResult(path=out_path, format=fmt, params=params, max_abs_diff=diff, warnings=notes,
                        unchecked=NO_RUNTIME if exported_out is None else None)


def _torchscript(model, example):
    """Trace, serialise to bytes, load the bytes back and run them: what a user of the file gets."""
    import torch

    with warnings.catch_warnings():
        # torch.jit is deprecated in favour of torch.export, but TorchScript files are what this exports
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            traced = torch.jit.trace(model, example, check_trace=False)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ArchspecError(f"TorchScript tracing failed: {first}") from None
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
        data = buffer.getvalue()
        reloaded = torch.jit.load(io.BytesIO(data), map_location="cpu")
        return data, reloaded(example)


def _onnx(model, example):  # pragma: no cover - needs the optional onnx package
    """(bytes, outputs): torch.onnx.export, checked by onnx.checker; the outputs are onnxruntime's on
    `example`, or None when onnxruntime is not installed (then nothing was run)."""
    import tempfile

    import onnx
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "model.onnx"
        use_dynamo = importlib.util.find_spec("onnxscript") is not None
        try:
            torch.onnx.export(model, (example,), str(target), input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, dynamo=use_dynamo,
                              external_data=False)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ArchspecError(f"ONNX export failed: {first}",
                                hint="pip install onnxscript (the exporter torch uses by default)") from None
        data = target.read_bytes()
    onnx.checker.check_model(onnx.load_from_string(data))
    if not _installed("onnxruntime"):
        return data, None
    import onnxruntime

    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    result = session.run(None, {session.get_inputs()[0].name: example.numpy()})[0]
    return data, torch.from_numpy(result)
