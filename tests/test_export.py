"""archspec export: TorchScript that computes exactly what the archspec model computes (eval mode,
checkpoint weights), ONNX behind the optional `onnx` package, and clear errors."""

from __future__ import annotations

import importlib.util
import textwrap

import pytest
import torch

import archspec
from archspec.errors import ArchspecError
from archspec.experiments.export import check_input, export_model

from .test_compare import TINY_SPEC, train_tiny

HAS_ONNX = importlib.util.find_spec("onnx") is not None
# torch.jit is deprecated in favour of torch.export; TorchScript files are still what users load.
pytestmark = [pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning"),
              pytest.mark.usefixtures("no_run_plots")]  # no test here looks at a run's figures


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(textwrap.dedent(TINY_SPEC).lstrip())
    return archspec.load_spec(path)


def trained_state(spec, seed: int = 7) -> dict:
    """Weights unlike a fresh build's: random parameters AND non-default BatchNorm running stats."""
    torch.manual_seed(seed)
    model = archspec.build_model(spec)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.normal_()
            elif name.endswith("running_var"):
                buffer.uniform_(0.5, 2.0)
    return model.state_dict()


def reference(spec, state) -> torch.nn.Module:
    model = archspec.build_model(spec)
    model.load_state_dict(state)
    return model.eval()


def test_torchscript_export_matches_the_archspec_model(spec, tmp_path):
    state = trained_state(spec)
    ckpt = tmp_path / "best.pt"
    torch.save({"model": state}, ckpt)
    result = export_model(spec, ckpt, fmt="torchscript", out=tmp_path / "m.pt")
    assert result.path == tmp_path / "m.pt" and result.max_abs_diff <= 1e-5

    loaded = torch.jit.load(str(result.path))
    ref = reference(spec, state)
    x = check_input(spec, seed=123)
    with torch.no_grad():
        assert torch.allclose(loaded(x), ref(x), atol=1e-5, rtol=1e-5)
        # the checkpoint's weights were used, not a fresh initialisation
        assert not torch.allclose(loaded(x), archspec.build_model(spec).eval()(x), atol=1e-3)
        # eval mode: dropout off and BN on running stats, so two calls agree
        assert torch.equal(loaded(x), loaded(x))
    count = sum(p.numel() for p in loaded.parameters())
    assert count == sum(p.numel() for p in ref.parameters()) == archspec.summarize(spec).total_params == result.params
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_bare_state_dict_is_accepted(spec, tmp_path):
    state = trained_state(spec, seed=1)
    torch.save(state, tmp_path / "weights.pt")
    result = export_model(spec, tmp_path / "weights.pt", out=tmp_path / "m.pt")
    x = check_input(spec, seed=5)
    with torch.no_grad():
        assert torch.allclose(torch.jit.load(str(result.path))(x), reference(spec, state)(x), atol=1e-5)


def test_export_from_a_real_run_directory_via_the_cli(spec, cli, tmp_path):
    run = train_tiny(tmp_path, tmp_path / "run").run_dir
    out = tmp_path / "tiny.torchscript.pt"
    result = cli("export", tmp_path / "tiny.yaml", "--checkpoint", run, "-o", out)
    assert result.exit_code == 0, result.stderr
    assert "torchscript" in result.stdout and f"{archspec.summarize(spec).total_params:,} params" in result.stdout
    best = torch.load(run / "best.pt", map_location="cpu", weights_only=True)
    x = check_input(spec)
    with torch.no_grad():
        assert torch.allclose(torch.jit.load(str(out))(x), reference(spec, best["model"])(x), atol=1e-5)


