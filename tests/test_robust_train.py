"""Issue 11, the training side: what a run survives, and the one-line errors where tracebacks were.

Each test reproduces one failure of the adversarial pass (the comment says which) and checks the
behaviour that replaces it: a consistent best model after a kill between the checkpoint writes,
refused damaged checkpoints, one owner per run directory, frozen --limit-*, collapse and NaN
caught with a finite lr suggestion, a full disk that interrupts instead of crashing, a memory
estimate before building, a bounded --devices, Ctrl-C during start-up, and one structure check
for hand-made checkpoints. All runs are tiny `synthetic` ones on the CPU.
"""

from __future__ import annotations

import errno
import io
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from rich.console import Console

import archspec
from archspec.errors import ArchspecError
from archspec.recipes import load_recipe
from archspec.train import checkpoint as checkpoint_mod
from archspec.train.evaluation import evaluate
from archspec.train.loop import train
from archspec.train.rundir import read_metrics_csv

from .conftest import SLOW_SPEC, TINY_SPEC, child_env, tiny_recipe_text, without_timing, write_file

pytestmark = pytest.mark.usefixtures("no_run_plots")  # no test here looks at a run's curves.png / lr.png


def _recipe(epochs: int = 4) -> str:
    """The tiny recipe (Adam 0.01, seed 3) in the main process's data loader. With 64 training / 32 test
    images the test accuracy improves in epochs 1 and 4 (0.75, 0.75, 0.75, 0.906): best.pt is written twice."""
    return tiny_recipe_text(epochs, workers=0)


RECIPE = _recipe()

BN_SPEC = """
name: bn
dataset: synthetic
input: [3, 8, 8]
classes: 10
layers:
  - conv: {out: 8, kernel: 3, padding: 1}
  - bn
  - relu
  - pool: 2
  - flatten
  - linear: 32
  - bn
  - relu
  - linear: classes
"""

LIMITS = {"limit_train": 64, "limit_test": 32}


def _files(tmp_path: Path, recipe_text: str = RECIPE, spec_text: str = TINY_SPEC) -> tuple[Path, Path]:
    return write_file(tmp_path, "spec.yaml", spec_text), write_file(tmp_path, "recipe.yaml", recipe_text)


def _train(spec_path: Path, recipe_path: Path, **kwargs):
    out = io.StringIO()
    for key, value in LIMITS.items():
        kwargs.setdefault(key, value)
    result = train(archspec.load_spec(spec_path), load_recipe(str(recipe_path)), device="cpu",
                   console=Console(file=out, width=200), **kwargs)
    return result, out.getvalue()


def _epoch(path: Path) -> int:
    return torch.load(path, weights_only=True)["epoch"]


class _Killed(BaseException):
    """Stands for the process dying: nothing in archspec catches a BaseException it does not know."""


def _die_at_second_best_write(monkeypatch) -> None:
    """`save_run` writes last.pt, then best.pt: die just before the second best.pt write."""
    real = checkpoint_mod.atomic_write_bytes
    best_writes = []

    def write(path, data):
        if Path(path).name == "best.pt":
            best_writes.append(path)
            if len(best_writes) == 2:
                raise _Killed
        return real(path, data)

    monkeypatch.setattr(checkpoint_mod, "atomic_write_bytes", write)


# --- 1. a kill between the last.pt and best.pt renames ------------------------------------------


def test_a_kill_between_the_checkpoint_writes_keeps_the_best_model(tmp_path, monkeypatch):
    """Was: best.pt stayed at epoch 1 while summary.json named epoch 4; `eval RUN_DIR` scored epoch 1."""
    spec, recipe = _files(tmp_path)
    straight, _ = _train(spec, recipe, run_dir=tmp_path / "straight")
    assert straight.best_epoch == 4 and _epoch(tmp_path / "straight" / "best.pt") == 4

    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        _die_at_second_best_write(patch)
        with pytest.raises(_Killed):
            _train(spec, recipe, run_dir=run)
    assert _epoch(run / "best.pt") == 1 and _epoch(run / "last.pt") == 4  # the state the kill leaves

    scored = evaluate(archspec.load_spec(spec), run, device="cpu", limit_test=32)
    assert scored.epoch == 4 and scored.checkpoint == str(run / "last.pt")
    assert any("best.pt does not hold the run's best epoch (4)" in w for w in scored.warnings)
    assert scored.test_acc == pytest.approx(straight.best_test_acc)

    resumed, output = _train(spec, recipe, resume=run)
    assert resumed.status == "completed" and "restored it from last.pt" in output
    assert _epoch(run / "best.pt") == 4 == json.loads((run / "summary.json").read_text())["best_epoch"]
    best, reference = (torch.load(d / "best.pt", weights_only=True)["model"] for d in (run, tmp_path / "straight"))
    assert all(torch.equal(best[k], reference[k]) for k in reference)
    assert without_timing(resumed.metrics) == without_timing(straight.metrics)


