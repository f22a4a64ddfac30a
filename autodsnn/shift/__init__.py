"""`autodsnn.shift`, the shift-layer library. May import: nothing but the base modules errors, resources, atomic.

Deep shift layers, conversion, freezing/export, packed codes and kernels, spatial shift and cost::

    from autodsnn.shift import ShiftConfig, convert, freeze, export, cost
    report = convert(model, ShiftConfig(mode="ps", weight_bits=5, shift_depth="all"))
    print(report)
"""
from .config import ShiftConfig
from .convert import (ConversionReport, LayerMap, convert, convertible_layers, export, export_codes, freeze,
                      load_codes, load_exported, shift_layers)
from .cost import ENERGY_45NM, Cost, EnergyTable, cost
from .errors import ShiftConfigError
from .kernels import (DeployedShiftConv2d, DeployedShiftLinear, deploy, deploy_exported, inference_path)
from .layers import (DenseWeight, FrozenWeight, InputQuantizer, PSWeight, QWeight, ShiftConv2d, ShiftLinear,
                     WeightQuantizer, is_shift_layer)
from .modes import WEIGHT_MODES, register_weight_mode
from .quant import CodeSet, FixedPoint, quantize_fixed_point, quantize_pow2
from .spatial import ConvShiftConv, SpatialShift, shift_offsets

__all__ = [
    "ShiftConfig", "ShiftConfigError", "CodeSet", "FixedPoint", "convert", "LayerMap", "convertible_layers",
    "ConversionReport", "freeze", "export", "export_codes", "load_codes", "load_exported", "shift_layers",
    "cost", "Cost", "EnergyTable", "ENERGY_45NM", "ShiftLinear", "ShiftConv2d", "WeightQuantizer",
    "QWeight", "PSWeight", "DenseWeight", "FrozenWeight", "InputQuantizer", "WEIGHT_MODES",
    "register_weight_mode", "is_shift_layer", "SpatialShift", "ConvShiftConv", "shift_offsets",
    "quantize_fixed_point", "quantize_pow2", "deploy", "deploy_exported", "inference_path",
    "DeployedShiftLinear", "DeployedShiftConv2d",
]
