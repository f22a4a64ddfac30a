"""Integer arithmetic of a frozen shift layer, defined once.

A layer with fixed-point inputs (``FixedPoint`` with ``F`` fraction bits) and weights
``s * 2^e`` (``s`` in {-1, 0, 1}) computes, for every output:

1. ``q = rint(clamp(x, lo, hi) * 2^F)``: the input's integer (exactly the rounding of
   :func:`autodsnn.shift.quantize_fixed_point`, round half to even);
2. ``acc = B + sum_k s_k * (q_k << (e_k - kbase))``: an exact integer sum, where
   ``kbase = min(smallest exponent used, 0)`` and ``B = bias * 2^(F - kbase)`` when the bias lies
   on the activation grid (``quantize_bias``, the default), else 0;
3. ``y = float32(acc) * 2^(kbase - F)``: one rounding, to nearest even, then an exact scaling;
   a bias off the grid is added afterwards as one float32 addition.

The native integer kernels (``native/shift_cpu.cpp``) compute this in int32 and are tested equal
to :func:`reference_linear` / :func:`reference_conv2d` element for element; those compute it with
PyTorch, exactly (a float64 GEMM while sums stay below 2^53, int64 beyond), and are also the
fallback for layers whose sums do not fit int32. The float32 training emulation (``F.linear`` on
the same quantized values) rounds every partial sum, so it agrees with this only to float
rounding; this module is the exact definition.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .errors import ShiftConfigError
from .quant import FixedPoint, representable


@dataclass
class IntegerPlan:
    """The numbers that define one layer's integer arithmetic (see the module docstring)."""

    fmt: FixedPoint
    kbase: int
    in_scale: float
    lo: float
    hi: float
    out_scale: float
    bias_int: torch.Tensor         # (O,) int64: B (zeros when the bias is added in float)
    bias_float: torch.Tensor | None
    accumulator_bound: int         # max |acc| over all inputs in range

    @property
    def fits_int32(self) -> bool:
        # the bound is computed in float64: a factor of two below int32's limit leaves it no doubt
        return self.accumulator_bound < 2 ** 30 and self.fmt.total_bits <= 31


def input_bounds(fmt: FixedPoint) -> tuple[float, float, float]:
    """(in_scale, lo, hi) as float32 values, the same ones quantize_fixed_point uses."""
    scale = 2.0 ** fmt.frac_bits
    lo = representable(fmt.qmin, torch.float32, up=True) / scale
    hi = representable(fmt.qmax, torch.float32, up=False) / scale
    return scale, lo, hi


def plan(sign: torch.Tensor, shift: torch.Tensor, bias: torch.Tensor | None, fmt: FixedPoint) -> IntegerPlan:
    """The integer form of a layer with weights ``sign * 2^shift`` ((O, ...) int tensors)."""
    sign = sign.reshape(sign.shape[0], -1).to(torch.int64).cpu()
    shift = shift.reshape(shift.shape[0], -1).to(torch.int64).cpu()
    used = shift[sign != 0]
    kbase = min(int(used.min()) if used.numel() else 0, 0)
    span = (int(used.max()) - kbase) if used.numel() else 0
    if span > 62 - fmt.total_bits:
        raise ShiftConfigError(
            f"weights span 2^{kbase}..2^{kbase + span}: too wide for exact integer accumulation with "
            f"{fmt.total_bits}-bit inputs; deploy this layer in float mode (mode='float')")
    weights = weight_int(sign, shift, kbase)
    in_scale, lo, hi = input_bounds(fmt)
    bias_int = torch.zeros(sign.shape[0], dtype=torch.int64)
    bias_float = None
    if bias is not None:
        grid = bias.detach().double().cpu() * 2.0 ** fmt.frac_bits
        if torch.equal(grid, grid.round()) and float(grid.abs().max()) * 2.0 ** -kbase < 2.0 ** 52:
            bias_int = grid.to(torch.int64) * 2 ** (-kbase)
        else:
            bias_float = bias.detach().float().cpu().clone()
    q_max = max(abs(fmt.qmin), fmt.qmax)
    # float64 is enough for a bound (it is compared with limits far from its rounding)
    row_sum = float(weights.double().abs().sum(1).max()) if weights.numel() else 0.0
    bound = q_max * row_sum + (float(bias_int.double().abs().max()) if bias_int.numel() else 0.0)
    if bound > 2.0 ** 62:
        raise ShiftConfigError("this layer's exact sums overflow 64 bits; deploy it in float mode (mode='float')")
    out_scale = 2.0 ** (kbase - fmt.frac_bits)
    if not math.isfinite(out_scale) or out_scale < 2.0 ** -126 or out_scale > 2.0 ** 127:
        raise ShiftConfigError(f"output scale 2^{kbase - fmt.frac_bits} is outside float32's normal range; "
                               "use fewer activation fraction bits or deploy in float mode")
    return IntegerPlan(fmt, kbase, in_scale, lo, hi, out_scale, bias_int, bias_float, math.ceil(bound))


