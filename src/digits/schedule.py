"""The learning-rate schedule a run actually uses, said in words from the built objects: OneCycleLR, the
default, starts below optimizer.lr and cycles the momentum in place of the optimizer's own, none of which
``optimizer.lr`` and ``optimizer.momentum`` show."""

from __future__ import annotations

from typing import Any

from torch.optim import Optimizer

from digits.errors import ConfigError


def check_schedule(optimizer: dict[str, Any], scheduler: dict[str, Any] | None) -> None:
    """OneCycleLR with ``cycle_momentum`` needs an optimizer with a momentum or betas (else torch raises once
    the fit starts)."""
    if not scheduler or not scheduler.get("cycle_momentum", False):
        return
    import torch
    from hydra.utils import get_class

    optimizer_class = get_class(optimizer["_target_"])
    arguments = {key: value for key, value in optimizer.items() if key != "_target_"}
    defaults = optimizer_class([torch.nn.Parameter(torch.zeros(1))], **arguments).defaults
    if "momentum" not in defaults and "betas" not in defaults:
        raise ConfigError(
            f"scheduler.cycle_momentum=true, but {optimizer_class.__name__} (optimizer._target_) has no momentum "
            "or betas to cycle: add scheduler.cycle_momentum=false, or choose scheduler=cosine or none"
        )


def _number(value: float) -> str:
    return f"{value:.4g}"


def describe(optimizer: Optimizer, scheduler: Any, configured: dict[str, Any], steps: int | None) -> list[str]:
    """Two lines: the optimizer as built, and the schedule. ``configured``: the optimizer config (its momentum
    as written, which a cycling scheduler replaces); ``steps``: the schedule's length."""
    group = optimizer.param_groups[0]
    name = type(optimizer).__name__
    settings = [f"weight_decay {_number(group.get('weight_decay', 0.0))}"]
    if "momentum" in group:
        settings.append(f"momentum {_number(configured.get('momentum', group['momentum']))}")
        settings.append(f"nesterov {str(group.get('nesterov', False)).lower()}")
    if "betas" in group:
        betas = configured.get("betas", group["betas"])
        settings.append(f"betas ({_number(betas[0])}, {_number(betas[1])})")
    line = f"optimizer: {name}, " + ", ".join(settings)
    kind = type(scheduler).__name__ if scheduler is not None else None
    if kind is None:
        return [line, f"schedule: none, a constant lr {_number(group['lr'])}"]
    if kind == "OneCycleLR":
        peak_step = round(scheduler._schedule_phases[0]["end_step"])
        text = (
            f"schedule: OneCycleLR over {scheduler.total_steps} steps: lr {_number(group['initial_lr'])} "
            f"-> {_number(group['max_lr'])} at step {peak_step} -> {_number(group['min_lr'])} at the end"
        )
        if scheduler.cycle_momentum:
            what = "first beta" if scheduler.use_beta1 else "momentum"
            written = "betas[0]" if scheduler.use_beta1 else "momentum"
            text += (
                f"; {what} cycled {_number(group['max_momentum'])} -> {_number(group['base_momentum'])} -> "
                f"{_number(group['max_momentum'])}, in place of optimizer.{written} "
                "(scheduler.cycle_momentum=false keeps it)"
            )
        else:
            text += "; momentum not cycled (scheduler.cycle_momentum=false)"
        return [line, text]
    if kind == "CosineAnnealingLR":
        return [
            line,
            f"schedule: CosineAnnealingLR over {scheduler.T_max} {'steps' if steps is not None else 'epochs'}: "
            f"lr {_number(group['initial_lr'])} -> {_number(scheduler.eta_min)}",
        ]
    return [line, f"schedule: {kind}, from lr {_number(group.get('initial_lr', group['lr']))}"]
