"""benchmarks/time_to_accuracy.py: the race against a user's airbench94.py clone (a fake one here) or the
published figure; and the GPU suite script."""

from __future__ import annotations

import importlib.util
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
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


# A stand-in for a user's clone of airbench94.py: it reads the cache airbench94.py reads
# (cifar10/{train,test}.pt in its working folder), checks its layout, and prints a table in the same
# format (|-separated padded cells framed by dashed lines, the run number on its first row only, a
# final `eval` row per run). Its "accuracy" is the share of test labels equal to 3 and its "time" the
# pixel sum mod 997 / 100: numbers the test recomputes from the images archspec reads, so a wrong
# image or label in the cache shows.
FAKE_AIRBENCH = r"""
import sys
import torch

train = torch.load("cifar10/train.pt", map_location="cpu")
test = torch.load("cifar10/test.pt", map_location="cpu")
for split in (train, test):
    assert split["images"].dtype == torch.uint8 and split["images"].shape[1:] == (32, 32, 3)
    assert split["labels"].dtype == torch.int64 and len(split["labels"]) == len(split["images"])
    assert len(split["classes"]) == 10
columns = ["run   ", "epoch", "train_loss", "train_acc", "val_acc", "tta_val_acc", "total_time_seconds"]


def line(cells):
    return "".join(f"|  {c}  " for c in cells) + "|"


def row(values):
    return line([("" if v is None else v).rjust(len(col)) for v, col in zip(values, columns)])


head = line(columns)
print("-" * len(head))
print(head)
print("-" * len(head))
acc = float((test["labels"] == 3).float().mean())
timed = int(train["images"].sum()) % 997 / 100
for run in RUNS:
    print(row([run, "0", "1.2345", "0.5000", "0.4000", None, None]))
    print(row([None, "1", "1.0000", "0.6000", "0.5000", None, None]))
    extra = 0.5 if run == "warmup" else 0.0
    print(row([None, "eval", "1.0000", "0.6000", "0.5000", f"{acc:.4f}", f"{timed + extra:.4f}"]))
    print("-" * len(head))
print("Mean: %.4f    Std: %.4f" % (acc, 0.0))
sys.exit(EXIT)
"""


def fake_airbench(folder: Path, runs=("0", "1"), exit_code: int = 0) -> Path:
    path = folder / "airbench94.py"
    path.write_text(f"RUNS = {list(runs)!r}\nEXIT = {exit_code}\n" + FAKE_AIRBENCH)
    return path


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
    """512 random CIFAR-shaped training images (the first 256 are also the test split), archspec's layout."""
    folder = tmp_path_factory.mktemp("cifar")
    train_speed = _module("train_speed")
    images, labels = train_speed.random_cifar(512)
    train_speed.write_cifar_folder(folder, images, labels)
    return folder


def _expected(data_dir: Path, limit_train: int, limit_test: int, seed: int = 0) -> tuple[float, float]:
    """What the fake prints, recomputed from the subset archspec trains on for `seed`."""
    from archspec.data.datasets import load_dataset
    from archspec.data.loader import _limited

    train = _limited(load_dataset("cifar10", "train", data_dir=data_dir), limit_train, seed, "train")
    test = _limited(load_dataset("cifar10", "test", data_dir=data_dir), limit_test, seed, "test")
    return float((test.labels == 3).float().mean()), int(train.images.sum()) % 997 / 100


