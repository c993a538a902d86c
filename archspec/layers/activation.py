"""Activations: shape-preserving, parameter-free (relu, relu6, leaky_relu, gelu, silu, hardswish, ...)."""

from __future__ import annotations

from archspec.layers.base import LayerKind, Saved, register


class _Activation(LayerKind):
    torch_name: str = ""
    keeps: str = "input"  # what autograd keeps for its gradient: "input", "output" (the result) or "none"

    def saved(self, o, shape, out, device):
        if self.keeps == "none":
            return Saved(alias=True)  # identity returns its input
        return Saved(input=self.keeps == "input", output=self.keeps == "output")

    def build(self, o, shape):
        from torch import nn

        return getattr(nn, self.torch_name)()

    def code(self, o, shape):
        return f"nn.{self.torch_name}()"


def _simple(kind: str, torch_name: str, text: str, keeps: str, synonyms: tuple[str, ...] = ()) -> type[LayerKind]:
    cls = type(kind.title().replace("_", ""), (_Activation,),
               {"name": kind, "torch_name": torch_name, "summary": text, "example": kind, "options": {},
                "keeps": keeps, "synonyms": synonyms})
    return register(cls)


# relu, tanh and sigmoid differentiate from their result; the others need their input.
_simple("relu", "ReLU", "rectified linear unit", "output", ("rectifier",))
_simple("relu6", "ReLU6", "ReLU clipped at 6 (MobileNetV2)", "input", ("clipped_relu",))
_simple("gelu", "GELU", "Gaussian error linear unit", "input")
_simple("silu", "SiLU", "SiLU / swish", "input", ("swish",))
_simple("hardswish", "Hardswish", "hard swish, x * relu6(x + 3) / 6 (MobileNetV3)", "input", ("hswish",))
_simple("hardsigmoid", "Hardsigmoid", "hard sigmoid, relu6(x + 3) / 6 (MobileNetV3's SE gate)", "input",
        ("hsigmoid",))
_simple("mish", "Mish", "mish, x * tanh(softplus(x))", "input")
_simple("tanh", "Tanh", "hyperbolic tangent", "output")
_simple("sigmoid", "Sigmoid", "logistic sigmoid", "output", ("logistic",))
_simple("identity", "Identity", "no-op (handy as a placeholder in ablations)", "none", ("noop", "none", "passthrough"))


@register
class LeakyReLU(_Activation):
    name = "leaky_relu"
    summary = "leaky ReLU with negative slope"
    main = "slope"
    options = {"slope": {"type": "number", "minimum": 0, "default": 0.01}}
    example = "leaky_relu: 0.1"

    def tidy_options(self, o):
        o["slope"] = float(o["slope"])  # `leaky_relu: 0` builds and prints LeakyReLU(0.0)

    def build(self, o, shape):
        from torch import nn

        return nn.LeakyReLU(o["slope"])

    def code(self, o, shape):
        return f"nn.LeakyReLU({o['slope']})"


class _SoftmaxLike(_Activation):
    keeps = "output"

    def saved(self, o, shape, out, device):
        # CUDA autocast runs (log_)softmax in fp32 (a bf16 input is cast up first).
        return Saved(output=True, compute="fp32" if device == "cuda" else "follow")

    def build(self, o, shape):
        from torch import nn

        return getattr(nn, self.torch_name)(dim=1)

    def code(self, o, shape):
        return f"nn.{self.torch_name}(dim=1)"


@register
class Softmax(_SoftmaxLike):
    name = "softmax"
    torch_name = "Softmax"
    summary = "softmax over classes (rarely wanted: losses take logits)"
    example = "softmax"


@register
class LogSoftmax(_SoftmaxLike):
    name = "log_softmax"
    torch_name = "LogSoftmax"
    summary = "log-softmax over classes (for loss: nll)"
    example = "log_softmax"
