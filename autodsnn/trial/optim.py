"""Optimizers by name, with shift parameters in their own group.

DeepShift found that plain weight decay on shift latents (PS exponents and signs, DenseShift
signs and scales) hurts: it pulls exponents toward 2^0 and signs toward zero. Those parameters
get ``weight_decay=0``; float weights (and Q-mode latent weights, which are ordinary weights)
keep the configured decay.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from torch import nn

# name -> (constructor, accepts momentum)
_OPTIMIZERS: dict[str, tuple[Callable[..., torch.optim.Optimizer], bool]] = {
    "sgd": (torch.optim.SGD, True),
    "adam": (torch.optim.Adam, False),
    "adamw": (torch.optim.AdamW, False),
    "adadelta": (torch.optim.Adadelta, False),
    "adagrad": (torch.optim.Adagrad, False),
    "rmsprop": (torch.optim.RMSprop, True),
    "radam": (torch.optim.RAdam, False),
}
OPTIMIZERS = tuple(_OPTIMIZERS) + ("ranger",)
MOMENTUM_OPTIMIZERS = tuple(n for n, (_, m) in _OPTIMIZERS.items() if m)
# Latent names owned by shift weight quantizers that must not be decayed.
_NO_DECAY_LATENTS = ("weight_quant.shift", "weight_quant.sign", "weight_quant.magnitude")


class Lookahead(torch.optim.Optimizer):
    """Lookahead (Zhang et al. 2019) around any optimizer: every ``k`` steps the slow weights move
    ``alpha`` of the way to the fast weights, and the fast weights restart from there."""

    def __init__(self, inner: torch.optim.Optimizer, k: int = 6, alpha: float = 0.5) -> None:
        if k < 1 or not 0.0 < alpha <= 1.0:
            raise ValueError(f"Lookahead needs k >= 1 and 0 < alpha <= 1, got k={k}, alpha={alpha}")
        self.inner, self.k, self.alpha = inner, k, alpha
        self._steps = 0
        self._slow = [[p.detach().clone() for p in g["params"]] for g in inner.param_groups]
        # Share the inner optimizer's groups and state so schedulers and state_dict see them.
        self.param_groups = inner.param_groups
        self.defaults = inner.defaults
        self.state = inner.state

    def step(self, closure: Callable[[], float] | None = None):  # noqa: ANN201
        loss = self.inner.step(closure)
        self._steps += 1
        if self._steps % self.k == 0:
            with torch.no_grad():
                for group, slow_group in zip(self.inner.param_groups, self._slow):
                    for p, slow in zip(group["params"], slow_group):
                        slow.add_(p.detach() - slow, alpha=self.alpha)
                        p.copy_(slow)
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.inner.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {"inner": self.inner.state_dict(), "slow": self._slow, "steps": self._steps}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.inner.load_state_dict(state_dict["inner"])
        self._slow = [[s.clone() for s in g] for g in state_dict["slow"]]
        self._steps = int(state_dict["steps"])


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two groups: decayed float weights, and undecayed shift latents / norms / biases."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_shift_latent = any(name.endswith(k) for k in _NO_DECAY_LATENTS)
        (no_decay if is_shift_latent or p.dim() <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay, "name": "weights"},
              {"params": no_decay, "weight_decay": 0.0, "name": "shift_latents_norms_biases"}]
    return [g for g in groups if g["params"]]


def build_optimizer(name: str, params: Iterable[Any] | nn.Module, lr: float, *, momentum: float = 0.0,
                    weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """An optimizer by name (see ``OPTIMIZERS``). A module gets :func:`param_groups`."""
    key = name.lower()
    if key not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}: use one of {', '.join(OPTIMIZERS)}")
    if lr <= 0:
        raise ValueError(f"learning rate must be positive, got {lr}")
    groups = param_groups(params, weight_decay) if isinstance(params, nn.Module) else params
    if key == "ranger":
        return Lookahead(torch.optim.RAdam(groups, lr=lr, weight_decay=weight_decay))
    ctor, takes_momentum = _OPTIMIZERS[key]
    kwargs: dict[str, Any] = {"lr": lr, "weight_decay": weight_decay}
    if takes_momentum:
        kwargs["momentum"] = momentum
    return ctor(groups, **kwargs)