def test_parse_airbench_table_reads_eval_rows_by_column_name():
    tta = _module("time_to_accuracy")
    # The root airbench94.py has a val_loss column the legacy one lacks; columns are found by name.
    text = "\n".join([
        "noise before the table",
        "-" * 20,
        "|  run     |  epoch  |  train_loss  |  val_loss  |  val_acc  |  tta_val_acc  |  total_time_seconds  |",
        "-" * 20,
        "|  warmup  |      0  |      2.0000  |    2.0000  |   0.1000  |               |                      |",
        "|          |   eval  |      2.0000  |    2.0000  |   0.1000  |       0.1000  |              9.0000  |",
        "|       0  |      0  |      1.0000  |    1.0000  |   0.9000  |               |                      |",
        "|          |      9  |      0.5000  |    0.5000  |   0.9300  |               |                      |",
        "|          |   eval  |      0.5000  |    0.5000  |   0.9300  |       0.9412  |              3.8100  |",
        "|       1  |   eval  |      0.5000  |    0.5000  |   0.9350  |       0.9390  |              3.8500  |",
        "Mean: 0.9401    Std: 0.0011",
    ])
    runs = tta.parse_airbench_table(text)
    assert [r["run"] for r in runs] == ["warmup", "0", "1"]
    assert [r["acc"] for r in runs] == [0.1, 0.9412, 0.939]
    assert [r["timed_s"] for r in runs] == [9.0, 3.81, 3.85]
    timed, warm = tta.split_warmup(runs, warmup_run=False)
    assert warm["run"] == "warmup" and [r["run"] for r in timed] == ["0", "1"]
    timed, warm = tta.split_warmup(runs[1:], warmup_run=True)  # no warmup row: the first run is the warm-up
    assert warm["run"] == "0" and [r["run"] for r in timed] == ["1"]
    assert tta.parse_airbench_table("no table here") == []


def test_airbench_side_runs_the_users_script_on_archspecs_images(cifar_dir, tmp_path):
    """Only the airbench side: the fake reads the cache written from archspec's subset for seed 3."""
    tta = _module("time_to_accuracy")
    script = fake_airbench(tmp_path, runs=("warmup", "0", "1", "2"))
    out = tmp_path / "results.json"
    console = Console(file=io.StringIO(), width=200)
    tta.main(["--device", "cpu", "--variants", "airbench", "--airbench", str(script), "--first-seed", "3",
              "--limit-train", "300", "--limit-test", "100", "--data-dir", str(cifar_dir), "--json", str(out)],
             console=console)
    results = json.loads(out.read_text())
    acc, timed = _expected(cifar_dir, 300, 100, seed=3)
    assert results["airbench"]["train_images"] == 300 and results["airbench"]["test_images"] == 100
    assert [r["run"] for r in results["runs"]["airbench"]] == ["0", "1", "2"]
    assert results["warmup"]["airbench"]["run"] == "warmup"
    assert results["warmup"]["airbench"]["timed_s"] == pytest.approx(timed + 0.5)
    for run in results["runs"]["airbench"]:
        assert run["acc"] == pytest.approx(acc, abs=5e-5) and run["timed_s"] == pytest.approx(timed, abs=5e-5)
    assert results["summary"]["airbench"]["runs"] == 3
    assert results["comparison"] is None and "archspec" not in results["runs"]
    assert "airbench | Mean:" in console.file.getvalue()  # its output is echoed as it runs


# A clone that fails after printing: no torch import (a second interpreter importing torch costs ~10 s of the
# suite), since only the exit code and the last lines matter here.
FAILING_AIRBENCH = """
import sys
print("|  run  |  epoch  |  val_acc  |")
print("Mean: 0.1000    Std: 0.0000")
sys.exit(3)
"""


def test_a_failing_airbench_script_stops_with_its_last_lines(cifar_dir, tmp_path):
    tta = _module("time_to_accuracy")
    script = tmp_path / "airbench94.py"
    script.write_text(FAILING_AIRBENCH)
    with pytest.raises(SystemExit, match="exited with code 3") as failure:
        tta.main(["--device", "cpu", "--variants", "airbench", "--airbench", str(script),
                  "--data-dir", str(cifar_dir)], console=Console(file=io.StringIO()))
    assert "Mean:" in str(failure.value)
    with pytest.raises(SystemExit):  # the airbench side alone needs --airbench
        tta.parse_args(["--variants", "airbench"])
    with pytest.raises(SystemExit):
        tta.parse_args(["--airbench", str(tmp_path / "missing.py")])