KILL_9_AT_SECOND_BEST = """
import os, signal, sys
from pathlib import Path
import archspec.train.checkpoint as checkpoint
real, best = checkpoint.atomic_write_bytes, []
def write(path, data):
    if Path(path).name == "best.pt":
        best.append(path)
        if len(best) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
    return real(path, data)
checkpoint.atomic_write_bytes = write
sys.argv = ["archspec", *sys.argv[1:]]
from archspec.__main__ import main
main()
"""


@pytest.mark.slow  # a real `python -m archspec` process
def test_kill_9_between_the_checkpoint_writes_then_eval_and_resume(tmp_path, cli):
    """The same instant with a real SIGKILL: the dead process also leaves its lock file behind."""
    spec, recipe = _files(tmp_path)
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", KILL_9_AT_SECOND_BEST, "train", str(spec), "--recipe", str(recipe),
                           "--run-dir", str(run), "--limit-train", "64", "--limit-test", "32", "--device", "cpu"],
                          cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    assert _epoch(run / "best.pt") == 1 and _epoch(run / "last.pt") == 4 and (run / ".archspec.lock").exists()

    scored = cli("eval", spec, "--checkpoint", run, "--json")
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.stdout)["epoch"] == 4

    resumed = cli("train", spec, "--resume", run, "--device", "cpu")
    assert resumed.exit_code == 0, resumed.output
    assert "which ended without releasing it" in resumed.output and "restored it from last.pt" in resumed.output
    assert _epoch(run / "best.pt") == 4 and not (run / ".archspec.lock").exists()


# --- 2. damaged checkpoints ------------------------------------------------------------------------


def _flip_a_byte_inside_the_weights(path: Path) -> None:
    """Flip one byte in the middle of the largest tensor's storage (not in zip headers or the pickle)."""
    with zipfile.ZipFile(path) as archive:
        member = max(archive.infolist(), key=lambda info: info.file_size)
    raw = bytearray(path.read_bytes())
    header = member.header_offset
    name_len = int.from_bytes(raw[header + 26:header + 28], "little")
    extra_len = int.from_bytes(raw[header + 28:header + 30], "little")
    where = header + 30 + name_len + extra_len + member.file_size // 2
    raw[where] ^= 0x55
    path.write_bytes(bytes(raw))


def test_a_checkpoint_with_flipped_bytes_is_refused_naming_the_last_good_one(tmp_path, cli):
    """Was: the damaged last.pt loaded silently and the resumed run trained on garbage."""
    spec, recipe = _files(tmp_path, _recipe(2))
    run = tmp_path / "run"
    _train(spec, recipe, run_dir=run, stop_after_epoch=1)  # last.pt and best.pt both hold epoch 1
    intact = torch.load(run / "last.pt", weights_only=True)
    _flip_a_byte_inside_the_weights(run / "last.pt")
    torch.load(run / "last.pt", weights_only=True)  # torch itself does not notice

    resumed = cli("train", spec, "--resume", run, "--device", "cpu")
    assert resumed.exit_code == 2 and "Traceback" not in resumed.output
    first = resumed.output.strip().splitlines()[0]
    assert f"{run / 'last.pt'}: checkpoint is damaged (checksum mismatch in " in first
    assert f"the last good alternative is {run / 'best.pt'} (epoch 1)" in first
    assert f"--resume {run / 'best.pt'}" in resumed.output

    # The named alternative works: the run continues from best.pt and rewrites last.pt.
    again = cli("train", spec, "--resume", run / "best.pt", "--device", "cpu")
    assert again.exit_code == 0, again.output
    assert _epoch(run / "last.pt") == 2 and intact["epoch"] == 1

    _flip_a_byte_inside_the_weights(run / "best.pt")
    scored = cli("eval", spec, "--checkpoint", run / "best.pt")
    assert scored.exit_code == 2 and "checkpoint is damaged" in scored.output
    assert f"the last good alternative is {run / 'last.pt'} (epoch 2)" in scored.output
    exported = cli("export", spec, "--checkpoint", run / "best.pt", "-o", tmp_path / "m.pt")
    assert exported.exit_code == 2 and "checkpoint is damaged" in exported.output


