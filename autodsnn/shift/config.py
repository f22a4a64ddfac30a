"""`ShiftConfig`: everything that decides how a model becomes a shift network."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Union

from .errors import ShiftConfigError
from .modes import weight_mode
from .quant import ROUNDINGS, SIGN_GRADS, CodeSet, FixedPoint

CONFIG_VERSION = 2  # 2: zero_level; a version-1 "q" config had a zero level (kept on reading)
LAYER_TYPES = ("linear", "conv2d")
INITS = ("keep", "low-variance")

ShiftMax = Union[int, str]  # an exponent, or "auto" (per layer, from the float weights)


@dataclass(frozen=True)
class ShiftConfig:
    """How to convert a model into a deep shift network.

    mode:           a registered weight mode (autodsnn.shift.modes): built in are "q"
                    (DeepShift-Q, zero-free), "ps" (DeepShift-PS, with a zero level) and
                    "dense" (DenseShift, zero-free).
    weight_bits:    2..8 bits per weight code (1 sign bit + shift bits).
    zero_level:     None: the mode's own code set. True: "q" spends one magnitude code on 0
                    (what "q" meant in autodsnn <= 0.2); modes without that choice refuse it.
    shift_max:      largest exponent of a weight (0: |w| <= 1, DeepShift's choice; >0 allows left
                    shifts), or "auto": per layer, the exponent that rounds the layer's float
                    weights with the least squared error (see layers.resolve_shift_max).
    rounding:       "deterministic" or "stochastic" (stochastic applies only in training).
    sign_grad:      ps only: "scaled" dL/dS = dL/dW * 2^round(P) (the paper's chain rule) or
                    "unscaled" dL/dS = dL/dW (DeepShift's code); see quant.SIGN_GRADS.
    act_int_bits / act_frac_bits: fixed-point format of every converted layer's input
                    (None: activations stay float). act_signed: sign bit or not.
    shift_depth:    convert the first N convertible layers in forward order, or "all".
    include / exclude: fnmatch patterns on qualified module names ("layer1.*", "fc").
    layer_types:    which layer kinds may be converted: "linear", "conv2d".
    init:           "keep" derives shift parameters from the current float weights (pretrained
                    or not); "low-variance" re-draws them from N(0, (0.5/sqrt(fan_in))^2) first,
                    DenseShift's recipe for training from scratch.
    quantize_bias:  with fixed-point activations, round biases to the same grid.
    """

    mode: str = "q"
    weight_bits: int = 5
    shift_max: ShiftMax = 0
    zero_level: bool | None = None
    rounding: str = "deterministic"
    sign_grad: str = "scaled"
    act_int_bits: int | None = None
    act_frac_bits: int | None = None
    act_signed: bool = True
    shift_depth: int | str = "all"
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    layer_types: tuple[str, ...] = LAYER_TYPES
    init: str = "keep"
    quantize_bias: bool = True

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("mode", str(self.mode).lower())
        set_("rounding", str(self.rounding).lower())
        for name in ("include", "exclude", "layer_types"):
            value = getattr(self, name)
            set_(name, (value,) if isinstance(value, str) else tuple(value))
        weight_mode(self.mode)  # an unknown mode names the registered ones
        if self.rounding not in ROUNDINGS:
            raise ShiftConfigError(f"unknown rounding {self.rounding!r}: use one of {', '.join(ROUNDINGS)}")
        if self.sign_grad not in SIGN_GRADS:
            raise ShiftConfigError(f"unknown sign_grad {self.sign_grad!r}: use one of {', '.join(SIGN_GRADS)}")
        self.code_set(0 if self.shift_max == "auto" else None)  # validates bits, range and zero level
        if (self.act_int_bits is None) != (self.act_frac_bits is None):
            raise ShiftConfigError("set both act_int_bits and act_frac_bits (or neither for float activations)")
        self.activation_format()  # validates the widths
        depth = self.shift_depth
        if depth != "all" and (not isinstance(depth, int) or isinstance(depth, bool) or depth < 0):
            raise ShiftConfigError(f"shift_depth={depth!r} must be a non-negative integer or 'all'")
        bad = [t for t in self.layer_types if t not in LAYER_TYPES]
        if bad:
            raise ShiftConfigError(f"unknown layer type {bad[0]!r}: use {' or '.join(LAYER_TYPES)}")
        if self.init not in INITS:
            raise ShiftConfigError(f"unknown init {self.init!r}: use one of {', '.join(INITS)}")

    # --- derived formats ---------------------------------------------------------------------
    def code_set(self, shift_max: int | None = None) -> CodeSet:
        """The weight code set; ``shift_max`` must be given when the config says "auto"."""
        top = self.shift_max if shift_max is None else shift_max
        if top == "auto":
            raise ShiftConfigError("shift_max='auto' is resolved per layer: pass the layer's shift_max")
        return CodeSet(self.mode, self.weight_bits, int(top), self.zero_level)

    def activation_format(self) -> FixedPoint | None:
        if self.act_int_bits is None:
            return None
        return FixedPoint(int(self.act_int_bits), int(self.act_frac_bits), bool(self.act_signed))

    @property
    def stochastic(self) -> bool:
        return self.rounding == "stochastic"

    # --- serialization (versioned, for run stores and exported models) ----------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("include", "exclude", "layer_types"):
            d[k] = list(d[k])
        return {"version": CONFIG_VERSION, **d}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ShiftConfig":
        data = dict(data)
        version = data.pop("version", CONFIG_VERSION)
        if version > CONFIG_VERSION:
            raise ShiftConfigError(f"ShiftConfig version {version} is newer than this autodsnn ({CONFIG_VERSION}): "
                                   "upgrade autodsnn")
        if version < 2 and data.get("mode", "q") == "q" and data.get("zero_level") is None:
            data["zero_level"] = True  # version 1 gave "q" a zero level: keep what the config meant
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ShiftConfigError(f"unknown ShiftConfig field {unknown[0]!r}: "
                                   f"valid fields are {', '.join(sorted(known))}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ShiftConfig":
        return cls.from_dict(json.loads(text))

    def replace(self, **changes: Any) -> "ShiftConfig":
        return dataclasses.replace(self, **changes)


__all__ = ["ShiftConfig", "CONFIG_VERSION"]
