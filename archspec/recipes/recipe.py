"""The `Recipe` dataclass: a validated training recipe with typed fields. No torch import.

A recipe file is checked against `schema.json` (types, ranges, unknown keys) and then by
`archspec.recipes.resolve` (rules JSON Schema cannot phrase well, such as "momentum does not
apply to adam"). By the time a `Recipe` exists it is known to be valid, so the builders in
`archspec.recipes.build` can trust every field. `Recipe.to_dict()` writes the resolved recipe
back in the file format (a run directory's `recipe.yaml`), and loading that file gives the same
recipe again.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

# Which optimizer keys each optimizer understands (besides name, lr, weight_decay, no_decay_on, lr_mult, wd_mult).
OPTIMIZER_KEYS: dict[str, tuple[str, ...]] = {
    "sgd": ("momentum", "nesterov"),
    "adam": ("betas", "eps", "amsgrad"),
    "adamw": ("betas", "eps", "amsgrad"),
    "adagrad": ("eps",),
    "rmsprop": ("alpha", "eps", "momentum", "centered"),
}
COMMON_OPTIMIZER_KEYS = ("name", "lr", "weight_decay", "no_decay_on", "lr_mult", "wd_mult")

# Which parameters each schedule piece takes (besides type, until, epochs), and their defaults.
PHASE_DEFAULTS: dict[str, dict[str, Any]] = {
    "linear": {"start_factor": 1.0, "end_factor": 1.0},
    "constant": {"factor": 1.0},
    "cosine": {"eta_min": 0.0},
    "exponential": {"gamma": None},  # None: required
    "step": {"step_size": None, "gamma": 0.1},
    "multistep": {"milestones": None, "gamma": 0.1},
}
ONECYCLE_DEFAULTS: dict[str, Any] = {
    "max_lr": None,  # None: the optimizer's lr
    "pct_start": 0.3,
    "anneal_strategy": "cos",
    "div_factor": 25.0,
    "final_div_factor": 1.0e4,
    "three_phase": False,
    "cycle_momentum": True,
    "base_momentum": 0.85,
    "max_momentum": 0.95,
}

# Top-level keys and their defaults when a recipe leaves them out.
RECIPE_DEFAULTS: dict[str, Any] = {
    "description": "",
    "schedule": "constant",
    "loss": "cross_entropy",
    "augment": "none",
    "normalize": True,
    "precision": "auto",
    "compile": "auto",
    "seed": 0,
    "eval_every": 1,
    "drop_last": False,
    "init": "default",
    "grad_clip": None,
    "dataset": None,
    "workers": None,
    "ema": None,
    "early_stop": None,
    "log": "tensorboard",
    "tta": "none",
    "whiten": None,
    "eval_batch_size": None,
    "threads": None,
}
# Keys that only document a recipe: two recipes that differ only in these train the same way.
NOTE_KEYS = ("description", "overrides")
EMA_DEFAULTS: dict[str, Any] = {"every": 1, "warmup_power": 0.0, "lookahead": False}
WHITEN_DEFAULTS: dict[str, Any] = {"samples": 5000, "eps": 5.0e-4, "freeze": True}
EARLY_STOP_DEFAULTS: dict[str, Any] = {"metric": "test_loss", "patience": 3, "min_delta": 0.0, "mode": "auto"}
TRACKERS = ("tensorboard", "mlflow")  # what `log:` may name (archspec.train.tracking)


class _Section:
    """Read-only mapping access (``cfg["lr"]``, ``cfg.get("momentum")``) for the recipe sections.

    Why: callers that only need a value or two can treat a section like the YAML mapping it came
    from, while the fields stay typed and the dataclass stays frozen.
    """

    def __getitem__(self, key: str) -> Any:
        if key in {f.name for f in fields(self)}:  # type: ignore[arg-type]
            return getattr(self, key)
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            value = self[key]
        except KeyError:
            return default
        return default if value is None else value


@dataclass(frozen=True)
class OptimizerConfig(_Section):
    name: str
    lr: float
    weight_decay: float = 0.0
    momentum: float | None = None
    nesterov: bool | None = None
    betas: tuple[float, float] | None = None
    eps: float | None = None
    alpha: float | None = None
    amsgrad: bool | None = None
    centered: bool | None = None
    no_decay_on: tuple[str, ...] = ()
    lr_mult: dict[str, float] = field(default_factory=dict)
    wd_mult: dict[str, float] = field(default_factory=dict)

    def torch_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the torch optimizer (lr and weight decay are set per param group)."""
        out: dict[str, Any] = {}
        for key in OPTIMIZER_KEYS[self.name]:
            value = getattr(self, key)
            if value is not None:
                out[key] = tuple(value) if key == "betas" else value
        return out

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "lr": self.lr, "weight_decay": self.weight_decay}
        for key in OPTIMIZER_KEYS[self.name]:
            value = getattr(self, key)
            if value is not None:
                out[key] = list(value) if key == "betas" else value
        if self.no_decay_on:
            out["no_decay_on"] = list(self.no_decay_on)
        if self.lr_mult:
            out["lr_mult"] = dict(self.lr_mult)
        if self.wd_mult:
            out["wd_mult"] = dict(self.wd_mult)
        return out

    def describe(self) -> str:
        return f"{self.name} {self.lr:g}"


