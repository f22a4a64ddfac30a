"""Deployed shift layers: frozen weights as packed codes, run by native kernels.

The weights are the packed canonical codes of :mod:`autodsnn.shift.packing`.

**Modes.** ``float``: float32 activations times exactly decoded ``+-2^k`` (within float32
rounding of a float64 reference). ``integer``: fixed-point activations, weights applied as signed
shifts, exact int32 sums; equal bit for bit to :mod:`autodsnn.shift.integer` (which defines it).

**Paths.** The CPU kernels (``native/shift_cpu.cpp``, AVX-512 with a portable fallback) are built
on first use and cached (see :mod:`autodsnn.shift.native`); CUDA kernels where CUDA exists
(:mod:`autodsnn.shift.native_cuda`); otherwise PyTorch runs the same arithmetic (decoded float
weights, or the exact integer reference). Every deployed layer records the path it last ran in ``.path``.

:func:`deploy` freezes a model (:func:`autodsnn.shift.freeze`) and swaps its shift layers for
these; this module imports :mod:`autodsnn.shift.convert`, never the other way round.
"""
from __future__ import annotations

import dataclasses

import warnings
from collections import Counter
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from . import integer
from .convert import freeze, load_codes
from .errors import ShiftConfigError
from .layers import InputQuantizer, ShiftConv2d, ShiftLinear, is_shift_layer
from .modules import replace_module
from .native import native_cpu
from .native_cuda import native_cuda
from .packing import (PANEL, canonical_codes, code_bits, decode_canonical, pack_codes, shift_table, to_panels,
                      unpack_codes, value_table)
from .quant import CodeSet, FixedPoint

_NONE = torch.empty(0)  # "no tensor" for the kernels' optional arguments (never written to)
DEPLOY_MODES = ("float", "integer", "auto")


def _pad(t: torch.Tensor, n: int) -> torch.Tensor:
    out = torch.zeros(n, dtype=t.dtype)
    out[: t.numel()] = t
    return out


