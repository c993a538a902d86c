"""Time to accuracy: archspec's airbench spec + `fast` recipe against airbench94, same data, same device.

    .venv/bin/python benchmarks/time_to_accuracy.py [--airbench PATH/TO/airbench94.py] [--runs 5]
        [--device auto|cpu|cuda] [--data-dir DIR] [--spec specs/airbench.yaml] [--recipe fast]
        [--epochs N] [--batch-size B] [--limit-train N] [--limit-test N] [--warmup-run]
        [--compile MODE] [--first-seed 0] [--variants archspec airbench] [--json results.json]

The goal it measures: archspec (specs/airbench.yaml + recipe fast) reaches airbench94's accuracy in at
most 1.2x airbench94's time on the same GPU.

archspec ships no copy of airbench. The other side of the race is one of two things:

  your clone   `--airbench PATH` names airbench94.py in your own checkout of KellerJordan/cifar10-airbench
               (its root `airbench94.py` or `legacy/airbench94.py`; any script that reads the same cache
               and prints the same table works). This script writes the CIFAR-10 images archspec reads
               into the cache airbench reads - `cifar10/train.pt` and `cifar10/test.pt` under a temporary
               working folder, each `{"images": uint8 [N, 32, 32, 3], "labels": int64 [N], "classes":
               [names]}` - runs `python PATH` there as a subprocess on the same device (CUDA_VISIBLE_DEVICES
               set to it), echoes its output, and parses its printed table: per run, the `eval` row's
               `tta_val_acc` and `total_time_seconds`. airbench runs as many runs as its `__main__` says (25
               in the published file): `--runs` is archspec's count. A row whose run is `warmup` (airbench's
               `main('warmup')`, commented out as published) is reported apart; with `--warmup-run` the
               first parsed run is also treated as a warm-up. `--epochs`, `--batch-size` and `--compile`
               change archspec only; `--limit-*` change both (airbench gets the subset of the first seed).
  the paper    without `--airbench`: the figure published in airbench94.py's header, 94.01% mean accuracy
               (n=1000) in 3.83 s on an NVIDIA A100-SXM4-80GB. The report says so, and the time ratio is
               only meaningful on an A100.

archspec's side: `archspec.train.loop.train(spec, recipe)` in-process - the code `archspec train` runs -
with `--set seed=s eval_every=<epochs>` (only the last epoch evaluates, with the recipe's TTA), progress
off, on a throw-away run directory in a temporary folder.

Times (seconds; on CUDA every timed region of archspec ends with a device synchronize):

  timed       airbench's convention (its `total_time_seconds`): whitening init + training epochs + final
              TTA evaluation. airbench: its own printed number. archspec: the whitening init (timed by
              wrapping `archspec.train.whiten.whiten_first_conv`) + the sum of the metrics rows'
              `epoch_seconds` (training steps + end-of-epoch bookkeeping + the one evaluation, with TTA)
              minus the steps that compiled. THE RATIO THE GOAL IS ABOUT: timed(archspec) / timed(airbench).
  train       archspec only: training steps (images_seen / images_per_second from the run's summary).
  wall        archspec only: the whole `train()` call (data loading, run directory, checkpoints, plots).

Accuracy is the final test accuracy with each side's TTA (both: airbench's 6-view flip+translate).

For CPU smoke runs of archspec: `--epochs`, `--batch-size` (archspec's lr is scaled by batch/recipe
batch so the per-example step stays airbench's) and `--limit-train/--limit-test` (a class-balanced
subset). airbench94.py itself needs CUDA and at least one batch of 1,024 training images.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import archspec  # noqa: E402
from archspec.atomic_write import atomic_torch_save, atomic_write_json  # noqa: E402
from archspec.data.datasets import load_dataset  # noqa: E402
from archspec.data.loader import _limited  # noqa: E402  (the exact subset archspec trains on)
from archspec.recipes import load_recipe  # noqa: E402
from archspec.train import loop  # noqa: E402
from archspec.train.device import resolve_device  # noqa: E402
from archspec.train.torch_compile import resolve_compile  # noqa: E402

VARIANTS = ("archspec", "airbench")
GOAL_TIME_RATIO = 1.2
# The header of airbench94.py (KellerJordan/cifar10-airbench): "3.83s runtime on an A100",
# "94.01 average accuracy in n=1000 runs", recorded on an NVIDIA A100-SXM4-80GB.
PUBLISHED = {"acc": 0.9401, "timed_s": 3.83, "runs": 1000, "device": "NVIDIA A100-SXM4-80GB",
             "source": "KellerJordan/cifar10-airbench airbench94.py (header comment)"}
AIRBENCH_TIMEOUT_S = 3600


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads, " \
           f"{os.cpu_count()} cores)"


# --- archspec's side ----------------------------------------------------------------------------


def archspec_recipe(name: str, *, seed: int, epochs: int | None, batch_size: int | None, compile_value: str = "auto"):
    """The recipe for one archspec run: `--set seed=S eval_every=EPOCHS compile=C`, plus the smoke-run overrides."""
    base = load_recipe(name)
    lr = None
    if batch_size is not None and batch_size != int(base.batch_size):
        lr = float(base.optimizer.lr) * batch_size / int(base.batch_size)  # same step per example
    n_epochs = int(epochs if epochs is not None else base.epochs)
    return load_recipe(name, epochs=epochs, batch_size=batch_size, lr=lr,
                       overrides=[f"seed={seed}", f"eval_every={n_epochs}", f"compile={compile_value}"])


def run_archspec(spec, recipe, *, data_dir, device: str, limit_train, limit_test) -> dict[str, Any]:
    from archspec.train import whiten as init_whiten

    dev = resolve_device(device)
    whiten_s = 0.0
    original = init_whiten.whiten_first_conv

    def timed_whiten(*args, **kwargs):  # loop.train imports it from the module at call time
        nonlocal whiten_s
        _sync(dev)
        t0 = time.perf_counter()
        out = original(*args, **kwargs)
        _sync(dev)
        whiten_s += time.perf_counter() - t0
        return out

    steps = 0
    original_step = loop.train_step

    def counted_step(*args, **kwargs):  # the loop looks train_step up in its module at every step
        nonlocal steps
        steps += 1
        return original_step(*args, **kwargs)

    init_whiten.whiten_first_conv = timed_whiten
    loop.train_step = counted_step
    try:
        with tempfile.TemporaryDirectory(prefix="tta-archspec-") as tmp:
            t0 = time.perf_counter()
            result = loop.train(spec, recipe, dataset="cifar10", data_dir=data_dir, device=device,
                                run_dir=Path(tmp) / "run", limit_train=limit_train, limit_test=limit_test,
                                progress=False, quiet=True, console=Console(file=io.StringIO()))
            wall_s = time.perf_counter() - t0
    finally:
        init_whiten.whiten_first_conv = original
        loop.train_step = original_step
    if result.status != "completed":
        raise SystemExit(f"archspec run (seed {recipe.seed}) did not complete: {result.status} {result.message}")
    return _archspec_numbers(result, recipe, whiten_s=whiten_s, wall_s=wall_s, steps=steps)


def _archspec_numbers(result, recipe, *, whiten_s: float, wall_s: float, steps: int) -> dict[str, Any]:
    summary = result.summary
    images_seen = int(summary["images_seen"])
    train_s = images_seen / result.images_per_second if result.images_per_second else float("nan")
    compile_s = float(summary.get("compile_seconds") or 0.0)  # steps that compiled: airbench's warm-up run
    epochs_s = sum(float(row["epoch_seconds"]) for row in result.metrics) - compile_s
    return {
        "seed": int(recipe.seed),
        "acc": float(result.final_test_acc),
        "timed_s": whiten_s + epochs_s,
        "train_s": train_s,
        "wall_s": wall_s,
        "whiten_s": whiten_s,
        "epochs_s": epochs_s,  # sum of epoch_seconds - compile_s: train phases + bookkeeping + the final TTA eval
        "compile_s": compile_s,
        "eval_and_overhead_s": epochs_s - train_s,
        "images_seen": images_seen,
        "images_per_second": float(result.images_per_second),
        "steps": steps,
        "epochs": int(result.epochs_completed),
        "batch_size": int(summary["batch_size"]),
        "lr": float(recipe.optimizer.lr),
        "precision": summary["precision"],
    }


# --- airbench's side: the user's own clone, as a subprocess ------------------------------------------


def write_airbench_cache(folder: Path, train, test) -> dict[str, int]:
    """`folder/cifar10/{train,test}.pt` as airbench94.py's CifarLoader reads them: a dict of uint8
    images in torchvision's layout (N, H, W, C), int64 labels and the class names. airbench builds
    this cache from torchvision's CIFAR10 when it is missing; writing it here instead makes both
    sides train on the very tensors archspec's reader returns (with --limit-*, the same subset)."""
    cache = folder / "cifar10"
    cache.mkdir(parents=True, exist_ok=True)
    for name, split in (("train.pt", train), ("test.pt", test)):
        payload = {"images": split.images.permute(0, 2, 3, 1).contiguous(),
                   "labels": split.labels.to(torch.int64).clone(),
                   "classes": list(split.class_names)}
        atomic_torch_save(payload, cache / name)
    return {"train_images": len(train), "test_images": len(test)}


