"""How long `archspec count` takes versus `python -c "import torch"`, for shipped specs and a
10-billion-parameter spec (counting uses the meta device, so no weights are allocated).

    .venv/bin/python benchmarks/count_speed.py [--repeats 3]

Prints the median wall time of each command (fresh processes, so imports are included) and the
ratio to importing torch.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

HUGE = """name: huge
description: about 10 billion parameters, to show that counting allocates nothing
input: [3, 32, 32]
classes: 1000
layers:
  - conv: 4096
  - repeat: {times: 66, layers: [conv: {out: 4096, bias: false}, bn, relu]}
  - gap
  - flatten
  - linear: 1000
"""


def timed(cmd: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        huge = Path(tmp) / "huge.yaml"
        huge.write_text(HUGE)
        base = timed([sys.executable, "-c", "import torch"], args.repeats)
        label = 'python -c "import torch"'
        print(f"{label:45s} {base:6.2f} s   1.00x")
        for spec in [ROOT / "specs" / "variant3.yaml", ROOT / "specs" / "resnet18.yaml", huge]:
            t = timed([sys.executable, "-m", "archspec", "count", str(spec), "--json"], args.repeats)
            out = subprocess.run([sys.executable, "-m", "archspec", "count", str(spec), "--json"], check=True,
                                 capture_output=True, text=True).stdout
            params = json.loads(out)["total_params"]
            print(f"{'archspec count ' + spec.name:45s} {t:6.2f} s   {t / base:.2f}x   ({params:,} params)")


if __name__ == "__main__":
    main()
