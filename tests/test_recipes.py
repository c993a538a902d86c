"""Training recipes: loading, validation errors, overrides, LR schedules, optimizer, loss, init, CLI."""

from __future__ import annotations

import math
import re
from pathlib import Path

import jsonschema
import pytest
import torch
import yaml
from torch import nn
from torch.nn import functional as F
from typer.testing import CliRunner

from archspec.cli import app
from archspec.errors import ArchspecError
from archspec.recipes import builtin_names, load_recipe, recipe_schema, recipe_to_yaml
from archspec.recipes.build import (
    apply_init,
    build_loss,
    build_optimizer,
    build_scheduler,
    lr_curve,
    param_groups,
    plot_lr,
)

DOCS = Path(__file__).resolve().parents[1] / "docs" / "recipes.md"
BUILTINS = ["adam", "adam_heavy", "cosine", "fast", "onecycle", "quick", "sgd", "step", "warmup_cosine"]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def cosine(t: float, length: float, top: float, bottom: float = 0.0) -> float:
    return bottom + (top - bottom) * (1 + math.cos(math.pi * t / length)) / 2


# --- built-ins -----------------------------------------------------------------------------------


def test_builtin_names():
    assert builtin_names() == BUILTINS


@pytest.mark.parametrize("name", BUILTINS)
def test_every_builtin_loads_validates_and_round_trips(name, tmp_path):
    recipe = load_recipe(name)
    assert recipe.name == name and recipe.source == f"builtin:{name}"
    assert recipe.description and "\n" not in recipe.description
    jsonschema.validate(recipe.to_dict(), recipe_schema())
    # What a run directory stores loads back to the same recipe.
    again = load_recipe(write(tmp_path, "recipe.yaml", recipe_to_yaml(recipe)))
    assert again.to_dict() == recipe.to_dict()
    # And builds: the optimizer and scheduler accept every built-in.
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    scheduler, interval = build_scheduler(recipe, build_optimizer(recipe, model), steps_per_epoch=3)
    assert interval == recipe.schedule.interval
    assert isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler)


def test_builtins_carry_the_reports_settings():
    adam = load_recipe("adam")
    assert (adam.optimizer.name, adam.optimizer.lr, adam.optimizer.weight_decay) == ("adam", 3e-4, 1e-6)
    assert (adam.epochs, adam.batch_size, adam.augment, adam.normalize) == (150, 64, "rotate_flip_shift", True)
    sgd = load_recipe("sgd")
    assert (sgd.optimizer.name, sgd.optimizer.lr, sgd.optimizer.momentum, sgd.batch_size) == ("sgd", 1e-3, 0.9, 4)
    step = load_recipe("step")
    assert (step.epochs, step.schedule.phases[0].type, step.schedule.phases[0].step_size) == (90, "step", 30)
    one = load_recipe("onecycle")
    assert one.optimizer.nesterov and one.schedule.onecycle is not None and one.schedule.interval == "batch"
    quick = load_recipe("quick")
    assert (quick.epochs, quick.batch_size, quick.augment, quick.optimizer.lr) == (2, 128, "none", 1e-3)
    # Sections can be read like the YAML mappings they came from.
    assert adam.optimizer["lr"] == 3e-4 and adam.optimizer.get("momentum", 0.0) == 0.0
    with pytest.raises(KeyError):
        adam.optimizer["nope"]


# --- LR schedules --------------------------------------------------------------------------------


def test_warmup_cosine_reproduces_the_report_64_epochs():
    lrs = lr_curve(load_recipe("warmup_cosine"))
    assert len(lrs) == 64
    # warmup: 3e-4 -> 3e-3 over round(6.4) = 6 epochs; hold to epoch 32; cosine over 32 epochs to 1e-6
    expected = {0: 3e-4, 1: 7.5e-4, 3: 1.65e-3, 5: 2.55e-3, 6: 3e-3, 20: 3e-3, 32: 3e-3,
                33: 1e-6 + (3e-3 - 1e-6) * (1 + math.cos(math.pi / 32)) / 2,
                48: 1.5005e-3,  # half-way down the cosine: (3e-3 + 1e-6) / 2
                63: 1e-6 + (3e-3 - 1e-6) * (1 + math.cos(math.pi * 31 / 32)) / 2}
    for epoch, value in expected.items():
        assert lrs[epoch] == pytest.approx(value, rel=1e-9), epoch
    assert 1e-6 < lrs[63] < 1e-5
    for epoch, lr in enumerate(lrs):  # and every epoch against the closed form
        ref = 3e-4 * (1 + 9 * epoch / 6) if epoch < 6 else 3e-3 if epoch < 32 else cosine(epoch - 32, 32, 3e-3, 1e-6)
        assert lr == pytest.approx(ref, rel=1e-9), epoch


