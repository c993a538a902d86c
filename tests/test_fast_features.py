"""EMA, TTA, whitening init, lr/wd multipliers, the `scale` kind, and the airbench spec + `fast` recipe."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import pytest
import torch
from rich.console import Console
from torch import nn

import archspec
from archspec.errors import ArchspecError
from archspec.recipes import load_recipe

pytestmark = pytest.mark.usefixtures("no_run_plots")  # no test here looks at a run's curves.png / lr.png

ROOT = Path(__file__).resolve().parents[1]


def _file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


# --- the airbench spec ---------------------------------------------------------------------------


def _airbench_reference() -> nn.Sequential:
    """airbench94's make_net(), in plain PyTorch (fp32, no custom init)."""

    def group(cin, cout):
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding="same", bias=False), nn.MaxPool2d(2),
            nn.BatchNorm2d(cout, eps=1e-12, momentum=0.4), nn.GELU(),
            nn.Conv2d(cout, cout, 3, padding="same", bias=False),
            nn.BatchNorm2d(cout, eps=1e-12, momentum=0.4), nn.GELU())

    return nn.Sequential(nn.Conv2d(3, 24, 2, padding=0, bias=True), nn.GELU(), group(24, 64), group(64, 256),
                         group(256, 256), nn.MaxPool2d(3), nn.Flatten(), nn.Linear(256, 10, bias=False))


def test_airbench_spec_matches_reference_implementation():
    spec = archspec.load_spec(ROOT / "specs" / "airbench.yaml")
    assert spec.input_shape == (3, 32, 32) and spec.num_classes == 10 and spec.recipe == "fast"
    reference = _airbench_reference()
    expected = sum(p.numel() for p in reference.parameters())
    assert archspec.summarize(spec).total_params == expected == 1_972_792
    model = archspec.build_model(spec)
    ours = [tuple(p.shape) for p in model.parameters()]
    assert ours == [tuple(p.shape) for p in reference.parameters()]
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 6 and all(m.momentum == 0.4 and m.eps == 1e-12 for m in bns)
    # Same weights -> same logits (ours end in x 1/9).
    reference.load_state_dict(dict(zip(reference.state_dict(), model.state_dict().values(), strict=True)))
    x = torch.randn(2, 3, 32, 32)
    model.eval(), reference.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x) / 9)


def test_scale_kind_multiplies_and_has_no_parameters(tmp_path):
    path = _file(tmp_path, "s.yaml", """
        input: [4]
        classes: 4
        layers:
          - scale: ${1/4}
    """)
    spec = archspec.load_spec(path)
    assert archspec.summarize(spec).total_params == 0
    model = archspec.build_model(spec)
    x = torch.randn(3, 4)
    torch.testing.assert_close(model(x), x / 4)
    from archspec.codegen import to_pytorch

    namespace: dict = {}
    exec(to_pytorch(spec).split('if __name__ == "__main__":')[0], namespace)  # noqa: S102 - our own codegen
    torch.testing.assert_close(namespace["build_model"]()(x), x / 4)


# --- recipe keys ---------------------------------------------------------------------------------


def test_fast_recipe_settings():
    r = load_recipe("fast")
    assert r.optimizer.name == "sgd" and r.optimizer.nesterov and r.batch_size == 1024
    assert r.optimizer.lr_mult == {"bias": 64.0} and r.optimizer.wd_mult == {"bias": 1 / 64}
    assert r.loss.label_smoothing == 0.2 and r.tta == "flip_translate" and r.init == "whiten"
    assert r.ema.every == 5 and r.ema.lookahead and r.ema.warmup_power == 3.0
    assert r.ema.decay == pytest.approx(0.95 ** 5)
    assert r.whiten.samples == 5000 and r.whiten.freeze
    # lr x weight_decay is airbench's per-step decay 0.0153 * 1024 / (1024 * (1 + 1 / 0.15))
    assert r.optimizer.lr * r.optimizer.weight_decay == pytest.approx(0.0153 / (1 + 1 / 0.15), rel=1e-4)


def test_recipe_defaults_and_errors(tmp_path):
    r = load_recipe("adam")
    assert r.ema is None and r.tta == "none" and r.whiten is None
    assert load_recipe("adam", overrides=["init=whiten"]).whiten.eps == 5e-4
    with pytest.raises(ArchspecError, match="only apply with init: whiten"):
        load_recipe("adam", overrides=["whiten={samples: 10}"])
    with pytest.raises(ArchspecError, match="tta"):
        load_recipe("adam", overrides=["tta=mirror"])
    with pytest.raises(ArchspecError, match="ema"):
        load_recipe("adam", overrides=["ema={decay: 1.5}"])
    assert load_recipe("fast", overrides=["ema=null"]).ema is None


