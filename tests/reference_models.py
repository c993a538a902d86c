"""Ground truth for the shipped specs: each architecture written in plain PyTorch.

These builders are written the way the coursework reports (../shared/seeds/) wrote them, with
nn.Sequential and a few small nn.Module classes, and deliberately share no code with archspec.
tests/test_specs.py checks that `archspec count specs/X.yaml` equals `count(builder())`, and for
the small nets that the archspec model computes the same function once given the same weights.

Where a report gives a parameter count, the matching constant in PUBLISHED is that number and
the builder is checked against it; where the report leaves a detail open (variant 3's ResBlock,
MyNet's pools), the docstring says which reading reproduces the published count exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Counts printed in the reports (or, for the well-known CIFAR nets, by their reference code).
PUBLISHED = {
    "c5l3": 7_281_802,  # "7.28M" / "7.29M"
    "variant1": 7_286_922,  # "7.29M"
    "variant2": 127_055_370,  # "127.06M"
    "variant3": 134_870_282,  # "134.87M"
    "variant4": 127_055_370,
    "variant5": 127_055_370,
    "tutorial": 62_006,
    "linear": 30_730,
    "mlp": 346_994,
    "mlp_norelu": 346_994,
    "mlp_tanh": 346_994,
    "mynet": 152_820,
    "mynet500": 657_220,
    "vgg16": 14_728_266,
    "resnet18": 11_173_962,
}


def count(model: nn.Module) -> int:
    """Total number of parameters, trainable or not, as the reports count them."""
    return sum(p.numel() for p in model.parameters())


# --- MDS5122 HW1 (seeds 000 and 001): the C5L3 baseline and its variants -------------------------


def c5l3() -> nn.Sequential:
    """The baseline: 5 convs 3-128-256-512-512-256, pools after convs 1, 2, 5, 4 linears."""
    return nn.Sequential(
        nn.Conv2d(3, 128, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.Dropout(0.3),
        nn.Conv2d(128, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.Dropout(0.3),
        nn.Conv2d(256, 512, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(512, 512, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(512, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.Dropout(0.3),
        nn.Flatten(),
        nn.Linear(256 * 4 * 4, 512), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.Linear(512, 256), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.Linear(256, 128), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.Linear(128, 10),
    )


def variant1() -> nn.Sequential:
    """Variant 1: BN after every conv (after the pool where there is one), no conv dropout,
    linear dropout 0.3 followed by BatchNorm1d."""
    return nn.Sequential(
        nn.Conv2d(3, 128, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.BatchNorm2d(128),
        nn.Conv2d(128, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.BatchNorm2d(256),
        nn.Conv2d(256, 512, 3, padding=1), nn.ReLU(inplace=True), nn.BatchNorm2d(512),
        nn.Conv2d(512, 512, 3, padding=1), nn.ReLU(inplace=True), nn.BatchNorm2d(512),
        nn.Conv2d(512, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.BatchNorm2d(256),
        nn.Flatten(),
        nn.Linear(256 * 4 * 4, 512), nn.ReLU(inplace=True), nn.Dropout(0.3), nn.BatchNorm1d(512),
        nn.Linear(512, 256), nn.ReLU(inplace=True), nn.Dropout(0.3), nn.BatchNorm1d(256),
        nn.Linear(256, 128), nn.ReLU(inplace=True), nn.Dropout(0.3), nn.BatchNorm1d(128),
        nn.Linear(128, 10),
    )


def _wide_head(flat: int) -> list[nn.Module]:
    """The 4-linear head shared by variants 2-5: flat-2048-1024-512-10 with dropout 0.3 + BN1d."""
    return [
        nn.Flatten(),
        nn.Linear(flat, 2048), nn.ReLU(inplace=True), nn.Dropout(0.3), nn.BatchNorm1d(2048),
        nn.Linear(2048, 1024), nn.ReLU(inplace=True), nn.Dropout(0.3), nn.BatchNorm1d(1024),
        nn.Linear(1024, 512), nn.ReLU(inplace=True), nn.Dropout(0.3), nn.BatchNorm1d(512),
        nn.Linear(512, 10),
    ]


def variant2(in_channels: int = 3, size: int = 32) -> nn.Sequential:
    """Variant 2 ("deeper and wider"): 7 convs 3-256-512-1024-1024-2048-2048-1024, pools after
    convs 1, 2 and 7. Variants 4 and 5 are this network with other recipes; with
    ``in_channels=1, size=28`` it is the report's MNIST retarget (28 -> 14 -> 7 -> 3, flatten 1024*3*3)."""
    final = size // 2 // 2 // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.BatchNorm2d(256),
        nn.Conv2d(256, 512, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.BatchNorm2d(512),
        nn.Conv2d(512, 1024, 3, padding=1), nn.ReLU(inplace=True), nn.BatchNorm2d(1024),
        nn.Conv2d(1024, 1024, 3, padding=1), nn.ReLU(inplace=True), nn.BatchNorm2d(1024),
        nn.Conv2d(1024, 2048, 3, padding=1), nn.ReLU(inplace=True), nn.BatchNorm2d(2048),
        nn.Conv2d(2048, 2048, 3, padding=1), nn.ReLU(inplace=True), nn.BatchNorm2d(2048),
        nn.Conv2d(2048, 1024, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.BatchNorm2d(1024),
        *_wide_head(1024 * final * final),
    )


def variant2_mnist() -> nn.Sequential:
    """Variant 5 retrained on MNIST (1x28x28): same layers, first conv takes 1 channel."""
    return variant2(in_channels=1, size=28)


class ResBlock(nn.Module):
    """Variant 3's residual block: one 3x3 conv (with bias) + BN, plus a shortcut, ReLU after the add.

    The report prints ResBlock(in, out) calls but not the class. Of the plausible readings
    (conv bias or not, BN or not, 1x1 projection with or without bias and BN, one or two convs),
    exactly one gives the published 134,870,282: conv3x3 WITH bias + BN, and, when the channel
    count changes, a 1x1 projection conv WITH bias + BN (identity shortcut otherwise).
    """

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=True)
        self.bn = nn.BatchNorm2d(cout)
        if cin == cout:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=True), nn.BatchNorm2d(cout))

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)) + self.shortcut(x))