@dataclass(frozen=True)
class Phase(_Section):
    """One piece of a schedule. Factors multiply the optimizer's lr; lengths are in epochs."""

    type: str
    until: float | None = None  # end of the phase as a fraction of the run
    epochs: int | None = None  # or: length of the phase in epochs
    start_factor: float | None = None
    end_factor: float | None = None
    factor: float | None = None
    eta_min: float | None = None
    gamma: float | None = None
    step_size: int | None = None
    milestones: tuple[int, ...] | None = None

    def params(self) -> dict[str, Any]:
        """The piece's own parameters, defaults filled in."""
        return {key: getattr(self, key) for key in PHASE_DEFAULTS[self.type]}

    def to_dict(self, *, with_extent: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if with_extent and self.until is not None:
            out["until"] = self.until
        if with_extent and self.epochs is not None:
            out["epochs"] = self.epochs
        for key, value in self.params().items():
            out[key] = list(value) if key == "milestones" else value
        return out


@dataclass(frozen=True)
class OneCycle(_Section):
    max_lr: float | None = None
    pct_start: float = 0.3
    anneal_strategy: str = "cos"
    div_factor: float = 25.0
    final_div_factor: float = 1.0e4
    three_phase: bool = False
    cycle_momentum: bool = True
    base_momentum: float = 0.85
    max_momentum: float = 0.95

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        if out["max_lr"] is None:
            del out["max_lr"]
        return out


_SHORT = {"linear": "lin", "constant": "const", "cosine": "cos", "exponential": "exp", "multistep": "msteps"}


@dataclass(frozen=True)
class Schedule(_Section):
    """When the LR changes: consecutive `phases`, or a OneCycle policy (then `phases` is empty).

    `interval` says when the training loop calls ``scheduler.step()``: after every batch or after
    every epoch. Schedule lengths are always written in epochs; `interval` only sets the granularity.
    """

    interval: str = "epoch"
    phases: tuple[Phase, ...] = (Phase("constant", factor=1.0),)
    onecycle: OneCycle | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.onecycle is not None:
            return {"interval": self.interval, "type": "onecycle", **self.onecycle.to_dict()}
        if len(self.phases) == 1:
            return {"interval": self.interval, **self.phases[0].to_dict(with_extent=False)}
        return {"interval": self.interval, "phases": [p.to_dict() for p in self.phases]}

    def describe(self) -> str:
        """A short one-line summary for tables: "lin>const>cos", "step 30 x0.1", "onecycle/batch"."""
        if self.onecycle is not None:
            text = "onecycle" + (f" max {self.onecycle.max_lr:g}" if self.onecycle.max_lr else "")
        elif len(self.phases) == 1:
            p = self.phases[0]
            text = p.type
            if p.type == "constant" and p.factor not in (None, 1.0):
                text = f"constant x{p.factor:g}"
            elif p.type == "step":
                text = f"step {p.step_size} x{p.gamma:g}"
            elif p.type == "multistep":
                text = f"multistep {list(p.milestones or ())} x{p.gamma:g}"
            elif p.type == "exponential":
                text = f"exponential x{p.gamma:g}"
        else:
            text = ">".join(_SHORT.get(p.type, p.type) for p in self.phases)
        return text + ("/batch" if self.interval == "batch" else "")


@dataclass(frozen=True)
class LossConfig(_Section):
    name: str = "cross_entropy"
    label_smoothing: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "label_smoothing": self.label_smoothing}