def test_lr_and_wd_multipliers_per_group():
    from archspec.recipes.build import build_optimizer

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))
    model(torch.zeros(1, 3, 5, 5))
    r = load_recipe("fast")
    opt = build_optimizer(r, model)
    by_param = {id(p): g for g in opt.param_groups for p in g["params"]}
    wd, lr = r.optimizer.weight_decay, r.optimizer.lr
    conv, bn, lin = model[0], model[1], model[3]
    for p in (conv.weight, bn.weight, lin.weight):
        assert by_param[id(p)]["lr"] == pytest.approx(lr) and by_param[id(p)]["weight_decay"] == pytest.approx(wd)
    for p in (conv.bias, bn.bias, lin.bias):  # 64x lr, same lr x weight_decay
        g = by_param[id(p)]
        assert g["lr"] == pytest.approx(64 * lr) and g["lr"] * g["weight_decay"] == pytest.approx(lr * wd)


# --- EMA -----------------------------------------------------------------------------------------


def test_ema_update_rule_every_and_buffers():
    from archspec.train.ema import ModelEMA

    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    start = {k: v.clone() for k, v in model.state_dict().items()}
    ema = ModelEMA(model, decay=0.9, every=2)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
        model[1].running_mean.add_(2.0)
        model[1].num_batches_tracked.add_(3)
    ema.update(model)  # step 1: skipped (every 2)
    torch.testing.assert_close(ema.module[0].weight, start["0.weight"])
    ema.update(model)  # step 2: averaged
    torch.testing.assert_close(ema.module[0].weight, start["0.weight"] + 0.1)
    torch.testing.assert_close(ema.module[1].running_mean, start["1.running_mean"] + 0.2)
    assert int(ema.module[1].num_batches_tracked) == 3
    assert ema.step == 2 and not any(p.requires_grad for p in ema.module.parameters())


def test_ema_warmup_power_and_lookahead():
    from archspec.train.ema import ModelEMA

    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = ModelEMA(model, decay=0.8, warmup_power=3, lookahead=True, total_steps=4)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)  # d = 0.8 * (1/4)**3 = 0.0125
    assert ema.current_decay() == pytest.approx(0.0125)
    assert float(ema.module.weight) == pytest.approx(1 - 0.0125)
    assert float(model.weight.detach()) == pytest.approx(1 - 0.0125)  # copied back


# --- TTA -----------------------------------------------------------------------------------------


