"""Where each schedule phase starts and ends, in scheduler steps. Pure arithmetic, no torch.

A recipe writes lengths in epochs (``until: 0.1`` of the run, or ``epochs: 5``). The scheduler
counts *steps*: one per epoch, or one per batch when ``interval: batch``. This module turns the
one into the other so the torch builder only has to instantiate pieces.

Rounding: a phase ending at fraction ``u`` of ``T`` steps ends at step ``floor(u*T + 0.5)`` (half
rounds up, unlike Python's ``round``). Boundaries are clipped to the run, so a phase can end up
with zero steps (e.g. a 5-epoch warmup in a 2-epoch smoke run is cut to 2 epochs and what follows
it is skipped). The last phase always runs to the end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from archspec.recipes.recipe import Phase, Schedule


@dataclass(frozen=True)
class PlannedPhase:
    phase: Phase
    start: int  # first scheduler step of the phase
    length: int  # number of scheduler steps (0: skipped)


def steps_per_unit(schedule: Schedule, steps_per_epoch: int) -> int:
    """Scheduler steps per epoch: `steps_per_epoch` for per-batch schedules, else 1."""
    return steps_per_epoch if schedule.interval == "batch" else 1


def plan_phases(schedule: Schedule, epochs: int, steps_per_epoch: int = 1) -> tuple[int, list[PlannedPhase]]:
    """(total scheduler steps, phases with their start step and length)."""
    unit = steps_per_unit(schedule, steps_per_epoch)
    total = epochs * unit
    planned: list[PlannedPhase] = []
    start = 0
    for i, phase in enumerate(schedule.phases):
        if i == len(schedule.phases) - 1:
            end = total
        elif phase.until is not None:
            end = math.floor(phase.until * total + 0.5)
        else:
            end = start + (phase.epochs or 0) * unit
        end = min(max(end, start), total)
        planned.append(PlannedPhase(phase, start, end - start))
        start = end
    return total, planned


def phase_end_lrs(phase: Phase, start_lrs: list[float], group_lrs: list[float], length: int, unit: int) -> list[float]:
    """The learning rate each param group reaches when `phase` (of `length` steps) is over.

    `group_lrs` are the optimizer's lrs (factors multiply these); `start_lrs` are where the phase
    starts, which matters for the decaying pieces (cosine, exponential, step, multistep): they
    continue from wherever the previous phase left off instead of jumping back to the base lr.
    """
    p = phase.params()
    if phase.type == "linear":
        return [lr * p["end_factor"] for lr in group_lrs]
    if phase.type == "constant":
        return [lr * p["factor"] for lr in group_lrs]
    if phase.type == "cosine":
        return [p["eta_min"] for _ in start_lrs]
    if phase.type == "exponential":
        return [lr * p["gamma"] ** (length / unit) for lr in start_lrs]
    if phase.type == "step":
        return [lr * p["gamma"] ** (length // (p["step_size"] * unit)) for lr in start_lrs]
    if phase.type == "multistep":
        hits = sum(1 for m in p["milestones"] if m * unit <= length)
        return [lr * p["gamma"] ** hits for lr in start_lrs]
    raise ValueError(f"unknown phase type {phase.type}")  # pragma: no cover - schema-checked