@dataclass(frozen=True)
class EmaConfig(_Section):
    """An exponential moving average of the weights (archspec.train.ema), used for evaluation.

    Every `every` optimizer steps: ``ema = d * ema + (1 - d) * weights`` with
    ``d = decay * (step / total_steps) ** warmup_power`` (power 0: a constant decay; airbench ramps it
    up with power 3 so the early, fast-changing weights are not averaged in). `lookahead` copies the
    average back into the trained weights after each update (airbench's Lookahead-style scheme).
    """

    decay: float
    every: int = 1
    warmup_power: float = 0.0
    lookahead: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class WhitenConfig(_Section):
    """Settings of ``init: whiten`` (archspec.train.whiten): how many training images to take
    patches from, the eigenvalue floor `eps`, and whether the whitened weights stay frozen."""

    samples: int = 5000
    eps: float = 5.0e-4
    freeze: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class EarlyStopConfig(_Section):
    """``early_stop:`` (archspec.train.early_stop): end the run once `metric` has not improved by more
    than `min_delta` for `patience` epochs in which it was measured. `mode` "auto" minimises losses
    and maximises accuracies."""

    metric: str = "test_loss"
    patience: int = 3
    min_delta: float = 0.0
    mode: str = "auto"

    @property
    def goal(self) -> str:
        """"min" or "max": the direction that counts as better."""
        if self.mode != "auto":
            return self.mode
        return "min" if self.metric.endswith("loss") else "max"

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Recipe:
    """A resolved, validated training recipe. Build one with `archspec.recipes.load_recipe`."""

    name: str
    epochs: int
    batch_size: int
    optimizer: OptimizerConfig
    schedule: Schedule = field(default_factory=Schedule)
    loss: LossConfig = field(default_factory=LossConfig)
    description: str = ""
    augment: str | list[Any] = "none"
    normalize: bool | dict[str, list[float]] = True
    precision: str = "auto"
    compile: str | bool = "auto"  # auto | false | true | a torch.compile mode (archspec.train.torch_compile)
    seed: int = 0
    eval_every: int = 1
    drop_last: bool = False  # drop each epoch's last partial training batch
    init: str = "default"
    grad_clip: float | None = None
    dataset: str | None = None
    workers: int | None = None
    ema: EmaConfig | None = None
    early_stop: EarlyStopConfig | None = None
    log: tuple[str, ...] = ("tensorboard",)  # experiment trackers (archspec.train.tracking)
    tta: str = "none"
    whiten: WhitenConfig | None = None  # set (defaults filled in) exactly when init is "whiten"
    eval_batch_size: int | None = None  # test-set batches (None: the training batch size)
    threads: int | None = None  # torch.set_num_threads for the run (None: torch's default)
    overrides: tuple[str, ...] = ()  # the command-line changes it was made with, in order ("--epochs 2")
    source: str = ""  # "builtin:adam" or the file path; not part of to_dict()

    def override_of(self, key: str) -> str | None:
        """The last recorded override that set `key` ("--lr 50", "--set optimizer.lr=50"), if any."""
        flags = {"optimizer.lr": "--lr", "epochs": "--epochs", "batch_size": "--batch-size", "seed": "--seed",
                 "threads": "--threads"}
        for item in reversed(self.overrides):
            flag, _, rest = item.partition(" ")
            if flag == flags.get(key) or (flag == "--set" and rest.split("=", 1)[0].strip() == key):
                return item
        return None

    def to_dict(self) -> dict[str, Any]:
        """The fully resolved recipe in the file format (no `extends`): what a run directory stores."""
        out: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "optimizer": self.optimizer.to_dict(),
            "schedule": self.schedule.to_dict(),
            "loss": self.loss.to_dict(),
            "augment": self.augment,
            "normalize": self.normalize,
            "precision": self.precision,
            "compile": self.compile,
            "seed": self.seed,
            "eval_every": self.eval_every,
            "drop_last": self.drop_last,
            "init": self.init,
            "grad_clip": self.grad_clip,
            "ema": self.ema.to_dict() if self.ema is not None else None,
            "tta": self.tta,
        }
        if self.early_stop is not None:
            out["early_stop"] = self.early_stop.to_dict()
        if self.log != ("tensorboard",):
            out["log"] = list(self.log)
        if self.whiten is not None:
            out["whiten"] = self.whiten.to_dict()
        if self.dataset is not None:
            out["dataset"] = self.dataset
        if self.workers is not None:
            out["workers"] = self.workers
        if self.eval_batch_size is not None:
            out["eval_batch_size"] = self.eval_batch_size
        if self.threads is not None:
            out["threads"] = self.threads
        if self.overrides:
            out["overrides"] = list(self.overrides)
        return out