def test_a_truncated_checkpoint_and_one_with_no_alternative(tmp_path):
    spec, recipe = _files(tmp_path, _recipe(1))
    run = tmp_path / "run"
    _train(spec, recipe, run_dir=run)
    for name in ("last.pt", "best.pt"):
        data = (run / name).read_bytes()
        (run / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(ArchspecError, match="no intact checkpoint is left in its run directory"):
        _train(spec, recipe, resume=run)


def test_load_errors_never_advise_weights_only_false(tmp_path):
    """Was: torch's "Re-running torch.load with weights_only set to False will likely succeed"."""
    spec = archspec.load_spec(write_file(tmp_path, "spec.yaml", TINY_SPEC))
    path = tmp_path / "pickled.pt"
    torch.save({"format": "archspec.checkpoint", "x": SimpleNamespace(a=1)}, path)
    for load in (lambda: evaluate(spec, path, device="cpu"), lambda: checkpoint_mod.ResumePoint.open(path)):
        with pytest.raises(ArchspecError) as info:
            load()
        text = f"{info.value}\n{info.value.hint}"
        assert "types.SimpleNamespace" in text and "pickled Python object" in text
        assert "weights_only" not in text and "trust" not in text


# --- hand-made checkpoints with wrong field types ------------------------------------------------


@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory):
    """A finished 1-epoch run to tamper with, plus its spec file."""
    folder = tmp_path_factory.mktemp("made")
    spec, recipe = _files(folder, _recipe(1))
    _train(spec, recipe, run_dir=folder / "run")
    return spec, folder / "run"