def test_warmup_cosine_reproduces_the_report_10_epochs():
    lrs = lr_curve(load_recipe("warmup_cosine", epochs=10))
    assert len(lrs) == 10
    # 1 warmup epoch at 3e-4, hold 3e-3 for epochs 1-5, cosine over epochs 5..10
    assert lrs[0] == pytest.approx(3e-4, rel=1e-9)
    for epoch in range(1, 6):
        assert lrs[epoch] == pytest.approx(3e-3, rel=1e-9)
    assert lrs[6] == pytest.approx(0.0027136209830652333, rel=1e-9)
    assert lrs[7] == pytest.approx(1e-6 + 2.999e-3 * (1 + math.cos(2 * math.pi / 5)) / 2, rel=1e-9)
    assert lrs[9] == pytest.approx(1e-6 + 2.999e-3 * (1 + math.cos(4 * math.pi / 5)) / 2, rel=1e-9)


def test_lr_override_scales_the_whole_warmup_cosine_curve():
    base = lr_curve(load_recipe("warmup_cosine", epochs=20))
    doubled = lr_curve(load_recipe("warmup_cosine", epochs=20, lr=6e-4))
    assert max(doubled) == pytest.approx(6e-3)
    assert doubled[:10] == pytest.approx([2 * v for v in base[:10]])


def test_cosine_recipe_warms_up_and_anneals_per_batch():
    recipe = load_recipe("cosine", epochs=10)
    steps = 4
    lrs = lr_curve(recipe, steps_per_epoch=steps)
    assert len(lrs) == 40
    warm = 5 * steps  # 5 warmup epochs of 4 batches
    for i in range(warm):
        assert lrs[i] == pytest.approx(1e-3 * (0.001 + 0.999 * i / warm), rel=1e-9), i
    for i in range(warm, 40):
        assert lrs[i] == pytest.approx(cosine(i - warm, 40 - warm, 1e-3), rel=1e-9, abs=1e-15), i
    assert lrs[1] != lrs[0] and lrs[21] != lrs[22]  # it changes within an epoch: stepped per batch


def test_onecycle_recipe():
    recipe = load_recipe("onecycle", epochs=10)
    model = nn.Linear(3, 2)
    optimizer = build_optimizer(recipe, model)
    scheduler, interval = build_scheduler(recipe, optimizer, steps_per_epoch=10)
    assert interval == "batch"
    lrs, momenta = [], []
    for _ in range(100):
        lrs.append(optimizer.param_groups[0]["lr"])
        momenta.append(optimizer.param_groups[0]["momentum"])
        optimizer.step()
        scheduler.step()
    peak = lrs.index(max(lrs))
    assert max(lrs) == pytest.approx(0.1)
    assert peak == 29  # pct_start 0.3 of 100 steps
    assert lrs[0] == pytest.approx(0.1 / 25)
    assert lrs[-1] == pytest.approx(0.1 / 25 / 1e4, rel=0.05)
    assert all(a <= b for a, b in zip(lrs[:peak], lrs[1:peak + 1], strict=True))
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1:], strict=False))
    assert momenta[0] == pytest.approx(0.95) and momenta[peak] == pytest.approx(0.85)
    assert lr_curve(recipe, steps_per_epoch=10) == pytest.approx(lrs)


def test_step_schedule_and_its_per_batch_form():
    lrs = lr_curve(load_recipe("step"))
    assert lrs[29] == pytest.approx(0.1) and lrs[30] == pytest.approx(0.01) and lrs[89] == pytest.approx(1e-3)
    per_batch = lr_curve(load_recipe("step", overrides=["schedule.interval=batch", "epochs=4",
                                                        "schedule.step_size=2"]), steps_per_epoch=3)
    assert per_batch == pytest.approx([0.1] * 6 + [0.01] * 6)  # step_size counts epochs in both forms


