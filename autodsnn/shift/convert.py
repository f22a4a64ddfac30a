"""Turn float models into shift networks, freeze them, and export their integer codes.

``convert(model, config)`` swaps layers in place. Which layers: the convertible ones (plain
``nn.Linear`` / ``nn.Conv2d``) in forward order, narrowed by ``layer_types``, ``include``,
``exclude`` and ``filter_fn``, then the first ``shift_depth`` of them. Forward order is traced
with hooks when ``example_inputs`` are given; otherwise registration order is used (the report
says which), which is forward order for torchvision's classification models.

``convert(model, {"conv1": None, "layer1.*": ShiftConfig(mode="ps", weight_bits=3), "*":
ShiftConfig(mode="dense", weight_bits=2)})`` gives each layer its own design: the first pattern
(in the mapping's order) that matches a layer's name decides, None keeps it float, and a layer no
pattern matches stays float. Mixed models freeze, export, deploy and cost like uniform ones.
"""
from __future__ import annotations

import fnmatch
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Union

import torch
from torch import nn

from ..atomic import replaced_atomically
from .config import ShiftConfig
from .errors import ShiftConfigError
from .layers import FrozenWeight, ShiftConv2d, ShiftLinear, is_shift_layer
from .modules import replace_module
from .packing import canonical_codes, code_bits, decode_canonical, pack_codes, unpack_codes
from .quant import CodeSet

FilterFn = Callable[[nn.Module, str], bool]
LayerMap = Mapping[str, Union[ShiftConfig, None]]  # fnmatch pattern -> design (None: float)
EXPORT_FORMAT = "autodsnn-shift-codes"
# 3: the model's other parameters and buffers travel too; 2: packed canonical codes
# (autodsnn.shift.packing); 1: one code per byte
EXPORT_VERSION = 3
# Exports record each layer's zero level ("has_zero"); for one without it, what the built-in
# modes meant when it was written ("q" had a zero level up to autodsnn 0.2).
_LEGACY_HAS_ZERO = {"q": True, "ps": True, "dense": False}

# A handler per convertible float type: a new layer kind is an entry here, not an if-branch.
_CONVERTERS: dict[type[nn.Module], tuple[str, Callable[[Any, ShiftConfig], nn.Module]]] = {
    nn.Linear: ("linear", ShiftLinear.from_float),
    nn.Conv2d: ("conv2d", ShiftConv2d.from_float),
}
# Layer kinds a user might try to convert but that have no shift version (named in errors).
_UNSUPPORTED = (nn.Conv1d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
                nn.Bilinear, nn.LazyLinear, nn.LazyConv2d)


@dataclass
class ConvertedLayer:
    name: str
    kind: str
    shape: tuple[int, ...]
    codes: str
    activations: str
    rule: str | None = None  # the per-layer pattern that chose this design (None: one config)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "shape": list(self.shape),
                "codes": self.codes, "activations": self.activations, "rule": self.rule}


@dataclass
class ConversionReport:
    """What ``convert`` did: converted layers in order, candidates left float and why."""

    config: ShiftConfig | dict[str, ShiftConfig | None]  # one design, or the per-layer map
    order: str  # "forward" (traced) or "registration"
    converted: list[ConvertedLayer] = field(default_factory=list)
    kept_float: list[tuple[str, str]] = field(default_factory=list)
    num_convertible: int = 0

    def __len__(self) -> int:
        return len(self.converted)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.converted]

    @property
    def per_layer(self) -> bool:
        return not isinstance(self.config, ShiftConfig)

    def to_dict(self) -> dict[str, Any]:
        config = ({p: None if c is None else c.to_dict() for p, c in self.config.items()} if self.per_layer
                  else self.config.to_dict())
        return {"config" if not self.per_layer else "per_layer": config, "order": self.order,
                "num_convertible": self.num_convertible,
                "converted": [c.to_dict() for c in self.converted],
                "kept_float": [{"name": n, "reason": r} for n, r in self.kept_float]}

    def __str__(self) -> str:
        how = (f"per-layer map of {len(self.config)} pattern(s)" if self.per_layer
               else f"mode={self.config.mode}, weight_bits={self.config.weight_bits}")
        lines = [f"converted {len(self.converted)} of {self.num_convertible} convertible layers "
                 f"({self.order} order), {how}"]
        width = max([len(c.name) for c in self.converted] + [4])
        for c in self.converted:
            shape = "x".join(map(str, c.shape))
            rule = f"  [{c.rule}]" if c.rule is not None else ""
            lines.append(f"  {c.name:<{width}}  {c.kind:<6} {shape:<16} {c.codes}; {c.activations}{rule}")
        for name, reason in self.kept_float:
            lines.append(f"  {name:<{width}}  float  ({reason})")
        return "\n".join(lines)


