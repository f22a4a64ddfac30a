"""Shift layers: drop-in `nn.Linear` / `nn.Conv2d` whose weights are signed powers of two.

A shift layer is the float layer it replaces (same constructor, same features: bias, stride,
padding and padding modes, dilation, groups) plus two parts:

* a **weight quantizer** (one class per mode, registered with
  :func:`~autodsnn.shift.modes.register_weight_mode`) that owns the
  trainable latent parameters and returns the ``+-2^k`` (or 0) weight tensor;
* an **input quantizer** that rounds the layer's input to fixed point when the config asks.

The latent parameters live in ``layer.weight_quant``; ``layer.quantized_weight()`` gives the
weight the layer computes with, ``layer.sign_and_shift()`` its integer codes.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .config import ShiftConfig
from .modes import register_weight_mode, weight_mode
from .quant import (CodeSet, FixedPoint, dense_weight, pow2, ps_round, ps_weight, quantize_fixed_point,
                    quantize_pow2, round_pow2_ste, round_pow2_values)

AUTO_SEARCH_BELOW, AUTO_HEADROOM, AUTO_TOLERANCE = 8, 3, 1e-3


def resolve_shift_max(config: ShiftConfig, weight: torch.Tensor) -> int:
    """The layer's largest exponent: the configured one, or for "auto" the highest exponent whose
    squared rounding error of the layer's float weights is within 0.1% of the least, searched
    from 8 below to 3 above the exponent of the largest weight. With many bits the smallest
    levels cost nothing, so the range gets headroom for weights to grow while training; with 2-3
    bits the few levels move down to where most weights are (a fixed 0 would flush them all)."""
    if config.shift_max != "auto":
        return int(config.shift_max)
    w = weight.detach().float()
    top = float(w.abs().max()) if w.numel() else 0.0
    if top <= 0:
        return 0
    top_exp = int(math.floor(math.log2(top) + 0.5))
    candidates = range(max(top_exp - AUTO_SEARCH_BELOW, -60), min(top_exp + AUTO_HEADROOM, 64) + 1)
    errors = {c: float((round_pow2_values(w, config.code_set(c)) - w).square().sum())
              for c in candidates}
    least = min(errors.values())
    return max(c for c, e in errors.items() if e <= least * (1 + AUTO_TOLERANCE))


def low_variance_like(weight: torch.Tensor) -> torch.Tensor:
    """N(0, (0.5/sqrt(fan_in))^2): a narrower start than kaiming, for training from scratch."""
    fan_in = weight[0].numel() if weight.dim() > 1 else weight.numel()
    return torch.randn_like(weight) * (0.5 / math.sqrt(max(fan_in, 1)))


class WeightQuantizer(nn.Module):
    """Owns a shift layer's weight parameters; ``forward()`` returns the discrete weight.

    A new mode subclasses this, implements ``from_float``, ``forward`` and ``sign_and_shift``
    (and ``project_`` if its latents need bounds), and registers itself with
    ``@register_weight_mode(name, has_zero=...)`` (:mod:`autodsnn.shift.modes`).
    """

    mode: str = ""

    def __init__(self, codes: CodeSet, stochastic: bool) -> None:
        super().__init__()
        self.codes = codes
        self.stochastic = stochastic
        self.register_buffer("shift_max", torch.tensor(codes.shift_max, dtype=torch.int16))

    @classmethod
    def from_float(cls, weight: torch.Tensor, codes: CodeSet, stochastic: bool) -> "WeightQuantizer":
        raise NotImplementedError

    def sign_and_shift(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Deterministic (eval) weights: int8 sign in {-1,0,1}, int16 exponent (8-bit sets go below -128)."""
        raise NotImplementedError

    def configure(self, config: ShiftConfig) -> None:
        """Take the config's training options that concern this mode (none by default)."""

    def project_(self) -> None:
        """Keep latent parameters in their meaningful range (called before each training step's
        forward): an unbounded latent can drift where its gradient can no longer bring it back."""

    def _load_from_state_dict(self, state_dict, prefix, *args: Any, **kwargs: Any) -> None:  # noqa: ANN001
        # shift_max may be per layer ("auto"): the checkpoint's value defines the code set.
        key = prefix + "shift_max"
        if key in state_dict:
            top = int(state_dict[key])
            self.codes = dataclasses.replace(self.codes, shift_max=top)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return self.codes.describe() + (", stochastic" if self.stochastic else "")


@register_weight_mode("q", has_zero=False, zero_optional=True)
class QWeight(WeightQuantizer):
    """DeepShift-Q: a float latent weight, rounded to a signed power of two in every forward.

    DeepShift-Q's code set is zero-free (Elhoushi et al. 2021, Sec. 3.1; their code): ``+-2^k``
    for ``2^(b-1)`` exponents, a weight below the smallest level rounds up to it with its sign
    (``-0.0`` to ``-2^shift_min``; DeepShift's ``sign(0) = 0`` keeps an exact 0 at 0). With
    ``zero_level=True`` one magnitude code means 0 and weights below ``sqrt(2)/2 * 2^shift_min``
    flush to it."""

    def __init__(self, weight: torch.Tensor, codes: CodeSet, stochastic: bool) -> None:
        super().__init__(codes, stochastic)
        self.weight = nn.Parameter(weight.detach().clone())

    @classmethod
    def from_float(cls, weight, codes, stochastic):  # noqa: ANN001, ANN206
        return cls(weight, codes, stochastic)

    def forward(self) -> torch.Tensor:
        return round_pow2_ste(self.weight, self.codes, self.stochastic and self.training)

    def sign_and_shift(self):  # noqa: ANN201
        sign, exp = quantize_pow2(self.weight.detach(), self.codes)
        return sign.to(torch.int8), exp.to(torch.int16)