def _cuda_visible_devices(device: torch.device) -> str | None:
    """The CUDA_VISIBLE_DEVICES value that makes the child's `cuda` (device 0) our `device`."""
    if device.type != "cuda":
        return None
    index = device.index if device.index is not None else torch.cuda.current_device()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        entries = [v.strip() for v in visible.split(",") if v.strip()]
        if index < len(entries):
            return entries[index]
    return str(index)


def _stream(command: list[str], *, cwd: Path, env: dict[str, str], timeout_s: float,
            echo) -> tuple[int, str, float]:
    """Run `command`, echoing each output line as it arrives; (exit code, all output, seconds).
    A run past `timeout_s` is killed (exit code -9)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1)
    timer = threading.Timer(timeout_s, proc.kill)
    timer.start()
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            echo(line.rstrip("\n"))
        code = proc.wait()
    finally:
        timer.cancel()
    return code, "".join(lines), time.perf_counter() - t0


def parse_airbench_table(text: str) -> list[dict[str, Any]]:
    """The runs in airbench94.py's printed table, one dict per `eval` row, in order.

    The table is `|`-separated cells under a header that names the columns (`run`, `epoch`, ...,
    `tta_val_acc`, `total_time_seconds`); dashed lines frame it. A run's number is printed on its
    first row only, so each row inherits the last run seen. Columns are found by name, so a version
    of the script with more columns (the root airbench94.py adds `val_loss`) parses the same."""
    header: list[str] | None = None
    run: str | None = None
    runs = []
    for line in text.splitlines():
        stripped = line.strip()
        if not (stripped.startswith("|") and stripped.endswith("|")):
            continue
        cells = [cell.strip() for cell in stripped[1:-1].split("|")]
        if "tta_val_acc" in cells and "total_time_seconds" in cells:
            header = cells
            continue
        if header is None or len(cells) != len(header):
            continue
        row = dict(zip(header, cells, strict=True))
        run = row.get("run") or run
        if row.get("epoch") != "eval":
            continue
        runs.append({"run": run, "acc": float(row["tta_val_acc"]),
                     "timed_s": float(row["total_time_seconds"]),
                     "val_acc": float(row["val_acc"]) if row.get("val_acc") else None})
    return runs


def run_airbench(script: Path, train, test, *, device: torch.device, timeout_s: float,
                 console: Console) -> dict[str, Any]:
    """Run the user's airbench94.py on our data; its parsed runs plus what was run and how long it took."""
    script = script.resolve()
    env = dict(os.environ)
    visible = _cuda_visible_devices(device)
    if visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible
    with tempfile.TemporaryDirectory(prefix="tta-airbench-") as tmp:
        data = write_airbench_cache(Path(tmp), train, test)

        def echo(line: str) -> None:
            console.print(f"airbench | {escape(line)}", highlight=False, soft_wrap=True)

        code, output, seconds = _stream([sys.executable, str(script)], cwd=Path(tmp), env=env,
                                        timeout_s=timeout_s, echo=echo)
    if code != 0:
        tail = "\n".join(output.splitlines()[-15:])
        raise SystemExit(f"{script} exited with code {code}" + (" (timed out)" if code == -9 else "")
                         + f"; its last lines:\n{tail}")
    runs = parse_airbench_table(output)
    if not runs:
        raise SystemExit(f"{script} printed no table with an `eval` row (tta_val_acc, total_time_seconds); "
                         "is it airbench94.py?")
    return {"script": str(script), "sha256": hashlib.sha256(script.read_bytes()).hexdigest(),
            "process_seconds": seconds, "runs": runs, **data}