def weight_int(sign: torch.Tensor, shift: torch.Tensor, kbase: int) -> torch.Tensor:
    """(O, K) int64 weights in accumulator units: ``s * 2^(e - kbase)`` (0 for zero weights)."""
    sign = sign.reshape(sign.shape[0], -1).to(torch.int64).cpu()
    shift = shift.reshape(shift.shape[0], -1).to(torch.int64).cpu()
    return sign * torch.pow(2, (shift - kbase).clamp(min=0)).masked_fill(sign == 0, 0)


def quantize_to_int(x: torch.Tensor, p: IntegerPlan) -> torch.Tensor:
    """Step 1 in PyTorch: float32 clamp, scale and round half to even, as int64."""
    x = x.float()
    return torch.clamp(x, p.lo, p.hi).mul_(p.in_scale).round_().to(torch.int64)


def _finish(acc: torch.Tensor, p: IntegerPlan, channel_dim: int) -> torch.Tensor:
    y = acc.to(torch.float32) * p.out_scale
    if p.bias_float is not None:
        shape = [1] * y.dim()
        shape[channel_dim] = -1
        y = y + p.bias_float.to(y.device).view(shape)
    return y


def exact_dtype(p: IntegerPlan) -> torch.dtype:
    """float64 when every partial sum stays below 2^53 (then a float64 GEMM adds integers
    exactly, in any order, at BLAS speed), else int64."""
    return torch.float64 if p.accumulator_bound < 2 ** 53 else torch.int64


def reference_linear(x: torch.Tensor, weights: torch.Tensor, p: IntegerPlan) -> torch.Tensor:
    """Exact integer-mode output of a linear layer; ``weights`` from :func:`weight_int`."""
    dt = exact_dtype(p)
    q = quantize_to_int(x.reshape(-1, x.shape[-1]), p).to(dt)
    acc = q @ weights.to(q.device, dt).T + p.bias_int.to(q.device, dt)
    return _finish(acc, p, 1).reshape(*x.shape[:-1], -1)


def reference_conv2d(x: torch.Tensor, weights: torch.Tensor, p: IntegerPlan, kernel_size: tuple[int, int],
                     stride: tuple[int, int], padding: tuple[int, int], dilation: tuple[int, int],
                     groups: int) -> torch.Tensor:
    """Exact integer-mode output of a conv layer: integer im2col (through float64, exact for
    these magnitudes) and an int64 matrix product per group."""
    n, c, h, w = x.shape
    dt = exact_dtype(p)
    q = quantize_to_int(x, p).double()
    cols = F.unfold(q, kernel_size, dilation=dilation, padding=padding, stride=stride).to(dt)
    oh = (h + 2 * padding[0] - dilation[0] * (kernel_size[0] - 1) - 1) // stride[0] + 1
    ow = (w + 2 * padding[1] - dilation[1] * (kernel_size[1] - 1) - 1) // stride[1] + 1
    out_channels = weights.shape[0]
    kg = cols.shape[1] // groups
    cols = cols.view(n, groups, kg, oh * ow)
    weight = weights.to(q.device, dt).view(groups, out_channels // groups, kg)
    acc = torch.einsum("gok,ngkp->ngop", weight, cols).reshape(n, out_channels, oh * ow)
    acc = acc + p.bias_int.to(q.device, dt).view(1, -1, 1)
    return _finish(acc, p, 1).view(n, out_channels, oh, ow)
