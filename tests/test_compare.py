"""archspec compare: run directories -> one table of the runs and only the options that differ.

Pure-table tests use run directories written by hand (exact, instant); the end-to-end tests train
two tiny specs on the `synthetic` dataset for one epoch (about a second).
"""

from __future__ import annotations

import csv
import io
import json
import textwrap
from pathlib import Path

import pytest
import yaml

from archspec.errors import ArchspecError
from archspec.experiments.compare import compare, flatten, to_csv, to_json, to_markdown
from archspec.experiments.runs import find_runs, load_run

from .conftest import tiny_recipe_text, tiny_spec_text

pytestmark = pytest.mark.usefixtures("no_run_plots")  # no test here looks at a run's curves.png / lr.png

# BatchNorm and dropout: compare/report/export read back a model whose eval mode differs from its train mode.
TINY_SPEC = tiny_spec_text(bn=True, dropout=0.2)
TINY_RECIPE = tiny_recipe_text(epochs=1)


def train_tiny(tmp_path: Path, run_dir: Path, *, overrides=(), spec_text: str = TINY_SPEC, **kwargs):
    """Train the tiny spec for real (1 epoch, 64 synthetic images) into `run_dir`."""
    from rich.console import Console

    import archspec
    from archspec.recipes import load_recipe
    from archspec.train.loop import train

    spec_path = tmp_path / "tiny.yaml"
    spec_path.write_text(textwrap.dedent(spec_text).lstrip())
    recipe_path = tmp_path / "tinyrecipe.yaml"
    recipe_path.write_text(textwrap.dedent(TINY_RECIPE).lstrip())
    spec = archspec.load_spec(spec_path)
    recipe = load_recipe(str(recipe_path), overrides=list(overrides))
    return train(spec, recipe, device="cpu", run_dir=run_dir, limit_train=64, limit_test=32,
                 console=Console(file=io.StringIO()), progress=False, quiet=True, **kwargs)