def split_warmup(runs: list[dict[str, Any]], warmup_run: bool) -> tuple[list[dict[str, Any]], dict | None]:
    """(timed runs, warm-up run or None): airbench's own `warmup` run, else with `--warmup-run` the first
    run of the fresh process (it pays for the CUDA context and cuDNN's autotuning), as archspec's is."""
    warm = [r for r in runs if r["run"] == "warmup"]
    timed = [r for r in runs if r["run"] != "warmup"]
    if not warm and warmup_run and len(timed) > 1:
        warm, timed = timed[:1], timed[1:]
    return timed, (warm[0] if warm else None)


# --- statistics and report ----------------------------------------------------------------------


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    accs = [r["acc"] for r in runs]
    out = {"runs": len(runs), "acc_mean": _mean(accs), "acc_std": _std(accs)}
    for key in ("timed_s", "train_s", "wall_s"):
        values = [r[key] for r in runs if r.get(key) is not None]
        if values:
            out[f"{key}_mean"] = _mean(values)
            out[f"{key}_std"] = _std(values)
    return out


def published_summary() -> dict[str, Any]:
    return {"runs": PUBLISHED["runs"], "acc_mean": PUBLISHED["acc"], "acc_std": None,
            "timed_s_mean": PUBLISHED["timed_s"]}