@register_weight_mode("ps", has_zero=True)
class PSWeight(WeightQuantizer):
    """DeepShift-PS: latent shift P and sign S; W = round(S) * 2^round(P)."""

    def __init__(self, shift: torch.Tensor, sign: torch.Tensor, codes: CodeSet, stochastic: bool) -> None:
        super().__init__(codes, stochastic)
        self.shift = nn.Parameter(shift.detach().clone())
        self.sign = nn.Parameter(sign.detach().clone())

    @classmethod
    def from_float(cls, weight, codes, stochastic):  # noqa: ANN001, ANN206
        w = weight.detach()
        # Start from exactly the Q-mode rounding of the float weights (zero included): P is the
        # exact nearest exponent plus log2's fraction kept inside (-0.5, 0.5), so round(P) is that
        # exponent even where float log2 would round across sqrt(2) * 2^k.
        sign, exp = quantize_pow2(w, codes)
        fraction = (torch.log2(w.abs().double()) - exp.double()).nan_to_num(0.0).clamp(-0.499, 0.499)
        shift = (exp.double() + fraction).to(w.dtype).clamp(codes.shift_min, codes.shift_max)
        return cls(shift, sign, codes, stochastic)

    sign_grad = "scaled"  # set from ShiftConfig.sign_grad by the layer

    def configure(self, config: ShiftConfig) -> None:
        self.sign_grad = config.sign_grad

    def project_(self) -> None:
        with torch.no_grad():
            self.sign.clamp_(-1.0, 1.0)
            self.shift.clamp_(self.codes.shift_min - 0.5, self.codes.shift_max + 0.5)

    def forward(self) -> torch.Tensor:
        if self.training:
            self.project_()
        return ps_weight(self.shift, self.sign, self.codes, self.stochastic and self.training, self.sign_grad)

    def sign_and_shift(self):  # noqa: ANN201
        s, p = ps_round(self.shift.detach(), self.sign.detach(), self.codes)
        p = torch.where(s == 0, torch.full_like(p, self.codes.shift_min), p)
        return s.to(torch.int8), p.to(torch.int16)


@register_weight_mode("dense", has_zero=False)
class DenseWeight(WeightQuantizer):
    """DenseShift: zero-free weights sgn(s) * 2^round(log2 m), the sign and the scale trained as
    separate latents (sign-scale decomposition)."""

    def __init__(self, sign: torch.Tensor, magnitude: torch.Tensor, codes: CodeSet, stochastic: bool) -> None:
        super().__init__(codes, stochastic)
        self.sign = nn.Parameter(sign.detach().clone())
        self.magnitude = nn.Parameter(magnitude.detach().clone())

    @classmethod
    def from_float(cls, weight, codes, stochastic):  # noqa: ANN001, ANN206
        w = weight.detach()
        top = w.abs().max().clamp_min(torch.finfo(w.dtype).tiny)
        sign = w / top  # in [-1, 1]: confidence in the sign grows with the weight's size
        magnitude = w.abs().clamp(2.0 ** codes.shift_min, 2.0 ** codes.shift_max)
        return cls(sign, magnitude, codes, stochastic)

    def project_(self) -> None:
        with torch.no_grad():
            self.sign.clamp_(-1.0, 1.0)
            self.magnitude.clamp_(2.0 ** (self.codes.shift_min - 1), 2.0 ** (self.codes.shift_max + 1))

    def forward(self) -> torch.Tensor:
        if self.training:
            self.project_()
        return dense_weight(self.sign, self.magnitude, self.codes, self.stochastic and self.training)

    def sign_and_shift(self):  # noqa: ANN201
        _, exp = quantize_pow2(self.magnitude.detach().abs(), self.codes)
        sign = torch.where(torch.signbit(self.sign.detach()), -1, 1)
        return sign.to(torch.int8), exp.to(torch.int16)


