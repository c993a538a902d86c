"""Time to accuracy: archspec's airbench spec + `fast` recipe against airbench94 itself, same data, same device.

    .venv/bin/python benchmarks/time_to_accuracy.py [--runs 5] [--device auto|cpu|cuda] [--data-dir DIR]
        [--spec specs/airbench.yaml] [--recipe fast] [--epochs N] [--batch-size B]
        [--limit-train N] [--limit-test N] [--variants archspec reference] [--warmup-run]
        [--compile MODE] [--first-seed 0] [--json results.json]

The goal it measures: archspec (specs/airbench.yaml + recipe fast) reaches airbench94's accuracy in at
most 1.2x airbench94's time on the same GPU.

Variants, run interleaved seed by seed (seed s of archspec, then seed s of the reference):

  archspec   `archspec.train.loop.train(spec, recipe)` in-process - the code `archspec train` runs -
             with `--set seed=s eval_every=<epochs>` (only the last epoch evaluates, with the recipe's
             TTA), progress off, on a throw-away run directory in a temporary folder.
  reference  benchmarks/airbench94_reference.py: airbench94 (KellerJordan/cifar10-airbench,
             legacy/airbench94.py) in plain PyTorch, seed s, on the same images: the uint8 tensors of
             archspec's CIFAR-10 reader, with `--limit-*` the very subset archspec draws for seed s.

Times (seconds; on CUDA every timed region ends with a device synchronize):

  timed       airbench's convention (its `total_time_seconds`): whitening init + training epochs +
              final TTA evaluation. Reference: exactly that. archspec: the whitening init (timed by
              wrapping `archspec.train.whiten.whiten_first_conv`) + the sum of the metrics rows'
              `epoch_seconds` (training steps + end-of-epoch bookkeeping + the one evaluation, with TTA).
              Data loading, model building and (archspec) checkpoint/plot writing are outside, as in
              airbench. THE RATIO THE GOAL IS ABOUT: timed(archspec) / timed(reference).
  train       training steps only. Reference: its per-epoch training timers. archspec: images_seen /
              images_per_second from the run's summary (the loop's train-phase clock).
  wall        the whole call: archspec's `train()` (data loading, run directory, checkpoints every
              epoch, plots) / the reference's run function (data to device, model build, compile).

Accuracy is the final test accuracy with each side's TTA (both: airbench's 6-view flip+translate);
archspec evaluates its EMA weights, the reference its Lookahead-averaged weights.

`--warmup-run` does one untimed run of each variant first (cuDNN autotuning, CUDA context, lazy
inits), as airbench does before its timed runs; it is reported apart. `--compile VALUE` is the
recipe's `compile:` value for archspec (auto: torch.compile on CUDA only; false; true; a torch.compile
mode) and compiles the reference the same way (airbench94_compiled.py uses max-autotune). archspec's
compiling steps are timed by its loop (`compile_seconds`) and left out of its `timed`/`train`; a
compiling reference always gets a warm-up run, whose time (compilation included) is reported apart.

For CPU smoke runs: `--epochs` (both sides; the reference otherwise trains its 9.9 epochs, archspec
the recipe's 10), `--batch-size` (both sides; archspec's lr is scaled by batch/recipe batch so the
per-example step stays airbench's, the reference's lr/wd are per 1024 examples already) and
`--limit-train/--limit-test` (a class-balanced subset, the same on both sides). Both sides drop each
epoch's last partial batch (airbench's loader; the `fast` recipe's `drop_last: true`), and the
Lookahead/EMA averages only every 5 steps: give a smoke run at least 5 steps per side.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import archspec  # noqa: E402
from archspec.data.datasets import load_dataset  # noqa: E402
from archspec.data.loader import _limited  # noqa: E402  (the exact subset archspec trains on)
from archspec.recipes import load_recipe  # noqa: E402
from archspec.train import loop  # noqa: E402
from archspec.train.device import resolve_device  # noqa: E402
from archspec.train.torch_compile import resolve_compile  # noqa: E402

VARIANTS = ("archspec", "reference")
GOAL_TIME_RATIO = 1.2


def _load_reference():
    """benchmarks/airbench94_reference.py as a module (benchmarks/ is not a package)."""
    name = "airbench94_reference"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("airbench94_reference.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


reference = _load_reference()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads, " \
           f"{os.cpu_count()} cores)"


# --- the two sides ------------------------------------------------------------------------------


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


class ReferenceData:
    """CIFAR-10 as archspec's reader returns it, loaded once; per seed the subset archspec would use."""

    def __init__(self, data_dir) -> None:
        self.train = load_dataset("cifar10", "train", data_dir=data_dir)
        self.test = load_dataset("cifar10", "test", data_dir=data_dir)

    def split(self, seed: int, limit_train, limit_test):
        return _limited(self.train, limit_train, seed, "train"), _limited(self.test, limit_test, seed, "test")


