"""Analytic inference cost of a (shift) network: parameters, operations, bits, energy.

Counting (one forward pass of ``input_shape``, batch included):

* float ``Conv2d``/``Linear``: one multiply-accumulate (MAC) per weight per output position;
* shift layers: one shift and one add per **non-zero** weight per output position (a zero weight
  costs nothing); with fixed-point inputs these are integer ops, with float inputs the "shift"
  is an exponent add (``x * 2^k`` changes only the exponent) followed by a float add;
* BatchNorm: one multiply and one add per output element (it cannot be folded into
  power-of-two weights without leaving the code set, so it stays at inference);
* average pooling: one add per input element and one multiply per output element;
* ``SpatialShift``, ReLU and max pooling: no arithmetic counted (moves and comparisons);
* matrix products and convolutions the model calls functionally (``F.linear`` on a parameter of
  its own, ``x @ w``) are counted as float MACs (``torch.utils.flop_counter``); elementwise
  functional ops (e.g. a residual ``out + x``) are not.

Storage (parameters, model bits, the DRAM read of every weight) is counted once per tensor,
operations once per call, whatever the structure: a module shared by two places or called in a
loop stores its weights once and computes at every call.

Energy uses a per-operation table (:class:`EnergyTable`, default ``ENERGY_45NM``) from Horowitz,
"Computing's energy problem", ISSCC 2014 (45 nm, 0.9 V), plus one read of every weight bit from
DRAM per forward pass. The shift cost is our assumption: a barrel shift costs about an integer
add of the same width. It is an estimate to compare designs, not a measurement.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from .layers import ShiftConv2d, ShiftLinear, is_shift_layer
from .spatial import SpatialShift


@dataclass(frozen=True)
class EnergyTable:
    """Energy per operation in picojoules."""

    fp32_mul: float = 3.7
    fp32_add: float = 0.9
    int32_add: float = 0.1
    shift: float = 0.1          # barrel shift of a 32-bit accumulator operand, ~ an int32 add
    exponent_add: float = 0.03  # float x * 2^k: an 8-bit add on the exponent field
    dram_bit: float = 1300.0 / 64  # 1.3 nJ per 64-bit DRAM read (the table's lower figure)


ENERGY_45NM = EnergyTable()


@dataclass
class LayerCost:
    name: str
    kind: str
    params: int = 0
    macs: int = 0
    shifts: int = 0
    adds: int = 0
    muls: int = 0
    bits: int = 0
    energy_pj: float = 0.0


@dataclass
class Cost:
    """Totals of one forward pass; per-layer rows in ``layers``."""

    input_shape: tuple[int, ...]
    params: int
    shift_params: int
    macs: int
    shifts: int
    adds: int
    muls: int
    model_bits: int
    energy_pj: dict[str, float]
    layers: list[LayerCost] = field(default_factory=list)

    @property
    def total_energy_pj(self) -> float:
        return sum(self.energy_pj.values())

    @property
    def energy_joules(self) -> float:
        return self.total_energy_pj * 1e-12

    @property
    def model_megabytes(self) -> float:
        return self.model_bits / 8 / 1e6

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["total_energy_pj"] = self.total_energy_pj
        return d

    def __str__(self) -> str:
        e = self.energy_pj
        return (f"params {self.params:,} ({self.shift_params:,} shift) | MACs {self.macs:,} | shifts {self.shifts:,} | "
                f"adds {self.adds:,} | muls {self.muls:,} | size {self.model_megabytes:.3f} MB | energy "
                f"{self.total_energy_pj / 1e6:.3f} uJ "
                f"(compute {(self.total_energy_pj - e['weight_memory']) / 1e6:.3f}, "
                f"weights from DRAM {e['weight_memory'] / 1e6:.3f})")


def _positions(out: torch.Tensor, channels: int) -> int:
    """Output positions per output channel/feature (batch and spatial dims together)."""
    return out.numel() // channels


def _shift_layer_cost(name: str, layer: nn.Module, out: torch.Tensor, table: EnergyTable) -> LayerCost:
    """The operations of one call of a shift layer (storage is counted apart, once)."""
    sign, _ = layer.sign_and_shift()
    nonzero = int((sign != 0).sum())
    channels = layer.out_channels if isinstance(layer, ShiftConv2d) else layer.out_features
    ops = _positions(out, channels) * nonzero
    bias_adds = out.numel() if layer.bias is not None else 0
    integer = layer.input_quant.fmt is not None
    per_shift = table.shift if integer else table.exponent_add
    per_add = table.int32_add if integer else table.fp32_add
    return LayerCost(name, type(layer).__name__, shifts=ops, adds=ops + bias_adds,
                     energy_pj=ops * per_shift + (ops + bias_adds) * per_add)


def _float_layer_cost(name: str, module: nn.Module, inp: torch.Tensor, out: torch.Tensor,
                     table: EnergyTable) -> LayerCost:
    """The operations of one call of a float module (storage is counted apart, once)."""
    row = LayerCost(name, type(module).__name__)
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        row.macs = _dense_macs(module, out)  # every output element: one MAC per fan-in weight
        row.adds = out.numel() if module.bias is not None else 0
        row.energy_pj = row.macs * (table.fp32_mul + table.fp32_add) + row.adds * table.fp32_add
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        row.muls = row.adds = out.numel()
        row.energy_pj = out.numel() * (table.fp32_mul + table.fp32_add)
    elif isinstance(module, (nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AvgPool1d, nn.AdaptiveAvgPool1d)):
        row.adds, row.muls = inp.numel(), out.numel()
        row.energy_pj = row.adds * table.fp32_add + row.muls * table.fp32_mul
    return row


def _is_leaf(module: nn.Module) -> bool:
    return is_shift_layer(module) or isinstance(module, SpatialShift) or not any(True for _ in module.children())


def _storage(name: str, module: nn.Module) -> LayerCost:
    """What ``module`` stores: codes and bias for a shift layer, its own parameters otherwise."""
    name = name or "(model)"
    if is_shift_layer(module):
        n_w = module.sign_and_shift()[0].numel()
        n_b = 0 if module.bias is None else module.bias.numel()
        return LayerCost(name, type(module).__name__, params=n_w + n_b, bits=n_w * module.codes.weight_bits + 32 * n_b)
    own = sum(p.numel() for p in module.parameters(recurse=False))
    return LayerCost(name, type(module).__name__, params=own, bits=32 * own)


def _dense_macs(module: nn.Module, out: torch.Tensor) -> int:
    """The MACs the float kernel behind a linear/conv module (float, or a shift layer's
    emulation) performs: what torch's flop counter sees for it."""
    if isinstance(module, nn.Linear):
        return out.numel() * module.in_features
    if isinstance(module, nn.Conv2d):
        return out.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)
    return 0


