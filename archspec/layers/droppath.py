"""`droppath`: stochastic depth. In training each sample's whole input is zeroed with
probability p (and the kept ones scaled by 1/(1-p)); in eval it is the identity.

It belongs last in a residual body: the sample then skips the block (its shortcut still
carries it), which is what lets very deep networks train (Huang et al. 2016, ConvNeXt, ViTs).
torchvision's StochasticDepth in "row" mode does the work.
"""

from __future__ import annotations

from archspec.layers.base import Held, LayerKind, Saved, register


@register
class DropPath(LayerKind):
    name = "droppath"
    summary = "stochastic depth: zero a sample's whole input with probability p in training (off in eval)"
    synonyms = ("drop_path", "stochastic_depth", "stochasticdepth")
    main = "p"
    options = {"p": {"type": "number", "minimum": 0, "maximum": 1, "exclusiveMaximum": 1,
                     "description": "drop probability per sample, 0 <= p < 1"}}
    required = ("p",)
    example = "droppath: 0.1"

    def saved(self, o, shape, out, device):
        if o["p"] == 0:
            return Saved(alias=True)  # returns its input
        return Saved(held=(Held(1),))  # one scaled keep-or-drop value per sample

    def build(self, o, shape):
        from torchvision.ops import StochasticDepth

        return StochasticDepth(o["p"], "row")

    def code(self, o, shape):
        return f"torchvision.ops.StochasticDepth({o['p']!r}, 'row')"