def compare(archspec_summary: dict[str, Any], other: dict[str, Any], *, against: str) -> dict[str, Any]:
    """archspec against `other` (the user's airbench runs, or the published figure).

    "Reaches airbench94's accuracy": archspec's mean is within one standard deviation of airbench's
    mean, or above it - airbench's run-to-run std when its runs were measured here, archspec's own
    when the other side is the published mean (whose std the file does not print)."""
    ratio = archspec_summary["timed_s_mean"] / other["timed_s_mean"]
    acc_diff = archspec_summary["acc_mean"] - other["acc_mean"]
    noise = other["acc_std"] if other.get("acc_std") is not None else archspec_summary["acc_std"]
    return {
        "against": against,
        "time_ratio_timed": ratio,  # the goal's ratio: airbench's timing convention on both sides
        "acc_diff": acc_diff,  # archspec - airbench (fraction, not points)
        "goal": {"time_ratio_max": GOAL_TIME_RATIO, "time_ok": ratio <= GOAL_TIME_RATIO, "acc_ok": acc_diff >= -noise},
    }


def _seconds(summary: dict[str, Any], key: str) -> str:
    value = summary.get(f"{key}_s_mean")
    return "-" if value is None else f"{value:.3f}"


def print_report(console: Console, results: dict[str, Any]) -> None:
    table = Table(title="time to accuracy: archspec vs airbench94 (means over runs; seconds)")
    for col, justify in (("side", "left"), ("precision", "left"), ("runs", "right"), ("test acc (TTA)", "right"),
                         ("timed", "right"), ("train", "right"), ("wall", "right")):
        table.add_column(col, justify=justify)
    names = {"archspec": "archspec", "airbench": "airbench94 (your clone)",
             "published": f"airbench94 (published, {PUBLISHED['device']})"}
    for name, s in results["summary"].items():
        std = "" if s["acc_std"] is None else f" ± {100 * s['acc_std']:.2f}"
        table.add_row(names[name], results["precision"].get(name, "-"), f"{s['runs']:,}",
                      f"{100 * s['acc_mean']:.2f}{std} %", _seconds(s, "timed"), _seconds(s, "train"),
                      _seconds(s, "wall"))
    cmp_ = results["comparison"]
    if cmp_:
        table.add_section()
        table.add_row("archspec / airbench94", "", "", f"{100 * cmp_['acc_diff']:+.2f} pts",
                      f"{cmp_['time_ratio_timed']:.2f}x", "", "")
    console.print(table)
    console.print("timed = airbench's total_time_seconds convention (whitening init + training epochs + final "
                  "TTA eval); train = archspec's training steps only; wall = archspec's whole train() call.")
    for name, warm in results["warmup"].items():
        if warm:
            console.print(f"warm-up run ({name}, not in the means): timed {warm['timed_s']:.3f} s, "
                          f"acc {100 * warm['acc']:.2f} %")
    if cmp_:
        _print_verdict(console, results)


