"""Property-based: random and mutated specs either load (and count) or raise ArchspecError; nothing else."""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import archspec
from archspec.errors import ArchspecError
from archspec.layers import REGISTRY

KINDS = sorted(k for k in REGISTRY if k != "module") + ["repeat", "stage", "nonsense"]
OPTION_NAMES = sorted({o for k in REGISTRY.values() for o in k.options} | {"bogus", "name", "trainable"})
SCALARS = st.one_of(
    st.integers(-3, 70), st.floats(-2, 3), st.just(float("nan")), st.booleans(), st.none(),
    st.sampled_from(["same", "max", "avg", "sum", "concat", "gated", "$w", "${w*2}", "${w/0}", "classes", "x", ""]),
)


def layer_strategy(depth: int):
    scalar_layer = st.builds(lambda k, v: {k: v}, st.sampled_from(KINDS), SCALARS)
    bare = st.sampled_from(KINDS)
    options = st.dictionaries(st.sampled_from(OPTION_NAMES), SCALARS, max_size=4)
    opt_layer = st.builds(lambda k, o: {k: o}, st.sampled_from(KINDS), options)
    leaf = st.one_of(bare, scalar_layer, opt_layer)
    if depth == 0:
        return leaf
    inner = st.lists(layer_strategy(depth - 1), min_size=0, max_size=4)
    nested = st.one_of(
        st.builds(lambda ls, t: {"repeat": {"times": t, "layers": ls}}, inner, st.integers(-1, 3)),
        st.builds(lambda ls: {"residual": {"layers": ls}}, inner),
        st.builds(lambda a, b, m: {"parallel": {"merge": m, "paths": [a, b]}}, inner, inner,
                  st.sampled_from(["sum", "concat", "mean", "gated", "bad"])),
    )
    return st.one_of(leaf, nested)


SPECS = st.fixed_dictionaries(
    {"layers": st.lists(layer_strategy(2), min_size=0, max_size=8)},
    optional={
        "dataset": st.sampled_from(["cifar10", "mnist", "nope"]),
        "input": st.lists(st.integers(-1, 40), min_size=0, max_size=4),
        "classes": st.integers(-1, 12),
        "vars": st.dictionaries(st.sampled_from(["w", "p", "classes"]), SCALARS, max_size=3),
        "blocks": st.just({"stage": {"params": {"out": None}, "layers": [{"conv": "$out"}, "relu"]}}),
    },
)


def check(path):
    try:
        spec = archspec.load_spec(path)
    except ArchspecError as e:
        assert str(e)  # has a message
        return
    summary = archspec.summarize(spec)
    assert summary.total_params >= 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(SPECS)
def test_random_specs_load_or_raise_archspec_error(tmp_path, data):
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(data))
    check(path)


VALID = """dataset: cifar10
vars: {w: 8}
blocks:
  stage:
    params: {out: null}
    layers: [conv: $out, bn, relu, pool: 2]
layers:
  - stage: $w
  - residual: {layers: [conv: "${w}", bn]}
  - parallel: {merge: concat, times: 2, layers: [conv: 4]}
  - repeat: {times: 2, layers: [conv: 8, relu]}
  - flatten
  - dropout: 0.2
  - linear: classes
"""


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.sampled_from(
    ["", " ", "\n", ":", "-", "{", "}", "[", "]", "$", "0", "9", "x", "&a", "*a", "!!python/name:os.system", "\t"])),
    min_size=1, max_size=4))
def test_mutated_specs_load_or_raise_archspec_error(tmp_path, edits):
    text = VALID
    for pos, insert in edits:
        pos = min(pos, len(text))
        text = text[:pos] + insert + text[pos + 1:]
    path = tmp_path / "mut.yaml"
    path.write_text(text)
    check(path)