def _kind_of(module: nn.Module) -> str | None:
    entry = _CONVERTERS.get(type(module))  # exact type: subclasses may read .weight directly
    return entry[0] if entry else None


def _forward_order(model: nn.Module, example_inputs: Any, names: dict[nn.Module, str]) -> list[str]:
    seen: list[str] = []
    handles = [m.register_forward_pre_hook(
                   lambda mod, _inp: seen.append(names[mod]) if names[mod] not in seen else None)
               for m in names]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            if isinstance(example_inputs, dict):
                model(**example_inputs)
            elif isinstance(example_inputs, (tuple, list)):
                model(*example_inputs)
            else:
                model(example_inputs)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    # Layers the traced forward never reached go last, in registration order.
    return seen + [n for n in names.values() if n not in seen]


def convertible_layers(model: nn.Module, example_inputs: Any = None,
                       layer_types: Iterable[str] = ("linear", "conv2d")) -> list[str]:
    """Qualified names of the layers ``convert`` could swap, in forward order (traced when
    ``example_inputs`` are given, registration order otherwise)."""
    types = set(layer_types)
    found = {m: n for n, m in model.named_modules() if _kind_of(m) in types}
    if example_inputs is None:
        return list(found.values())
    return _forward_order(model, example_inputs, found)


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def convert(model: nn.Module, config: ShiftConfig | LayerMap | None = None, *, filter_fn: FilterFn | None = None,
            example_inputs: Any = None) -> ConversionReport:
    """Swap the selected Linear/Conv2d layers of ``model`` (in place) for shift layers that start
    from their float weights. Returns a report of what was converted and what stayed float.

    ``config`` is one :class:`ShiftConfig` for every selected layer, or a per-layer map from
    fnmatch patterns on qualified layer names to a ShiftConfig or None (float): the first
    matching pattern decides, unmatched layers stay float. Raises :class:`ShiftConfigError` for
    a pattern that matches no convertible layer, a per-layer config that also selects layers
    (shift_depth, include, exclude), or a layer with non-finite weights; nothing is swapped then."""
    if not isinstance(model, nn.Module):
        raise ShiftConfigError(f"convert() needs a torch.nn.Module, got {type(model).__name__}")
    if isinstance(config, Mapping):
        return _convert_per_layer(model, dict(config), filter_fn, example_inputs)
    config = config or ShiftConfig()
    _check_explicit_patterns(model, config)
    names = convertible_layers(model, example_inputs, config.layer_types)
    modules = dict(model.named_modules())
    report = ConversionReport(config=config, order="registration" if example_inputs is None else "forward",
                              num_convertible=len(names))
    selected: list[str] = []
    for name in names:
        module = modules[name]
        if config.include and not _matches(name, config.include):
            report.kept_float.append((name, "not in include"))
        elif _matches(name, config.exclude):
            report.kept_float.append((name, "excluded"))
        elif filter_fn is not None and not filter_fn(module, name):
            report.kept_float.append((name, "filter_fn"))
        else:
            selected.append(name)
    depth = len(selected) if config.shift_depth == "all" else int(config.shift_depth)
    for name in selected[depth:]:
        report.kept_float.append((name, f"beyond shift_depth={config.shift_depth}"))
    for name in selected[:depth]:  # all checked before any is swapped: no half-converted model
        _check_finite(name, modules[name])
    for name in selected[:depth]:
        old = modules[name]
        kind = _kind_of(old)
        new = _CONVERTERS[type(old)][1](old, config)
        replace_module(model, old, new)
        fmt = new.input_quant.fmt
        report.converted.append(ConvertedLayer(name, kind or "?", tuple(old.weight.shape), new.codes.describe(),
                                               "float inputs" if fmt is None else fmt.describe()))
    return report


