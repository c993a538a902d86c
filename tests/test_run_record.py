"""What a run records and says about itself: the real data counts, the overrides it was made with,
its CPU threads and evaluation batch size, the source of a learning rate that diverged, and no
empty run directory after a start that failed. All runs: the tiny `synthetic` spec, on the CPU.
"""

from __future__ import annotations

import io
import json
import textwrap

import pytest
import torch
import torch.nn.functional as F
import yaml
from rich.console import Console

import archspec
from archspec.errors import ArchspecError
from archspec.recipes import load_recipe
from archspec.train.loop import train

from .conftest import TINY_RECIPE, TINY_SPEC
from .test_train import _file, _run

pytestmark = pytest.mark.usefixtures("no_run_plots")  # no test here looks at a run's curves.png / lr.png


def test_a_limit_above_the_data_records_the_real_count(tmp_path):
    result, output = _run(tmp_path, overrides=["epochs=1"], limit_train=2048, limit_test=4096)
    summary = json.loads((result.run_dir / "summary.json").read_text())
    available = result.summary["images_seen"]  # one epoch: every training image once
    assert summary["limit_train"] == available < 2048
    assert summary["limit_test"] < 4096
    assert f"--limit-train 2,048 is more than the {available:,} images" in output


def test_a_failed_start_leaves_no_run_directory(tmp_path):
    runs = tmp_path / "runs"
    with pytest.raises(ArchspecError, match="no full training batch"):  # found after the data is loaded
        _run(tmp_path, overrides=["drop_last=true", "batch_size=128"], limit_train=70, runs_root=runs)
    assert runs.is_dir() and not list(runs.iterdir())
    with pytest.raises(ArchspecError):
        _run(tmp_path, dataset="imagefolder:" + str(tmp_path / "no-such-folder"), runs_root=runs)
    assert not list(runs.iterdir())
    named = tmp_path / "named"
    with pytest.raises(ArchspecError):
        _run(tmp_path, overrides=["drop_last=true", "batch_size=128"], limit_train=70, run_dir=named)
    assert not named.exists()