def phase_recipe(tmp_path, phases: str, epochs: int = 10, lr: float = 0.1) -> object:
    text = f"""
epochs: {epochs}
batch_size: 8
optimizer: {{name: sgd, lr: {lr}}}
schedule:
  phases:
{phases}
"""
    return load_recipe(write(tmp_path, "phases.yaml", text))


def test_decaying_phase_continues_from_where_the_previous_one_ended(tmp_path):
    # Naively chained, SequentialLR restarts CosineAnnealingLR from the optimizer's lr (0.1).
    recipe = phase_recipe(tmp_path, """\
    - {type: constant, until: 0.3}
    - {type: linear, until: 0.6, start_factor: 1.0, end_factor: 0.5}
    - {type: cosine}""")
    lrs = lr_curve(recipe)
    assert lrs[:6] == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.1 * (1 - 0.5 / 3), 0.1 * (1 - 1 / 3)], rel=1e-9)
    for epoch in range(6, 10):
        assert lrs[epoch] == pytest.approx(cosine(epoch - 6, 4, 0.05), rel=1e-9)


def test_warmup_above_the_base_lr_then_exponential_and_step(tmp_path):
    recipe = phase_recipe(tmp_path, """\
    - {type: linear, epochs: 2, start_factor: 1.0, end_factor: 10.0}
    - {type: exponential, until: 0.6, gamma: 0.5}
    - {type: step, step_size: 2, gamma: 0.1}""")
    expected = [0.1, 0.55, 1.0, 0.5, 0.25, 0.125, 0.0625, 0.0625, 0.00625, 0.00625]
    assert lr_curve(recipe) == pytest.approx(expected, rel=1e-9)


def test_cosine_first_then_linear_with_factor_above_one(tmp_path):
    # The first piece must start at the base lr even though a later piece goes to 2x.
    recipe = phase_recipe(tmp_path, """\
    - {type: cosine, until: 0.5, eta_min: 0.01}
    - {type: linear, start_factor: 0.5, end_factor: 2.0}""", lr=0.1)
    lrs = lr_curve(recipe)
    for epoch in range(5):
        assert lrs[epoch] == pytest.approx(cosine(epoch, 5, 0.1, 0.01), rel=1e-9)
    for k, epoch in enumerate(range(5, 10)):
        assert lrs[epoch] == pytest.approx(0.1 * (0.5 + 1.5 * k / 5), rel=1e-9)


def test_multistep_and_zero_length_phases(tmp_path):
    recipe = phase_recipe(tmp_path, """\
    - {type: linear, until: 0.01, start_factor: 0.1}
    - {type: multistep, milestones: [2, 5], gamma: 0.5}""", epochs=8)
    # the warmup rounds to 0 epochs and is skipped; multistep starts from its end (factor 1.0)
    assert lr_curve(recipe) == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025])


def test_param_groups_follow_the_schedule_in_proportion(tmp_path):
    recipe = load_recipe("warmup_cosine", epochs=10, overrides=["optimizer.lr_mult={bias: 2.0}",
                                                                 "schedule.phases.2.eta_min=0"])
    model = nn.Linear(3, 2)
    optimizer = build_optimizer(recipe, model)
    scheduler, _ = build_scheduler(recipe, optimizer, 1)
    for _ in range(9):
        weight_lr, bias_lr = (g["lr"] for g in optimizer.param_groups)
        assert bias_lr == pytest.approx(2 * weight_lr)
        optimizer.step()
        scheduler.step()


def test_scheduler_state_round_trips_for_resume():
    recipe = load_recipe("warmup_cosine", epochs=12)
    model = nn.Linear(2, 2)
    opt_a = build_optimizer(recipe, model)
    sched_a, _ = build_scheduler(recipe, opt_a, 1)
    for _ in range(5):
        opt_a.step()
        sched_a.step()
    opt_b = build_optimizer(recipe, model)
    sched_b, _ = build_scheduler(recipe, opt_b, 1)
    opt_b.load_state_dict(opt_a.state_dict())
    sched_b.load_state_dict(sched_a.state_dict())
    for _ in range(6):
        opt_a.step()
        sched_a.step()
        opt_b.step()
        sched_b.step()
        assert opt_b.param_groups[0]["lr"] == pytest.approx(opt_a.param_groups[0]["lr"], rel=1e-12)


def test_build_scheduler_rejects_bad_steps_per_epoch():
    recipe = load_recipe("quick")
    with pytest.raises(ArchspecError, match="steps per epoch"):
        build_scheduler(recipe, build_optimizer(recipe, nn.Linear(2, 2)), 0)