def _set(ckpt: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    node = ckpt
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value


_DELETE = object()

# (field, value, commands that must refuse it, a fragment of the one-line error)
TAMPERED = [
    ("epoch", "3", ("resume", "eval"), "epoch: expected a whole number >= 0, got str '3'"),
    ("version", 99, ("resume", "eval", "export"), "format version 99 is newer than this archspec understands"),
    ("version", "1", ("eval", "export"), "version: expected a format version >= 1"),
    ("model", [], ("eval", "export"), "model: expected a mapping of layer names to tensors"),
    ("rng", _DELETE, ("resume",), "the checkpoint has no `rng`"),
    ("rng.numpy_pos", "x", ("resume",), "rng.numpy_pos: expected a whole number"),
    ("rng.torch", torch.zeros(3, dtype=torch.uint8), ("resume",), "rng: cannot restore the random-number-generator"),
    ("metrics", 5, ("resume",), "metrics: expected a list of metrics rows"),
    ("metrics.0.epoch", "one", ("resume",), "metrics[0].epoch: expected an epoch number"),
    ("limits", {"train": "lots"}, ("resume",), "limits: expected a mapping"),
    ("lr_history", "abc", ("resume",), "lr_history: expected null or a 1-d float tensor"),
    ("optimizer", {"state": {}, "param_groups": "x"}, ("resume",), "optimizer: expected an optimizer state"),
    ("recipe.seed", "abc", ("eval",), "recipe.seed: expected a whole number"),
    ("ema", {"step": 1, "model": {"w": torch.zeros(2)}}, ("eval",), "ema.model: the averaged weights do not have"),
]


@pytest.mark.parametrize("field, value, commands, fragment", TAMPERED, ids=[f"{t[0]}={t[1]!r}"[:40] for t in TAMPERED])
def test_a_hand_made_checkpoint_is_one_located_error_in_resume_eval_and_export(
        field, value, commands, fragment, one_epoch_run, tmp_path, cli):
    """Was: KeyError/ValueError/TypeError tracebacks in resume and eval; export took version 99."""
    spec, source = one_epoch_run
    run = tmp_path / "run"
    run.mkdir()
    for name in ("spec.yaml", "recipe.yaml"):
        (run / name).write_bytes((source / name).read_bytes())
    ckpt = torch.load(source / "last.pt", weights_only=True)
    _set(ckpt, field, value)
    torch.save(ckpt, run / "last.pt")
    args = {"resume": ("train", spec, "--resume", run, "--device", "cpu"),
            "eval": ("eval", spec, "--checkpoint", run / "last.pt", "--device", "cpu"),
            "export": ("export", spec, "--checkpoint", run / "last.pt", "-o", tmp_path / "m.pt")}
    for command in commands:
        result = cli(*args[command])
        assert result.exit_code == 2, (command, result.output)
        assert "Traceback" not in result.output and fragment in result.output.splitlines()[0], (command, result.output)
        assert result.output.splitlines()[0].startswith(f"error: {run / 'last.pt'}: ")


# --- 3. one owner per run directory -------------------------------------------------------------


def test_a_run_directory_in_use_is_refused_and_a_dead_owners_lock_is_taken_over(tmp_path, cli):
    """Was: two `train` processes with the same --run-dir both exited 0, the later overwriting the other."""
    from archspec.train.runlock import LOCK_NAME, RunLock

    spec, recipe = _files(tmp_path, _recipe(1))
    run = tmp_path / "run"
    run.mkdir()
    with RunLock(run):  # another owner (a second descriptor: flock locks conflict)
        busy = cli("train", spec, "--recipe", recipe, "--run-dir", run, "--device", "cpu", "--limit-train", "64")
        assert busy.exit_code == 2 and "Traceback" not in busy.output
        assert f"this run directory is in use by process {os.getpid()} on {socket.gethostname()}" in busy.output
        assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]  # nothing of the refused run written

    # A lock file whose process is gone (here: written by hand, locked by nobody) is taken over.
    (run / LOCK_NAME).write_text(json.dumps({"pid": 999999, "host": "elsewhere", "since": "2020-01-01T00:00:00"}))
    result, output = _train(spec, recipe, run_dir=run)
    assert result.status == "completed"
    assert f"took over {run} from process 999999 on elsewhere, which ended without releasing it" in output
    assert not (run / LOCK_NAME).exists()  # released at the end

    with RunLock(run):
        resumed = cli("train", spec, "--resume", run, "--device", "cpu")
        assert resumed.exit_code == 2 and "in use by process" in resumed.output