def _phase_from(data: dict[str, Any]) -> Phase:
    kind = data["type"]
    values = {**PHASE_DEFAULTS[kind], **{k: v for k, v in data.items() if k in PHASE_DEFAULTS[kind]}}
    floats = {k: float(v) for k, v in values.items() if k in ("start_factor", "end_factor", "factor", "eta_min", "gamma")}
    milestones = values.get("milestones")
    return Phase(
        type=kind,
        until=float(data["until"]) if data.get("until") is not None else None,
        epochs=int(data["epochs"]) if data.get("epochs") is not None else None,
        step_size=int(values["step_size"]) if values.get("step_size") is not None else None,
        milestones=tuple(sorted(int(m) for m in milestones)) if milestones is not None else None,
        **floats,
    )


def schedule_from(data: dict[str, Any]) -> Schedule:
    """Build a `Schedule` from a validated, shorthand-expanded `schedule` mapping."""
    kind = data.get("type")
    interval = data.get("interval") or ("batch" if kind == "onecycle" else "epoch")
    if kind == "onecycle":
        values = {**ONECYCLE_DEFAULTS, **{k: v for k, v in data.items() if k in ONECYCLE_DEFAULTS}}
        for key in ("pct_start", "div_factor", "final_div_factor", "base_momentum", "max_momentum"):
            values[key] = float(values[key])
        if values["max_lr"] is not None:
            values["max_lr"] = float(values["max_lr"])
        return Schedule(interval=interval, phases=(), onecycle=OneCycle(**values))
    if "phases" in data:
        return Schedule(interval=interval, phases=tuple(_phase_from(p) for p in data["phases"]))
    return Schedule(interval=interval, phases=(_phase_from({"type": kind or "constant", **data}),))


def _optimizer_from(opt: dict[str, Any]) -> OptimizerConfig:
    """`optimizer:` as its typed config; options the recipe leaves out stay None (torch's defaults)."""

    def number(key: str) -> float | None:
        return float(opt[key]) if opt.get(key) is not None else None

    return OptimizerConfig(
        name=opt["name"],
        lr=float(opt["lr"]),
        weight_decay=float(opt.get("weight_decay", 0.0)),
        momentum=number("momentum"),
        nesterov=opt.get("nesterov"),
        betas=tuple(float(b) for b in opt["betas"]) if opt.get("betas") is not None else None,  # type: ignore[arg-type]
        eps=number("eps"),
        alpha=number("alpha"),
        amsgrad=opt.get("amsgrad"),
        centered=opt.get("centered"),
        no_decay_on=tuple(opt.get("no_decay_on") or ()),
        lr_mult={k: float(v) for k, v in (opt.get("lr_mult") or {}).items()},
        wd_mult={k: float(v) for k, v in (opt.get("wd_mult") or {}).items()},
    )