def run_reference(data: ReferenceData, *, seed: int, device: str, epochs, batch_size, limit_train, limit_test,
                  compile_mode) -> dict[str, Any]:
    train, test = data.split(seed, limit_train, limit_test)
    r = reference.train_airbench94(train.images, train.labels, test.images, test.labels,
                                   device=resolve_device(device), seed=seed, epochs=epochs, batch_size=batch_size,
                                   compile_mode=compile_mode)
    return {
        "seed": seed,
        "acc": float(r["tta_val_acc"]),
        "timed_s": r["total_time_seconds"],
        "train_s": r["train_seconds"],
        "wall_s": r["wall_seconds"],
        "whiten_s": r["whiten_seconds"],
        "tta_s": r["tta_seconds"],
        "steps": r["steps"],
        "epochs": r["epochs"],
        "batch_size": r["batch_size"],
        "train_images": r["train_images"],
        "test_images": r["test_images"],
    }


# --- statistics and report ----------------------------------------------------------------------


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    accs = [r["acc"] for r in runs]
    out = {"runs": len(runs), "acc_mean": _mean(accs), "acc_std": _std(accs)}
    for key in ("timed_s", "train_s", "wall_s"):
        values = [r[key] for r in runs]
        out[f"{key}_mean"] = _mean(values)
        out[f"{key}_std"] = _std(values)
    return out


def compare(summary: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    if not all(v in summary for v in VARIANTS):
        return None
    a, r = summary["archspec"], summary["reference"]
    ratios = {key: a[f"{key}_s_mean"] / r[f"{key}_s_mean"] for key in ("timed", "train", "wall")}
    acc_diff = a["acc_mean"] - r["acc_mean"]
    return {
        "time_ratio_timed": ratios["timed"],  # the goal's ratio: airbench's timing convention on both sides
        "time_ratio_train": ratios["train"],
        "time_ratio_wall": ratios["wall"],
        "acc_diff": acc_diff,  # archspec - reference (fraction, not points)
        "goal": {
            "time_ratio_max": GOAL_TIME_RATIO,
            "time_ok": ratios["timed"] <= GOAL_TIME_RATIO,
            # "reaches airbench94's accuracy": archspec's mean within one reference std (run-to-run
            # noise) of the reference mean, or above it.
            "acc_ok": acc_diff >= -r["acc_std"],
        },
    }


def print_report(console: Console, results: dict[str, Any]) -> None:
    table = Table(title="time to accuracy: archspec vs airbench94 (means over seeds; seconds)")
    for col, justify in (("variant", "left"), ("precision", "left"), ("runs", "right"),
                         ("test acc (TTA)", "right"), ("timed", "right"), ("train", "right"),
                         ("wall", "right"), ("steps", "right")):
        table.add_column(col, justify=justify)
    for name, s in results["summary"].items():
        runs = results["runs"][name]
        table.add_row(name, results["precision"][name], str(s["runs"]),
                      f"{100 * s['acc_mean']:.2f} ± {100 * s['acc_std']:.2f} %",
                      f"{s['timed_s_mean']:.3f}", f"{s['train_s_mean']:.3f}", f"{s['wall_s_mean']:.3f}",
                      str(runs[0].get("steps") or "-"))
    cmp_ = results["comparison"]
    if cmp_:
        table.add_section()
        table.add_row("archspec / reference", "", "", f"{100 * cmp_['acc_diff']:+.2f} pts",
                      f"{cmp_['time_ratio_timed']:.2f}x", f"{cmp_['time_ratio_train']:.2f}x",
                      f"{cmp_['time_ratio_wall']:.2f}x", "")
    console.print(table)
    console.print("timed = airbench's total_time_seconds convention (whitening init + training epochs + final "
                  "TTA eval); train = training steps only; wall = the whole train()/run call.")
    for name, warm in results["warmup"].items():
        if warm:
            console.print(f"warm-up run ({name}, not in the means): timed {warm['timed_s']:.3f} s, "
                          f"wall {warm['wall_s']:.3f} s, acc {100 * warm['acc']:.2f} %")
    if cmp_:
        goal = cmp_["goal"]
        verdict = "met" if goal["time_ok"] and goal["acc_ok"] else "NOT met"
        console.print(f"goal (timed ratio <= {goal['time_ratio_max']}x and archspec acc >= reference acc - "
                      f"reference std): {verdict} (time {'ok' if goal['time_ok'] else 'too slow'}, "
                      f"accuracy {'ok' if goal['acc_ok'] else 'too low'})"
                      + ("" if results["device"]["type"] == "cuda" and not results["config"]["smoke"]
                         else " - not meaningful for a CPU / smoke configuration"))


# --- driver ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="timed runs (seeds) per variant")
    ap.add_argument("--first-seed", type=int, default=0, help="seeds are first-seed .. first-seed + runs - 1")
    ap.add_argument("--data-dir", default=None, help="folder containing cifar-10-batches-py/ "
                    "(default: archspec's, $ARCHSPEC_DATA or ~/.cache/archspec/data)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--spec", default=str(ROOT / "specs" / "airbench.yaml"))
    ap.add_argument("--recipe", default="fast")
    ap.add_argument("--epochs", type=int, default=None,
                    help="both sides (default: the recipe's for archspec, airbench's 9.9 for the reference)")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="both sides (default 1024 on both); archspec's lr is scaled with it")
    ap.add_argument("--limit-train", type=int, default=None, help="class-balanced training subset (both sides)")
    ap.add_argument("--limit-test", type=int, default=None, help="test subset (both sides)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--warmup-run", action="store_true", help="one untimed run of each variant first")
    ap.add_argument("--compile", default="auto", metavar="VALUE",
                    help="archspec's recipe `compile` value, applied to the reference too: auto (torch.compile "
                         "on CUDA only), false, true, default, reduce-overhead, max-autotune, ...")
    ap.add_argument("--json", default=None, metavar="PATH", help="write the results here")
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    return args


