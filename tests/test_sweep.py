"""archspec sweep: grid parsing, deterministic cells, skip/resume on re-run, the band figure, and
every `archspec sweep` command in docs/studies.md (validated with --dry-run, nothing trained).

Training cells are tiny: a 3x8x8 `synthetic` spec, 64 images, 1-2 epochs.
"""

from __future__ import annotations

import json
import re
import shlex
import textwrap
from math import prod
from pathlib import Path

import pytest

import archspec
from archspec.errors import ArchspecError
from archspec.experiments import sweep as sw
from archspec.experiments.runs import load_run

from .conftest import ROOT, quiet_console
from .test_compare import TINY_RECIPE, TINY_SPEC

pytestmark = pytest.mark.usefixtures("no_run_plots")  # no test here looks at a run's curves.png / lr.png


@pytest.fixture
def files(tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(textwrap.dedent(TINY_SPEC).lstrip())
    wide = tmp_path / "wide.yaml"
    wide.write_text(textwrap.dedent(TINY_SPEC).lstrip().replace("name: tiny", "name: wide")
                    .replace("out: 4,", "out: 6,"))
    recipe = tmp_path / "tinyrecipe.yaml"
    recipe.write_text(textwrap.dedent(TINY_RECIPE).lstrip())
    return spec, wide, recipe


def test_parse_grid():
    assert sw.parse_grid(["optimizer.lr=1e-1, 1e-2,1e-3", "batch_size=4"]) == [
        ("optimizer.lr", ["1e-1", "1e-2", "1e-3"]), ("batch_size", ["4"])]
    # commas inside brackets or quotes belong to the value
    assert sw.parse_grid(["optimizer.betas=[0.9,0.99],[0.8,0.9]", "augment='a,b',none"]) == [
        ("optimizer.betas", ["[0.9,0.99]", "[0.8,0.9]"]), ("augment", ["'a,b'", "none"])]
    assert sw.parse_grid(None) == []


@pytest.mark.parametrize("items, message", [
    (["optimizer.lr"], "is not KEY=V1,V2"),
    (["=1,2"], "has no key"),
    (["spec=a.yaml,b.yaml"], "pass several spec files"),
    (["optimizer.lr=1,", ], "empty value"),
    (["optimizer.lr=1,1"], "repeated value"),
    (["batch_size=1", "batch_size=2"], "given twice"),
])
def test_parse_grid_errors(items, message):
    with pytest.raises(ArchspecError, match=message):
        sw.parse_grid(items)


def test_plan_crosses_specs_with_the_grid_deterministically(files, tmp_path):
    spec, wide, recipe = files
    grid = sw.parse_grid(["optimizer.lr=0.1,0.01", "batch_size=4,8,16"])
    out, cells = sw.plan([spec, wide], str(recipe), grid=grid, sets=["seed=5"], epochs=2, out=tmp_path / "s")
    assert len(cells) == 2 * 2 * 3
    assert [c.index for c in cells] == list(range(1, 13))
    first = cells[0]
    assert first.spec_name == "tiny" and first.values == (("optimizer.lr", "0.1"), ("batch_size", "4"))
    assert first.run_dir == tmp_path / "s" / "tiny_lr=0.1_batch_size=4"
    assert first.recipe.optimizer.lr == 0.1 and first.recipe.batch_size == 4
    assert first.recipe.seed == 5 and first.recipe.epochs == 2  # --set and --epochs reach every cell
    assert cells[-1].run_dir.name == "wide_lr=0.01_batch_size=16"
    assert len({c.run_dir for c in cells}) == 12
    assert {c.state for c in cells} == {"new"}
    _, again = sw.plan([spec, wide], str(recipe), grid=grid, sets=["seed=5"], epochs=2, out=tmp_path / "s")
    assert [c.run_dir for c in again] == [c.run_dir for c in cells]
    assert not (tmp_path / "s").exists()  # planning creates nothing


def test_default_out_is_derived_from_the_command():
    grid = [("optimizer.lr", ["1"]), ("optimizer.name", ["sgd"])]
    assert sw.default_out(["tutorial"], grid) == Path("runs/sweep-tutorial-lr-optimizer")
    assert sw.default_out(["vgg_a", "vgg_a_bn"], []) == Path("runs/sweep-vgg_a-vgg_a_bn")
    long = sw.default_out([f"spec{i}" for i in range(20)], [])
    assert len(long.name) <= 70 and long == sw.default_out([f"spec{i}" for i in range(20)], [])


def test_plan_errors_name_the_grid_option_and_the_cell(files, tmp_path):
    spec, _, recipe = files
    with pytest.raises(ArchspecError) as info:
        sw.plan([spec], str(recipe), grid=sw.parse_grid(["optimizer.lrr=0.1"]), out=tmp_path)
    assert info.value.path == "--grid optimizer.lrr" and 'did you mean "lr"' in str(info.value)
    with pytest.raises(ArchspecError) as info:
        sw.plan([spec], str(recipe), grid=sw.parse_grid(["optimizer.lr=0.1,-1"]), out=tmp_path)
    assert info.value.path == "--grid optimizer.lr" and "optimizer.lr=-1" in str(info.value)
    with pytest.raises(ArchspecError, match="unknown recipe"):
        sw.plan([spec], "no-such-recipe", out=tmp_path)
    with pytest.raises(ArchspecError, match="would share the run directory"):
        sw.plan([spec, spec], str(recipe), out=tmp_path)


def test_cli_dry_run_lists_cells_and_trains_nothing(files, cli, tmp_path):
    spec, wide, recipe = files
    out = tmp_path / "dry"
    result = cli("sweep", spec, wide, "--recipe", recipe, "--grid", "optimizer.lr=0.1,0.01", "--out", out,
                 "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert "4 sweep cells" in result.stdout and "wide_lr=0.01" in result.stdout
    assert not out.exists()
    bad = cli("sweep", spec, "--recipe", recipe, "--grid", "optimizer.lr", "--dry-run")
    assert bad.exit_code == 2 and "--grid" in bad.stderr and "Traceback" not in bad.stderr


def test_sweep_trains_compares_skips_finished_cells_and_draws_the_band(files, cli, tmp_path):
    spec, _, recipe = files
    out = tmp_path / "sweep"
    args = ["sweep", spec, "--recipe", recipe, "--grid", "optimizer.lr=0.01,0.001", "--limit-train", "64",
            "--limit-test", "32", "--device", "cpu", "--out", out, "--band", "--quiet"]
    result = cli(*args)
    assert result.exit_code == 0, result.stderr
    names = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert names == ["tiny_lr=0.001", "tiny_lr=0.01"]
    for name in names:
        run = load_run(out / name)
        assert run.status == "completed" and not run.problems
        assert run.recipe["optimizer"]["lr"] == float(name.split("=")[1])
        assert run.spec_name == name.split("_")[0]
    # the compare table: the lr column, no constant recipe columns
    assert "lr" in result.stdout and "0.001" in result.stdout and "batch_size" not in result.stdout
    import matplotlib.image

    band = out / "band.png"
    assert matplotlib.image.imread(band).std() > 0.01

    stamps = {name: (out / name / "last.pt").stat().st_mtime_ns for name in names}
    again = cli(*args)
    assert again.exit_code == 0, again.stderr
    assert again.stdout.count("already completed, skipped") == 2
    assert {name: (out / name / "last.pt").stat().st_mtime_ns for name in names} == stamps

    svg = cli(*args, "--format", "svg")  # cells are done: only the band is drawn again, as SVG
    assert svg.exit_code == 0, svg.stderr
    assert b"<svg" in (out / "band.svg").read_bytes()[:400] and "band.svg" in svg.stdout


def test_a_bad_band_format_fails_before_anything_trains(files, cli, tmp_path):
    spec, _, recipe = files
    out = tmp_path / "sweep"
    result = cli("sweep", spec, "--recipe", recipe, "--grid", "optimizer.lr=0.01", "--limit-train", "64",
                 "--device", "cpu", "--out", out, "--band", "--format", "gif", "--quiet")
    assert result.exit_code == 2 and 'unknown figure format "gif"' in result.stderr
    assert not out.exists()


def test_an_interrupted_cell_is_resumed_and_ends_like_an_uninterrupted_one(files, tmp_path):
    from archspec.train.loop import train

    spec, _, recipe = files
    grid = sw.parse_grid(["optimizer.lr=0.01"])
    out, (cell,) = sw.plan([spec], str(recipe), grid=grid, epochs=2, out=tmp_path / "s")
    out.mkdir()
    stopped = train(cell.spec, cell.recipe, device="cpu", run_dir=cell.run_dir, limit_train=64, limit_test=32,
                    console=quiet_console(), quiet=True, stop_after_epoch=1)
    assert stopped.status == "interrupted"
    assert sw.cell_state(cell) == "resume"
    console = quiet_console()
    result = sw.run([cell], out, device="cpu", limit_train=64, limit_test=32, console=console, quiet=True)
    assert result.statuses == {1: "completed"} and not result.interrupted
    assert "resuming" in console.file.getvalue()
    resumed = load_run(cell.run_dir)
    assert [row["epoch"] for row in resumed.metrics] == [1, 2]

    # the same cell trained in one go gives the same numbers (exact resume)
    straight = train(cell.spec, cell.recipe, device="cpu", run_dir=tmp_path / "straight", limit_train=64,
                     limit_test=32, console=quiet_console(), quiet=True)
    assert [r["train_loss"] for r in straight.metrics] == pytest.approx(
        [r["train_loss"] for r in resumed.metrics], rel=1e-6)
    assert sw.cell_state(cell) == "done"


def test_a_finished_cell_with_other_settings_is_an_error_not_a_silent_skip(files, tmp_path):
    spec, _, recipe = files
    out, cells = sw.plan([spec], str(recipe), out=tmp_path / "s")
    sw.run(cells, out, device="cpu", limit_train=64, limit_test=32, console=quiet_console(), quiet=True)
    assert sw.cell_state(cells[0]) == "done"
    with pytest.raises(ArchspecError, match=r"different recipe \(differs in: epochs\)") as info:
        sw.plan([spec], str(recipe), epochs=3, out=tmp_path / "s")
    assert "another --out" in info.value.hint
    spec.write_text(spec.read_text().replace("dropout: 0.2", "dropout: 0.3"))
    with pytest.raises(ArchspecError, match="different version of the spec"):
        sw.plan([spec], str(recipe), out=tmp_path / "s")


def test_diverged_cells_do_not_stop_the_sweep(files, tmp_path):
    spec, _, recipe = files
    grid = sw.parse_grid(["optimizer.lr=1e6,0.01"])  # Adam at lr 1e6 blows up at once
    out, cells = sw.plan([spec], str(recipe), grid=grid, out=tmp_path / "s")
    result = sw.run(cells, out, device="cpu", limit_train=256, limit_test=32, console=quiet_console(), quiet=True)
    assert result.statuses == {1: "diverged", 2: "completed"} and not result.interrupted
    assert sw.cell_state(cells[0]) == "done"  # a diverged cell is finished: re-runs skip it
    assert load_run(cells[0].run_dir).status == "diverged"


def _study_commands() -> list[str]:
    text = (ROOT / "docs" / "studies.md").read_text()
    lines = [line.strip().removeprefix("$ ") for line in text.splitlines()]
    return [line for line in lines if re.match(r"archspec sweep ", line)]


def test_studies_doc_has_the_coursework_studies():
    commands = _study_commands()
    assert len(commands) >= 6
    joined = "\n".join(commands)
    for needle in ("optimizer.lr=10,0.1,0.01,0.001", "batch_size=1,4,500", "specs/mlp_norelu.yaml",
                   "specs/vgg_a_bn.yaml", "--band", "optimizer.name=sgd,adam,adagrad", "loss.name=mse,cross_entropy"):
        assert needle in joined


@pytest.mark.parametrize("command", _study_commands())
def test_every_study_command_in_the_docs_is_valid(command, cli, monkeypatch):
    monkeypatch.chdir(ROOT)
    args = shlex.split(command)[1:]  # drop "archspec"
    specs = [a for a in args[1:] if a.endswith(".yaml")]
    for spec in specs:
        assert (ROOT / spec).is_file(), f"{spec} does not exist"
    grid = [args[i + 1] for i, a in enumerate(args) if a == "--grid"]
    expected = len(specs) * prod(len(sw.split_values(g.split("=", 1)[1])) for g in grid)
    result = cli(*args, "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert f"{expected} sweep cell" in result.stdout
    # and each cell's recipe really carries its grid value
    recipe = args[args.index("--recipe") + 1]
    out, cells = sw.plan(specs, recipe, grid=sw.parse_grid(grid), check_state=False)
    for cell in cells:
        resolved = json.loads(json.dumps(cell.recipe.to_dict()))
        for key, value in cell.values:
            node = resolved
            for part in key.split("."):
                node = node[part]
            assert str(node) == value or float(node) == float(value)
    assert isinstance(archspec.load_spec(ROOT / specs[0]).name, str)


def test_band_is_per_step_when_every_run_has_steps_csv(tmp_path):
    from archspec.experiments.runs import Run
    from archspec.figures import band_figure
    from archspec.train.rundir import write_steps

    runs = []
    for i, scale in enumerate((1.0, 2.0)):
        path = tmp_path / f"run{i}"
        path.mkdir()
        write_steps(path, [0.1] * 6, [scale * (6 - k) for k in range(6)], steps_per_epoch=3)
        runs.append(Run(path=path, metrics=[{"epoch": 1, "train_loss": 5.0 * scale}, {"epoch": 2, "train_loss": 2.0}]))
    fig = band_figure({"net": [run.curves() for run in runs]})
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["net (2 runs, per step)"]
    low, high = ax.lines[0], ax.lines[1]
    assert list(low.get_xdata()) == pytest.approx([k / 3 for k in range(1, 7)])  # steps on the epoch axis
    assert list(low.get_ydata()) == [6, 5, 4, 3, 2, 1] and list(high.get_ydata()) == [12, 10, 8, 6, 4, 2]
    assert ax.get_title() == "training loss per step: min-max band across the sweep"

    (runs[1].path / "steps.csv").unlink()  # a run from before per-step losses: the group falls back
    runs[1] = Run(path=runs[1].path, metrics=runs[1].metrics)
    ax = band_figure({"net": [run.curves() for run in runs]}).axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["net (2 runs, per epoch)"]
    assert list(ax.lines[0].get_ydata()) == [5.0, 2.0] and list(ax.lines[1].get_ydata()) == [10.0, 2.0]