def variant3() -> nn.Sequential:
    """Variant 3: variant 2's stem, then EIGHT ResBlocks (the text says seven, the code has eight),
    2x2 max pools after the 1st, 3rd and 8th, then variant 2's head."""
    return nn.Sequential(
        nn.Conv2d(3, 256, 3, padding=1), nn.ReLU(inplace=True), nn.BatchNorm2d(256),
        ResBlock(256, 256),
        nn.MaxPool2d(2),
        ResBlock(256, 512),
        ResBlock(512, 512),
        nn.MaxPool2d(2),
        ResBlock(512, 1024),
        ResBlock(1024, 1024),
        ResBlock(1024, 2048),
        ResBlock(2048, 2048),
        ResBlock(2048, 1024),
        nn.MaxPool2d(2),
        *_wide_head(1024 * 4 * 4),
    )


# --- Neural Network CW (seed 002): the adaptive Block model ---------------------------------------


class Block(nn.Module):
    """k parallel conv paths (conv3x3-ReLU-Dropout(0.1)-MaxPool 2x2), mixed by per-sample weights
    computed from the block input (AdaptiveAvgPool2d(1) + Linear(in, k) + softmax), then BatchNorm2d."""

    def __init__(self, cin: int, cout: int, k: int):
        super().__init__()
        self.paths = nn.ModuleList(
            nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.Dropout(0.1), nn.MaxPool2d(2, 2))
            for _ in range(k)
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.gate = nn.Linear(cin, k)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        w = torch.softmax(self.gate(self.pool(x).flatten(1)), dim=1)  # (B, k)
        outs = torch.stack([p(x) for p in self.paths], dim=1)  # (B, k, C, H, W)
        return self.bn((w[:, :, None, None, None] * outs).sum(dim=1))


class AdaptiveBlockModel(nn.Module):
    """Model([3, 64, 128, 256, 512], N=4, k=6): four Blocks, then AdaptiveAvgPool2d(1) and a
    4-layer MLP 512-256-128-64-10. The report publishes no count; test_specs computes it."""

    def __init__(self, channels=(3, 64, 128, 256, 512), n: int = 4, k: int = 6, classes: int = 10):
        super().__init__()
        self.blocks = nn.Sequential(*(Block(channels[i], channels[i + 1], k) for i in range(n)))
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(channels[n], 256), nn.ReLU(),
            nn.Linear(256, 128), nn.ReLU(),
            nn.Linear(128, 64), nn.ReLU(),
            nn.Linear(64, classes),
        )

    def forward(self, x):
        return self.classifier(self.blocks(x))