# --- overrides -----------------------------------------------------------------------------------


def test_valid_overrides():
    recipe = load_recipe("adam", overrides=["optimizer.lr=1e-3", "schedule.interval=batch", "augment=none",
                                            "loss.label_smoothing=0.1", "grad_clip=1.5", "seed=7"])
    assert recipe.optimizer.lr == 1e-3 and isinstance(recipe.optimizer.lr, float)
    assert recipe.schedule.interval == "batch" and recipe.schedule.phases[0].type == "constant"
    assert (recipe.augment, recipe.loss.label_smoothing, recipe.grad_clip, recipe.seed) == ("none", 0.1, 1.5, 7)
    shortcuts = load_recipe("adam", epochs=3, batch_size=16, lr=0.01)
    assert (shortcuts.epochs, shortcuts.batch_size, shortcuts.optimizer.lr) == (3, 16, 0.01)
    phased = load_recipe("warmup_cosine", overrides=["schedule.phases.0.until=0.2"])
    assert phased.schedule.phases[0].until == 0.2


def test_switching_kind_by_override_drops_the_old_kinds_parameters():
    recipe = load_recipe("onecycle", overrides=["optimizer.name=adam", "schedule.type=cosine"])
    assert recipe.optimizer.name == "adam" and recipe.optimizer.momentum is None
    assert recipe.schedule.onecycle is None and recipe.schedule.phases[0].type == "cosine"
    # null removes a key so its default applies
    assert load_recipe("onecycle", overrides=["optimizer.nesterov=null"]).optimizer.nesterov is None


@pytest.mark.parametrize(("item", "expected"), [
    ("optimizer.lrr=1e-3", '--set optimizer.lrr: unknown key "lrr" (did you mean "lr"?)'),
    ("epoch=3", '--set epoch: unknown key "epoch" (did you mean "epochs"?)'),
    ("schedule.phases.5.until=0.3", "index 5 is out of range"),
    ("optimizer.lr", "is not KEY=VALUE"),
    ("extends=sgd", "extends cannot be overridden"),
    ("normalize.mean=[0.5]", '--set normalize: missing required key "std"'),  # not blamed on the file
])
def test_bad_override_keys(item, expected):
    with pytest.raises(ArchspecError) as info:
        load_recipe("warmup_cosine", overrides=[item])
    assert expected in str(info.value)


@pytest.mark.parametrize(("item", "expected"), [
    ("optimizer.lr=fast", '--set optimizer.lr: expected a number, got string "fast"'),
    ("epochs=0", "--set epochs: must be >= 1, got 0"),
    ("precision=fp8", '--set precision: must be one of auto, fp32, bf16, fp16; got string "fp8"'),
    ("optimizer.betas=[0.9, 2]", "--set optimizer.betas[1]: must be < 1"),
    ("optimizer.momentum=0.9", '--set optimizer.momentum: "momentum" does not apply to adam'),
])
def test_bad_override_values_name_the_option(item, expected):
    with pytest.raises(ArchspecError) as info:
        load_recipe("adam", overrides=[item])
    assert expected in str(info.value)


def test_bad_shortcut_values_name_the_option():
    with pytest.raises(ArchspecError, match="^--batch-size: must be >= 1"):
        load_recipe("adam", batch_size=0)


# --- files, errors with positions, extends -------------------------------------------------------


def test_typo_in_a_recipe_file_points_at_file_line_col(tmp_path):
    path = write(tmp_path, "bad.yaml", "epochs: 5\nbatch_size: 32\noptimzer:\n  name: adam\n  lr: 1.0e-3\n")
    with pytest.raises(ArchspecError) as info:
        load_recipe(path)
    e = info.value
    assert (e.file, e.line, e.col) == (str(path), 3, 1)  # the misspelt key itself
    assert 'unknown key "optimzer" (did you mean "optimizer"?)' in str(e)
    assert str(e).startswith(f"{path}:3:1: optimzer: ")


def test_nested_errors_point_at_the_value(tmp_path):
    path = write(tmp_path, "bad.yaml", """\
epochs: 5
batch_size: 32
optimizer: {name: adam, lr: 1e-3}
schedule:
  phases:
    - {type: linear, until: 0.2, start_factor: 0.1}
    - {type: cosine, eta_mni: 0}
""")
    with pytest.raises(ArchspecError) as info:
        load_recipe(path)
    assert (info.value.line, info.value.path) == (7, "schedule.phases[1].eta_mni")
    assert 'did you mean "eta_min"' in str(info.value)