class _Deployed(nn.Module):
    """What deployed linear and conv layers share: codes, bias, mode, input format, paths."""

    def __init__(self, layer: nn.Module, mode: str) -> None:
        super().__init__()
        if mode not in DEPLOY_MODES:
            raise ShiftConfigError(f"deploy mode {mode!r}: use one of {', '.join(DEPLOY_MODES)}")
        codes: CodeSet = layer.codes
        sign, shift = layer.sign_and_shift()
        self.codes, self.bits, self.requested_mode = codes, code_bits(codes.weight_bits), mode
        canonical = canonical_codes(codes, sign.detach(), shift.detach())
        self.out_units, self.cols = canonical.shape
        self.register_buffer("packed", pack_codes(canonical, self.bits))
        # the layer's range travels with its codes (state dicts of "auto" layers differ in it)
        self.register_buffer("shift_max", torch.tensor(codes.shift_max, dtype=torch.int64))
        bias = None if layer.bias is None else layer.quantized_bias().detach().float().cpu().clone()
        self.register_buffer("bias", bias)
        self.input_quant = InputQuantizer(layer.input_quant.fmt)
        if mode == "integer" and layer.input_quant.fmt is None:
            raise ShiftConfigError("integer mode needs fixed-point inputs: configure act_int_bits/act_frac_bits "
                                   "(or deploy with mode='float')")
        self.path = "not run yet"
        self.native_module: Any = None  # None: the default build (tests plug in the portable one)
        self._derive()

    def _derive(self) -> None:
        """Everything computed from the packed codes and the bias: the integer plan, tables and
        caches. Runs again after load_state_dict, so loaded codes never meet stale tables."""
        self.codes = dataclasses.replace(self.codes, shift_max=int(self.shift_max))
        canonical = unpack_codes(self.packed.cpu(), self.bits, self.cols)
        sign, shift = decode_canonical(canonical, self.codes)
        fmt: FixedPoint | None = self.input_quant.fmt
        self.plan: integer.IntegerPlan | None = None
        if self.requested_mode in ("integer", "auto") and fmt is not None:
            try:
                self.plan = integer.plan(sign, shift, self.bias, fmt)
            except ShiftConfigError:
                if self.requested_mode == "integer":
                    raise
        self.mode = "integer" if self.plan is not None else "float"
        # the linear kernels build +-2^k in the exponent bits: normal float32 exponents only
        used = shift[sign != 0].to(torch.int64)
        self.normal_exponents = used.numel() == 0 or (-126 <= int(used.min()) and int(used.max()) <= 127)
        self.values = value_table(self.codes)
        self.offset: torch.Tensor | None = None
        if self.plan is not None:
            self.shifts = shift_table(self.codes, self.plan.kbase)
            negatives = ((canonical >> (self.bits - 1)) & 1).sum(1).to(torch.int64)
            self.offset = (self.plan.bias_int + negatives).to(torch.int32) if self.plan.fits_int32 else None
        self._cuda_cache: dict[str, dict[str, torch.Tensor]] = {}
        self._weights_float: torch.Tensor | None = None
        self._weights_int: torch.Tensor | None = None

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._derive()

    def _sign_and_shift(self) -> tuple[torch.Tensor, torch.Tensor]:
        return decode_canonical(unpack_codes(self.packed.cpu(), self.bits, self.cols), self.codes)

    # PyTorch paths: decode once, keep the decoded copy (fallback only)
    def decoded_weight(self) -> torch.Tensor:
        if self._weights_float is None:
            sign, shift = self._sign_and_shift()
            self._weights_float = sign.float() * torch.exp2(shift.float())
        return self._weights_float

    def integer_weight(self) -> torch.Tensor:
        if self._weights_int is None:
            assert self.plan is not None
            sign, shift = self._sign_and_shift()
            weights = integer.weight_int(sign, shift, self.plan.kbase)
            self._weights_int = weights.to(integer.exact_dtype(self.plan))  # kept in the dtype the reference uses
        return self._weights_int

    def _native(self, x: torch.Tensor) -> Any:
        if torch.is_grad_enabled() and x.requires_grad:
            raise ShiftConfigError("deployed shift layers run inference only (their kernels have no backward): "
                                   "call the model under torch.no_grad(), or train the model before deploy()")
        if x.dtype != torch.float32 or x.device.type not in ("cpu", "cuda"):
            return None
        if x.device.type == "cuda":
            return native_cuda()
        return self.native_module or native_cpu()

    def _cuda_tables(self, device: torch.device) -> dict[str, torch.Tensor]:
        """Tables for the CUDA kernels, on ``device`` (moved once). Their integer offset is the
        bias alone: they add exact signed terms (the CPU kernels fold in one per negative weight)."""
        cached = self._cuda_cache.get(str(device))
        if cached is None:
            empty = torch.empty(0, device=device)
            cached = {"values": self.values.to(device),
                      "bias": empty if self.bias is None else self.bias.to(device)}
            if self.plan is not None:
                cached["shifts"] = self.shifts.to(device)
                cached["offset"] = self.plan.bias_int.to(torch.int32).to(device)
                cached["bias_float"] = self._bias_float().to(device)
            self._cuda_cache[str(device)] = cached
        return cached

    def _bias_float(self) -> torch.Tensor:
        assert self.plan is not None
        return self.plan.bias_float if self.plan.bias_float is not None else _NONE


