"""Rename one model's state_dict keys into another's, by rules that read module names.

A spec's module tree follows the spec (``stage2.repeat1.resblock1.body.0``); a model written in
Python follows its code (``layer2.0.conv1``). A mapping is an ordered list of rules from our
state_dict keys to theirs:

    (regex, template)   the first rule whose regex matches the start of a key rewrites that
                        prefix; the rest of the key (``weight``, ``running_mean``) is kept. A
                        string template takes regex back-references (``\\1``); a function gets a
                        `Key` (groups as text or numbers, and `pos`: where a module sits among
                        its siblings, for torchvision's nn.Sequential indices).
    Leaves(ours, theirs) the innermost layers of our sequence `ours`, in spec order, are the
                        items of their nn.Sequential `theirs`: ``features.0``, ``features.1``, ...
    Blocks(ours, theirs, inner)  every module whose path matches the regex `ours` is one block,
                        numbered 0, 1, 2, ... in spec order (MobileNet's 17 blocks, whatever rows
                        of the table they came from); `theirs(i)` is its path there, and the keys
                        inside it are mapped by the `inner` rules.
    no rule matches     the key is the same in both (``conv1.weight`` in ResNets).

Rules never look at parameter shapes or at the order of parameters, and `mapped_state_dict`
checks the result whole: each of our keys lands on a distinct key of theirs with the same
numbers (a 1x1 conv may stand for a Linear: a reshape), and every key of theirs is used.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from archspec.errors import ArchspecError


class Key:
    """A rule's match on one key, for function templates."""

    def __init__(self, match: re.Match, model) -> None:
        self.match = match
        self.model = model

    def __getitem__(self, i: int) -> str:
        return self.match.group(i)

    def num(self, i: int, delta: int = 0) -> int:
        """Group `i` as a number plus `delta` (archspec names count from 1, Sequentials from 0)."""
        return int(self.match.group(i)) + delta

    def pos(self, i: int) -> int:
        """Where the module whose path ends with group `i` sits among its siblings (from 0)."""
        path = self.match.string[: self.match.end(i)]
        parent, _, name = path.rpartition(".")
        siblings = list((self.model.get_submodule(parent) if parent else self.model)._modules)
        return siblings.index(name)


Template = str | Callable[[Key], str]


@dataclass(frozen=True)
class Leaves:
    """The innermost layers of our sequence `ours`, in order, are their nn.Sequential `theirs`."""

    ours: str
    theirs: str

    def rules(self, model) -> list[tuple[str, str]]:
        from torch import nn

        inner = model.get_submodule(self.ours)
        leaves = [path for path, m in inner.named_modules()
                  if path and not list(m.children()) and not isinstance(m, nn.Sequential)]
        return [(re.escape(f"{self.ours}.{path}."), f"{self.theirs}.{i}.") for i, path in enumerate(leaves)]


@dataclass(frozen=True)
class Blocks:
    """Modules whose path matches `ours` are blocks 0, 1, 2, ...; block i is their `theirs(i)`."""

    ours: str
    theirs: Callable[[int], str]
    inner: tuple = ()


Rule = tuple[str, Template] | Leaves | Blocks


def map_keys(keys: list[str], rules: list, model) -> dict[str, str]:
    """Our key -> their key for every key of `model` in `keys`."""
    out: dict[str, str] = {}
    flat = [r for rule in rules for r in (rule.rules(model) if isinstance(rule, Leaves) else [rule])]
    for rule in flat:
        if isinstance(rule, Blocks):
            out.update(_map_blocks(keys, rule, model))
    for key in keys:
        if key in out:
            continue
        out[key] = key
        for rule in flat:
            if isinstance(rule, Blocks):
                continue
            pattern, template = rule
            m = re.match(pattern, key)
            if m:
                head = template(Key(m, model)) if callable(template) else m.expand(template)
                out[key] = head + key[m.end():]
                break
    return out


def _map_blocks(keys: list[str], rule: Blocks, model) -> dict[str, str]:
    paths = [p for p, _ in model.named_modules() if p and re.fullmatch(rule.ours, p)]
    out = {}
    for i, path in enumerate(paths):
        inside = [k[len(path) + 1:] for k in keys if k.startswith(path + ".")]
        for rel, theirs in map_keys(inside, list(rule.inner), model.get_submodule(path)).items():
            out[f"{path}.{rel}"] = f"{rule.theirs(i)}.{theirs}"
    return out


def _same_numbers(ours, theirs) -> bool:
    """Equal shapes, or equal once size-1 dimensions are dropped (a 1x1 conv standing for a Linear)."""
    return tuple(ours) == tuple(theirs) or [d for d in ours if d != 1] == [d for d in theirs if d != 1]


def mapped_state_dict(rules: list, model, theirs: dict, *, where: str, skip_mismatched: bool = False):
    """(state_dict for our `model` from `theirs`, our keys left out).

    Refuses (ArchspecError) anything but a complete one-to-one mapping; with `skip_mismatched`,
    keys whose sizes differ (a classifier for another number of classes) are left out and listed.
    """
    ours = model.state_dict()
    mapping = map_keys(list(ours), rules, model)
    missing = [f"{k} -> {v}" for k, v in mapping.items() if v not in theirs]
    if missing:
        raise ArchspecError(f"{len(missing)} archspec keys map to keys the state_dict lacks, first: {missing[0]}",
                            file=where)
    targets = Counter(mapping.values())
    twice = sorted(v for v, n in targets.items() if n > 1)
    if twice:
        raise ArchspecError(f"key {twice[0]} would fill more than one archspec key", file=where)
    used = set(targets)
    unused = [k for k in theirs if k not in used]
    if unused:
        raise ArchspecError(f"{len(unused)} keys have no place in the archspec model, first: {unused[0]}",
                            file=where)
    out, skipped = {}, []
    for key, target in mapping.items():
        mine, value = ours[key], theirs[target]
        if not _same_numbers(mine.shape, value.shape):
            if skip_mismatched:
                skipped.append(key)
                continue
            raise ArchspecError(f"{key} is {list(mine.shape)} but {target} is {list(value.shape)}", file=where)
        out[key] = value.reshape(mine.shape)
    return out, skipped
