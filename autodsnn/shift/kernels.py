"""Packed weight format for frozen shift layers and the native kernels that run it.

Packed format (one per layer): the layer's integer codes (:meth:`CodeSet.encode` layout: bit
b-1 = sign, low b-1 bits = magnitude index) as uint8, row-major (out_features, in_features).
For ``weight_bits <= 4`` two codes share a byte, the even column in the low nibble, rows padded
to whole bytes; wider codes take one byte each. With ``mode``, ``weight_bits`` and ``shift_max``
(the code set) this is all a layer needs; :func:`autodsnn.shift.export` writes the same codes.

Native kernels (``native/shift_cpu.cpp``, pybind11 via ``torch.utils.cpp_extension``) are built
on first use (about 25 s) and cached under the autodsnn cache directory; ``scripts/setup.sh``
warms the cache. Without a compiler the layers fall back to PyTorch (decode + ``F.linear``) and
say so once. Float mode only for now: each code decodes to an exact +-2^k, so products are exact
and only the accumulation order differs from PyTorch's.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import FrozenWeight, InputQuantizer, ShiftLinear
from .native import native_cpu
from .quant import CodeSet



def pack_codes(codes: torch.Tensor, weight_bits: int) -> torch.Tensor:
    """(O, K) uint8 codes -> packed rows: nibbles for weight_bits <= 4, else bytes."""
    codes = codes.to(torch.uint8).contiguous()
    if weight_bits > 4:
        return codes
    o, k = codes.shape
    if k % 2:
        codes = torch.cat([codes, torch.zeros(o, 1, dtype=torch.uint8)], dim=1)
    return (codes[:, 0::2] | (codes[:, 1::2] << 4)).contiguous()


def unpack_codes(packed: torch.Tensor, weight_bits: int, in_features: int) -> torch.Tensor:
    if weight_bits > 4:
        return packed[:, :in_features]
    low, high = packed & 0xF, packed >> 4
    return torch.stack([low, high], dim=2).reshape(packed.shape[0], -1)[:, :in_features]


class DeployedShiftLinear(nn.Module):
    """A frozen ShiftLinear running on packed codes (native CPU kernel, PyTorch elsewhere)."""

    def __init__(self, packed: torch.Tensor, codes: CodeSet, in_features: int, out_features: int,
                 bias: torch.Tensor | None, input_quant: InputQuantizer) -> None:
        super().__init__()
        self.codes, self.in_features, self.out_features = codes, in_features, out_features
        self.register_buffer("packed", packed)
        self.register_buffer("bias", bias)
        self.input_quant = input_quant
        self.path = "unknown"

    @classmethod
    def from_shift_linear(cls, layer: ShiftLinear) -> "DeployedShiftLinear":
        sign, shift = layer.sign_and_shift()
        codes = layer.codes.encode(sign.cpu(), shift.cpu())
        bias = None if layer.bias is None else layer.quantized_bias().detach().float().cpu().clone()
        return cls(pack_codes(codes, layer.codes.weight_bits), layer.codes, layer.in_features, layer.out_features,
                   bias, layer.input_quant)

    def dense_weight(self) -> torch.Tensor:
        sign, shift = self.codes.decode(unpack_codes(self.packed, self.codes.weight_bits, self.in_features))
        return sign.float() * torch.exp2(shift.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_quant(x)
        lead = x.shape[:-1]
        flat = x.reshape(-1, self.in_features)
        native = native_cpu() if flat.device.type == "cpu" and flat.dtype == torch.float32 else None
        if native is not None:
            self.path = "native-cpu"
            y = native.linear_float(flat.contiguous(), self.packed, self.bias if self.bias is not None else torch.empty(0),
                                    self.codes.weight_bits, self.codes.shift_max, self.codes.has_zero,
                                    self.codes.weight_bits <= 4, self.in_features)
        else:
            self.path = "torch-fallback"
            y = F.linear(flat, self.dense_weight().to(flat), None if self.bias is None else self.bias.to(flat))
        return y.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, {self.codes.describe()}, packed {tuple(self.packed.shape)}"


def deploy(model: nn.Module) -> dict[str, str]:
    """Replace every ShiftLinear with a packed DeployedShiftLinear (in place, frozen first). Conv
    layers stay emulated until their kernels exist. Returns {layer name: what happened}."""
    from .convert import _replace_everywhere, freeze

    freeze(model)
    done: dict[str, str] = {}
    for name, module in list(model.named_modules()):
        if isinstance(module, ShiftLinear):
            assert isinstance(module.weight_quant, FrozenWeight)
            _replace_everywhere(model, module, DeployedShiftLinear.from_shift_linear(module))
            done[name] = "packed linear"
        elif hasattr(module, "weight_quant"):
            done[name] = "emulated (no conv kernel yet)"
    return done
