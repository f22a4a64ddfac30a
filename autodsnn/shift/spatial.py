"""ShiftResNet's spatial shift: a zero-FLOP, zero-parameter replacement for 3x3 convolutions.

``SpatialShift`` splits the channels into ``k*k`` groups and moves each group by one offset of
the ``k x k`` grid (dilated by ``dilation``), filling the vacated border with zeros. Channels
that do not divide evenly stay in the centre group (offset 0, 0). ``ConvShiftConv`` is the
ShiftResNet block: 1x1 conv (expand by ``expansion``) -> BN -> ReLU -> shift -> 1x1 conv
(stride) -> BN, plus the residual shortcut (1x1 conv + BN when the shape changes).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def shift_offsets(channels: int, kernel_size: int = 3, dilation: int = 1) -> list[tuple[int, int, int, int]]:
    """(first channel, last channel + 1, dy, dx) for each group. A channel with offset (dy, dx)
    satisfies ``out[y, x] = in[y - dy, x - dx]``."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size={kernel_size} must be odd and positive (3 gives ShiftResNet's 9 offsets)")
    r = kernel_size // 2
    offsets = [(dy * dilation, dx * dilation) for dy in range(-r, r + 1) for dx in range(-r, r + 1)]
    per_group = channels // len(offsets)
    centre = offsets.index((0, 0))
    groups, start = [], 0
    for i, (dy, dx) in enumerate(offsets):
        size = per_group + (channels - per_group * len(offsets) if i == centre else 0)
        groups.append((start, start + size, dy, dx))
        start += size
    return groups


class SpatialShift(nn.Module):
    """Moves each channel group by its offset; no parameters, no multiplications."""

    def __init__(self, kernel_size: int = 3, dilation: int = 1) -> None:
        super().__init__()
        shift_offsets(9, kernel_size, dilation)  # validate early
        self.kernel_size, self.dilation = kernel_size, dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        out = torch.zeros_like(x)
        for c0, c1, dy, dx in shift_offsets(c, self.kernel_size, self.dilation):
            if c1 == c0 or abs(dy) >= h or abs(dx) >= w:
                continue
            out[:, c0:c1, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
                x[:, c0:c1, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
        return out

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, dilation={self.dilation}"


class ConvShiftConv(nn.Module):
    """ShiftResNet's residual block (see module doc). ``mid = int(out_planes * expansion)``."""

    def __init__(self, in_planes: int, out_planes: int, stride: int = 1, expansion: float = 1.0,
                 kernel_size: int = 3) -> None:
        super().__init__()
        mid = int(out_planes * expansion)
        if mid < 1:
            raise ValueError(f"expansion={expansion} leaves no channels: use expansion >= 1/out_planes")
        self.conv1 = nn.Conv2d(in_planes, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.shift = SpatialShift(kernel_size)
        self.conv2 = nn.Conv2d(mid, out_planes, 1, stride=stride, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != out_planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(self.shift(out)))
        return F.relu(out + self.shortcut(x))