def _ema_from(value: dict[str, Any] | None) -> EmaConfig | None:
    if value is None:
        return None
    e = {**EMA_DEFAULTS, **value}
    return EmaConfig(decay=float(e["decay"]), every=int(e["every"]), warmup_power=float(e["warmup_power"]),
                     lookahead=bool(e["lookahead"]))


def _whiten_from(init: str | None, value: dict[str, Any] | None) -> WhitenConfig | None:
    if init != "whiten":
        return None
    w = {**WHITEN_DEFAULTS, **(value or {})}
    return WhitenConfig(samples=int(w["samples"]), eps=float(w["eps"]), freeze=bool(w["freeze"]))


def _early_stop_from(value: dict[str, Any] | None) -> EarlyStopConfig | None:
    if value is None:
        return None
    e = {**EARLY_STOP_DEFAULTS, **value}
    return EarlyStopConfig(metric=e["metric"], patience=int(e["patience"]), min_delta=float(e["min_delta"]),
                           mode=e["mode"])


def _int_or_none(value: Any) -> int | None:
    return int(value) if value is not None else None


def recipe_from(data: dict[str, Any], *, name: str, source: str) -> Recipe:
    """Build a `Recipe` from a validated mapping (shorthands expanded, defaults not yet filled)."""
    d = {**RECIPE_DEFAULTS, **{k: v for k, v in data.items() if v is not None or k in RECIPE_DEFAULTS}}
    schedule = d["schedule"] if isinstance(d["schedule"], dict) else {"type": d["schedule"]}
    loss = d["loss"] if isinstance(d["loss"], dict) else {"name": d["loss"]}
    normalize = d["normalize"]
    if isinstance(normalize, dict):
        normalize = {"mean": [float(v) for v in normalize["mean"]], "std": [float(v) for v in normalize["std"]]}
    return Recipe(
        name=name,
        description=d["description"] or "",
        epochs=int(d["epochs"]),
        batch_size=int(d["batch_size"]),
        optimizer=_optimizer_from(dict(d["optimizer"])),
        schedule=schedule_from(schedule),
        loss=LossConfig(name=loss.get("name", "cross_entropy"), label_smoothing=float(loss.get("label_smoothing", 0.0))),
        augment=d["augment"] if d["augment"] is not None else "none",
        normalize=normalize,
        precision=d["precision"],
        compile=d["compile"],
        seed=int(d["seed"]),
        eval_every=int(d["eval_every"]),
        drop_last=bool(d["drop_last"]),
        init=d["init"],
        grad_clip=float(d["grad_clip"]) if d["grad_clip"] is not None else None,
        dataset=d["dataset"],
        workers=_int_or_none(d["workers"]),
        ema=_ema_from(d["ema"]),
        early_stop=_early_stop_from(d["early_stop"]),
        log=_trackers(d["log"]),
        tta=d["tta"] or "none",
        whiten=_whiten_from(d["init"], d["whiten"]),
        eval_batch_size=_int_or_none(d["eval_batch_size"]),
        threads=_int_or_none(d["threads"]),
        overrides=tuple(str(item) for item in d.get("overrides") or ()),
        source=source,
    )


def _trackers(value: str | list[str] | None) -> tuple[str, ...]:
    """`log:` as a tuple in the order written: "mlflow" -> ("mlflow",), "none" or [] -> ()."""
    if value is None:
        return tuple(TRACKERS[:1])
    if value == "none":
        return ()
    return (value,) if isinstance(value, str) else tuple(value)
