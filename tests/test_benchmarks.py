"""benchmarks/time_to_accuracy.py and its airbench94 reference: a CPU smoke run plus hand-checked pieces."""

from __future__ import annotations

import importlib.util
import io
import json
import math
import sys
from pathlib import Path

import pytest
import torch
from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


def _module(name: str):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def ref():
    return _module("airbench94_reference")


def test_time_to_accuracy_smoke(tmp_path):
    """Both sides train 8 steps of batch 32 on random CIFAR-shaped data and land in the JSON."""
    train_speed = _module("train_speed")
    tta = _module("time_to_accuracy")
    images, labels = train_speed.random_cifar(512)
    train_speed.write_cifar_folder(tmp_path / "data", images, labels)  # test_batch = the first 256
    out = tmp_path / "results.json"
    returned = tta.main(["--device", "cpu", "--runs", "1", "--epochs", "1", "--batch-size", "32",
                         "--limit-train", "256", "--limit-test", "64", "--data-dir", str(tmp_path / "data"),
                         "--json", str(out)], console=Console(file=io.StringIO(), width=200))
    results = json.loads(out.read_text())
    assert results["summary"].keys() == {"archspec", "reference"}
    assert results["config"]["smoke"] is True and "--limit-train 256" in results["command"]
    assert results["reference_source"]["commit"] == "1b8f794961dede8c4a3480bc7753904818f70d97"
    for variant in ("archspec", "reference"):
        (run,) = results["runs"][variant]
        assert 0.0 <= run["acc"] <= 1.0
        assert run["timed_s"] > 0 and run["train_s"] > 0 and run["wall_s"] > 0
        assert run["train_s"] <= run["timed_s"] <= run["wall_s"] * 1.01
        assert run["steps"] == 8  # 256 images / batch 32, one epoch, both sides
        assert run["batch_size"] == 32
    assert results["runs"]["archspec"][0]["lr"] == pytest.approx(1.5 * 32 / 1024)  # fast's lr, per-example
    assert results["runs"]["reference"][0]["train_images"] == 256
    assert results["runs"]["reference"][0]["test_images"] == 64
    cmp_ = results["comparison"]
    for key in ("time_ratio_timed", "time_ratio_train", "time_ratio_wall"):
        assert math.isfinite(cmp_[key]) and cmp_[key] > 0
    assert cmp_["acc_diff"] == pytest.approx(results["runs"]["archspec"][0]["acc"]
                                             - results["runs"]["reference"][0]["acc"])
    assert returned["summary"] == results["summary"]


def test_reference_network_is_airbench94(ref):
    """airbench94 has 1,972,792 parameters, as specs/airbench.yaml: same layers and shapes. Trainable at
    the start: all but the whitening weight (24*3*2*2) and the BatchNorm weights (2*(64+256+256))."""
    import archspec

    net = ref.make_net("cpu", torch.float32, channels_last=False)
    assert sum(p.numel() for p in net.parameters()) == ref.PARAMS == 1_972_792
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == ref.TRAINABLE_PARAMS == 1_971_352
    ours = archspec.build_model(archspec.load_spec(ROOT / "specs" / "airbench.yaml"))
    assert sorted(tuple(p.shape) for p in ours.parameters()) == sorted(tuple(p.shape) for p in net.parameters())
    # The spec freezes the BatchNorm weights (`trainable: bias`); the recipe's whitening freezes the first conv.
    ours_trainable = sum(p.numel() for p in ours.parameters() if p.requires_grad)
    assert ours_trainable - ours.whiten.weight.numel() == ref.TRAINABLE_PARAMS
    # dirac init: the first `in` filters of each 3x3 conv are the identity
    w = net[2].conv2.weight
    assert torch.equal(w[:64, :, 1, 1], torch.eye(64)) and w[:64, :, 0, 0].abs().sum() == 0
    assert net[2].norm1.momentum == pytest.approx(0.4) and net[2].norm1.eps == 1e-12
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_reference_alternating_flip(ref):
    """Epoch 0 mirrors a random half of the images; epoch 1 shows every image mirrored relative to epoch 0."""
    torch.manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    loader = ref.CifarLoader(images, torch.zeros(64, dtype=torch.int64), train=True, batch_size=64,
                             aug={"flip": True}, shuffle=False, device="cpu", dtype=torch.float32,
                             channels_last=False)
    (x0, _), = list(loader)
    (x1, _), = list(loader)
    (x2, _), = list(loader)
    norm = ref.T.Normalize(ref.CIFAR_MEAN, ref.CIFAR_STD)(images.float() / 255)
    flipped = torch.tensor([torch.equal(x0[i], norm[i].flip(-1)) for i in range(64)])
    kept = torch.tensor([torch.equal(x0[i], norm[i]) for i in range(64)])
    assert bool((flipped | kept).all()) and 10 < int(flipped.sum()) < 54
    assert torch.equal(x1, x0.flip(-1)) and torch.equal(x2, x0)


def test_reference_lr_schedule_and_optimizer(ref):
    """airbench's get_lr by hand (100 steps: 23 up from 0.2 to 1, 77 down to 0.07), its lr/wd per 1024."""
    get_lr = ref.make_lr_schedule(100)
    assert get_lr(0) == pytest.approx(0.2)
    assert get_lr(10) == pytest.approx(0.2 + 0.8 * 10 / 23)
    assert get_lr(23) == pytest.approx(1.0)
    assert get_lr(23 + 77 // 2) == pytest.approx(1.0 - 0.93 * (77 // 2) / 77)
    assert get_lr(100) == pytest.approx(0.07)
    kilostep_scale = 1024 * (1 + 1 / (1 - 0.85))
    assert 11.5 / kilostep_scale * 1024 == pytest.approx(1.5)  # recipe fast's lr for a mean loss
    alpha = ref.make_alpha_schedule(100)
    assert alpha[50].item() == pytest.approx(0.95 ** 5 * 0.5 ** 3)


def test_reference_crop_is_a_window(ref):
    """batch_crop(pad 2) returns, per image, one 32x32 window of the reflect-padded 36x36 image."""
    torch.manual_seed(1)
    x = torch.randn(16, 3, 32, 32)
    padded = torch.nn.functional.pad(x, (2,) * 4, "reflect")
    out = ref.batch_crop(padded, 32)
    for i in range(16):
        assert any(torch.equal(out[i], padded[i, :, dy:dy + 32, dx:dx + 32]) for dy in range(5) for dx in range(5))


def test_gpu_suite_script_parses_and_refuses_a_missing_data_dir(tmp_path):
    import subprocess

    script = ROOT / "benchmarks" / "gpu_suite.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    done = subprocess.run(["bash", str(script), str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert done.returncode == 2 and "cifar-10-batches-py not found" in done.stderr
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    assert done.returncode == 2 and "usage:" in done.stderr
