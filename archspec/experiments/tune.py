"""`archspec tune`: a hyperparameter search with Optuna over recipe keys and spec `vars`.

How a study is laid out (OUT defaults to runs/tune-<spec>-<space file>):

* ``OUT/study.db``: the Optuna study (SQLite). It records every trial's parameters, per-epoch
  values and result, and the study's definition (spec, recipe, search space, data limits), so the
  same command continues a study and another definition in the same folder is refused.
* ``OUT/trial-NNNN/``: one ordinary run directory per trial, trained by the sweep's cell runner
  (`sweep.run_cell`), so `archspec compare OUT` and `archspec report OUT` read trials like any runs.
* ``OUT/history.png``, ``OUT/importance.png``, ``OUT/intermediate.png``: Optuna's own figures,
  redrawn at the end of every `tune` command.

Pruning: every epoch's metric (test accuracy by default) is reported to the study; when the pruner
says so, the trial's training stops after that epoch (run status "stopped", trial state PRUNED).
A diverged trial is told the worst value (0 for an accuracy): Optuna's samplers ignore failed
trials, and a learning-rate search that ignored divergence would keep proposing it.

Resuming after a kill: the command holds the folder's lock (folder_lock) while it runs, so a
trial still "running" in the study when the command starts again was abandoned by a dead process.
It is marked failed and the same parameters are queued again with the same run directory, where
the new trial resumes from the last checkpoint (`retry_of` records the link). A resumed study
reseeds its sampler with the seed plus the number of trials so far, so it does not propose the
first trials' parameters again.

Who touches the SQLite file: only the `StudyKeeper`, which lives in this process (local executor)
or in one Ray actor on the driver's node (Ray executor); trials call it to report and ask whether
to stop. One writer, however many trials run at once.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archspec.errors import ArchspecError
from archspec.experiments.space import SearchSpace, check_against, read_space
from archspec.experiments.sweep import Cell, CellOutcome, TrainOptions, run_cell
from archspec.extras import require

STUDY_FILE = "study.db"
STUDY_NAME = "archspec"
CONFIG_ATTR = "archspec"
MAX_FAILURES_IN_A_ROW = 3  # trials failing with an error one after another: the study stops


def storage_url(out: Path) -> str:
    return f"sqlite:///{Path(out).absolute() / STUDY_FILE}"


def override(key: str, value: Any) -> str:
    """A sampled value as a `--set KEY=VALUE` item (JSON is YAML: 0.001, "flip_crop", true, null)."""
    return f"{key}={json.dumps(value)}"


@dataclass
class Ticket:
    """One asked trial: its number, sampled parameters and run directory name."""

    number: int
    params: dict[str, Any]
    run_dir: str
    retry_of: int | None = None


@dataclass
class StudyPlan:
    """A validated study: what every trial starts from and how it varies."""

    out: Path
    spec_path: Path
    spec: Any
    recipe_ref: str
    recipe: Any
    space: SearchSpace
    trials: int
    sets: list[str] = field(default_factory=list)
    epochs: int | None = None
    data: str | None = None
    allow_import: bool = False
    limits: tuple[int | None, int | None] = (None, None)

    def config(self) -> dict[str, Any]:
        """What must not change when the study is continued (JSON types only)."""
        from archspec.train.checkpoint import plain, spec_fingerprint

        return json.loads(json.dumps({
            "spec": self.spec.name, "spec_fingerprint": spec_fingerprint(self.spec.resolved),
            "recipe": plain(self.recipe.to_dict()), "space": self.space.to_dict(), "data": self.data,
            "limit_train": self.limits[0], "limit_test": self.limits[1]}))

    def inputs(self, spec_vars: dict[str, Any] | None = None, items: list[str] | tuple[str, ...] = ()):
        """A trial's spec (with `spec_vars`) and recipe (with the `--set` items), chosen as `archspec
        train` chooses them (archspec.train.prepare)."""
        from archspec.spec.loader import load_spec
        from archspec.train.prepare import prepare_run

        spec = self.spec_path
        if spec_vars:  # the same dataset rule as prepare_run: --data, else the spec's, else the recipe's
            spec = load_spec(self.spec_path, dataset=self.data, allow_import=self.allow_import, vars=spec_vars)
            if spec.dataset is None and self.recipe.dataset:
                spec = load_spec(self.spec_path, dataset=self.recipe.dataset, allow_import=self.allow_import,
                                 vars=spec_vars)
        return prepare_run(spec, recipe=self.recipe_ref, overrides=[*self.sets, *items], epochs=self.epochs,
                           data=self.data, allow_import=self.allow_import)

    def cell(self, ticket: Ticket) -> Cell:
        """The trial as a sweep cell: spec with its vars, recipe with its keys, its run directory."""
        by_param = {p.key: p for p in self.space.params}
        spec_vars = {by_param[k].var: v for k, v in ticket.params.items() if by_param[k].var}
        items = [override(k, v) for k, v in ticket.params.items() if not by_param[k].var]
        values = tuple((k, _show(v)) for k, v in ticket.params.items())
        chosen = self.inputs(spec_vars, items)
        return Cell(index=ticket.number, spec_path=self.spec_path, spec_name=self.spec.name, values=values,
                    overrides=[*self.sets, *items], run_dir=self.out / ticket.run_dir, spec=chosen.spec,
                    recipe=chosen.recipe)


def _show(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def default_out(spec_name: str, space_file: str | Path, runs_root: str | Path = "runs") -> Path:
    from archspec.experiments.sweep import _slug

    return Path(runs_root) / f"tune-{_slug(spec_name)}-{_slug(Path(space_file).stem)}"


def plan(spec: str | Path, recipe: str, space: str | Path, *, trials: int | None = None, sets: list[str] | None = None,
         data: str | None = None, epochs: int | None = None, out: str | Path | None = None,
         sampler: str | None = None, pruner: str | None = None, allow_import: bool = False,
         limits: tuple[int | None, int | None] = (None, None)) -> StudyPlan:
    """Load and check everything a study needs (no Optuna, no training): spec, recipe, search space,
    and every edge value of the space applied to the recipe or the spec."""
    search = read_space(space, sampler=sampler, pruner=pruner)
    if search.sampler["name"] == "grid":  # the grid sampler has nothing new to propose after the grid
        trials = min(trials or search.grid_size(), search.grid_size())
    if trials is None:
        raise ArchspecError("how many trials? give --trials N", path="--trials")
    if trials < 1:
        raise ArchspecError(f"--trials must be at least 1, got {trials}", path="--trials")
    study = StudyPlan(out=Path(), spec_path=Path(spec), spec=None, recipe_ref=recipe, recipe=None, space=search,
                      trials=trials, sets=list(sets or []), epochs=epochs, data=data, allow_import=allow_import,
                      limits=limits)
    base = study.inputs()
    study.spec, study.recipe = base.spec, base.recipe
    study.out = Path(out) if out is not None else default_out(study.spec.name, space)

    def apply(param, value) -> None:
        if param.var:
            study.inputs({param.var: value})
        else:
            study.inputs(items=[override(param.key, value)])

    check_against(search, apply, dict(study.spec.source.get("vars") or {}))
    return study


# --- the study's single owner -----------------------------------------------------------------


def _sampler(optuna, space: SearchSpace, offset: int):
    cfg = space.sampler
    seed = int(cfg.get("seed", 0)) + offset  # a resumed study must not replay the first proposals
    if cfg["name"] == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if cfg["name"] == "grid":
        class AskTellGrid(optuna.samplers.GridSampler):
            """GridSampler calls `study.stop()` when the grid is done, which only works inside
            `study.optimize`; here the trial count (at most the grid's size) ends the study."""

            def after_trial(self, study, trial, state, values) -> None:
                pass

        return AskTellGrid(space.grid(), seed=seed)
    extra = {"n_startup_trials": int(cfg["startup_trials"])} if "startup_trials" in cfg else {}
    return optuna.samplers.TPESampler(seed=seed, **extra)


def _pruner(optuna, space: SearchSpace, epochs: int):
    cfg = space.pruner
    name = cfg["name"]
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=int(cfg.get("startup_trials", 5)),
                                           n_warmup_steps=int(cfg.get("warmup_epochs", 0)))
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=int(cfg.get("min_epochs", 1)),
                                                      reduction_factor=int(cfg.get("reduction_factor", 4)))
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=int(cfg.get("min_epochs", 1)), max_resource=max(1, epochs),
                                              reduction_factor=int(cfg.get("reduction_factor", 3)))
    return optuna.pruners.NopPruner()


def _differences(old: dict, new: dict) -> list[str]:
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


class StudyKeeper:
    """Owns the Optuna study: asks for trials, takes their per-epoch reports, records their ends.

    Runs in the command's process, or as a Ray actor on the driver's node; every method takes and
    returns plain picklable values.
    """

    def __init__(self, url: str, config: dict[str, Any], space: SearchSpace, epochs: int) -> None:
        optuna = require("optuna", feature="archspec tune")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.optuna, self.space = optuna, space
        self.study = optuna.create_study(storage=url, study_name=STUDY_NAME, direction=space.direction,
                                         load_if_exists=True)
        stored = self.study.user_attrs.get(CONFIG_ATTR)
        if stored is None:
            self.study.set_user_attr(CONFIG_ATTR, config)
        elif stored != config:
            raise ArchspecError(f"this folder holds a study with other settings (differs in: "
                                f"{', '.join(_differences(stored, config))})", file=url.removeprefix("sqlite:///"),
                                hint="use another --out for the new settings, or delete the folder")
        self.retried = self._recover()
        self.study.sampler = _sampler(optuna, space, offset=len(self.study.trials))
        self.study.pruner = _pruner(optuna, space, epochs)
        self.live: dict[int, Any] = {}
        self.reported: dict[int, set[int]] = {}

    def _recover(self) -> list[int]:
        """Trials left "running" by a process that died: failed, and queued again in the same run dir."""
        state = self.optuna.trial.TrialState
        stale = self.study.get_trials(deepcopy=False, states=(state.RUNNING,))
        for trial in stale:
            self.study.tell(trial.number, state=state.FAIL)
            self.study.enqueue_trial(trial.params, user_attrs={
                "run_dir": trial.user_attrs.get("run_dir", f"trial-{trial.number:04d}"), "retry_of": trial.number})
        return [trial.number for trial in stale]

    def recovered(self) -> list[int]:
        return list(self.retried)

    def finished(self) -> int:
        """Trials that ended (complete, pruned, failed), not counting those killed and queued again."""
        state = self.optuna.trial.TrialState
        trials = self.study.get_trials(deepcopy=False)
        retried = {t.user_attrs["retry_of"] for t in trials if "retry_of" in t.user_attrs}
        return sum(1 for t in trials if t.state in (state.COMPLETE, state.PRUNED)
                   or (t.state == state.FAIL and t.number not in retried))

    def ask(self) -> Ticket:
        trial = self.study.ask()
        for p in self.space.params:
            if p.kind == "choice":
                trial.suggest_categorical(p.key, list(p.choices))
            elif p.kind == "int":
                trial.suggest_int(p.key, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
            else:
                trial.suggest_float(p.key, float(p.low), float(p.high), step=p.step, log=p.log)
        run_dir = trial.user_attrs.get("run_dir") or f"trial-{trial.number:04d}"
        trial.set_user_attr("run_dir", run_dir)
        self.live[trial.number] = trial
        return Ticket(trial.number, dict(trial.params), run_dir, trial.user_attrs.get("retry_of"))

    def _report(self, number: int, rows: list[dict[str, Any]]) -> tuple[int, float] | None:
        """Report every epoch not reported yet (a resumed trial's earlier epochs too); the last one."""
        trial, done, last = self.live[number], self.reported.setdefault(number, set()), None
        for row in rows:
            value, epoch = row.get(self.space.metric), int(row.get("epoch", 0))
            if isinstance(value, int | float) and math.isfinite(value):
                last = (epoch, float(value))
                if epoch not in done:
                    trial.report(float(value), step=epoch)
                    done.add(epoch)
        return last

    def report(self, number: int, rows: list[dict[str, Any]]) -> str | None:
        """Called by a trial after each epoch: a reason to stop it now (pruned), or None."""
        last = self._report(number, rows)
        if last is None or not self.live[number].should_prune():
            return None
        return f"pruned by the {self.space.pruner['name']} pruner at {self.space.metric} {last[1]:.4g}"

    def tell(self, number: int, status: str, rows: list[dict[str, Any]]) -> str:
        """Record how the trial's run ended; returns the trial's state name."""
        state = self.optuna.trial.TrialState
        last = self._report(number, rows)
        trial = self.live.pop(number)
        trial.set_user_attr("status", status)
        if status == "interrupted":  # left running: the next `tune` resumes it
            return "RUNNING"
        if status == "completed" and last is not None:
            return self.study.tell(trial, last[1]).state.name
        if status == "diverged":  # not a failure to ignore: the sampler must learn to stay away from it
            return self.study.tell(trial, self.worst()).state.name
        return self.study.tell(trial, state=state.PRUNED if status == "stopped" else state.FAIL).state.name

    def worst(self) -> float:
        """The value a diverged trial counts as: 0 for an accuracy, else the worst number there is."""
        if self.space.direction == "maximize":
            return 0.0 if self.space.metric.endswith("_acc") else -math.inf
        return math.inf

    def fail(self, number: int, message: str) -> None:
        trial = self.live.pop(number)
        trial.set_user_attr("error", message[:500])
        self.study.tell(trial, state=self.optuna.trial.TrialState.FAIL)

    def table(self) -> list[dict[str, Any]]:
        """Every trial that counts (not those killed and queued again), as plain rows."""
        trials = self.study.get_trials(deepcopy=False)
        retried = {t.user_attrs["retry_of"] for t in trials if "retry_of" in t.user_attrs}
        return [{"number": t.number, "state": t.state.name, "value": t.value, "params": dict(t.params),
                 "run_dir": t.user_attrs.get("run_dir"), "status": t.user_attrs.get("status"),
                 "epochs": len(t.intermediate_values), "retry_of": t.user_attrs.get("retry_of"),
                 "error": t.user_attrs.get("error")}
                for t in trials if t.number not in retried]


# --- the trial task and the study loop ---------------------------------------------------------


def run_trial(cell: Cell, options: TrainOptions, keeper, owner: str | None) -> CellOutcome:
    """One trial (an executor task): the cell runner, reporting each epoch to the study's keeper."""
    from archspec.experiments.pruning import ReportToStudy

    return run_cell(cell, options, owner, observers=[ReportToStudy(keeper, cell.index)])


@dataclass
class StudyResult:
    out: Path
    rows: list[dict[str, Any]]
    direction: str
    metric: str
    interrupted: bool = False
    figures: list[Path] = field(default_factory=list)

    @property
    def best(self) -> dict[str, Any] | None:
        done = [r for r in self.rows if r["state"] == "COMPLETE" and r["status"] != "diverged"]
        if not done:
            return None
        pick = max if self.direction == "maximize" else min
        return pick(done, key=lambda r: r["value"])


def run(study: StudyPlan, *, executor=None, options: TrainOptions | None = None, console=None,
        parallel: int | None = None) -> StudyResult:
    """Run trials until the study has `study.trials` finished ones (or Ctrl-C); draw its figures."""
    from rich.console import Console

    from archspec.experiments.executors import LocalExecutor
    from archspec.experiments.folder_lock import lock_folder
    from archspec.experiments.sweep import for_workers

    require("optuna", feature="archspec tune")
    console = console or Console()
    executor = executor or LocalExecutor()
    local = executor.name == "local"
    options = options or TrainOptions()
    if not local:
        options = for_workers(options, executor)
        study.out = study.out.absolute()
    with lock_folder(study.out) as lock:
        keeper = executor.shared(StudyKeeper, storage_url(study.out), study.config(), study.space,
                                 int(study.recipe.epochs))
        for number in keeper.call("recovered"):
            console.print(f"trial {number} was cut off by a stopped command: queued again, resuming its run "
                          "directory", highlight=False)
        slots = 1 if local else max(1, parallel or executor.slots())
        interrupted = _loop(study, executor, keeper, options, console, slots, None if local else lock.token)
        rows = keeper.call("table")
    result = StudyResult(study.out, rows, study.space.direction, study.space.metric, interrupted=interrupted)
    from archspec.experiments.study_figures import write_figures

    result.figures = write_figures(study.out)
    return result


def _loop(study: StudyPlan, executor, keeper, options: TrainOptions, console, slots: int, owner) -> bool:
    """Hand out trials while fewer than `study.trials` are finished; True when a trial was interrupted."""
    from rich.markup import escape

    running: dict[Any, Ticket] = {}
    stopping, failures = False, 0
    while True:
        while not stopping and len(running) < slots and keeper.call("finished") + len(running) < study.trials:
            ticket = keeper.call("ask")
            try:
                cell = study.cell(ticket)
            except ArchspecError as e:  # a value inside the space that the spec or recipe refuses
                keeper.call("fail", ticket.number, str(e))
                console.print(f"trial {ticket.number}: failed: {escape(str(e))}", highlight=False)
                continue
            again = f" (trial {ticket.retry_of} again)" if ticket.retry_of is not None else ""
            console.print(f"[bold]trial {ticket.number}[/]{again} "
                          f"{escape(' '.join(f'{k}={v}' for k, v in cell.values))} -> {escape(str(cell.run_dir))}",
                          highlight=False)
            running[executor.submit(run_trial, cell, options, keeper, owner, label=f"trial {ticket.number}")] = ticket
        if not running:
            return stopping
        for handle in executor.wait(list(running)):
            ticket = running.pop(handle)
            try:
                outcome = executor.result(handle)
            except ArchspecError as e:  # e.g. out of memory at a sampled batch size: this trial fails
                keeper.call("fail", ticket.number, str(e))
                console.print(f"trial {ticket.number}: failed: {escape(str(e))}", highlight=False)
                failures += 1
                if failures >= MAX_FAILURES_IN_A_ROW:
                    executor.cancel(list(running))
                    raise ArchspecError(f"{failures} trials in a row failed; the last: {e.message}", file=e.file,
                                        line=e.line, col=e.col, path=e.path, hint=e.hint) from None
                continue
            except BaseException:
                executor.cancel(list(running))
                raise
            failures = 0
            state = keeper.call("tell", ticket.number, outcome.status, outcome.metrics)
            console.print(f"trial {ticket.number}: {_describe(state, outcome, study.space.metric)}", highlight=False)
            if outcome.status == "interrupted":
                stopping = True


def _describe(state: str, outcome: CellOutcome, metric: str) -> str:
    values = [row.get(metric) for row in outcome.metrics if row.get(metric) is not None]
    text = {"COMPLETE": "complete", "PRUNED": f"pruned after epoch {len(outcome.metrics)}", "FAIL":
            f"failed ({outcome.status})", "RUNNING": "interrupted (resumable)"}.get(state, state.lower())
    if outcome.status == "diverged":
        text, values = "diverged (counts as the worst value)", []
    if values:
        text += f", {metric} {values[-1]:.4f}"
    if outcome.resumed:
        text += " (resumed from its checkpoint)"
    return text + (f" on {outcome.host}" if outcome.host else "")


def trials_table(result: StudyResult):
    """A rich table of the study's trials, best first."""
    from rich.table import Table

    rows = sorted(result.rows, key=lambda r: (r["value"] is None,
                                              -(r["value"] or 0) if result.direction == "maximize"
                                              else (r["value"] or 0)))
    keys = list(dict.fromkeys(k for r in rows for k in r["params"]))
    table = Table(title=f"{len(rows)} trials in {result.out}/ ({result.metric}, {result.direction})",
                  title_justify="left", header_style="bold")
    for name in ("#", "state", result.metric, *keys, "epochs", "run directory"):
        table.add_column(name, justify="right" if name in ("#", "epochs", result.metric) else "left")
    for r in rows:
        table.add_row(str(r["number"]), "diverged" if r["status"] == "diverged" else r["state"].lower(), "-" if r["value"] is None else f"{r['value']:.4f}",
                      *(_show(r["params"][k]) if k in r["params"] else "-" for k in keys), str(r["epochs"]),
                      str(r["run_dir"] or "-"))
    return table


def describe_plan(study: StudyPlan) -> str:
    """One line: where the study lives and what it searches."""
    space = study.space
    params = ", ".join(f"{p.key}: {p.describe()}" for p in space.params)
    return (f"study {study.out}: {study.trials} trials of {study.spec.name} + {study.recipe.name}, "
            f"{space.sampler['name']} sampler, {space.pruner['name']} pruner, {space.direction} {space.metric}; "
            f"{params}")


def closing_lines(result: StudyResult) -> list[str]:
    """The best trial (parameters and run directory) and the figures written."""
    lines = []
    best = result.best
    if best is not None:
        lines.append(f"best: trial {best['number']}, {result.metric} {best['value']:.4f}, "
                     + " ".join(f"{k}={v}" for k, v in best["params"].items())
                     + f" ({result.out / best['run_dir']})")
    return lines + [f"wrote {path}" for path in result.figures]
