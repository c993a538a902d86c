"""MLflow logging (`log: [tensorboard, mlflow]`, or `archspec train --log mlflow`).

Each archspec run is one MLflow run in the experiment "archspec" (its name: the run directory's),
holding the hyperparameters as params, the same step/epoch/final metrics as the TensorBoard events
(archspec.train.tracking), and tags naming the run directory, spec and status.

Where it logs: `--mlflow-uri` when given; else, for a resumed run, where that run logged before;
else MLflow's own default (`MLFLOW_TRACKING_URI`, else `sqlite:///mlflow.db` in the working
directory: the store `mlflow ui` opens when started there). A relative path is made absolute, so a
resumed run started from another folder finds the same store. A plain folder (`--mlflow-uri
mlruns`) is an MLflow file store; MLflow 3 refuses new file stores unless MLFLOW_ALLOW_FILE_STORE
is set, and archspec sets it for the process when you name a folder, since you asked for one.

`mlflow.json` in the run directory records the store and the MLflow run id. A resumed run logs to
that MLflow run again and starts after the last step the store already holds, so each step is
logged once even when a session was killed between its checkpoint and its logging.

Only the MLflow client is needed (`pip install "archspec[mlflow]"`, which brings mlflow-skinny and
SQLAlchemy); the web UI is the full `mlflow` package.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archspec.atomic_write import atomic_write_json
from archspec.errors import ArchspecError
from archspec.train.observers import RunObserver
from archspec.train.state import STATUS_COMPLETED, STATUS_DIVERGED, STATUS_INTERRUPTED
from archspec.train.tracking import epoch_values, final_values, pending_epochs, pending_steps, run_params

if TYPE_CHECKING:
    from archspec.train.state import Run

EXPERIMENT = "archspec"
RECORD = "mlflow.json"
BATCH = 1000  # MLflow's limit of metrics per log_batch call
_END_STATUS = {STATUS_COMPLETED: "FINISHED", STATUS_INTERRUPTED: "KILLED", STATUS_DIVERGED: "FAILED"}


def tracking_uri(uri: str | None) -> str:
    """The store to log to, absolute: a folder -> file:///abs/folder, sqlite:///rel.db -> sqlite:////abs/rel.db."""
    if uri is None:
        import mlflow

        uri = mlflow.get_tracking_uri()
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri[len("sqlite:///"):]).resolve())
    if "://" not in uri and not uri.startswith("file:"):
        uri = Path(uri).resolve().as_uri()
    if uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return uri


def read_record(run_dir: Path) -> dict[str, str] | None:
    """The run directory's mlflow.json, or None when it has none (or an unreadable one)."""
    try:
        record = json.loads((run_dir / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and {"tracking_uri", "run_id"} <= set(record) else None


class MlflowLogger(RunObserver):
    """Logs the run to an MLflow tracking store (rank 0 only)."""

    def __init__(self, *, uri: str | None = None) -> None:
        self.uri = uri
        self.client: Any = None
        self.run_id = ""
        self.steps_logged = self.epochs_logged = 0

    def on_start(self, run: Run) -> None:
        from mlflow.tracking import MlflowClient

        record = read_record(run.out)
        uri = tracking_uri(self.uri or (record or {}).get("tracking_uri"))
        try:
            self.client = MlflowClient(tracking_uri=uri)
            self.run_id = self._continue(record, uri) or self._create(run, uri)
            self.steps_logged = self._last_step("step/lr")
            self.epochs_logged = self._last_step("epoch/train_loss") // max(1, run.steps_per_epoch)
        except Exception as exc:  # noqa: BLE001 - MLflow raises many kinds; the user needs one line
            raise ArchspecError(f"cannot log to MLflow at {uri}: {_first_line(exc)}", path="--mlflow-uri",
                                hint="check --mlflow-uri, or train without MLflow: --log none") from None
        self._catch_up(run)

    def _continue(self, record: dict[str, str] | None, uri: str) -> str | None:
        """The MLflow run this run directory logged to before, when it is in this store."""
        if record is None or record["tracking_uri"] != uri:
            return None
        with contextlib.suppress(Exception):  # deleted, or another store: start a new MLflow run
            self.client.update_run(record["run_id"], status="RUNNING")
            return record["run_id"]
        return None

    def _create(self, run: Run, uri: str) -> str:
        from mlflow.entities import Param

        found = self.client.get_experiment_by_name(EXPERIMENT)
        experiment_id = found.experiment_id if found else self.client.create_experiment(EXPERIMENT)
        tags = {"archspec.run_dir": str(run.out), "archspec.spec": run.spec.name, "archspec.recipe": run.recipe.name,
                "archspec.dataset": run.dataset, "mlflow.source.name": "archspec train"}
        run_id = self.client.create_run(experiment_id, run_name=run.out.name, tags=tags).info.run_id
        params = [Param(key, str(value)) for key, value in run_params(run).items()]
        for start in range(0, len(params), 100):  # MLflow's limit of params per call
            self.client.log_batch(run_id, params=params[start:start + 100])
        atomic_write_json(run.out / RECORD, {"tracking_uri": uri, "experiment_id": experiment_id, "run_id": run_id})
        return run_id

    def _last_step(self, key: str) -> int:
        return max((metric.step for metric in self.client.get_metric_history(self.run_id, key)), default=0)

    def running(self, run: Run) -> contextlib.AbstractContextManager:
        return self._failed_on_error()

    @contextlib.contextmanager
    def _failed_on_error(self) -> Iterator[None]:
        try:
            yield
        except BaseException:
            if self.client is not None:
                with contextlib.suppress(Exception):
                    self.client.set_terminated(self.run_id, status="FAILED")
            raise

    def on_epoch_end(self, run: Run, row: dict[str, Any]) -> None:
        self._catch_up(run)

    def on_finish(self, run: Run, summary: dict[str, Any]) -> None:
        from mlflow.entities import Metric, RunTag

        self._catch_up(run)
        now, step = _now_ms(), len(run.history.lr_history)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in final_values(summary).items()],
                              tags=[RunTag("archspec.status", run.status), RunTag("archspec.message", run.message)])
        self.client.set_terminated(self.run_id, status=_END_STATUS.get(run.status, "FINISHED"))

    def _catch_up(self, run: Run) -> None:
        """Log the steps and epochs the history holds beyond what the store has, in order."""
        from mlflow.entities import Metric

        now, metrics = _now_ms(), []
        for row in pending_steps(run, self.steps_logged):
            if row["loss"] is not None:
                metrics.append(Metric("step/loss", row["loss"], now, row["step"]))
            metrics.append(Metric("step/lr", row["lr"], now, row["step"]))  # last: it marks the step as logged
        for row in pending_epochs(run.history, self.epochs_logged):
            step = row["epoch"] * run.steps_per_epoch
            metrics += [Metric(key, value, now, step) for key, value in epoch_values(row).items() if key != "epoch/train_loss"]
            metrics.append(Metric("epoch/train_loss", row["train_loss"], now, step))  # last: marks the epoch
        for start in range(0, len(metrics), BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[start:start + BATCH])
        self.steps_logged = len(run.history.lr_history)
        self.epochs_logged = run.history.epoch


def _now_ms() -> int:
    return int(time.time() * 1000)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