def adaptive_block() -> AdaptiveBlockModel:
    return AdaptiveBlockModel()


# --- HW2 (seed 003): the PyTorch CIFAR-10 tutorial and its fully connected variants --------------


def tutorial() -> nn.Sequential:
    """The PyTorch 60-minute-blitz CIFAR-10 net as the report used it: two 5x5 convs (6 and 16
    filters, no padding) each followed by ReLU and a 2x2 max pool, then fully connected 400-120-84-10."""
    return nn.Sequential(
        nn.Conv2d(3, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, 10),
    )


class LinearNet(nn.Module):
    """Question 2: a single fully connected layer 3072 -> 10."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(32 * 32 * 3, 10)

    def forward(self, val):
        return self.fc(val.view(-1, 32 * 32 * 3))


def linear() -> LinearNet:
    return LinearNet()


class MLPNet(nn.Module):
    """Question 3: 3072 -> 110 -> 74 -> 10, with or without ReLU between the layers."""

    def __init__(self, relu: bool = True, tanh: bool = False):
        super().__init__()
        self.relu = relu
        self.tanh = tanh
        self.fc = nn.Linear(32 * 32 * 3, 110)
        self.fc1 = nn.Linear(110, 74)
        self.fc2 = nn.Linear(74, 10)

    def forward(self, val):
        act = torch.tanh if self.tanh else F.relu if self.relu else (lambda t: t)
        val = val.view(-1, 32 * 32 * 3)
        val = act(self.fc(val))
        val = act(self.fc1(val))
        return self.fc2(val)


def mlp() -> MLPNet:
    return MLPNet(relu=True)


def mlp_norelu() -> MLPNet:
    return MLPNet(relu=False)


def mlp_tanh() -> MLPNet:
    return MLPNet(relu=False, tanh=True)


# --- Project 2 (seed 004): MyNet and VGG-A -------------------------------------------------------


class MyNet(nn.Module):
    """conv 20@5x5 + BN, conv 50@5x5 + BN, fc hidden, fc 10, log-softmax (trained with nll_loss).

    The report gives only the counts 152,820 (hidden 100) and 657,220 (hidden 500). Both hold
    exactly when each conv block is conv-BN-ReLU-MaxPool(2): 32 -> 28 -> 14 -> 10 -> 5, so the
    first fc sees 50*5*5 = 1250 features (1520 + 40 + 25050 + 100 + 1251*h + 10*h + 10).
    """

    def __init__(self, hidden: int = 100):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 20, 5)
        self.bn1 = nn.BatchNorm2d(20)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.bn2 = nn.BatchNorm2d(50)
        self.fc1 = nn.Linear(50 * 5 * 5, hidden)
        self.fc2 = nn.Linear(hidden, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        return F.log_softmax(self.fc2(x), dim=1)


def mynet() -> MyNet:
    return MyNet(100)


def mynet500() -> MyNet:
    return MyNet(500)


# VGG stages as (convolutions, width); every stage ends in a 2x2 max pool.
VGG_A_STAGES = ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512))


def _vgg_features(stages, batch_norm: bool) -> list[nn.Module]:
    """3x3 convs (padding 1, each followed by BatchNorm when asked, then ReLU), stage by stage."""
    layers: list[nn.Module] = []
    cin = 3
    for convs, width in stages:
        for _ in range(convs):
            layers.append(nn.Conv2d(cin, width, 3, padding=1))
            layers.extend([nn.BatchNorm2d(width)] if batch_norm else [])
            layers.append(nn.ReLU(True))
            cin = width
        layers.append(nn.MaxPool2d(2, 2))
    return layers


def vgg_a(batch_norm: bool = False) -> nn.Sequential:
    """VGG-A (VGG-11 convs) for 32x32 as in the loss-landscape project's VGG_A / VGG_A_BatchNorm:
    five pooled stages leave 512x1x1, classifier 512-512-512-10 with ReLU, no dropout."""
    return nn.Sequential(
        *_vgg_features(VGG_A_STAGES, batch_norm),
        nn.Flatten(),
        nn.Linear(512, 512), nn.ReLU(True),
        nn.Linear(512, 512), nn.ReLU(True),
        nn.Linear(512, 10),
    )


def vgg_a_bn() -> nn.Sequential:
    return vgg_a(batch_norm=True)


# --- Well-known CIFAR nets (the usual 32x32 versions) -------------------------------------------

VGG16_STAGES = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))


def vgg16() -> nn.Sequential:
    """VGG-16 for CIFAR: conv-BN-ReLU stages, AvgPool2d(1, 1) (a no-op kept from the original),
    one linear 512 -> 10."""
    return nn.Sequential(
        *_vgg_features(VGG16_STAGES, batch_norm=True),
        nn.AvgPool2d(kernel_size=1, stride=1),
        nn.Flatten(),
        nn.Linear(512, 10),
    )


class _Residual(nn.Module):
    """relu(body(x) + shortcut(x))."""

    def __init__(self, body: nn.Module, shortcut: nn.Module):
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x):
        return F.relu(self.body(x) + self.shortcut(x))


def _two_conv_block(cin: int, cout: int, stride: int) -> _Residual:
    """ResNet's basic block: 3x3 conv (stride) - BN - ReLU - 3x3 conv - BN, added to the input, or to a
    strided 1x1 conv + BN of it when the block changes the shape; ReLU after the sum."""
    body = nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
    )
    same_shape = stride == 1 and cin == cout
    shortcut = nn.Identity() if same_shape else nn.Sequential(
        nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
    return _Residual(body, shortcut)


def resnet18(classes: int = 10) -> nn.Sequential:
    """ResNet-18 for 32x32 inputs: a 3x3 stem without max pool, four stages of two basic blocks
    (64, 128, 256, 512 channels; stages 2-4 halve the size), a 4x4 average pool, linear 512 -> 10."""
    blocks, cin = [], 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        blocks += [_two_conv_block(cin, cout, stride), _two_conv_block(cout, cout, 1)]
        cin = cout
    return nn.Sequential(
        nn.Conv2d(3, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
        *blocks,
        nn.AvgPool2d(4), nn.Flatten(), nn.Linear(512, classes),
    )


# --- A small MNIST net for the quick-start ------------------------------------------------------


def mnist_quick() -> nn.Sequential:
    """conv 16 - pool - conv 32 - pool - fc 64 - fc 10 on 1x28x28 (specs/mnist_quick.yaml)."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 64), nn.ReLU(),
        nn.Linear(64, 10),
    )