def test_tta_flip_and_flip_translate():
    from archspec.train.tta import tta_logits

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
    x = torch.randn(2, 3, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(tta_logits(model, x, "none"), model(x))
        flip = tta_logits(model, x, "flip")
        torch.testing.assert_close(flip, (model(x) + model(x.flip(-1))) / 2)
        assert not torch.allclose(flip, model(x))
        # flipping the input does not change flip-TTA logits
        torch.testing.assert_close(tta_logits(model, x.flip(-1), "flip"), flip)
        padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
        views = [x, padded[:, :, :4, :4], padded[:, :, 2:, 2:]]
        mirrored = [(model(v) + model(v.flip(-1))) / 2 for v in views]
        expected = 0.5 * mirrored[0] + 0.25 * mirrored[1] + 0.25 * mirrored[2]
        torch.testing.assert_close(tta_logits(model, x, "flip_translate"), expected)


# --- whitening -----------------------------------------------------------------------------------


def test_whiten_first_conv_whitens_patches():
    from archspec.train.whiten import whiten_first_conv

    torch.manual_seed(0)
    base = torch.randn(64, 1, 12, 12)
    images = torch.cat([base, 0.5 * base + 0.1 * torch.randn_like(base), torch.randn_like(base)], 1)  # correlated
    model = nn.Sequential(nn.Conv2d(3, 24, 2, padding=0), nn.GELU(), nn.Conv2d(24, 4, 3))
    conv = whiten_first_conv(model, images, eps=1e-8)
    assert conv is model[0] and not conv.weight.requires_grad and conv.bias.requires_grad
    assert torch.count_nonzero(conv.bias) == 0
    torch.testing.assert_close(conv.weight[12:], -conv.weight[:12])
    with torch.no_grad():
        out = conv(images)[:, :12].permute(0, 2, 3, 1).reshape(-1, 12).double()
    second_moment = out.T @ out / out.shape[0]
    torch.testing.assert_close(second_moment, torch.eye(12, dtype=torch.float64), atol=1e-3, rtol=0)


def test_whiten_first_conv_errors_and_uint8():
    from archspec.train.whiten import whiten_first_conv

    images = torch.randint(0, 256, (8, 3, 8, 8), dtype=torch.uint8)
    with pytest.raises(ArchspecError, match="24 output channels"):
        whiten_first_conv(nn.Sequential(nn.Conv2d(3, 16, 2)), images)
    with pytest.raises(ArchspecError, match="has none"):
        whiten_first_conv(nn.Sequential(nn.Flatten()), images)
    model = nn.Sequential(nn.Conv2d(3, 5, 2))  # fewer filters: the top components, unfrozen
    whiten_first_conv(model, images, freeze=False, mean=torch.full((3, 1, 1), 0.5), std=torch.full((3, 1, 1), 0.25))
    assert model[0].weight.requires_grad and torch.isfinite(model[0].weight).all()


# --- training with everything on -----------------------------------------------------------------


TINY = """
    name: tiny_whiten
    dataset: synthetic
    layers:
      - conv: {out: 24, kernel: 2, padding: 0}
      - gelu
      - pool: 4
      - conv: {out: 8, bias: false}
      - bn
      - gelu
      - gap
      - flatten
      - linear: {out: classes, bias: false}
      - scale: 0.5
"""


def _train_fast(spec, *, epochs: int, limit_train: int, limit_test: int, **kwargs):
    from archspec.train.loop import train

    recipe = load_recipe("fast", overrides=["ema.every=2"], epochs=epochs, batch_size=8)
    return train(spec, recipe, dataset="synthetic", device="cpu", workers=0, limit_train=limit_train,
                 limit_test=limit_test, console=Console(file=io.StringIO()), progress=False, **kwargs)


def test_fast_recipe_one_epoch_on_airbench_with_ema_tta_whiten(tmp_path):
    from archspec.data.loader import make_loaders
    from archspec.train.checkpoint import load_checkpoint
    from archspec.train.evaluation import evaluate
    from archspec.train.whiten import whiten_first_conv

    spec = archspec.load_spec(ROOT / "specs" / "airbench.yaml", dataset="synthetic")
    run = _train_fast(spec, epochs=1, limit_train=16, limit_test=8, run_dir=tmp_path / "run")
    assert run.status == "completed" and run.metrics[-1]["test_acc"] is not None
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["ema"]["step"] == 2  # 16 images / 8 per batch

    # The whitening conv holds the whitening filters of the training images, untouched by training.
    bundle = make_loaders("synthetic", input_shape=spec.input_shape, num_classes=10, batch_size=8,
                          limit_train=16, limit_test=8, seed=0)
    reference = archspec.build_model(spec)
    images, mean, std = bundle.train.raw_images(5000)  # what set-up gives the whitening
    whiten_first_conv(reference, images, 5e-4, mean=mean, std=std)
    torch.testing.assert_close(ckpt["model"]["whiten.weight"], reference.whiten.weight)
    torch.testing.assert_close(ckpt["ema"]["model"]["whiten.weight"], reference.whiten.weight)

    # `archspec eval` uses the EMA weights and the TTA the run used: the same numbers.
    result = evaluate(spec, tmp_path / "run" / "last.pt", dataset="synthetic", device="cpu", limit_test=8,
                      workers=0)
    assert result.test_acc == run.metrics[-1]["test_acc"]
    assert result.test_loss == pytest.approx(run.metrics[-1]["test_loss"], rel=1e-4)


def test_ema_state_resumes_exactly(tmp_path):
    from archspec.train.checkpoint import load_checkpoint

    spec = archspec.load_spec(_file(tmp_path, "tiny.yaml", TINY))
    common = dict(epochs=2, limit_train=24, limit_test=8)
    straight = _train_fast(spec, run_dir=tmp_path / "straight", **common)
    first = _train_fast(spec, run_dir=tmp_path / "pieces", stop_after_epoch=1, **common)
    assert first.status == "interrupted"
    second = _train_fast(spec, resume=tmp_path / "pieces", **common)
    assert straight.status == second.status == "completed"
    full = load_checkpoint(tmp_path / "straight" / "last.pt")
    resumed = load_checkpoint(tmp_path / "pieces" / "last.pt")
    assert resumed["ema"]["step"] == full["ema"]["step"] == 6
    for part in ("model", "ema"):
        state = full[part] if part == "model" else full["ema"]["model"]
        other = resumed[part] if part == "model" else resumed["ema"]["model"]
        for key, value in state.items():
            torch.testing.assert_close(other[key], value, rtol=0, atol=0)
    assert [r["test_acc"] for r in second.metrics] == [r["test_acc"] for r in straight.metrics]


# --- trainable: bias, conv init: dirac ----------------------------------------------------------


def test_trainable_bias_freezes_all_but_biases_and_optimizer_skips_frozen(tmp_path):
    from archspec.recipes import load_recipe
    from archspec.recipes.build import build_optimizer

    path = _file(tmp_path, "s.yaml", """
        input: [3, 8, 8]
        classes: 4
        layers:
          - conv: {out: 6, trainable: bias}
          - relu                           # (a bias right before BatchNorm would get no gradient)
          - bn: {trainable: bias}
          - flatten
          - linear: {out: 4, trainable: false}
    """)
    spec = archspec.load_spec(path)
    model = archspec.build_model(spec)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"conv1.bias", "bn1.bias"}
    summary = archspec.summarize(spec)
    assert summary.trainable_params == 6 + 6 and summary.total_params == 6 * 3 * 9 + 6 + 12 + 6 * 64 * 4 + 4
    optimizer = build_optimizer(load_recipe("sgd"), model)
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert in_optimizer == {id(p) for p in model.parameters() if p.requires_grad}
    # One step moves only the biases.
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    torch.nn.functional.cross_entropy(model(torch.randn(5, 3, 8, 8)), torch.tensor([0, 1, 2, 3, 0])).backward()
    optimizer.step()
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert moved == {"conv1.bias", "bn1.bias"}
    # The generated plain-PyTorch code freezes the same parameters.
    from archspec.codegen import to_pytorch

    namespace: dict = {}
    exec(to_pytorch(spec).split('if __name__ == "__main__":')[0], namespace)  # noqa: S102 - our own codegen
    generated = namespace["build_model"]()
    assert {n for n, p in generated.named_parameters() if p.requires_grad} == trainable