def cost(model: nn.Module, input_shape: Sequence[int], *, table: EnergyTable = ENERGY_45NM,
         device: torch.device | str | None = None) -> Cost:
    """Count one forward pass of a zero tensor of ``input_shape`` (``(C, H, W)`` means batch 1).
    One row per module: its storage once, its operations summed over every call."""
    from torch.utils.flop_counter import FlopCounterMode

    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3:
        shape = (1, *shape)
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    # A shift layer counts as one leaf: its quantizer submodules hold training-time latents.
    inside_shift = {id(sub) for m in model.modules() if is_shift_layer(m) for sub in m.modules() if sub is not m}
    owners = [(n, m) for n, m in model.named_modules() if id(m) not in inside_shift]  # shared ones once
    rows = {id(m): _storage(n, m) for n, m in owners}
    hooked_macs = 0

    def record(module: nn.Module, inputs: tuple, out: Any) -> None:
        nonlocal hooked_macs
        if not isinstance(out, torch.Tensor):
            return
        inp = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else torch.empty(0)
        row = rows[id(module)]
        calls = _shift_layer_cost(row.name, module, out, table) if is_shift_layer(module) else \
            _float_layer_cost(row.name, module, inp, out, table)
        for key in ("macs", "shifts", "adds", "muls", "energy_pj"):
            setattr(row, key, getattr(row, key) + getattr(calls, key))
        hooked_macs += _dense_macs(module, out)

    leaves = [(n, m) for n, m in owners if _is_leaf(m)]
    handles = [m.register_forward_hook(record) for _, m in leaves]
    was_training = model.training
    counter = FlopCounterMode(display=False)
    try:
        model.eval()
        with torch.no_grad(), counter:
            model(torch.zeros(shape, device=device, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    functional = max(0, counter.get_total_flops() // 2 - hooked_macs)  # a MAC is two flops
    if functional:
        rows[id(model)].macs += functional
        rows[id(model)].energy_pj += functional * (table.fp32_mul + table.fp32_add)

    leaf_ids = {id(m) for _, m in leaves}
    layers = [r for key, r in rows.items() if key in leaf_ids or r.params or r.macs]
    model_bits = sum(r.bits for r in layers)
    compute = {"float_mac": 0.0, "shift_add": 0.0, "other": 0.0}
    for r in layers:
        key = "shift_add" if r.shifts else "float_mac" if r.macs else "other"
        compute[key] += r.energy_pj
    return Cost(
        input_shape=shape,
        params=sum(r.params for r in layers),
        shift_params=sum(r.params for r in layers if r.kind in (ShiftConv2d.__name__, ShiftLinear.__name__)),
        macs=sum(r.macs for r in layers), shifts=sum(r.shifts for r in layers),
        adds=sum(r.adds for r in layers), muls=sum(r.muls for r in layers),
        model_bits=model_bits,
        energy_pj={**compute, "weight_memory": model_bits * table.dram_bit},
        layers=layers,
    )
