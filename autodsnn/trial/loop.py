"""The inner training and evaluation loops, shared by trials, retraining and benchmarks."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class EpochStats:
    loss: float
    accuracy: float
    samples: int
    seconds: float
    batches: int = 0


@dataclass
class EvalStats:
    loss: float
    error: float
    samples: int
    seconds: float

    @property
    def accuracy(self) -> float:
        return 1.0 - self.error


def train_epoch(model: nn.Module, batches: Batches, optimizer: torch.optim.Optimizer, *,
                device: torch.device | str = "cpu", max_batches: int | None = None,
                should_stop: Callable[[], bool] | None = None,
                on_batch: Callable[[int, float], None] | None = None) -> EpochStats:
    """One pass over ``batches`` (at most ``max_batches``; a fractional epoch stops early).
    Raises :class:`DivergedError` on a non-finite loss rather than training on garbage."""
    model.train()
    start = time.perf_counter()
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = batches_done = 0
    for i, (x, y) in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            break
        if should_stop is not None and should_stop():
            break
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        value = loss.detach()
        # Check every 20 batches (a host sync each time would stall a GPU), and the last.
        if i % 20 == 0 and not math.isfinite(float(value)):
            raise DivergedError(f"training loss became {float(value)} at batch {i}")
        total_loss += value.double() * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
        seen += len(y)
        batches_done += 1
        if on_batch is not None:
            on_batch(i, float(value))
    mean = float(total_loss) / max(seen, 1)
    if seen and not math.isfinite(mean):
        raise DivergedError(f"training loss became {mean}")
    return EpochStats(mean, float(correct) / max(seen, 1), seen, time.perf_counter() - start, batches_done)


@torch.no_grad()
def evaluate(model: nn.Module, batches: Batches, *, device: torch.device | str = "cpu") -> EvalStats:
    """Mean cross-entropy and top-1 error over ``batches`` in eval mode."""
    model.eval()
    start = time.perf_counter()
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    wrong = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    for x, y in batches:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        logits = model(x)
        total_loss += F.cross_entropy(logits, y, reduction="sum").double()
        wrong += (logits.argmax(1) != y).sum()
        seen += len(y)
    return EvalStats(float(total_loss) / max(seen, 1), float(wrong) / max(seen, 1), seen,
                     time.perf_counter() - start)
