"""Multi-node training as a cluster runs it: two torchrun agents (two simulated nodes on localhost),
c10d rendezvous, Gloo on the CPU, one process per node, writing one coherent run directory.

This is what docs/training.md tells a SLURM user to run (`srun torchrun --nnodes N --rdzv-backend
c10d --rdzv-endpoint HEAD:PORT ... -m archspec train ...`), with 127.0.0.1 as the head node.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

import archspec
from archspec.train import distributed
from archspec.train.evaluation import evaluate
from archspec.train.rundir import read_metrics_csv

from .conftest import ROOT
from .test_distributed import SPEC, TEST_N, TRAIN_N


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_with_c10d_rendezvous_write_one_run_dir(tmp_path):
    (tmp_path / "tiny.yaml").write_text(textwrap.dedent(SPEC).lstrip())
    env = {k: v for k, v in os.environ.items() if k not in (*distributed.ENV_KEYS, distributed.EXIT_FILE_ENV)}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    port = _free_port()
    nodes = []
    for node in (0, 1):
        command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(node),
                   "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}",
                   "--rdzv-id", f"archspec-test-{port}", "-m", "archspec", "train", "tiny.yaml", "--recipe", "quick",
                   "--data", "synthetic", "--limit-train", str(TRAIN_N), "--limit-test", str(TEST_N),
                   "--device", "cpu", "--epochs", "2", "--run-dir", "run"]
        nodes.append(subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outputs = []
    try:
        for proc in nodes:
            outputs.append(proc.communicate(timeout=180)[0])
    finally:
        for proc in nodes:
            proc.kill()
    assert [proc.returncode for proc in nodes] == [0, 0], "\n".join(outputs)

    # One run directory, written by global rank 0 alone (whichever node the rendezvous made rank 0).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "tiny.yaml"]
    run = tmp_path / "run"
    events = [p.name for p in run.glob("events.out.tfevents.*")]
    assert len(events) == 1  # TensorBoard: global rank 0's only
    assert sorted(p.name for p in run.iterdir() if p.name not in events) == sorted(
        ["best.pt", "curves.png", "last.pt", "lr.png", "metrics.csv", "metrics.jsonl", "recipe.yaml", "spec.yaml",
         "steps.csv", "summary.json"])
    joined = "\n".join(outputs)
    assert joined.count("summary: status completed") == 1 and "x 2 processes (DDP)" in joined

    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["world_size"] == 2
    assert summary["images_seen"] == 2 * TRAIN_N  # both nodes' shards, every epoch: the whole training set
    rows = read_metrics_csv(run / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2]

    # The checkpoint is the model whose accuracy was reported: evaluated alone, it gives the same numbers.
    spec = archspec.load_spec(tmp_path / "tiny.yaml", dataset="synthetic")
    result = evaluate(spec, run / "last.pt", device="cpu", limit_test=TEST_N)
    assert result.test_acc == pytest.approx(rows[-1]["test_acc"])
    assert result.test_loss == pytest.approx(rows[-1]["test_loss"], rel=1e-5)