def test_a_failed_start_in_an_existing_folder_keeps_the_folder(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's file")
    with pytest.raises(ArchspecError):
        _run(tmp_path, overrides=["drop_last=true", "batch_size=128"], limit_train=70, run_dir=mine)
    assert (mine / "notes.txt").read_text() == "the user's file"


def test_cli_failed_start_leaves_nothing_behind(tmp_path, cli):
    spec = _file(tmp_path, "tiny.yaml", TINY_SPEC)
    runs = tmp_path / "runs"
    result = cli("train", spec, "--recipe", "quick", "--batch-size", "128", "--set", "drop_last=true",
                 "--limit-train", "70", "--device", "cpu", "--runs-dir", runs)
    assert result.exit_code == 2 and "no full training batch" in result.output and "Traceback" not in result.output
    assert runs.is_dir() and not list(runs.iterdir())


def test_the_run_recipe_records_its_overrides(tmp_path, cli):
    spec = _file(tmp_path, "tiny.yaml", TINY_SPEC)
    run = tmp_path / "run"
    result = cli("train", spec, "--recipe", "quick", "--epochs", "1", "--lr", "0.004", "--seed", "5",
                 "--set", "optimizer.weight_decay=1e-4", "--limit-train", "32", "--limit-test", "16",
                 "--device", "cpu", "--run-dir", run, "--quiet")
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((run / "recipe.yaml").read_text())
    assert saved["overrides"] == ["--set optimizer.weight_decay=1e-4", "--epochs 1", "--lr 0.004", "--seed 5"]
    assert saved["epochs"] == 1 and saved["optimizer"]["lr"] == 0.004 and saved["seed"] == 5
    builtin = load_recipe("quick").description
    assert saved["description"] == f"{builtin} [changed by: {', '.join(saved['overrides'])}]"
    again = load_recipe(str(run / "recipe.yaml"), epochs=2)  # the list grows; the description is rebuilt
    assert again.overrides[-1] == "--epochs 2" and again.description.count("[changed by:") == 1
    assert again.description.startswith(builtin)
    assert load_recipe(str(run / "recipe.yaml")).to_dict() == saved  # loads back unchanged


def test_overrides_do_not_count_as_setting_differences(tmp_path):
    from archspec.experiments.compare import differing_options
    from archspec.experiments.runs import load_run

    runs = []
    for epochs in (1, 1):
        result, _ = _run(tmp_path, overrides=[f"epochs={epochs}"] if not runs else [], runs_root=tmp_path / "r")
        runs.append(load_run(result.run_dir))
    recipe_keys, _, _ = differing_options(runs)
    assert "overrides" not in recipe_keys and "description" not in recipe_keys


def test_threads_apply_to_the_run_and_are_recorded(tmp_path):
    before = torch.get_num_threads()
    result, _ = _run(tmp_path, overrides=["epochs=1", "threads=1"])
    assert result.summary["threads"] == 1
    assert json.loads((result.run_dir / "summary.json").read_text())["threads"] == 1
    assert yaml.safe_load((result.run_dir / "recipe.yaml").read_text())["threads"] == 1
    assert torch.get_num_threads() == before  # restored after the run


def test_cli_threads_option(tmp_path, cli):
    spec = _file(tmp_path, "tiny.yaml", TINY_SPEC)
    result = cli("train", spec, "--recipe", "quick", "--epochs", "1", "--threads", "1", "--limit-train", "32",
                 "--limit-test", "16", "--device", "cpu", "--run-dir", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["threads"] == 1


def test_eval_batch_size_sizes_the_test_batches(tmp_path, monkeypatch):
    import archspec.data.loader as loader

    seen = {}
    real = loader.make_loaders

    def spy(*args, **kwargs):
        bundle = real(*args, **kwargs)
        seen["sizes"] = [int(y.shape[0]) for _, y in bundle.test]
        return bundle

    monkeypatch.setattr(loader, "make_loaders", spy)
    result, _ = _run(tmp_path, overrides=["epochs=1", "eval_batch_size=10"], limit_test=32)
    assert seen["sizes"] == [10, 10, 10, 2]  # not the training batch of 16
    real_test = loader.make_test_loader

    def test_spy(*args, **kwargs):
        seen["eval"] = kwargs["batch_size"]
        return real_test(*args, **kwargs)

    monkeypatch.setattr(loader, "make_test_loader", test_spy)
    from archspec.train.evaluation import evaluate

    evaluate(archspec.load_spec(tmp_path / "tiny.yaml"), result.run_dir, device="cpu", limit_test=32)
    assert seen["eval"] == 10  # `archspec eval` follows the run's recipe unless --batch-size says otherwise
    evaluate(archspec.load_spec(tmp_path / "tiny.yaml"), result.run_dir, device="cpu", limit_test=32, batch_size=3)
    assert seen["eval"] == 3


def test_divergence_hint_names_where_the_learning_rate_came_from(tmp_path):
    recipe_text = TINY_RECIPE.replace("{name: adam, lr: 0.01}", "{name: sgd, lr: 0.01}") + textwrap.dedent("""
        schedule:
          phases:
            - {type: constant, epochs: 1}
            - {type: constant, factor: 1.0e+8}
        """)
    spec = archspec.load_spec(_file(tmp_path, "tiny.yaml", TINY_SPEC))
    path = _file(tmp_path, "recipe.yaml", recipe_text)
    runs = []
    for kwargs in ({}, {"lr": 0.02}, {"overrides": ["optimizer.lr=0.03"]}):
        recipe = load_recipe(str(path), epochs=5, **kwargs)
        runs.append(train(spec, recipe, device="cpu", runs_root=tmp_path / "runs", limit_train=160, limit_test=32,
                          console=Console(file=io.StringIO()), quiet=True))
    assert all(r.status == "diverged" for r in runs)
    assert "(the recipe's is 0.01)" in runs[0].message
    assert "(this run's is 0.02, from --lr 0.02)" in runs[1].message and "--lr 0.002" in runs[1].message
    assert "(this run's is 0.03, from --set optimizer.lr=0.03)" in runs[2].message


NLL_SPEC = TINY_SPEC.replace("  - linear: classes\n", "  - linear: classes\n  - log_softmax\n")


def test_nll_is_applied_to_the_model_output_as_it_is(tmp_path):
    """One step of `loss: nll` equals a plain loop's F.nll_loss(model(x), y) step, bit for bit."""
    from archspec.recipes.build import build_loss

    spec = archspec.load_spec(_file(tmp_path, "nll.yaml", NLL_SPEC))
    recipe = load_recipe(str(_file(tmp_path, "recipe.yaml", TINY_RECIPE)), overrides=["loss=nll"])
    torch.manual_seed(0)
    model = archspec.build_model(spec)
    x, y = torch.randn(16, 3, 8, 8), torch.randint(0, 4, (16,))
    out = model(x)
    assert torch.equal(build_loss(recipe, 4)(out, y), F.nll_loss(out, y))
    result, _ = _run(tmp_path, spec_text=NLL_SPEC, overrides=["epochs=1", "loss=nll"])
    assert result.status == "completed"
    with pytest.raises(ArchspecError, match="log-probabilities"):  # a spec without log_softmax
        _run(tmp_path, overrides=["epochs=1", "loss=nll"], runs_root=tmp_path / "bad")