def _convert_per_layer(model: nn.Module, layer_map: dict[str, ShiftConfig | None], filter_fn: FilterFn | None,
                       example_inputs: Any) -> ConversionReport:
    """convert() with a design per layer (see there)."""
    for pattern, cfg in layer_map.items():
        if cfg is not None and not isinstance(cfg, ShiftConfig):
            raise ShiftConfigError(f"per-layer map: {pattern!r} maps to {type(cfg).__name__}; use a ShiftConfig or "
                                   "None (float)")
        if cfg is not None and (cfg.shift_depth != "all" or cfg.include or cfg.exclude):
            raise ShiftConfigError(f"per-layer map: the config for {pattern!r} sets shift_depth/include/exclude; "
                                   "in a per-layer map the patterns choose the layers: drop those settings")
    names = convertible_layers(model, example_inputs)
    for pattern in layer_map:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
            shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
            raise ShiftConfigError(f"per-layer map: pattern {pattern!r} matches no convertible layer (Linear or "
                                   f"Conv2d) of {type(model).__name__}; its layers are {shown}")
    modules = dict(model.named_modules())
    report = ConversionReport(config=layer_map, order="registration" if example_inputs is None else "forward",
                              num_convertible=len(names))
    chosen: list[tuple[str, str, ShiftConfig]] = []
    for name in names:
        rule = next((p for p in layer_map if fnmatch.fnmatchcase(name, p)), None)
        if rule is None:
            report.kept_float.append((name, "no pattern matches"))
        elif layer_map[rule] is None:
            report.kept_float.append((name, f"{rule!r}: float"))
        elif filter_fn is not None and not filter_fn(modules[name], name):
            report.kept_float.append((name, "filter_fn"))
        else:
            chosen.append((name, rule, layer_map[rule]))
    for name, _, _ in chosen:  # all checked before any is swapped: no half-converted model
        _check_finite(name, modules[name])
    for name, rule, cfg in chosen:
        old = modules[name]
        new = _CONVERTERS[type(old)][1](old, cfg)
        replace_module(model, old, new)
        fmt = new.input_quant.fmt
        report.converted.append(ConvertedLayer(name, _kind_of(old) or "?", tuple(old.weight.shape),
                                               new.codes.describe(), "float inputs" if fmt is None else fmt.describe(),
                                               rule))
    return report


def _check_finite(name: str, module: nn.Module) -> None:
    """Rounding a NaN or an infinity to a power of two gives a plausible-looking code (0, or the
    largest level): refuse instead, naming the layer."""
    for part in ("weight", "bias"):
        values = getattr(module, part, None)
        if values is None or values.is_meta:
            continue
        bad = int((~torch.isfinite(values.detach())).sum())
        if bad:
            raise ShiftConfigError(f"layer {name!r}: {bad} of its {values.numel()} float {part} values are NaN or "
                                   "infinite; convert needs finite weights (check the checkpoint or the training "
                                   "that produced them)")


def _check_explicit_patterns(model: nn.Module, config: ShiftConfig) -> None:
    """A layer the user named on purpose but that cannot be converted is an error, not a skip."""
    if not config.include:
        return
    for name, module in model.named_modules():
        if name and _matches(name, config.include) and isinstance(module, _UNSUPPORTED):
            raise ShiftConfigError(
                f"layer {name!r} is {type(module).__name__}, which has no shift version: only Linear and "
                "Conv2d convert; narrow the include pattern")


def shift_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if is_shift_layer(m)]


def freeze(model: nn.Module) -> nn.Module:
    """Snap every shift layer to its discrete eval-mode weights (int8 sign, int16 shift buffers); the
    latent parameters are dropped. A frozen model's outputs equal the unfrozen eval outputs."""
    for _, layer in shift_layers(model):
        wq = layer.weight_quant
        if isinstance(wq, FrozenWeight):
            continue
        sign, shift = wq.sign_and_shift()
        dtype = next(iter(wq.parameters())).dtype
        layer.weight_quant = FrozenWeight(sign, shift, wq.codes, dtype)
        if layer.bias is not None:
            with torch.no_grad():
                q = layer.quantized_bias()
                layer.bias.data.copy_(q)
            layer.bias.requires_grad_(False)
    return model


def export_codes(model: nn.Module) -> dict[str, Any]:
    """The integer weight codes of every shift layer, with what is needed to rebuild it. Plain
    dicts, lists, numbers and tensors: loadable with ``torch.load(weights_only=True)``."""
    layers: dict[str, Any] = {}
    for name, layer in shift_layers(model):
        sign, shift = layer.sign_and_shift()
        codes: CodeSet = layer.codes
        fmt = layer.input_quant.fmt
        entry: dict[str, Any] = {
            "kind": "linear" if isinstance(layer, ShiftLinear) else "conv2d",
            "mode": codes.mode, "weight_bits": codes.weight_bits, "shift_max": codes.shift_max,
            "shift_min": codes.shift_min, "has_zero": codes.has_zero,
            "shape": list(sign.shape),
            "code_bits": code_bits(codes.weight_bits),
            "packed": pack_codes(canonical_codes(codes, sign, shift), code_bits(codes.weight_bits)),
            "bias": None if layer.bias is None else layer.quantized_bias().detach().cpu().clone(),
            "activation": None if fmt is None else {"int_bits": fmt.int_bits, "frac_bits": fmt.frac_bits,
                                                    "signed": fmt.signed},
        }
        if isinstance(layer, ShiftConv2d):
            entry.update(stride=list(layer.stride), padding=layer.padding if isinstance(layer.padding, str)
                         else list(layer.padding), dilation=list(layer.dilation), groups=layer.groups,
                         padding_mode=layer.padding_mode)
        layers[name] = entry
    # Everything else the model needs (float layers, BatchNorm statistics, ...): a partly shifted
    # network deployed from its export must compute what it computed.
    rest = {key: value.detach().cpu().clone() for key, value in model.state_dict().items()
            if not _in_layers(key, layers)}
    return {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "layers": layers, "state": rest}