class FrozenWeight(WeightQuantizer):
    """Snapped weights: integer sign and shift buffers, nothing left to train."""

    mode = "frozen"

    def __init__(self, sign: torch.Tensor, shift: torch.Tensor, codes: CodeSet, dtype: torch.dtype) -> None:
        super().__init__(codes, stochastic=False)
        self.register_buffer("sign", sign.to(torch.int8))
        self.register_buffer("shift", shift.to(torch.int16))
        # Empty float buffer whose dtype follows model.to(...): the dtype of the decoded weight.
        self.register_buffer("dtype_ref", torch.zeros(0, dtype=dtype, device=sign.device), persistent=False)
        self._cache: tuple[tuple, torch.Tensor] | None = None

    def forward(self) -> torch.Tensor:
        # Decode once; re-decode only when the codes change (load_state_dict copies in place).
        key = (self.sign.data_ptr(), self.sign._version, self.shift.data_ptr(), self.shift._version,
               self.dtype_ref.dtype)
        if self._cache is None or self._cache[0] != key:
            dtype = self.dtype_ref.dtype
            self._cache = (key, self.sign.to(dtype)
                           * pow2(self.shift, dtype, (self.codes.shift_min, self.codes.shift_max)))
        return self._cache[1]

    def _apply(self, fn, *args: Any, **kwargs: Any):  # noqa: ANN001, ANN202
        self._cache = None  # .to()/.cuda() move the buffers: rebuild the float weight
        return super()._apply(fn, *args, **kwargs)

    def sign_and_shift(self):  # noqa: ANN201
        return self.sign, self.shift


class InputQuantizer(nn.Module):
    """Rounds a shift layer's input to fixed point (identity when the format is None)."""

    def __init__(self, fmt: FixedPoint | None) -> None:
        super().__init__()
        self.fmt = fmt

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.fmt is None else quantize_fixed_point(x, self.fmt)

    def extra_repr(self) -> str:
        return "float" if self.fmt is None else self.fmt.describe()


class _RoundToGridSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, frac_bits: int) -> torch.Tensor:  # type: ignore[override]
        scale = 2.0 ** frac_bits
        return torch.round(x * scale) / scale

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        return grad, None


class _ShiftLayerMixin:
    """What ShiftLinear and ShiftConv2d share: the quantizers and their bookkeeping."""

    weight_quant: WeightQuantizer
    input_quant: InputQuantizer
    config: ShiftConfig

    def _setup_shift(self, weight: torch.Tensor, config: ShiftConfig) -> None:
        del self.weight  # the latent parameters replace the float weight
        if config.init == "low-variance":
            weight = low_variance_like(weight)
        codes = config.code_set(resolve_shift_max(config, weight))
        self.config = config
        self.weight_quant = weight_mode(config.mode).quantizer.from_float(weight, codes, config.stochastic)
        configure = getattr(self.weight_quant, "configure", None)  # a registered nn.Module may lack it
        if configure is not None:
            configure(config)
        self.input_quant = InputQuantizer(config.activation_format())

    @property
    def codes(self) -> CodeSet:
        return self.weight_quant.codes

    def quantized_weight(self) -> torch.Tensor:
        return self.weight_quant()

    def quantized_bias(self) -> torch.Tensor | None:
        fmt = self.input_quant.fmt
        if self.bias is None or fmt is None or not self.config.quantize_bias:
            return self.bias
        # Same grid as the activations, not saturated: integer kernels add it exactly.
        return _RoundToGridSTE.apply(self.bias, fmt.frac_bits)

    def sign_and_shift(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.weight_quant.sign_and_shift()


class ShiftLinear(_ShiftLayerMixin, nn.Linear):
    """`nn.Linear` with power-of-two weights (and optionally fixed-point inputs)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None,  # noqa: ANN001
                 *, config: ShiftConfig = ShiftConfig(), weight: torch.Tensor | None = None) -> None:
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self._setup_shift(self.weight.detach() if weight is None else weight, config)

    @classmethod
    def from_float(cls, linear: nn.Linear, config: ShiftConfig) -> "ShiftLinear":
        w = linear.weight
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None,
                    device=w.device, dtype=w.dtype, config=config, weight=w.detach())
        if linear.bias is not None:
            layer.bias.data.copy_(linear.bias.detach())
        layer.train(linear.training)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.input_quant(x), self.quantized_weight(), self.quantized_bias())


class ShiftConv2d(_ShiftLayerMixin, nn.Conv2d):
    """`nn.Conv2d` with power-of-two weights (and optionally fixed-point inputs)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,  # noqa: ANN001
                 dilation=1, groups: int = 1, bias: bool = True,  # noqa: ANN001
                 padding_mode: str = "zeros",
                 device=None, dtype=None, *, config: ShiftConfig = ShiftConfig(),  # noqa: ANN001
                 weight: torch.Tensor | None = None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=bias, padding_mode=padding_mode,
                         device=device, dtype=dtype)
        self._setup_shift(self.weight.detach() if weight is None else weight, config)

    @classmethod
    def from_float(cls, conv: nn.Conv2d, config: ShiftConfig) -> "ShiftConv2d":
        w = conv.weight
        layer = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                    padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
                    bias=conv.bias is not None, padding_mode=conv.padding_mode,
                    device=w.device, dtype=w.dtype, config=config, weight=w.detach())
        if conv.bias is not None:
            layer.bias.data.copy_(conv.bias.detach())
        layer.train(conv.training)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(self.input_quant(x), self.quantized_weight(), self.quantized_bias())


SHIFT_LAYERS = (ShiftLinear, ShiftConv2d)


def is_shift_layer(module: nn.Module) -> bool:
    return isinstance(module, SHIFT_LAYERS)