def test_trainable_rejects_other_values_with_location(tmp_path):
    path = _file(tmp_path, "s.yaml", """
        input: [3, 8, 8]
        classes: 4
        layers:
          - conv: {out: 6, trainable: weights}
    """)
    with pytest.raises(archspec.ArchspecError) as err:
        archspec.load_spec(path)
    text = str(err.value)
    assert "s.yaml:4:31: layers[0].conv.trainable: must be one of true, false, bias" in text


def test_conv_dirac_init_starts_as_identity(tmp_path):
    path = _file(tmp_path, "s.yaml", """
        input: [4, 6, 6]
        classes: 2
        layers:
          - conv: {out: 8, bias: false, init: dirac}
          - conv: {out: 2, kernel: 5, init: dirac}
          - gap
          - flatten
    """)
    spec = archspec.load_spec(path)
    model = archspec.build_model(spec)
    conv1, conv2 = model.conv1, model.conv2
    x = torch.randn(2, 4, 6, 6)
    with torch.no_grad():
        y = conv1(x)
    torch.testing.assert_close(y[:, :4], x)  # the first `in` filters pass their channel through
    assert not torch.equal(y[:, 4:], torch.zeros_like(y[:, 4:]))  # the rest keep the default init
    w2 = conv2.weight.detach()  # out < in: every filter is an identity of one input channel
    assert w2.shape == (2, 8, 5, 5) and w2.abs().sum() == 2 and w2[0, 0, 2, 2] == 1 and w2[1, 1, 2, 2] == 1
    from archspec.codegen import to_pytorch

    namespace: dict = {}
    exec(to_pytorch(spec).split('if __name__ == "__main__":')[0], namespace)  # noqa: S102 - our own codegen
    generated = namespace["build_model"]()
    torch.testing.assert_close(generated[0].weight[:4], conv1.weight[:4])
    assert archspec.summarize(spec).total_params == 8 * 4 * 9 + 2 * 8 * 25 + 2  # counting on meta works


def test_conv_dirac_init_refuses_groups(tmp_path):
    path = _file(tmp_path, "s.yaml", """
        input: [4, 6, 6]
        classes: 4
        layers:
          - conv: {out: 8, groups: 2, init: dirac}
    """)
    with pytest.raises(archspec.ArchspecError, match="dirac needs groups: 1"):
        archspec.load_spec(path)