def _print_verdict(console: Console, results: dict[str, Any]) -> None:
    cmp_, goal = results["comparison"], results["comparison"]["goal"]
    verdict = "met" if goal["time_ok"] and goal["acc_ok"] else "NOT met"
    caveats = []
    if results["device"]["type"] != "cuda" or results["config"]["smoke"]:
        caveats.append("not meaningful for a CPU / smoke configuration")
    if cmp_["against"] == "published":
        caveats.append(f"compared with the published figure ({100 * PUBLISHED['acc']:.2f}% in "
                       f"{PUBLISHED['timed_s']} s on an {PUBLISHED['device']}), not a run on this device: "
                       "pass --airbench PATH/TO/airbench94.py to race your own clone here")
    console.print(f"goal (timed ratio <= {goal['time_ratio_max']}x and archspec acc >= airbench acc - one std): "
                  f"{verdict} (time {'ok' if goal['time_ok'] else 'too slow'}, accuracy "
                  f"{'ok' if goal['acc_ok'] else 'too low'})" + "".join(f"; {c}" for c in caveats))


# --- driver ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--airbench", type=Path, default=None, metavar="PATH",
                    help="airbench94.py in your clone of KellerJordan/cifar10-airbench: run it on the same data "
                         "and device (default: compare with the published 94.01%% in 3.83 s on an A100)")
    ap.add_argument("--airbench-timeout", type=float, default=AIRBENCH_TIMEOUT_S, metavar="S",
                    help="kill the airbench subprocess after S seconds")
    ap.add_argument("--runs", type=int, default=5, help="timed archspec runs (seeds)")
    ap.add_argument("--first-seed", type=int, default=0, help="seeds are first-seed .. first-seed + runs - 1")
    ap.add_argument("--data-dir", default=None, help="folder containing cifar-10-batches-py/ "
                    "(default: archspec's, $ARCHSPEC_DATA or ~/.cache/archspec/data)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--spec", default=str(ROOT / "specs" / "airbench.yaml"))
    ap.add_argument("--recipe", default="fast")
    ap.add_argument("--epochs", type=int, default=None, help="archspec's epochs (default: the recipe's)")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="archspec's batch size (default: the recipe's 1024); its lr is scaled with it")
    ap.add_argument("--limit-train", type=int, default=None, help="class-balanced training subset (both sides)")
    ap.add_argument("--limit-test", type=int, default=None, help="test subset (both sides)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
                    help="which sides to run (airbench needs --airbench)")
    ap.add_argument("--warmup-run", action="store_true",
                    help="one untimed archspec run first; airbench's first run is reported apart")
    ap.add_argument("--compile", default="auto", metavar="VALUE",
                    help="archspec's recipe `compile` value: auto (torch.compile on CUDA only), false, true, "
                         "default, reduce-overhead, max-autotune, ...")
    ap.add_argument("--json", default=None, metavar="PATH", help="write the results here")
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    if args.airbench is None:
        args.variants = [v for v in args.variants if v != "airbench"]
    elif not args.airbench.is_file():
        ap.error(f"--airbench {args.airbench}: no such file")
    if not args.variants:
        ap.error("nothing to run: the airbench side needs --airbench PATH")
    return args


def _command(argv: list[str]) -> str:
    script = Path(__file__).resolve()
    with contextlib.suppress(ValueError):
        script = script.relative_to(Path.cwd())
    return shlex.join([sys.executable, str(script), *argv])


def _run_archspec_seeds(args, spec, recipe_name: str, seeds: list[int], device: str, console: Console):
    def one(seed: int) -> dict[str, Any]:
        recipe = archspec_recipe(recipe_name, seed=seed, epochs=args.epochs, batch_size=args.batch_size,
                                 compile_value=args.compile)
        return run_archspec(spec, recipe, data_dir=args.data_dir, device=device,
                            limit_train=args.limit_train, limit_test=args.limit_test)

    warm = None
    if args.warmup_run:
        console.print("warm-up run: archspec")
        warm = one(seeds[0])
    runs = []
    for seed in seeds:
        r = one(seed)
        runs.append(r)
        console.print(f" archspec seed {seed}: acc {100 * r['acc']:.2f} %  timed {r['timed_s']:.3f} s  "
                      f"train {r['train_s']:.3f} s  wall {r['wall_s']:.3f} s")
    return runs, warm