def test_time_to_accuracy_smoke_against_a_fake_clone(cifar_dir, tmp_path):
    """archspec trains 4 steps of batch 16; the fake clone reads the same subset; both land in the JSON."""
    tta = _module("time_to_accuracy")
    script = fake_airbench(tmp_path)
    out = tmp_path / "results.json"
    returned = tta.main(["--device", "cpu", "--runs", "1", "--epochs", "1", "--batch-size", "16",
                         "--limit-train", "64", "--limit-test", "32", "--data-dir", str(cifar_dir),
                         "--airbench", str(script), "--json", str(out)],
                        console=Console(file=io.StringIO(), width=200))
    results = json.loads(out.read_text())
    assert results["summary"].keys() == {"archspec", "airbench"}
    assert results["config"]["smoke"] is True and "--limit-train 64" in results["command"]
    (run,) = results["runs"]["archspec"]
    assert 0.0 <= run["acc"] <= 1.0
    assert run["timed_s"] > 0 and run["train_s"] > 0 and run["wall_s"] > 0
    assert run["train_s"] <= run["timed_s"] <= run["wall_s"] * 1.01
    assert run["steps"] == 4 and run["batch_size"] == 16  # 64 images / batch 16, one epoch
    assert run["lr"] == pytest.approx(1.5 * 16 / 1024)  # fast's lr, per-example
    acc, _ = _expected(cifar_dir, 64, 32)
    airbench = results["summary"]["airbench"]
    assert airbench["acc_mean"] == pytest.approx(acc, abs=5e-5)
    cmp_ = results["comparison"]
    assert cmp_["against"] == "airbench"
    assert cmp_["time_ratio_timed"] == pytest.approx(run["timed_s"] / airbench["timed_s_mean"])
    assert cmp_["acc_diff"] == pytest.approx(run["acc"] - airbench["acc_mean"])
    assert returned["summary"] == results["summary"]


def test_without_a_clone_the_race_is_against_the_published_figure():
    """No --airbench: archspec's numbers against 94.01% in 3.83 s, and the report says where that came from."""
    tta = _module("time_to_accuracy")
    ours = tta.summarize([{"acc": 0.935, "timed_s": 4.0, "train_s": 3.0, "wall_s": 9.0},
                          {"acc": 0.941, "timed_s": 4.2, "train_s": 3.1, "wall_s": 9.5}])
    published = tta.published_summary()
    cmp_ = tta.compare(ours, published, against="published")
    assert cmp_["time_ratio_timed"] == pytest.approx(4.1 / 3.83)
    assert cmp_["acc_diff"] == pytest.approx(0.938 - 0.9401)
    assert cmp_["goal"]["time_ok"]  # 1.07x <= 1.2x
    assert cmp_["goal"]["acc_ok"] == (0.938 - 0.9401 >= -ours["acc_std"])
    console = Console(file=io.StringIO(), width=300)
    tta.print_report(console, {"summary": {"archspec": ours, "published": published}, "comparison": cmp_,
                               "precision": {"archspec": "bf16"}, "warmup": {},
                               "device": {"type": "cuda"}, "config": {"smoke": False}})
    text = console.file.getvalue()
    assert "airbench94 (published, NVIDIA A100-SXM4-80GB)" in text and "94.01 %" in text
    assert "not a run on this device" in text and "--airbench" in text


def test_gpu_suite_script_parses_and_refuses_a_missing_data_dir(tmp_path):
    script = ROOT / "benchmarks" / "gpu_suite.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    done = subprocess.run(["bash", str(script), str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert done.returncode == 2 and "cifar-10-batches-py not found" in done.stderr
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    assert done.returncode == 2 and "usage:" in done.stderr
    (tmp_path / "cifar-10-batches-py").mkdir()
    done = subprocess.run(["bash", str(script), str(tmp_path)], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "AIRBENCH": str(tmp_path / "missing.py")})
    assert done.returncode == 2 and "AIRBENCH" in done.stderr
