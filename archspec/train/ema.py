"""An exponential moving average (EMA) of a model's weights, for evaluation (recipe key `ema`).

Why a small class rather than `torch.optim.swa_utils.AveragedModel`: the recipe's `ema` also
covers airbench's variant, where the decay ramps up over the run (``decay * (step/total)**power``)
and the average is copied back into the trained weights (Lookahead-style). Both need the step
count and the run length, and the copy-back needs to write the live model; AveragedModel has
neither. Everything else is the same idea: a deep copy of the model whose floating-point
parameters *and buffers* (BatchNorm running statistics) follow ``ema = d*ema + (1-d)*weights``,
integer buffers (``num_batches_tracked``) are copied.

The state (`state_dict`) is the averaged weights plus the step counter, so a resumed run
continues the average exactly where it stopped.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class ModelEMA:
    """`module` is the averaged copy: evaluate it. Call `update(model)` after every optimizer step."""

    def __init__(self, model: nn.Module, *, decay: float, every: int = 1, warmup_power: float = 0.0,
                 lookahead: bool = False, total_steps: int | None = None) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        if warmup_power and not total_steps:
            raise ValueError("warmup_power needs total_steps (the run's optimizer steps)")
        self.module = copy.deepcopy(model)
        self.module.eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = float(decay)
        self.every = int(every)
        self.warmup_power = float(warmup_power)
        self.lookahead = bool(lookahead)
        self.total_steps = int(total_steps) if total_steps else None
        self.step = 0  # optimizer steps seen

    def current_decay(self) -> float:
        """The decay used at the current step (constant unless `warmup_power` > 0)."""
        if not self.warmup_power:
            return self.decay
        return self.decay * min(1.0, self.step / self.total_steps) ** self.warmup_power

    def _pairs(self, model: nn.Module):
        live = model.state_dict(keep_vars=True)
        for name, avg in self.module.state_dict(keep_vars=True).items():
            yield avg, live[name]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Count one optimizer step of `model` (the unwrapped module); average every `every` steps."""
        self.step += 1
        if self.step % self.every:
            return
        weight = 1.0 - self.current_decay()
        for avg, cur in self._pairs(model):
            if avg.is_floating_point():
                avg.lerp_(cur.detach().to(avg.dtype), weight)
                if self.lookahead:
                    cur.copy_(avg)
            else:
                avg.copy_(cur)

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "model": self.module.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.module.load_state_dict(state["model"])