def _in_layers(key: str, layers: Iterable[str]) -> bool:
    return any(name == "" or key.startswith(name + ".") for name in layers)


def export(model: nn.Module, path: Union[str, os.PathLike]) -> Path:
    """Write :func:`export_codes` to ``path`` (torch.save of plain containers), atomically: a kill
    mid-write leaves the previous file, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replaced_atomically(path) as tmp:
        torch.save(export_codes(model), tmp)
    return path


def load_exported(path: Union[str, os.PathLike]) -> dict[str, Any]:
    data = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
        raise ShiftConfigError(f"{path} is not an autodsnn shift-code export: write one with autodsnn.shift.export()")
    if data.get("version", 0) > EXPORT_VERSION:
        raise ShiftConfigError(f"{path} was written by a newer autodsnn (format {data['version']}): upgrade autodsnn")
    return data


def load_codes(model: nn.Module, exported: Union[dict[str, Any], str, os.PathLike]) -> nn.Module:
    """Load exported codes into ``model`` (in place): each named layer, float or shift, becomes a
    frozen shift layer with exactly the exported weights and bias."""
    data = exported if isinstance(exported, dict) else load_exported(exported)
    modules = dict(model.named_modules())
    for name, entry in data["layers"].items():
        if name not in modules:
            raise ShiftConfigError(f"exported layer {name!r} does not exist in this model: "
                                   "load into the same architecture")
        layer = modules[name]
        act = entry["activation"]
        # The export says what its codes mean: its own zero level, not today's default for the mode.
        has_zero = entry.get("has_zero", _LEGACY_HAS_ZERO.get(entry["mode"]))
        try:
            cfg = ShiftConfig(mode=entry["mode"], weight_bits=entry["weight_bits"], shift_max=entry["shift_max"],
                              zero_level=has_zero,
                              act_int_bits=None if act is None else act["int_bits"],
                              act_frac_bits=None if act is None else act["frac_bits"],
                              act_signed=True if act is None else act["signed"])
        except ShiftConfigError as exc:
            raise ShiftConfigError(f"exported layer {name!r}: {exc}") from None
        if not is_shift_layer(layer):
            if _kind_of(layer) != entry["kind"]:
                raise ShiftConfigError(f"layer {name!r} is {type(layer).__name__}, "
                                       f"the export has a {entry['kind']} layer there")
            new = _CONVERTERS[type(layer)][1](layer, cfg)
            replace_module(model, layer, new)
            layer = new
        if list(layer.sign_and_shift()[0].shape) != entry["shape"]:
            raise ShiftConfigError(f"layer {name!r} has shape {list(layer.sign_and_shift()[0].shape)}, "
                                   f"the export {entry['shape']}")
        codes = cfg.code_set()
        if "packed" in entry:
            cols = math.prod(entry["shape"][1:])
            sign, shift = decode_canonical(unpack_codes(entry["packed"], entry["code_bits"], cols), codes)
            sign, shift = sign.view(entry["shape"]), shift.view(entry["shape"])
        else:  # format 1
            sign, shift = codes.decode(entry["codes"])
        device = layer.weight_quant.shift_max.device
        dtype = next((p.dtype for p in layer.parameters() if p.is_floating_point()), torch.float32)
        layer.weight_quant = FrozenWeight(sign.to(device), shift.to(device), codes, dtype)
        if entry["bias"] is not None:
            layer.bias.data.copy_(entry["bias"].to(layer.bias.device))
            layer.bias.requires_grad_(False)
    _load_rest(model, data)
    return model


def _load_rest(model: nn.Module, data: dict[str, Any]) -> None:
    """The model's parameters and buffers outside the shift layers, from the export (format 3).
    An older export has none: say so instead of leaving float layers silently as they were."""
    needed = [key for key in model.state_dict() if not _in_layers(key, data["layers"])]
    if "state" not in data:
        if needed:
            warnings.warn(f"this shift-code export (format {data.get('version')}) carries only the shift layers: "
                          f"the model's {len(needed)} other tensors (e.g. {needed[0]!r}) keep the values they have; "
                          "load them first, or re-export the trained model with this autodsnn", stacklevel=3)
        return
    state = data["state"]
    missing = [key for key in needed if key not in state]
    needed_set = set(needed)
    unexpected = [key for key in state if key not in needed_set]
    if missing or unexpected:
        what = f"lacks {missing[0]!r}" if missing else f"has {unexpected[0]!r}, which the model does not"
        raise ShiftConfigError(f"the export does not match this model outside its shift layers: it {what} "
                               f"({len(missing)} missing, {len(unexpected)} unexpected); load into the same "
                               "architecture")
    model.load_state_dict(state, strict=False)