@pytest.mark.slow  # a real second `python -m archspec` process
def test_two_real_processes_on_one_run_directory(tmp_path, cli):
    spec = write_file(tmp_path, "slow.yaml", SLOW_SPEC)
    recipe = write_file(tmp_path, "r.yaml", "name: r\nepochs: 40\nbatch_size: 32\noptimizer: {name: sgd, lr: 0.002}\n")
    run = tmp_path / "run"
    owner = subprocess.Popen([sys.executable, "-m", "archspec", "train", str(spec), "--recipe", str(recipe),
                              "--run-dir", str(run), "--limit-train", "384", "--limit-test", "64", "--device", "cpu"],
                             cwd=tmp_path, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (run / "metrics.csv").exists() or len((run / "metrics.csv").read_text().splitlines()) < 2:
        assert owner.poll() is None and time.monotonic() < deadline, "the first run did not get going"
        time.sleep(0.05)
    for args in (("--resume", run), ("--recipe", recipe, "--run-dir", run)):
        second = cli("train", spec, *args, "--device", "cpu")
        assert second.exit_code == 2, second.output
        assert f"in use by process {owner.pid} on {socket.gethostname()}" in second.output
    owner.send_signal(signal.SIGINT)
    owner.communicate(timeout=60)
    assert owner.returncode == 130
    again = cli("train", spec, "--resume", run, "--device", "cpu", "--epochs", str(_epoch(run / "last.pt") + 1))
    assert again.exit_code == 0, again.output


# --- 4. the data subset of a resumed run --------------------------------------------------------


def test_resuming_with_another_limit_train_is_refused(tmp_path):
    """Was: accepted silently, and steps.csv's epoch column was rewritten with the new steps per epoch."""
    spec, recipe = _files(tmp_path, _recipe(2))
    run = tmp_path / "run"
    _train(spec, recipe, run_dir=run, stop_after_epoch=1, limit_train=48)
    steps_before = (run / "steps.csv").read_text()
    with pytest.raises(ArchspecError, match=r"cannot resume with a different --limit-train \(48 in the run, 64 now\)"):
        _train(spec, recipe, resume=run, limit_train=64)
    with pytest.raises(ArchspecError, match=r"different --limit-test \(32 in the run, 16 now\)"):
        _train(spec, recipe, resume=run, limit_train=48, limit_test=16)
    assert (run / "steps.csv").read_text() == steps_before
    resumed, _ = _train(spec, recipe, resume=run, limit_train=48)  # the same value may be repeated
    assert resumed.status == "completed"
    epochs = [int(line.split(",")[1]) for line in (run / "steps.csv").read_text().splitlines()[1:]]
    assert epochs == [1] * 3 + [2] * 3  # 48 images / batch 16


# --- 5. divergence, collapse to chance, and the lr advice ----------------------------------------


def test_lr_10_with_bn_and_label_smoothing_collapses_and_stops_as_diverged(tmp_path, cli):
    """Was: the loss went from 8.5 to ~ln(10) at chance accuracy and the run exited 0 "completed"."""
    recipe_text = ("name: lr10\nepochs: 8\nbatch_size: 16\noptimizer: {name: sgd, lr: 10}\n"
                   "loss: {name: cross_entropy, label_smoothing: 0.1}\nseed: 1\nworkers: 0\n")
    spec, recipe = _files(tmp_path, recipe_text, BN_SPEC)
    result = cli("train", spec, "--recipe", recipe, "--run-dir", tmp_path / "run", "--device", "cpu",
                 "--limit-train", "320", "--limit-test", "64")
    assert result.exit_code == 3, result.output  # diverged
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["epochs"] == 4  # epochs 2-4 at chance; epoch 1 never counts
    message = summary["message"]
    assert "collapsed to chance" in message and "(ln 10 = 2.303)" in message and "epochs 2-4" in message
    assert "--lr 1 " in message and "--lr inf" not in message


def test_nan_stops_the_run_at_the_step_it_appears_on_the_cpu(tmp_path):
    """Was: noticed at the next loss read (every 25 steps, or the end of the epoch)."""
    recipe_text = "name: huge\nepochs: 2\nbatch_size: 16\noptimizer: {name: sgd, lr: 1.0e+25}\nseed: 1\nworkers: 0\n"
    spec, recipe = _files(tmp_path, recipe_text, BN_SPEC)
    result, _ = _train(spec, recipe, run_dir=tmp_path / "run", limit_train=320)
    assert result.status == "diverged" and result.epochs_completed == 0
    assert "the loss became NaN/inf at step 2 of the epoch" in result.message
    assert "--lr 1e+24" in result.message
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["lr_history"].numel() == 0


def test_the_lr_suggestion_is_always_finite_and_positive():
    from archspec.train.divergence import FALLBACK_LR, lower_lr_advice, suggest_lr

    inf, nan = float("inf"), float("nan")
    assert suggest_lr(0.01, 1e6) == pytest.approx(0.001)  # a schedule raised it: a tenth of the recipe's
    assert suggest_lr(10, 10) == pytest.approx(1.0)
    assert suggest_lr(inf, 0.5) == pytest.approx(0.05)
    for base, failing in ((inf, inf), (nan, nan), (0.0, 0.0), (-1.0, inf), (inf, 0.0)):
        assert suggest_lr(base, failing) == FALLBACK_LR
    tiny = suggest_lr(5e-324, 5e-324)
    assert math.isfinite(tiny) and tiny > 0
    for base, failing in ((inf, inf), (nan, 0.0), (1e308, inf), (5e-324, nan)):
        advice = lower_lr_advice(SimpleNamespace(optimizer=SimpleNamespace(lr=base)), failing)
        value = float(advice.split("--lr ")[1].split()[0])
        assert math.isfinite(value) and value > 0, advice


def _history(rows):
    from archspec.train.state import History

    metrics = [{"epoch": i + 1, "train_loss": loss, "train_acc": acc} for i, (loss, acc) in enumerate(rows)]
    return History(epoch=len(rows), metrics=metrics)


def test_collapse_needs_consecutive_epochs_after_the_first_at_chance_with_a_chance_loss():
    from archspec.train.divergence import collapse

    ln10 = math.log(10)
    stuck = [(ln10 + 0.2, 0.10)] * 4
    assert collapse(_history(stuck[:3]), 10, 320) is None  # epochs 1-3: the first epoch never counts
    assert "epochs 2-4" in collapse(_history(stuck), 10, 320)
    # A hard dataset's first epochs: near chance, but learning (loss below ln C, accuracy above the band).
    assert collapse(_history([(2.29, 0.11), (2.27, 0.12), (2.26, 0.12), (2.25, 0.13)]), 10, 50_000) is None
    assert collapse(_history([(2.31, 0.10), (2.31, 0.10), (2.31, 0.10), (2.2, 0.10)]), 10, 50_000) is None
    assert collapse(_history([(2.31, 0.10), (2.31, 0.10), (2.31, 0.10), (2.31, 0.20)]), 10, 50_000) is None
    assert collapse(_history([(ln10, 0.5)] * 4), 1, 320) is None  # one class: no chance level to speak of


def test_a_run_stuck_at_chance_without_a_loss_spike_is_warned_about_not_stopped():
    from archspec.train.divergence import CollapseWatch

    notes, ended = [], []
    history = _history([(2.31, 0.10)] * 4)
    history.step_losses = [2.3, 2.35, 2.28]  # never above 1.5 ln 10: no sign of too large a step
    run = SimpleNamespace(spec=SimpleNamespace(num_classes=10), bundle=SimpleNamespace(num_train=320),
                          history=history, recipe=SimpleNamespace(optimizer=SimpleNamespace(lr=1e-6)),
                          reporter=SimpleNamespace(note=notes.append), end=lambda *a: ended.append(a))
    watch = CollapseWatch()
    watch.on_epoch_end(run, history.metrics[-1])
    watch.on_epoch_end(run, history.metrics[-1])
    assert not ended and len(notes) == 1 and "the model is not learning" in notes[0]
    history.step_losses.append(9.0)  # a spike: now the lr is to blame
    watch.on_epoch_end(run, history.metrics[-1] | {"lr": 1e-6})
    assert ended and ended[0][0] == "diverged" and "--lr 1e-07" in ended[0][1]


# --- 6. a full disk, failed starts and Ctrl-C during start-up -----------------------------------


def _disk_full_on(monkeypatch, name: str, nth: int) -> None:
    """The `nth` write of checkpoint `name` fails inside the real atomic writer with ENOSPC (at fsync)."""
    import archspec.atomic_write as io_module

    real, seen = io_module.atomic_write_bytes, []

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def write(path, data):
        seen.append(Path(path).name)
        if Path(path).name == name and seen.count(name) == nth:
            with monkeypatch.context() as patch:
                patch.setattr(io_module.os, "fsync", no_space)
                return real(path, data)
        return real(path, data)

    monkeypatch.setattr(checkpoint_mod, "atomic_write_bytes", write)


def test_a_full_disk_mid_run_interrupts_it_resumably(tmp_path, monkeypatch, cli):
    """Was: an OSError traceback, and summary.json left at "running"."""
    spec, recipe = _files(tmp_path)
    straight, _ = _train(spec, recipe, run_dir=tmp_path / "straight")
    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        _disk_full_on(patch, "last.pt", 3)  # epoch 0, epoch 1, then epoch 2's fails
        result = cli("train", spec, "--recipe", recipe, "--run-dir", run, "--device", "cpu", "--limit-train", "64",
                     "--limit-test", "32")
    assert result.exit_code == 130 and "Traceback" not in result.output, result.output
    assert f"disk full: could not write {run / 'last.pt'}; stopped with last.pt at epoch 1" in result.output
    assert f"resume with: archspec train {spec} --resume {run}" in result.output
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["epochs"] == 1 and "disk full" in summary["message"]
    assert [r["epoch"] for r in read_metrics_csv(run / "metrics.csv")] == [1] and _epoch(run / "last.pt") == 1
    assert not list(run.glob(".*.tmp")) and not (run / ".archspec.lock").exists()

    resumed, _ = _train(spec, recipe, resume=run)  # space freed
    assert resumed.status == "completed"
    assert without_timing(resumed.metrics) == without_timing(straight.metrics)


def test_a_full_disk_or_a_failure_at_start_leaves_no_run_directory(tmp_path, monkeypatch, cli):
    """Was: failed starts left empty run directories behind."""
    import archspec.data.loader as loader_module
    from archspec.train import rundir

    spec, recipe = _files(tmp_path)
    runs = tmp_path / "runs"
    common = ("train", spec, "--recipe", recipe, "--device", "cpu", "--limit-train", "64", "--runs-dir", runs)
    with monkeypatch.context() as patch:
        real = rundir.atomic_write_text

        def full(path, text, *args):
            if Path(path).name == "recipe.yaml":  # spec.yaml was written: a half-made start
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            return real(path, text, *args)

        patch.setattr(rundir, "atomic_write_text", full)
        result = cli(*common)
    assert result.exit_code == 2 and "disk full: could not write" in result.output and "Traceback" not in result.output
    assert list(runs.iterdir()) == []

    def no_data(*args, **kwargs):
        raise ArchspecError("no such dataset here")

    with monkeypatch.context() as patch:
        patch.setattr(loader_module, "make_loaders", no_data)
        assert cli(*common).exit_code == 2
        assert cli(*common[:-2], "--run-dir", tmp_path / "new" / "run").exit_code == 2
        mine = tmp_path / "mine"
        mine.mkdir()
        (mine / "notes.txt").write_text("the user's")
        assert cli(*common[:-2], "--run-dir", mine).exit_code == 2
    assert list(runs.iterdir()) == [] and not (tmp_path / "new" / "run").exists()
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]  # not ours to remove