@pytest.mark.parametrize(("body", "line", "message"), [
    ("optimizer: {name: sgd, lr: 0.1, nesterov: true}", 3, "nesterov needs momentum > 0"),
    ("optimizer: {name: sgd, lr: 0.1, betas: [0.9, 0.99]}", 3, '"betas" does not apply to sgd'),
    ("optimizer: {name: adam, lr: 0.1}\nloss: {name: nll, label_smoothing: 0.1}", 4, "not supported with nll"),
    ("optimizer: {name: adam, lr: 0.1}\nschedule:\n  phases:\n    - {type: constant, until: 0.5}\n"
     "    - {type: cosine, until: 0.8}", 7, "must run to the end of the run"),
    ("optimizer: {name: adam, lr: 0.1}\nschedule:\n  phases:\n    - {type: constant, until: 0.5}\n"
     "    - {type: linear, until: 0.4}\n    - {type: cosine}", 7, "until must increase"),
    ("optimizer: {name: adam, lr: 0.1}\nschedule:\n  phases:\n    - {type: constant}\n    - {type: cosine}",
     6, 'needs "until"'),
    ("optimizer: {name: adam, lr: 0.1}\nschedule: {type: step}", 4, 'schedule type step needs "step_size"'),
    ("optimizer: {name: adagrad, lr: 0.1}\nschedule: onecycle", 4, "adagrad has no momentum to cycle"),
    ("optimizer: {name: adam, lr: 0.1}\ndataset: cifar11", 4, 'did you mean "cifar10"'),
    ("optimizer: {name: adam, lr: 0.1}\nschedule: cosin", 4, 'did you mean "cosine"'),
    ("optimizer: {name: adam, lr: 0.1}\naugment: flip_crp", 4, 'did you mean "flip_crop"'),
])
def test_rules_beyond_the_schema(tmp_path, body, line, message):
    path = write(tmp_path, "r.yaml", f"epochs: 5\nbatch_size: 8\n{body}\n")
    with pytest.raises(ArchspecError) as info:
        load_recipe(path)
    assert message in str(info.value)
    assert info.value.file == str(path) and info.value.line == line


def test_scientific_notation_without_a_dot_is_a_number(tmp_path):
    path = write(tmp_path, "r.yaml", "epochs: 5\nbatch_size: 8\noptimizer: {name: adamw, lr: 1e-3, eps: 1e-8}\n")
    recipe = load_recipe(path)
    assert (recipe.optimizer.lr, recipe.optimizer.eps, recipe.name) == (1e-3, 1e-8, "r")


def test_extends_merges_and_reports_positions_in_the_right_file(tmp_path):
    write(tmp_path, "base.yaml", "extends: adam\nepochs: 20\noptimizer: {lr: 1.0e-3}\n")
    child = write(tmp_path, "child.yaml", "extends: ./base.yaml\nbatch_size: 32\nschedule: cosine\n")
    recipe = load_recipe(child)
    assert recipe.name == "child"
    assert (recipe.epochs, recipe.batch_size, recipe.optimizer.lr) == (20, 32, 1e-3)
    assert recipe.optimizer.weight_decay == 1e-6  # merged from adam
    assert recipe.augment == "rotate_flip_shift" and recipe.schedule.phases[0].type == "cosine"

    bad = write(tmp_path, "bad.yaml", "extends: ./base.yaml\noptimizer:\n  momentum: 0.9\n")
    with pytest.raises(ArchspecError) as info:
        load_recipe(bad)
    assert (info.value.file, info.value.line) == (str(bad), 3)
    assert '"momentum" does not apply to adam' in str(info.value)

    # Another optimizer name replaces the section instead of mixing adam's keys into sgd.
    switched = write(tmp_path, "sgd.yaml", "extends: adam\noptimizer: {name: sgd, lr: 0.05, momentum: 0.9}\n")
    assert load_recipe(switched).optimizer.to_dict() == {"name": "sgd", "lr": 0.05, "weight_decay": 0.0,
                                                         "momentum": 0.9}