def _run_airbench_side(args, seeds: list[int], dev: torch.device, console: Console):
    train = _limited(load_dataset("cifar10", "train", data_dir=args.data_dir), args.limit_train, seeds[0], "train")
    test = _limited(load_dataset("cifar10", "test", data_dir=args.data_dir), args.limit_test, seeds[0], "test")
    console.print(f"airbench: {args.airbench} on {len(train):,} training and {len(test):,} test images")
    info = run_airbench(args.airbench, train, test, device=dev, timeout_s=args.airbench_timeout, console=console)
    timed, warm = split_warmup(info.pop("runs"), args.warmup_run)
    if not timed:
        raise SystemExit(f"{args.airbench} printed only a warm-up run")
    return timed, warm, info


def _results(args, dev: torch.device, *, command: str, recipe_name: str, smoke: bool, runs, warmup, precision,
             airbench_info) -> dict[str, Any]:
    """Everything measured, as the JSON file holds it: summaries, the comparison and every run."""
    seeds = list(range(args.first_seed, args.first_seed + args.runs))
    summary = {name: summarize(rs) for name, rs in runs.items()}
    comparison = None
    if "archspec" in summary:
        if "airbench" in summary:
            comparison = compare(summary["archspec"], summary["airbench"], against="airbench")
        elif args.airbench is None:
            summary["published"] = published_summary()
            comparison = compare(summary["archspec"], summary["published"], against="published")
    return {
        "command": command,
        "torch": str(torch.__version__),
        "device": {"type": dev.type, "name": device_name(dev)},
        "config": {"spec": args.spec, "recipe": recipe_name, "seeds": seeds, "epochs": args.epochs,
                   "batch_size": args.batch_size, "limit_train": args.limit_train, "limit_test": args.limit_test,
                   "data_dir": args.data_dir, "warmup_run": args.warmup_run, "compile": args.compile,
                   "smoke": smoke, "airbench": None if args.airbench is None else str(args.airbench)},
        "airbench": airbench_info,
        "published": PUBLISHED,
        "precision": precision,
        "summary": summary,
        "comparison": comparison,
        "runs": runs,
        "warmup": warmup,
        "time_definitions": {
            "timed_s": "airbench's total_time_seconds: whitening init + training epochs + final TTA eval "
                       "(archspec: whitening init + sum of epoch_seconds)",
            "train_s": "archspec: training steps only",
            "wall_s": "archspec: the whole train() call incl. data loading, model build, checkpoints, plots",
        },
    }


def main(argv: list[str] | None = None, console: Console | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    console = console or (Console() if sys.stdout.isatty() else Console(width=120))
    dev = resolve_device(args.device)
    seeds = list(range(args.first_seed, args.first_seed + args.runs))
    spec = archspec.load_spec(args.spec)
    recipe_name = args.recipe or spec.recipe
    compile_mode = resolve_compile(yaml.safe_load(args.compile), dev)
    smoke = any(v is not None for v in (args.epochs, args.batch_size, args.limit_train, args.limit_test))
    command = _command(argv)

    console.print(f"torch {torch.__version__} | device {dev}: {device_name(dev)} | archspec seeds {seeds}")
    console.print(f"command: {command}", soft_wrap=True, highlight=False)
    other = f"your airbench94 ({args.airbench})" if args.airbench else \
        f"the published airbench94 figure ({100 * PUBLISHED['acc']:.2f}% in {PUBLISHED['timed_s']} s, {PUBLISHED['device']})"
    console.print(f"archspec: {args.spec} + recipe {recipe_name}" + (f", torch.compile mode={compile_mode}"
                  if compile_mode else ", eager") + f"; against {other}", soft_wrap=True, highlight=False)

    runs: dict[str, list[dict[str, Any]]] = {}
    warmup: dict[str, Any] = {}
    precision: dict[str, str] = {}
    airbench_info = None
    if "archspec" in args.variants:
        runs["archspec"], warmup["archspec"] = _run_archspec_seeds(args, spec, recipe_name, seeds, str(dev), console)
        precision["archspec"] = runs["archspec"][0]["precision"]
    if "airbench" in args.variants:
        runs["airbench"], warmup["airbench"], airbench_info = _run_airbench_side(args, seeds, dev, console)
        precision["airbench"] = "its own (fp16 on CUDA)"

    results = _results(args, dev, command=command, recipe_name=recipe_name, smoke=smoke, runs=runs,
                       warmup=warmup, precision=precision, airbench_info=airbench_info)
    print_report(console, results)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, results)
        console.print(f"results written to {path}")
    return results


if __name__ == "__main__":
    main()