def test_ctrl_c_during_start_up_is_one_line_and_leaves_no_run_directory(tmp_path, monkeypatch, cli):
    """Was: a KeyboardInterrupt traceback, and an empty run directory."""
    import archspec.data.loader as loader_module

    spec, recipe = _files(tmp_path)
    runs = tmp_path / "runs"

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(loader_module, "make_loaders", ctrl_c)
    result = cli("train", spec, "--recipe", recipe, "--device", "cpu", "--runs-dir", runs)
    assert result.exit_code == 130 and result.output.strip() == "interrupted"
    assert list(runs.iterdir()) == []


def test_ctrl_c_while_python_imports_archspec_is_one_line(monkeypatch, capsys):
    """`python -m archspec`: the package imports next to nothing, and its entry point catches Ctrl-C
    during the import of the CLI (typer, rich, ...), where a traceback used to come from."""
    import importlib.abc

    import archspec.__main__ as entry

    class CtrlC(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "archspec.cli":
                raise KeyboardInterrupt
            return None

    monkeypatch.delitem(sys.modules, "archspec.cli", raising=False)
    monkeypatch.setattr(sys, "meta_path", [CtrlC(), *sys.meta_path])
    with pytest.raises(SystemExit) as info:
        entry.main()
    assert info.value.code == 130 and capsys.readouterr().err == "interrupted\n"

    light = subprocess.run([sys.executable, "-c", "import sys, archspec; print(sorted(m for m in sys.modules "
                            "if m.split('.')[0] in ('yaml', 'jsonschema', 'torch', 'typer')))"],
                           env=child_env(), capture_output=True, text=True, check=True)
    assert light.stdout.strip() == "[]"


# --- 7. memory, 12. processes ---------------------------------------------------------------------


HUGE_SPEC = """
name: huge
dataset: synthetic
input: [1, 100, 1000]
classes: 10
layers:
  - flatten
  - linear: 1000000
  - linear: classes
"""


def test_a_spec_that_cannot_fit_is_refused_before_anything_is_built(tmp_path, monkeypatch, cli):
    """Was: 9.8 GB allocated under a 12 GB cap until the OS killed the process 2.5 minutes later."""
    import archspec.data.loader as loader_module
    import archspec.train.setup as setup_module
    from archspec.summary import human_bytes

    monkeypatch.setattr(loader_module, "make_loaders", lambda *a, **k: pytest.fail("data loaded"))
    monkeypatch.setattr(setup_module, "build_module", lambda *a, **k: pytest.fail("model built"))
    spec, recipe = _files(tmp_path, RECIPE, HUGE_SPEC)
    started = time.monotonic()
    result = cli("train", spec, "--recipe", recipe, "--device", "cpu", "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2 and time.monotonic() - started < 30, result.output
    line = result.output.splitlines()[0]
    weights = 4 * (100_000 * 1_000_000 + 1_000_000 + 1_000_000 * 10 + 10)  # 1e11 parameters: 373 GB
    assert "this run needs about" in line and "at the peak of a training step" in line and "cpu has" in line
    assert f"weights {human_bytes(weights)}, gradients {human_bytes(weights)}, adam state " \
           f"{human_bytes(2 * weights)}, saved for backward" in line and "at batch 16" in line
    assert "--force" in result.output and not (tmp_path / "runs").exists()


def test_the_memory_check_uses_the_devices_free_memory_and_force_skips_it(tmp_path, monkeypatch, cli):
    from archspec.train import memory_check

    spec, recipe = _files(tmp_path, _recipe(1))
    monkeypatch.setattr(memory_check, "available_memory", lambda device: (1000, "available RAM"))
    common = ("train", spec, "--recipe", recipe, "--device", "cpu", "--limit-train", "32", "--limit-test", "16")
    refused = cli(*common, "--runs-dir", tmp_path / "a")
    assert refused.exit_code == 2 and "but cpu has 1000 B available RAM" in refused.output
    forced = cli(*common, "--runs-dir", tmp_path / "b", "--force")
    assert forced.exit_code == 0, forced.output


def test_the_need_is_counts_estimate_plus_the_ema_copy(tmp_path):
    """One estimate for `count` and for the pre-flight check (archspec.memory), on the meta device."""
    from archspec.compile import build_model
    from archspec.memory import estimate_memory
    from archspec.recipes.build import memory_setup
    from archspec.train.memory_check import training_need

    spec = archspec.load_spec(write_file(tmp_path, "bn.yaml", BN_SPEC))
    adam = load_recipe("adam", overrides=["batch_size=32"])
    counted = estimate_memory(spec, build_model(spec, device="meta"), memory_setup(adam, "cpu"))
    need, estimate = training_need(spec, adam, "cpu")
    assert need == counted.peak_bytes == estimate.peak_bytes > counted.params_bytes + counted.grads_bytes
    with_ema, _ = training_need(spec, load_recipe("adam", overrides=["batch_size=32", "ema.decay=0.99"]), "cpu")
    assert with_ema == need + counted.params_bytes


def test_more_cpu_processes_than_cores_are_refused_unless_forced(cli, monkeypatch):
    """Was: --devices 64 started 64 CPU processes of ~0.9 GB each."""
    from archspec.train import distributed

    launched = []
    monkeypatch.setattr("archspec.cli.launch", lambda n, command: launched.append((n, command)) or 0)
    for key in distributed.ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    cores = distributed.cpu_cores()
    many = str(cores + 1)
    result = cli("train", "specs/tiny.yaml", "--devices", many, "--device", "cpu")
    assert result.exit_code == 2 and not launched
    assert f"--devices {many} would start {many} CPU processes on {cores} CPU core(s)" in result.output
    assert "--force" in result.output
    if not torch.cuda.is_available():  # auto means the CPU here: bounded the same way
        assert cli("train", "specs/tiny.yaml", "--devices", many).exit_code == 2 and not launched
    assert cli("train", "specs/tiny.yaml", "--devices", many, "--device", "cpu", "--force").exit_code == 0
    ((n, command),) = launched
    assert n == cores + 1 and "--force" in command
    distributed.check_devices(cores, "cpu")  # one per core is fine