def test_extends_errors(tmp_path):
    write(tmp_path, "a.yaml", "extends: ./b.yaml\n")
    write(tmp_path, "b.yaml", "extends: ./a.yaml\n")
    with pytest.raises(ArchspecError, match="extends cycle"):
        load_recipe(tmp_path / "a.yaml")
    typo = write(tmp_path, "typo.yaml", "extends: adma\n")
    with pytest.raises(ArchspecError) as info:
        load_recipe(typo)
    assert (info.value.file, info.value.line) == (str(typo), 1)
    assert 'did you mean "adam"' in str(info.value)


def test_unknown_recipe_name_and_missing_file(tmp_path):
    with pytest.raises(ArchspecError) as info:
        load_recipe("warmup_cosin")
    assert 'did you mean "warmup_cosine"' in str(info.value) and "onecycle" in str(info.value)
    with pytest.raises(ArchspecError, match="not found"):
        load_recipe(tmp_path / "nope.yaml")
    assert load_recipe(None).name == "adam" and load_recipe(None, default="quick").name == "quick"


# --- loss, optimizer, init -----------------------------------------------------------------------


def loss_recipe(name: str, smoothing: float = 0.0):
    return load_recipe("quick", overrides=[f"loss.name={name}", f"loss.label_smoothing={smoothing}"])


def test_build_loss_all_three():
    torch.manual_seed(0)
    logits = torch.randn(6, 4)
    targets = torch.tensor([0, 1, 2, 3, 1, 0])
    ce = build_loss(loss_recipe("cross_entropy"), 4)(logits, targets)
    assert ce.item() == pytest.approx(F.cross_entropy(logits, targets).item())
    logp = F.log_softmax(logits, 1)  # nll takes the model's output as log-probabilities, as it is
    nll = build_loss(loss_recipe("nll"), 4)(logp, targets)
    assert torch.equal(nll, F.nll_loss(logp, targets)) and nll.item() == pytest.approx(ce.item())
    mse = build_loss(loss_recipe("mse"), 4)(logits, targets)
    one_hot = torch.zeros(6, 4)
    one_hot[torch.arange(6), targets] = 1.0
    assert mse.item() == pytest.approx(((logits - one_hot) ** 2).mean().item())
    smoothed = build_loss(loss_recipe("cross_entropy", 0.2), 4)(logits, targets)
    assert smoothed.item() == pytest.approx(F.cross_entropy(logits, targets, label_smoothing=0.2).item())
    assert smoothed.item() != pytest.approx(ce.item())
    # soft (probability) targets, e.g. from mixup, work for all three
    soft = one_hot * 0.7 + 0.3 / 4
    assert build_loss(loss_recipe("nll"), 4)(logp, soft).item() == pytest.approx(
        F.cross_entropy(logits, soft).item())
    assert build_loss(loss_recipe("mse"), 4)(logits, soft).item() == pytest.approx(F.mse_loss(logits, soft).item())


def test_losses_backpropagate():
    logits = torch.randn(3, 5, requires_grad=True)
    for name in ("cross_entropy", "nll", "mse"):
        logits.grad = None
        output = F.log_softmax(logits, 1) if name == "nll" else logits
        build_loss(loss_recipe(name), 5)(output, torch.tensor([4, 0, 2])).backward()
        assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_nll_refuses_outputs_that_are_not_log_probabilities():
    loss = build_loss(loss_recipe("nll"), 4)
    with pytest.raises(ArchspecError, match="expects the model to output log-probabilities") as info:
        loss(torch.randn(6, 4) * 3, torch.zeros(6, dtype=torch.long))
    assert "log_softmax" in info.value.hint


def small_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))


def test_optimizer_param_groups_exclude_bias_and_norm_from_weight_decay():
    recipe = load_recipe("step", overrides=["optimizer.no_decay_on=[bias, norm]", "optimizer.lr_mult={bias: 2.0}"])
    model = small_net()
    optimizer = build_optimizer(recipe, model)
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.defaults["momentum"] == 0.9 and optimizer.defaults["nesterov"] is False
    names = {id(p): n for n, p in model.named_parameters()}
    by_group = {(g["weight_decay"], g["lr"]): sorted(names[id(p)] for p in g["params"]) for g in optimizer.param_groups}
    assert by_group == {
        (5e-4, 0.1): ["0.weight", "4.weight"],
        (0.0, 0.2): ["0.bias", "1.bias", "4.bias"],  # biases: no decay, 2x lr (BN bias too)
        (0.0, 0.1): ["1.weight"],  # BN weight: no decay
    }
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))