# --- airbench94 (KellerJordan/cifar10-airbench), as its make_net() builds it ---------------------


class _Mul(nn.Module):
    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        return x * self.scale


def airbench() -> nn.Sequential:
    """Whitening conv 3->24 (2x2) + GELU, three ConvGroups 64/256/256, maxpool 3, linear (no bias) x 1/9."""

    def group(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding="same", bias=False), nn.MaxPool2d(2),
            nn.BatchNorm2d(cout, eps=1e-12, momentum=0.4), nn.GELU(),
            nn.Conv2d(cout, cout, 3, padding="same", bias=False),
            nn.BatchNorm2d(cout, eps=1e-12, momentum=0.4), nn.GELU(),
        )

    return nn.Sequential(
        nn.Conv2d(3, 24, 2, padding=0), nn.GELU(),
        group(24, 64), group(64, 256), group(256, 256),
        nn.MaxPool2d(3), nn.Flatten(), nn.Linear(256, 10, bias=False), _Mul(1 / 9),
    )


# spec name -> (builder, input shape C,H,W); variant4/5 are variant2's network.
REFERENCES = {
    "c5l3": (c5l3, (3, 32, 32)),
    "variant1": (variant1, (3, 32, 32)),
    "variant2": (variant2, (3, 32, 32)),
    "variant3": (variant3, (3, 32, 32)),
    "variant4": (variant2, (3, 32, 32)),
    "variant5": (variant2, (3, 32, 32)),
    "adaptive_block": (adaptive_block, (3, 32, 32)),
    "tutorial": (tutorial, (3, 32, 32)),
    "linear": (linear, (3, 32, 32)),
    "mlp": (mlp, (3, 32, 32)),
    "mlp_norelu": (mlp_norelu, (3, 32, 32)),
    "mlp_tanh": (mlp_tanh, (3, 32, 32)),
    "mynet": (mynet, (3, 32, 32)),
    "mynet500": (mynet500, (3, 32, 32)),
    "vgg_a": (vgg_a, (3, 32, 32)),
    "vgg_a_bn": (vgg_a_bn, (3, 32, 32)),
    "vgg16": (vgg16, (3, 32, 32)),
    "resnet18": (resnet18, (3, 32, 32)),
    "mnist_quick": (mnist_quick, (1, 28, 28)),
    "airbench": (airbench, (3, 32, 32)),
}
