"""How close `archspec count`'s training-memory estimate is to what a training step really holds.

For each spec: the estimate (archspec/memory.py), the peak torch's MemTracker measures for two of
archspec's own `train_step`s on fake tensors on the CPU (tests/memory_probe.py; no memory or
compute needed, so large models cost seconds), and, when installed, torchinfo's "Estimated Total
Size" for the same batch (it runs a real forward on the CPU: keep the specs small). With `--cuda`,
the measured column is `torch.cuda.max_memory_allocated` of a real step on the GPU instead.

    python benchmarks/memory_accuracy.py specs/c5l3.yaml specs/resnet18.yaml --precision bf16
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_SPECS = ["specs/tutorial.yaml", "specs/mlp.yaml", "specs/c5l3.yaml", "specs/vgg_a_bn.yaml",
                 "specs/resnet18.yaml", "specs/variant3.yaml"]


def torchinfo_total(spec, batch: int) -> int | None:
    """torchinfo's "Estimated Total Size" in bytes (input + forward/backward pass + params), or None."""
    try:
        import torchinfo
    except ImportError:
        return None
    import archspec

    stats = torchinfo.summary(archspec.build_model(spec), input_size=(batch, *spec.input_shape), verbose=0,
                              device="cpu")
    return stats.total_input + stats.total_output_bytes + stats.total_param_bytes


def measure(spec, recipe, batch: int, precision: str, cuda: bool) -> tuple[int, int, str]:
    """(measured peak, estimated peak, the estimate's peak phase) in bytes."""
    import archspec
    from archspec.memory import estimate_memory
    from archspec.recipes.build import memory_setup
    from tests import memory_probe

    device = "cuda" if cuda else "cpu"
    measured = (memory_probe.cuda_step_peak if cuda else memory_probe.step_peak)(spec, recipe, batch, precision)
    setup = memory_setup(recipe, device, precision)
    estimate = estimate_memory(spec, archspec.build_model(spec, device="meta"),
                               type(setup)(batch, device, setup.precision, setup.optimizer))
    return measured, estimate.peak_bytes, estimate.peak_phase


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("specs", nargs="*", default=DEFAULT_SPECS)
    parser.add_argument("--batch-size", type=int, help="default: each spec's recipe's")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--cuda", action="store_true", help="measure on a real GPU")
    parser.add_argument("--torchinfo", action="store_true", help="add torchinfo's estimate (real CPU forward)")
    args = parser.parse_args(argv)

    import archspec
    from archspec.recipes import load_recipe

    mb = 2**20
    print(f"{'spec':14s} {'batch':>5s} {'measured MB':>12s} {'archspec MB':>12s} {'ratio':>6s} {'phase':>15s}"
          + (f" {'torchinfo MB':>13s} {'ratio':>6s}" if args.torchinfo else ""))
    for path in args.specs:
        spec = archspec.load_spec(ROOT / path)
        recipe = load_recipe(spec.recipe, batch_size=args.batch_size)
        measured, estimated, phase = measure(spec, recipe, recipe.batch_size, args.precision, args.cuda)
        line = (f"{spec.name:14s} {recipe.batch_size:5d} {measured / mb:12.2f} {estimated / mb:12.2f} "
                f"{estimated / measured:6.3f} {phase:>15s}")
        if args.torchinfo:
            other = torchinfo_total(spec, recipe.batch_size)
            line += f" {other / mb:13.2f} {other / measured:6.3f}" if other else "  (torchinfo not installed)"
        print(line, flush=True)


if __name__ == "__main__":
    main()