def test_optimizer_without_group_options_is_one_group():
    recipe = load_recipe("adam")
    optimizer = build_optimizer(recipe, small_net())
    assert isinstance(optimizer, torch.optim.Adam) and len(optimizer.param_groups) == 1
    assert optimizer.param_groups[0]["weight_decay"] == 1e-6
    with pytest.raises(ArchspecError, match="no parameters"):
        param_groups(nn.ReLU(), recipe)


def test_an_optimizer_step_changes_the_weights():
    for name in ("sgd", "adam", "adamw", "adagrad", "rmsprop"):
        recipe = load_recipe("quick", overrides=[f"optimizer.name={name}", "optimizer.lr=0.1"])
        model = nn.Linear(3, 2)
        before = model.weight.detach().clone()
        optimizer = build_optimizer(recipe, model)
        model(torch.ones(4, 3)).sum().backward()
        optimizer.step()
        assert not torch.equal(before, model.weight), name


def test_init_schemes_change_weights_and_zero_biases():
    torch.manual_seed(0)
    for scheme in ("xavier_uniform", "kaiming_normal"):
        model = nn.Sequential(nn.Conv2d(8, 64, 3), nn.Flatten(), nn.Linear(256, 128))
        before = [p.detach().clone() for p in model.parameters()]
        apply_init(model, scheme)
        for old, new in zip(before, model.parameters(), strict=True):
            assert not torch.equal(old, new)
        assert model[0].bias.abs().sum() == 0 and model[2].bias.abs().sum() == 0
        weight = model[2].weight
        if scheme == "xavier_uniform":
            assert weight.abs().max() <= math.sqrt(6 / (256 + 128))
            assert weight.std().item() == pytest.approx(math.sqrt(2 / (256 + 128)), rel=0.05)
        else:
            assert weight.std().item() == pytest.approx(math.sqrt(2 / 256), rel=0.05)
    model = nn.Linear(3, 3)
    before = model.weight.detach().clone()
    apply_init(model, "default")
    assert torch.equal(before, model.weight)
    with pytest.raises(ArchspecError, match="unknown init"):
        apply_init(model, "orthogonal")


# --- plot, CLI, docs -----------------------------------------------------------------------------


def test_plot_lr_writes_an_image_atomically(tmp_path):
    out = plot_lr(load_recipe("warmup_cosine", epochs=8), tmp_path / "plots" / "lr.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["lr.png"]  # no temp files left behind
    with pytest.raises(ArchspecError, match="image format"):
        plot_lr(load_recipe("quick"), tmp_path / "lr.bmpx")


runner = CliRunner()


def test_cli_recipes_lists_builtins():
    result = runner.invoke(app, ["recipes"])
    assert result.exit_code == 0, result.output
    for name in BUILTINS:
        assert re.search(rf"^\s*{name}\s", result.output, re.M), name


def test_cli_recipes_show_prints_resolved_yaml():
    result = runner.invoke(app, ["recipes", "show", "warmup_cosine", "--set", "optimizer.lr=1e-3"])
    assert result.exit_code == 0, result.output
    data = yaml.safe_load(result.output)
    assert data["optimizer"]["lr"] == 1e-3 and len(data["schedule"]["phases"]) == 3
    bad = runner.invoke(app, ["recipes", "show", "adma"])
    assert bad.exit_code == 2 and 'did you mean "adam"' in bad.output and "Traceback" not in bad.output


def test_cli_recipes_plot(tmp_path):
    out = tmp_path / "lr.png"
    result = runner.invoke(app, ["recipes", "plot", "cosine", "-o", str(out), "--steps-per-epoch", "3",
                                 "--set", "epochs=6"])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:4] == b"\x89PNG" and "18 steps" in result.output


def doc_examples() -> list[str]:
    if not DOCS.exists():
        return []
    return re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), re.S)


def test_docs_have_examples():
    assert len(doc_examples()) >= 5


@pytest.mark.parametrize("example", doc_examples(), ids=lambda text: text.splitlines()[0][:40])
def test_docs_yaml_examples_load(tmp_path, example):
    recipe = load_recipe(write(tmp_path, "example.yaml", example))
    jsonschema.validate(recipe.to_dict(), recipe_schema())
    assert lr_curve(recipe, steps_per_epoch=2)