class DeployedShiftLinear(_Deployed):
    """A frozen ShiftLinear running on packed codes."""

    def __init__(self, layer: ShiftLinear, mode: str = "auto") -> None:
        self.in_features, self.out_features = layer.in_features, layer.out_features
        super().__init__(layer, mode)

    def _derive(self) -> None:
        super()._derive()
        panels = to_panels(unpack_codes(self.packed.cpu(), self.bits, self.cols), self.bits)
        if "panels" in self._buffers:
            self.panels = panels.to(self.packed.device)
        else:
            self.register_buffer("panels", panels, persistent=False)
        width = panels.shape[0] * PANEL
        self._bias_padded = _NONE if self.bias is None else _pad(self.bias.cpu(), width)
        if self.plan is not None and self.offset is not None:
            self._offset_padded = _pad(self.offset, width)
            bf = self._bias_float()
            self._bias_float_padded = bf if bf.numel() == 0 else _pad(bf, width)

    @classmethod
    def from_shift_linear(cls, layer: ShiftLinear, mode: str = "auto") -> "DeployedShiftLinear":
        return cls(layer, mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        flat = x.reshape(-1, self.in_features)
        native = self._native(flat)
        if native is not None and flat.is_cuda:
            return self._forward_cuda(native, flat).reshape(*lead, self.out_features)
        if self.mode == "float":
            flat = self.input_quant(flat)
            if native is not None and self.normal_exponents:
                self.path = "native-cpu float"
                y = native.linear_float(flat.contiguous(), self.panels, self.bits, self.values,
                                        127 + self.codes.shift_max + int(self.codes.has_zero), self.codes.has_zero,
                                        self._bias_padded, self.out_features)
            else:
                self.path = "torch float"
                y = F.linear(flat, self.decoded_weight().to(flat), None if self.bias is None else self.bias.to(flat))
        else:
            plan = self.plan
            assert plan is not None
            if native is not None and self.offset is not None:
                self.path = "native-cpu integer"
                y = native.linear_int(flat.contiguous(), self.panels, self.bits, self.shifts,
                                      self.codes.shift_max + int(self.codes.has_zero) - plan.kbase, self.codes.has_zero,
                                      plan.in_scale, plan.lo, plan.hi, self._offset_padded, plan.out_scale,
                                      self._bias_float_padded, self.out_features)
            else:
                self.path = "torch integer (exact reference)"
                y = integer.reference_linear(flat, self.integer_weight(), plan).to(x.device)
        return y.reshape(*lead, self.out_features)

    def _forward_cuda(self, native: Any, x: torch.Tensor) -> torch.Tensor:
        t, x = self._cuda_tables(x.device), x.contiguous()
        if self.mode == "float":
            self.path = "native-cuda float"
            return native.linear_float(self.input_quant(x).contiguous(), self.packed, self.bits, t["values"], t["bias"])
        plan = self.plan
        assert plan is not None
        if not plan.fits_int32:
            self.path = "torch integer (exact reference)"
            return integer.reference_linear(x.cpu(), self.integer_weight(), plan).to(x.device)
        self.path = "native-cuda integer"
        return native.linear_int(x, self.packed, self.bits, t["shifts"], plan.in_scale, plan.lo, plan.hi, t["offset"],
                                 plan.out_scale, t["bias_float"])

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, {self.codes.describe()}, {self.mode} mode"


class DeployedShiftConv2d(_Deployed):
    """A frozen ShiftConv2d running on packed codes (zero padding only)."""

    def __init__(self, layer: ShiftConv2d, mode: str = "auto") -> None:
        if layer.padding_mode != "zeros" or isinstance(layer.padding, str):
            raise ShiftConfigError(f"deploy supports zero padding given as numbers, not padding_mode="
                                   f"{layer.padding_mode!r}/padding={layer.padding!r}")
        super().__init__(layer, mode)
        self.in_channels, self.out_channels = layer.in_channels, layer.out_channels
        self.kernel_size, self.stride = tuple(layer.kernel_size), tuple(layer.stride)
        self.padding, self.dilation, self.groups = tuple(layer.padding), tuple(layer.dilation), layer.groups
        # a following BatchNorm, folded: y = conv * scale + bias (a buffer: state dicts carry it)
        self.register_buffer("folded_scale", None)

    def fold_batchnorm(self, bn: nn.BatchNorm2d) -> None:
        """Apply ``bn`` (eval statistics) in this layer's epilogue: ``bn(conv(x) + b)`` becomes
        ``conv(x) * s + (b * s + t)`` per channel. Float mode only (integer mode stays exact)."""
        if self.mode != "float":
            raise ShiftConfigError("only float-mode layers fold a BatchNorm; integer mode keeps its exact output")
        scale = (bn.weight.detach() if bn.affine else 1.0) / torch.sqrt(bn.running_var.detach() + bn.eps)
        shift = (bn.bias.detach() if bn.affine else 0.0) - bn.running_mean.detach() * scale
        bias = shift if self.bias is None else self.bias.to(scale) * scale + shift
        self.folded_scale = scale.float().cpu().contiguous()
        self.bias = bias.float().cpu().contiguous()
        self._cuda_cache.clear()

    def _geometry(self) -> tuple[int, ...]:
        return (self.out_channels, *self.kernel_size, *self.stride, *self.padding, *self.dilation, self.groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        native = self._native(x)
        if native is not None and x.is_cuda:
            return self._forward_cuda(native, x)
        bias = _NONE if self.bias is None else self.bias
        if self.mode == "float":
            x = self.input_quant(x)
            if native is not None:
                self.path = "native-cpu float"
                scale = _NONE if self.folded_scale is None else self.folded_scale
                return native.conv2d_float_scaled(x.contiguous(), self.packed, self.bits, self.values, scale, bias,
                                                  *self._geometry())
            self.path = "torch float"
            weight = self.decoded_weight().to(x).view(self.out_channels, -1, *self.kernel_size)
            y = F.conv2d(x, weight, None, self.stride, self.padding, self.dilation, self.groups)
            return self._epilogue(y)
        plan = self.plan
        assert plan is not None
        if native is not None and self.offset is not None:
            self.path = "native-cpu integer"
            return native.conv2d_int(x.contiguous(), self.packed, self.bits, self.shifts, plan.in_scale, plan.lo,
                                     plan.hi, self.offset, plan.out_scale, self._bias_float(), *self._geometry())
        self.path = "torch integer (exact reference)"
        return integer.reference_conv2d(x, self.integer_weight(), plan, self.kernel_size, self.stride, self.padding,
                                        self.dilation, self.groups).to(x.device)

    def _epilogue(self, y: torch.Tensor) -> torch.Tensor:
        """Bias (and a folded BatchNorm's scale) applied outside a kernel."""
        if self.folded_scale is not None:
            y = y * self.folded_scale.to(y).view(1, -1, 1, 1)
        return y if self.bias is None else y + self.bias.to(y).view(1, -1, 1, 1)

    def _forward_cuda(self, native: Any, x: torch.Tensor) -> torch.Tensor:
        t = self._cuda_tables(x.device)
        if self.mode == "float":
            self.path = "native-cuda float"
            if self.folded_scale is not None:
                return self._epilogue(native.conv2d_float(self.input_quant(x).contiguous(), self.packed, self.bits,
                                                          t["values"], torch.empty(0, device=x.device),
                                                          *self._geometry()))
            return native.conv2d_float(self.input_quant(x).contiguous(), self.packed, self.bits, t["values"], t["bias"],
                                       *self._geometry())
        plan = self.plan
        assert plan is not None
        if not plan.fits_int32:
            self.path = "torch integer (exact reference)"
            return integer.reference_conv2d(x.cpu(), self.integer_weight(), plan, self.kernel_size, self.stride,
                                            self.padding, self.dilation, self.groups).to(x.device)
        self.path = "native-cuda integer"
        return native.conv2d_int(x.contiguous(), self.packed, self.bits, t["shifts"], plan.in_scale, plan.lo, plan.hi,
                                 t["offset"], plan.out_scale, t["bias_float"], *self._geometry())

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
                f"{self.codes.describe()}, {self.mode} mode"
                + (", BatchNorm folded" if self.folded_scale is not None else ""))


DEPLOYED_LAYERS = (DeployedShiftLinear, DeployedShiftConv2d)


def deploy(model: nn.Module, mode: str = "float", fold_batchnorm: bool = True) -> dict[str, str]:
    """Freeze ``model`` and replace every shift layer with a packed deployed layer (in place).

    ``mode``: ``"float"`` (fastest on CPUs), ``"integer"`` (bit-exact fixed point; every shift
    layer needs an activation format), or ``"auto"`` (integer where the layer has fixed-point
    inputs and exact sums fit, float elsewhere). ``fold_batchnorm``: an eval-mode BatchNorm2d
    that only ever reads a float-mode conv's output moves into that conv's epilogue and becomes
    an Identity (found by tracing the model with torch.fx; models that do not trace keep theirs).
    Every parameter stops requiring gradients: the kernels have no backward.
    Returns {layer name: "<kind> <mode>[ + <bn name>]"}.
    """
    if mode not in DEPLOY_MODES:
        raise ShiftConfigError(f"deploy mode {mode!r}: use one of {', '.join(DEPLOY_MODES)}")
    freeze(model)
    done: dict[str, str] = {}
    for name, module in list(model.named_modules()):
        if not is_shift_layer(module):
            continue
        try:
            if isinstance(module, ShiftLinear):
                new: nn.Module = DeployedShiftLinear(module, mode)
            else:
                new = DeployedShiftConv2d(module, mode)
        except ShiftConfigError as exc:
            raise ShiftConfigError(f"layer {name!r}: {exc}") from None
        new.train(module.training)
        replace_module(model, module, new.to(next(iter(module.buffers())).device))
        done[name] = f"{'linear' if isinstance(new, DeployedShiftLinear) else 'conv2d'} {new.mode}"
    model.requires_grad_(False)  # a deployed model is for inference: no autograd graph to build
    if fold_batchnorm and not model.training:
        modules = dict(model.named_modules())  # each pair is distinct: replacing one leaves the others valid
        for conv_name, bn_name in _conv_batchnorm_pairs(model):
            modules[conv_name].fold_batchnorm(modules[bn_name])
            replace_module(model, modules[bn_name], nn.Identity())
            done[conv_name] += f" + {bn_name}"
    return done


class _DeployedLeafTracer(torch.fx.Tracer):
    """Traces around deployed layers: their kernels take real tensors, not fx proxies."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, DEPLOYED_LAYERS) or super().is_leaf_module(m, qualname)


def _conv_batchnorm_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(deployed float conv, BatchNorm2d) module names where the BatchNorm is called once, on that
    conv's output alone, and nothing else reads the conv's output.

    A model torch.fx cannot trace (data-dependent control flow, ...) gets no pairs and one
    warning naming the model class and the trace error: folding matters (deployed ResNet-20 at
    batch 1 ran 1.54x faster than float PyTorch with it, 1.23x without; README, kernel benchmark),
    so it is not skipped silently.
    """
    modules = dict(model.named_modules())
    candidates = (any(isinstance(m, DeployedShiftConv2d) and m.mode == "float" for m in modules.values())
                  and any(isinstance(m, nn.BatchNorm2d) and not m.training for m in modules.values()))
    if not candidates:
        return []  # nothing could fold: no need to trace
    try:
        graph = _DeployedLeafTracer().trace(model)
    except Exception as exc:  # noqa: BLE001 - any trace failure only costs the folding
        lines = str(exc).strip().splitlines()
        reason = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
        warnings.warn(f"deploy: BatchNorm folding skipped, torch.fx cannot trace {type(model).__name__} ({reason}); "
                      "deploy continues without folding (the BatchNorms run as separate layers, slower at small "
                      "batches); pass fold_batchnorm=False to skip the attempt", stacklevel=3)
        return []
    calls = Counter(n.target for n in graph.nodes if n.op == "call_module")
    pairs = []
    for node in graph.nodes:
        conv = modules.get(node.target) if node.op == "call_module" else None
        if not isinstance(conv, DeployedShiftConv2d) or conv.mode != "float" or len(node.users) != 1:
            continue
        (user,) = node.users
        bn = modules.get(user.target) if user.op == "call_module" else None
        if (isinstance(bn, nn.BatchNorm2d) and not bn.training and bn.track_running_stats
                and calls[user.target] == 1 and calls[node.target] == 1 and len(user.args) == 1):
            pairs.append((node.target, user.target))
    return pairs


def inference_path(model: nn.Module) -> str:
    """Which arithmetic the deployed layers of ``model`` last ran, e.g. ``"native-cpu float"``;
    counts when they differ; ``"torch-emulation"`` when nothing is deployed."""
    paths = Counter(m.path for m in model.modules() if isinstance(m, DEPLOYED_LAYERS))
    if not paths:
        return "torch-emulation"
    if len(paths) == 1:
        return next(iter(paths))
    return ", ".join(f"{p} x{n}" for p, n in paths.most_common())


def deploy_exported(model: nn.Module, exported: Any, mode: str = "float") -> dict[str, str]:
    """Load a shift-code export (a path or :func:`autodsnn.shift.export_codes` dict; packed
    codes) into ``model`` and deploy it: a trained DSNN from its checkpoint to the kernels."""
    load_codes(model, exported)
    return deploy(model, mode)