def test_a_checkpoint_of_another_spec_names_the_layer(spec, tmp_path):
    wide_path = tmp_path / "wide.yaml"
    wide_path.write_text(textwrap.dedent(TINY_SPEC).lstrip().replace("out: 4,", "out: 6,"))
    torch.save({"model": archspec.build_model(archspec.load_spec(wide_path)).state_dict()}, tmp_path / "w.pt")
    with pytest.raises(ArchspecError, match=r'layer "conv1.weight" is \[6, 3, 3, 3\] in the checkpoint'):
        export_model(spec, tmp_path / "w.pt", out=tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize("content, message", [
    (b"not a checkpoint", "cannot read checkpoint"),
    (None, "checkpoint not found"),
])
def test_unreadable_checkpoints_are_one_line_errors(spec, cli, tmp_path, content, message):
    path = tmp_path / "x.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ArchspecError, match=message):
        export_model(spec, path, out=tmp_path / "m.pt")
    result = cli("export", tmp_path / "tiny.yaml", "--checkpoint", path)
    assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_unknown_format_and_missing_output_folder(spec, tmp_path):
    torch.save({"model": trained_state(spec)}, tmp_path / "c.pt")
    with pytest.raises(ArchspecError, match='unknown export format "tflite"'):
        export_model(spec, tmp_path / "c.pt", fmt="tflite")
    with pytest.raises(ArchspecError, match="output folder does not exist"):
        export_model(spec, tmp_path / "c.pt", out=tmp_path / "no" / "m.pt")


@pytest.mark.skipif(HAS_ONNX, reason="onnx is installed: the error path does not apply")
def test_onnx_without_the_onnx_package_says_how_to_install_it(spec, cli, tmp_path):
    torch.save({"model": trained_state(spec)}, tmp_path / "c.pt")
    with pytest.raises(ArchspecError, match="needs the onnx package") as info:
        export_model(spec, tmp_path / "c.pt", fmt="onnx", out=tmp_path / "m.onnx")
    assert "pip install onnx" in info.value.hint
    result = cli("export", tmp_path / "tiny.yaml", "--checkpoint", tmp_path / "c.pt", "--format", "onnx")
    assert result.exit_code == 2 and "pip install onnx" in result.stderr
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.skipif(not HAS_ONNX, reason="needs the optional onnx package")
def test_onnx_export(spec, tmp_path):  # pragma: no cover - only where onnx is installed
    import onnx

    torch.save({"model": trained_state(spec)}, tmp_path / "c.pt")
    result = export_model(spec, tmp_path / "c.pt", fmt="onnx", out=tmp_path / "m.onnx")
    model = onnx.load(str(result.path))
    onnx.checker.check_model(model)
    assert result.max_abs_diff <= 1e-5


def test_export_of_a_run_trained_on_another_dataset_uses_that_dataset(spec, cli, tmp_path):
    spec_path = tmp_path / "tiny.yaml"
    run = tmp_path / "run"
    trained = cli("train", spec_path, "--data", "mnist-mini", "--epochs", "1", "--limit-train", "64",
                  "--limit-test", "32", "--device", "cpu", "--run-dir", run, "--quiet")
    assert trained.exit_code == 0, trained.stderr
    out = tmp_path / "m.pt"
    result = cli("export", spec_path, "--checkpoint", run, "-o", out)  # no --data: taken from the run
    assert result.exit_code == 0, result.stderr
    with torch.no_grad():
        assert torch.jit.load(str(out))(torch.zeros(2, 1, 28, 28)).shape == (2, 10)  # mnist: 1x28x28, 10 classes


def test_onnx_without_a_runtime_says_the_check_was_skipped(spec, cli, tmp_path, monkeypatch):
    """With onnx but no onnxruntime nothing can run the file: no difference is claimed (it used to
    compare the model with itself and print 0). The exporter is replaced; the rest is real."""
    import archspec.experiments.export as export

    torch.save(trained_state(spec), tmp_path / "c.pt")
    monkeypatch.setattr(export, "_installed", lambda module: module == "onnx")
    monkeypatch.setattr(export, "_onnx", lambda model, example: (b"onnx bytes", None))
    result = export_model(spec, tmp_path / "c.pt", fmt="onnx", out=tmp_path / "m.onnx")
    assert result.max_abs_diff is None and "onnxruntime is not installed" in result.unchecked
    assert (tmp_path / "m.onnx").read_bytes() == b"onnx bytes"
    shown = cli("export", tmp_path / "tiny.yaml", "--checkpoint", tmp_path / "c.pt", "-f", "onnx",
                "-o", tmp_path / "n.onnx")
    assert shown.exit_code == 0, shown.output
    assert "output not checked" in shown.stdout and "max difference" not in shown.stdout
    assert "pip install onnxruntime" in shown.stderr


def test_export_and_eval_of_a_synthetic_run_use_its_dataset(tmp_path, cli):
    """`train --data synthetic` keeps the spec's shapes: the run's dataset alone tells what it was."""
    spec_path = tmp_path / "c10.yaml"
    spec_path.write_text(textwrap.dedent(TINY_SPEC).lstrip().replace("dataset: synthetic", "dataset: cifar10"))
    run = tmp_path / "run"
    trained = cli("train", spec_path, "--data", "synthetic", "--recipe", "quick", "--epochs", "1",
                  "--limit-train", "32", "--limit-test", "16", "--device", "cpu", "--run-dir", run, "--quiet")
    assert trained.exit_code == 0, trained.output
    exported = cli("export", spec_path, "--checkpoint", run, "-o", tmp_path / "m.pt")
    assert exported.exit_code == 0, exported.output
    assert "has changed" not in exported.stderr and "trained on synthetic" in exported.stderr
    evaluated = cli("eval", spec_path, "--checkpoint", run, "--device", "cpu", "--limit-test", "16")
    assert evaluated.exit_code == 0, evaluated.output  # synthetic, not a cifar10 download
    assert "has changed" not in evaluated.stderr and "on 16 test images" in evaluated.stdout