def main(argv: list[str] | None = None, console: Console | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    console = console or (Console() if sys.stdout.isatty() else Console(width=120))
    dev = resolve_device(args.device)
    device = str(dev)
    script = Path(__file__).resolve()
    with contextlib.suppress(ValueError):
        script = script.relative_to(Path.cwd())
    command = shlex.join([sys.executable, str(script), *argv])
    seeds = list(range(args.first_seed, args.first_seed + args.runs))

    spec = archspec.load_spec(args.spec)
    recipe_name = args.recipe or spec.recipe
    data = ReferenceData(args.data_dir) if "reference" in args.variants else None
    ref_dtype_name = reference.precision_of(dev)[2]
    compile_mode = resolve_compile(yaml.safe_load(args.compile), dev)  # what both sides run with
    smoke = any(v is not None for v in (args.epochs, args.batch_size, args.limit_train, args.limit_test))

    console.print(f"torch {torch.__version__} | device {device}: {device_name(dev)} | seeds {seeds}")
    console.print(f"command: {command}", soft_wrap=True, highlight=False)
    console.print(f"archspec: {args.spec} + recipe {recipe_name}; reference: airbench94 "
                  f"({reference.SOURCE['repo']} {reference.SOURCE['path']} @ {reference.SOURCE['commit'][:10]})"
                  + (f"; both torch.compile mode={compile_mode}" if compile_mode else "; both eager"))

    def one(variant: str, seed: int) -> dict[str, Any]:
        if variant == "archspec":
            recipe = archspec_recipe(recipe_name, seed=seed, epochs=args.epochs, batch_size=args.batch_size,
                                     compile_value=args.compile)
            return run_archspec(spec, recipe, data_dir=args.data_dir, device=device,
                                limit_train=args.limit_train, limit_test=args.limit_test)
        return run_reference(data, seed=seed, device=device, epochs=args.epochs, batch_size=args.batch_size,
                             limit_train=args.limit_train, limit_test=args.limit_test, compile_mode=compile_mode)

    warmup: dict[str, Any] = {v: None for v in args.variants}
    for variant in args.variants:
        if args.warmup_run or (variant == "reference" and compile_mode):
            console.print(f"warm-up run: {variant}" + (" (compiles)" if variant == "reference" and compile_mode
                                                      else ""))
            warmup[variant] = one(variant, seeds[0])
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in args.variants}
    for seed in seeds:  # interleaved, so a burst of load on a shared machine hits both sides alike
        for variant in args.variants:
            r = one(variant, seed)
            runs[variant].append(r)
            console.print(f"{variant:>9} seed {seed}: acc {100 * r['acc']:.2f} %  timed {r['timed_s']:.3f} s  "
                          f"train {r['train_s']:.3f} s  wall {r['wall_s']:.3f} s")

    summary = {v: summarize(rs) for v, rs in runs.items()}
    precision = {}
    if "archspec" in runs:
        precision["archspec"] = runs["archspec"][0]["precision"]
    if "reference" in runs:
        precision["reference"] = ref_dtype_name + (f", compiled ({compile_mode})" if compile_mode else "")
    results = {
        "command": command,
        "torch": str(torch.__version__),
        "device": {"type": dev.type, "name": device_name(dev)},
        "config": {"spec": args.spec, "recipe": recipe_name, "seeds": seeds, "epochs": args.epochs,
                   "batch_size": args.batch_size, "limit_train": args.limit_train, "limit_test": args.limit_test,
                   "data_dir": args.data_dir, "warmup_run": args.warmup_run, "compile": args.compile,
                   "smoke": smoke},
        "reference_source": reference.SOURCE,
        "reference_differences": list(reference.DIFFERENCES),
        "precision": precision,
        "summary": summary,
        "comparison": compare(summary),
        "runs": runs,
        "warmup": warmup,
        "time_definitions": {
            "timed_s": "airbench's total_time_seconds: whitening init + training epochs + final TTA eval "
                       "(archspec: whitening init + sum of epoch_seconds)",
            "train_s": "training steps only",
            "wall_s": "the whole train()/run call incl. data loading, model build, checkpoints, plots",
        },
    }
    print_report(console, results)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2) + "\n")
        console.print(f"results written to {path}")
    return results


if __name__ == "__main__":
    main()