def write_run(root: Path, name: str, *, recipe: dict | None = None, spec: dict | None = None,
              summary: dict | None = None, metrics: list[dict] | None = None) -> Path:
    """A run directory written by hand: only the files given."""
    run = root / name
    run.mkdir(parents=True)
    if recipe is not None:
        (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    if spec is not None:
        (run / "spec.yaml").write_text(yaml.safe_dump(spec))
    if summary is not None:
        (run / "summary.json").write_text(json.dumps(summary))
    if metrics is not None:
        (run / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
        (run / "metrics.csv").write_text("epoch\n" + "".join(f"{m['epoch']}\n" for m in metrics))
    return run


def recipe_dict(**changes) -> dict:
    base = {"name": "sgd", "description": "x", "epochs": 3, "batch_size": 4,
            "optimizer": {"name": "sgd", "lr": 0.001, "momentum": 0.9, "weight_decay": 0.0},
            "schedule": {"interval": "epoch", "type": "constant", "factor": 1.0},
            "loss": {"name": "cross_entropy", "label_smoothing": 0.0}, "seed": 0}
    for key, value in changes.items():
        section, _, leaf = key.partition("__")
        if leaf:
            base[section] = {**base[section], leaf: value}
        else:
            base[section] = value
    return base


SPEC = {"name": "tiny", "dataset": "synthetic", "input": [3, 8, 8], "classes": 4,
        "layers": [{"conv": {"out": 4, "kernel": 3}}, "relu", "flatten", {"linear": 4}]}


def summary(acc: float, seconds: float, **extra) -> dict:
    return {"status": "completed", "spec": "tiny", "recipe": "sgd", "dataset": "synthetic", "epochs": 3,
            "epochs_planned": 3, "best_test_acc": acc, "best_epoch": 3, "final_test_acc": acc,
            "final_test_loss": 1.0 - acc, "final_train_loss": 0.5, "params": 1234, "train_seconds": seconds,
            "images_per_second": 100.0, **extra}


def metrics_rows(accs: list[float]) -> list[dict]:
    return [{"epoch": i + 1, "train_loss": 2.0 - a, "train_acc": a, "test_loss": 1.5 - a, "test_acc": a,
             "lr": 0.1, "epoch_seconds": 1.0, "images_per_second": 50.0} for i, a in enumerate(accs)]


@pytest.fixture
def three_runs(tmp_path):
    root = tmp_path / "runs"
    write_run(root, "a", recipe=recipe_dict(optimizer__lr=0.1), spec=SPEC, summary=summary(0.5, 30.0),
              metrics=metrics_rows([0.3, 0.5]))
    write_run(root, "b", recipe=recipe_dict(optimizer__lr=0.01), spec=SPEC, summary=summary(0.7, 10.0),
              metrics=metrics_rows([0.4, 0.7]))
    write_run(root, "c", recipe=recipe_dict(optimizer__lr=0.001, optimizer__momentum=0.5), spec=SPEC,
              summary=summary(0.6, 20.0), metrics=metrics_rows([0.6]))
    return root


def test_flatten_makes_dotted_keys_and_indexes_lists_of_mappings():
    data = {"optimizer": {"lr": 0.1, "betas": [0.9, 0.99]},
            "layers": [{"conv": {"out": 4}}, "relu"], "schedule": {"phases": [{"type": "linear"}]}}
    assert flatten(data) == {"optimizer.lr": 0.1, "optimizer.betas": [0.9, 0.99], "layers.0.conv.out": 4,
                             "layers.1": "relu", "schedule.phases.0.type": "linear"}


def test_only_differing_recipe_options_become_columns(three_runs):
    table = compare(find_runs([three_runs]))
    assert table.options == ["optimizer.lr", "optimizer.momentum"]
    keys = [k for k, _ in table.columns]
    assert "epochs" in keys and "batch_size" not in keys and "optimizer.name" not in keys
    assert [r["optimizer.lr"] for r in table.rows] == [0.1, 0.01, 0.001]
    assert [r["optimizer.momentum"] for r in table.rows] == [0.9, 0.9, 0.5]
    assert [r["run"] for r in table.rows] == ["a", "b", "c"]
    assert table.rows[1]["final_test_acc"] == 0.7 and table.rows[1]["params"] == 1234


def test_an_option_missing_from_one_recipe_counts_as_different(tmp_path):
    adam = recipe_dict(optimizer={"name": "adam", "lr": 0.001, "weight_decay": 0.0})
    write_run(tmp_path, "sgd", recipe=recipe_dict(), spec=SPEC, summary=summary(0.5, 1.0))
    write_run(tmp_path, "adam", recipe=adam, spec=SPEC, summary=summary(0.6, 1.0))
    table = compare(find_runs([tmp_path / "sgd", tmp_path / "adam"]))
    assert sorted(table.options) == ["optimizer.momentum", "optimizer.name"]
    assert table.rows[1]["optimizer.momentum"] is None
    assert "| optimizer.momentum |" in to_markdown(table) and "| - | adam |" in to_markdown(table)


def test_small_spec_differences_are_columns_but_different_architectures_are_not(tmp_path):
    wide = json.loads(json.dumps(SPEC))
    wide["layers"][0]["conv"]["out"] = 8
    write_run(tmp_path / "one", "narrow", recipe=recipe_dict(), spec=SPEC, summary=summary(0.5, 1.0))
    write_run(tmp_path / "one", "wide", recipe=recipe_dict(), spec=wide, summary=summary(0.6, 1.0))
    table = compare(find_runs([tmp_path / "one"]))
    assert table.options == ["spec.layers.0.conv.out"]
    assert [r["spec.layers.0.conv.out"] for r in table.rows] == [4, 8]

    other = {"name": "other", "dataset": "synthetic", "layers": ["flatten", {"linear": 10}, "relu", {"linear": 4}]}
    write_run(tmp_path / "two", "tiny", recipe=recipe_dict(), spec=SPEC, summary=summary(0.5, 1.0))
    write_run(tmp_path / "two", "other", recipe=recipe_dict(), spec=other,
              summary=summary(0.6, 1.0, spec="other"))
    table = compare(find_runs([tmp_path / "two"]))
    assert table.options == []  # the spec column already says they differ
    assert {r["spec"] for r in table.rows} == {"tiny", "other"}


def test_dataset_difference_is_a_data_column(tmp_path):
    write_run(tmp_path, "a", recipe=recipe_dict(), spec=SPEC, summary=summary(0.5, 1.0))
    write_run(tmp_path, "b", recipe=recipe_dict(), spec={**SPEC, "dataset": "mnist", "input": [1, 28, 28]},
              summary=summary(0.6, 1.0, dataset="mnist"))
    table = compare(find_runs([tmp_path]))
    assert table.options == ["data"]
    assert [r["data"] for r in table.rows] == ["synthetic", "mnist"]


def test_sorting(three_runs):
    runs = find_runs([three_runs])
    assert [r["run"] for r in compare(runs, sort="test_acc").rows] == ["b", "c", "a"]  # best first
    assert [r["run"] for r in compare(runs, sort="time").rows] == ["b", "c", "a"]  # fastest first
    assert [r["run"] for r in compare(runs, sort="optimizer.lr").rows] == ["c", "b", "a"]
    table = compare(runs, sort="test_acc")
    assert [run.name for run in table.runs] == ["b", "c", "a"]  # runs stay aligned with rows
    with pytest.raises(ArchspecError, match='cannot sort by "tset_acc".*did you mean "test_acc"'):
        compare(runs, sort="tset_acc")


def test_sorting_and_run_order_are_numeric_not_textual(tmp_path):
    """Numbers inside names and string values order by value: epochs=5 before epochs=10, lr "3e-4"
    (a string, as YAML 1.1 reads it) before 0.001; run folders in that natural order too."""
    from archspec.experiments.runs import natural_key

    for name, lr in (("tiny_lr=0.01", 0.01), ("tiny_lr=3e-4", "3e-4"), ("tiny_lr=0.001", 0.001),
                     ("tiny_lr=0.1", 0.1)):
        write_run(tmp_path, name, recipe=recipe_dict(optimizer__lr=lr), spec=SPEC, summary=summary(0.5, 1.0))
    for epochs in (10, 5, 20):
        write_run(tmp_path / "ep", f"run-{epochs}", recipe=recipe_dict(epochs=epochs), spec=SPEC,
                  summary=summary(0.5, 1.0))
    runs = find_runs([tmp_path / "ep"])
    assert [r.name for r in runs] == ["run-5", "run-10", "run-20"]  # text order would put run-10 first
    lr_runs = find_runs(sorted(p for p in tmp_path.iterdir() if p.name.startswith("tiny")))
    table = compare(lr_runs, sort="optimizer.lr")
    assert [row["optimizer.lr"] for row in table.rows] == ["3e-4", 0.001, 0.01, 0.1]
    assert sorted(["b10", "b9", "a"], key=natural_key) == ["a", "b9", "b10"]
    assert natural_key("x-20250102-090000") > natural_key("x-20250101-120000")  # dashes are not minus signs


def test_legend_order_follows_the_option_values_whatever_the_sort(three_runs):
    table = compare(find_runs([three_runs]), sort="test_acc")
    assert [row["run"] for row in table.rows] == ["b", "c", "a"]
    order = [table.rows[i]["optimizer.lr"] for i in table.legend_order()]
    assert order == [0.001, 0.01, 0.1]  # numeric, ascending
    assert [c.label for c in table.curves()] == ["lr=0.001 momentum=0.5", "lr=0.01 momentum=0.9",
                                                 "lr=0.1 momentum=0.9"]


def test_missing_values_sort_last(three_runs):
    write_run(three_runs, "d", recipe=recipe_dict(), spec=SPEC, metrics=[])
    rows = compare(find_runs([three_runs]), sort="test_acc").rows
    assert rows[-1]["run"] == "d" and rows[-1]["final_test_acc"] is None


def test_incomplete_and_interrupted_runs_are_shown_and_marked(tmp_path):
    # killed during epoch 3 before summary.json existed: numbers come from the metrics
    write_run(tmp_path, "killed", recipe=recipe_dict(), spec=SPEC, metrics=metrics_rows([0.2, 0.45]))
    write_run(tmp_path, "stopped", recipe=recipe_dict(), spec=SPEC,
              summary=summary(0.4, 5.0, status="interrupted", epochs=1), metrics=metrics_rows([0.4]))
    table = compare(find_runs([tmp_path]))
    killed, stopped = table.rows
    assert killed["status"] == "incomplete" and "missing summary.json" in killed["problems"]
    assert killed["best_test_acc"] == 0.45 and killed["best_epoch"] == 2 and killed["epochs"] == 2
    assert killed["epochs_planned"] == 3  # from recipe.yaml
    assert killed["train_seconds"] == 2.0
    assert stopped["status"] == "interrupted" and stopped["problems"] == ""
    text = to_markdown(table)
    assert "incomplete (missing summary.json)" in text and "| interrupted |" in text
    assert "2/3" in text  # epochs done / planned


def test_a_run_with_only_a_checkpoint_still_shows(tmp_path):
    run = tmp_path / "bare"
    run.mkdir()
    (run / "last.pt").write_bytes(b"x")
    (row,) = compare(find_runs([run])).rows
    assert row["spec"] == "?" and row["status"] == "incomplete"
    assert "spec.yaml" in row["problems"] and "recipe.yaml" in row["problems"]


def test_unreadable_files_are_problems_not_crashes(tmp_path):
    run = write_run(tmp_path, "broken", recipe=recipe_dict(), spec=SPEC, summary=summary(0.5, 1.0))
    (run / "summary.json").write_text("{ not json")
    (run / "recipe.yaml").write_text("a: [unclosed")
    loaded = load_run(run)
    assert "summary.json unreadable" in loaded.problems and "recipe.yaml unreadable" in loaded.problems
    assert loaded.status == "incomplete" and loaded.recipe is None


def test_parent_directory_expands_to_its_runs_and_duplicates_are_dropped(three_runs):
    (three_runs / "notes").mkdir()  # not a run dir and holds none: ignored inside a parent
    runs = find_runs([three_runs, three_runs / "b"])
    assert [r.name for r in runs] == ["a", "b", "c"]


def test_runs_folder_includes_the_cells_of_sweep_folders(three_runs):
    write_run(three_runs / "sweep-x", "cell1", recipe=recipe_dict(), spec=SPEC, summary=summary(0.1, 1.0))
    write_run(three_runs / "sweep-x", "cell2", recipe=recipe_dict(), spec=SPEC, summary=summary(0.2, 1.0))
    write_run(three_runs / "deep" / "er", "too-deep", recipe=recipe_dict(), spec=SPEC, summary=summary(0.3, 1.0))
    assert [r.name for r in find_runs([three_runs])] == ["a", "b", "c", "cell1", "cell2"]


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "nope", "no such run directory"),
    (lambda p: (p / "file.txt").write_text("x") and p / "file.txt", "not a run directory (this is a file)"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "not a run directory, and none of its sub-directories is one"),
])
def test_non_run_paths_are_one_line_errors(tmp_path, cli, make, message):
    path = make(tmp_path)
    with pytest.raises(ArchspecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        find_runs([path])
    result = cli("compare", path)
    assert result.exit_code == 2
    assert message in result.stderr and str(path) in result.stderr
    assert "Traceback" not in result.output + result.stderr


def test_machine_readable_outputs_keep_raw_numbers(three_runs):
    table = compare(find_runs([three_runs]), sort="test_acc")
    rows = list(csv.DictReader(io.StringIO(to_csv(table))))
    assert [r["run"] for r in rows] == ["b", "c", "a"]
    assert float(rows[0]["final_test_acc"]) == 0.7 and float(rows[0]["optimizer.lr"]) == 0.01
    data = json.loads(to_json(table))
    assert data[0]["final_test_acc"] == 0.7 and data[0]["train_seconds"] == 10.0
    assert data[2]["optimizer.momentum"] == 0.9


def test_markdown_escapes_pipes(tmp_path):
    write_run(tmp_path, "a", recipe=recipe_dict(augment="flip"), spec=SPEC, summary=summary(0.5, 1.0))
    write_run(tmp_path, "b", recipe=recipe_dict(augment="a|b"), spec=SPEC, summary=summary(0.6, 1.0))
    text = to_markdown(compare(find_runs([tmp_path])))
    assert "a\\|b" in text
    assert all(line.count(" | ") == text.splitlines()[0].count(" | ") for line in text.splitlines()
               if not line.startswith("| ---"))


def test_non_finite_numbers_become_json_null(tmp_path):
    write_run(tmp_path, "a", recipe=recipe_dict(), spec=SPEC, summary=summary(0.5, 1.0, final_train_loss=float("nan")))
    (row,) = json.loads(to_json(compare(find_runs([tmp_path]))))
    assert row["final_train_loss"] is None


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two real runs that differ only in the learning rate."""
    tmp = tmp_path_factory.mktemp("trained")
    for lr in ("0.01", "0.001"):
        result = train_tiny(tmp, tmp / "runs" / f"lr{lr}", overrides=[f"optimizer.lr={lr}"])
        assert result.status == "completed"
    return tmp / "runs"


def test_cli_compare_real_runs(trained, cli, tmp_path):
    plot = tmp_path / "curves.png"
    result = cli("compare", trained, "--sort", "test_acc", "--plot", plot)
    assert result.exit_code == 0, result.stderr
    assert "lr" in result.stdout and "0.001" in result.stdout and "0.01" in result.stdout
    assert "completed" in result.stdout and "batch_size" not in result.stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    pixels = matplotlib.image.imread(plot)
    assert pixels.std() > 0.01  # something was drawn
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write leaves no temp file

    data = json.loads(cli("compare", trained, "--json").stdout)
    assert {row["optimizer.lr"] for row in data} == {0.01, 0.001}
    for row in data:
        summary_file = json.loads((trained / row["run"] / "summary.json").read_text())
        assert row["final_test_acc"] == summary_file["final_test_acc"]
        assert row["params"] == summary_file["params"] > 0
    assert cli("compare", trained, "--csv", "--json").exit_code == 2


def test_cli_plot_into_missing_folder_is_an_error(trained, cli, tmp_path):
    result = cli("compare", trained, "--plot", tmp_path / "no" / "such" / "x.png")
    assert result.exit_code == 2 and "does not exist" in result.stderr


def test_cli_plot_formats_and_dpi(trained, cli, tmp_path):
    """--plot writes what its suffix or --format says; --dpi sets a PNG's pixel size; a mismatch or an
    unknown format is a one-line error."""
    import matplotlib.image

    for dpi in (50, 100):
        assert cli("compare", trained, "--plot", tmp_path / f"p{dpi}.png", "--dpi", dpi).exit_code == 0
    small, big = (matplotlib.image.imread(tmp_path / f"p{dpi}.png").shape for dpi in (50, 100))
    assert big[0] == pytest.approx(2 * small[0], abs=2) and big[1] == pytest.approx(2 * small[1], abs=2)
    assert cli("compare", trained, "--plot", tmp_path / "p.svg").exit_code == 0
    assert b"<svg" in (tmp_path / "p.svg").read_bytes()[:400]
    assert cli("compare", trained, "--plot", tmp_path / "p", "--format", "pdf").exit_code == 0
    assert (tmp_path / "p").read_bytes()[:5] == b"%PDF-"
    again = tmp_path / "again"
    again.mkdir()
    assert cli("compare", trained, "--plot", again / "p.svg").exit_code == 0
    assert (again / "p.svg").read_bytes() == (tmp_path / "p.svg").read_bytes()  # no date inside: reproducible
    mismatch = cli("compare", trained, "--plot", tmp_path / "x.png", "--format", "svg")
    assert mismatch.exit_code == 2 and "the file name says png but --format says svg" in mismatch.stderr
    unknown = cli("compare", trained, "--plot", tmp_path / "x.gif")
    assert unknown.exit_code == 2 and "cannot tell the image format" in unknown.stderr
