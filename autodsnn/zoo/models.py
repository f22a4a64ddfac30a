"""Model zoo by name: DeepShift's MNIST nets, CIFAR ResNets, ShiftResNets and torchvision.

    from autodsnn.zoo.models import create_model, list_models, model_info
    model = create_model("resnet20", num_classes=10)
    list_models("shiftresnet*")            # ['shiftresnet110', 'shiftresnet20', 'shiftresnet56']
    model_info("mnist-conv").keep_float    # ('conv1', 'fc2')

Our own models register with ``@register_model(name)``; every torchvision classification model
is available as ``tv-<name>`` (``tv-resnet18``, ``tv-mobilenet_v2``, ...). Every builder adapts
to the data set through ``num_classes``, ``in_channels`` and ``input_size``. Weights start
random; ``load_weights(model, path)`` loads a float checkpoint of ours, and ``pretrained=True``
asks torchvision for its ImageNet weights (tv models only, needs a network).
"""
from __future__ import annotations

import difflib
import fnmatch
import inspect
import math
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..shift import ConvShiftConv, convertible_layers
from .errors import ZooError

__all__ = [
    "ModelInfo", "register_model", "create_model", "list_models", "model_info",
    "num_convertible_layers", "load_weights", "TV_PREFIX",
]

TV_PREFIX = "tv-"
# Arguments create_model handles itself; builders only see the resolved values.
_COMMON_ARGS = ("num_classes", "in_channels", "input_size", "pretrained")

InputSize = tuple[int, int, int]


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelInfo:
    """What a caller needs to know about a model before training or converting it."""
    name: str
    input_size: InputSize          # default (C, H, W) for the given in_channels/input_size
    family: str
    description: str
    keep_float: tuple[str, ...]    # first conv and classifier: the layers conversion may keep dense
    num_convertible: int           # nn.Linear/nn.Conv2d layers convert() could swap
    pretrained_available: bool = False

    def num_convertible_layers(self) -> int:
        return self.num_convertible


@dataclass(frozen=True)
class _Entry:
    builder: Callable[..., nn.Module]
    family: str
    input_size: InputSize
    description: str


_REGISTRY: dict[str, _Entry] = {}


def register_model(name: str, *, family: str = "misc", input_size: InputSize = (3, 32, 32),
                   description: str | None = None) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register ``builder(num_classes, in_channels, input_size, **kw) -> nn.Module`` under ``name``.

    ``input_size`` is the default (C, H, W); the description defaults to the docstring's first
    line."""
    if name.startswith(TV_PREFIX):
        raise ZooError(f"model names starting with {TV_PREFIX!r} are reserved for torchvision models")

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ZooError(f"model {name!r} is already registered")
        doc = description or (inspect.getdoc(builder) or name).splitlines()[0]
        _REGISTRY[name] = _Entry(builder, family, tuple(input_size), doc)  # type: ignore[arg-type]
        return builder

    return decorate


def _torchvision_names() -> list[str]:
    import torchvision
    # module=torchvision.models lists only the classification models (no detection/video/...).
    return sorted(torchvision.models.list_models(module=torchvision.models))


def list_models(pattern: str = "*", *, include_torchvision: bool = True) -> list[str]:
    """Sorted model names matching an fnmatch ``pattern`` (``"resnet*"``, ``"tv-vgg*"``)."""
    names = list(_REGISTRY)
    if include_torchvision:
        names += [TV_PREFIX + n for n in _torchvision_names()]
    return sorted(n for n in names if fnmatch.fnmatchcase(n, pattern))


def _unknown(name: str) -> ZooError:
    names = list_models()
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    ours = ", ".join(list_models(include_torchvision=False))
    hint = f"did you mean {', '.join(close)}?" if close else f"ours are {ours}"
    return ZooError(f"unknown model {name!r}; {hint} (list_models() gives all {len(names)}, "
                      f"torchvision ones as '{TV_PREFIX}<name>')")


def _resolve_input(default: InputSize, in_channels: int | None,
                   input_size: int | Sequence[int] | None) -> InputSize:
    """Merge the model's default (C, H, W) with what the caller asked for."""
    c, h, w = default
    if input_size is not None:
        size = (input_size, input_size) if isinstance(input_size, int) else tuple(int(s) for s in input_size)
        if len(size) == 3:
            if in_channels is not None and in_channels != size[0]:
                raise ZooError(f"in_channels={in_channels} contradicts input_size={tuple(size)}")
            c, h, w = size
        elif len(size) == 2:
            h, w = size
        else:
            raise ZooError(f"input_size must be H, (H, W) or (C, H, W), got {input_size!r}")
    if in_channels is not None:
        c = int(in_channels)
    if min(c, h, w) < 1:
        raise ZooError(f"input size {(c, h, w)} must be positive")
    return (c, h, w)


def _check_kwargs(name: str, builder: Callable[..., nn.Module], kw: Mapping[str, Any]) -> None:
    params = inspect.signature(builder).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    extra = [k for k in kw if k not in params]
    if extra:
        accepted = [p for p in params if p not in _COMMON_ARGS] or ["none"]
        raise ZooError(f"model {name!r} takes no argument {extra[0]!r} (its own arguments: {', '.join(accepted)})")


def create_model(name: str, num_classes: int = 10, in_channels: int | None = None,
                 input_size: int | Sequence[int] | None = None, *, pretrained: bool = False,
                 **kw: Any) -> nn.Module:
    """Build model ``name`` with random weights (or torchvision's with ``pretrained=True``).

    ``in_channels``/``input_size`` default to the model's own (``model_info(name).input_size``);
    ``input_size`` may be H, (H, W) or (C, H, W). Extra keywords go to the builder (for
    example ``expansion`` for ShiftResNets, any torchvision constructor argument for tv models).
    """
    if num_classes < 1:
        raise ZooError(f"num_classes must be >= 1, got {num_classes}")
    if name.startswith(TV_PREFIX):
        return _create_torchvision(name, num_classes, in_channels, input_size, pretrained, **kw)
    entry = _REGISTRY.get(name)
    if entry is None:
        raise _unknown(name)
    if pretrained:
        raise ZooError(f"no pretrained weights ship for {name!r}; train it or pass --weights FILE "
                         f"(autodsnn.models.load_weights)")
    _check_kwargs(name, entry.builder, kw)
    size = _resolve_input(entry.input_size, in_channels, input_size)
    return entry.builder(num_classes=num_classes, in_channels=size[0], input_size=size, **kw)


def _build_cheaply(name: str, kw: Mapping[str, Any]) -> nn.Module:
    """Build on the meta device (no memory, no init cost); some torchvision builders compute
    with tensors (RegNet) and need a real device."""
    try:
        with torch.device("meta"):
            return create_model(name, **kw)
    except NotImplementedError:
        return create_model(name, **kw)


def model_info(name: str, **kw: Any) -> ModelInfo:
    """Metadata of ``name`` as ``create_model(name, **kw)`` would build it."""
    if name.startswith(TV_PREFIX):
        if name[len(TV_PREFIX):] not in _torchvision_names():
            raise _unknown(name)
        family, default = "torchvision", _tv_default_size(name[len(TV_PREFIX):])
        description = f"torchvision's {name[len(TV_PREFIX):]} (ImageNet architecture)"
        pretrained = True
    else:
        entry = _REGISTRY.get(name)
        if entry is None:
            raise _unknown(name)
        family, default, description, pretrained = entry.family, entry.input_size, entry.description, False
    size = _resolve_input(default, kw.get("in_channels"), kw.get("input_size"))
    build_kw = {k: v for k, v in kw.items() if k != "pretrained"}  # the info needs no download
    layers = convertible_layers(_build_cheaply(name, build_kw))
    keep = (layers[0], layers[-1]) if len(layers) > 1 else tuple(layers)
    return ModelInfo(name=name, input_size=size, family=family, description=description,
                     keep_float=keep, num_convertible=len(layers), pretrained_available=pretrained)


def num_convertible_layers(name: str, **kw: Any) -> int:
    """How many nn.Linear/nn.Conv2d layers ``create_model(name, **kw)`` has for convert()."""
    return len(convertible_layer_names(name, **kw))


def convertible_layer_names(name: str, **kw: Any) -> list[str]:
    """The qualified names of the layers convert() could swap in ``create_model(name, **kw)``."""
    return convertible_layers(_build_cheaply(name, kw))


# ---------------------------------------------------------------------------------------------
# DeepShift's MNIST nets
# ---------------------------------------------------------------------------------------------

class MnistFC(nn.Module):
    """DeepShift's LinearMNIST: three fully connected layers with dropout 0.2."""

    def __init__(self, num_classes: int = 10, input_size: InputSize = (1, 28, 28)) -> None:
        super().__init__()
        # Layer names follow DeepShift's code so its checkpoints map one to one.
        self.fc1 = nn.Linear(math.prod(input_size), 512)
        self.fc2 = nn.Linear(512, 512)
        self.fc3 = nn.Linear(512, num_classes)
        self.dropout = nn.Dropout(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)
        x = self.dropout(F.relu(self.fc1(x)))
        x = self.dropout(F.relu(self.fc2(x)))
        return self.fc3(x)


class MnistConv(nn.Module):
    """DeepShift's ConvMNIST: two 5x5 conv + max-pool stages and two fully connected layers."""

    def __init__(self, num_classes: int = 10, input_size: InputSize = (1, 28, 28)) -> None:
        super().__init__()
        c, h, w = input_size
        # Each stage: 5x5 valid conv (-4), then 2x2 max-pool (floor halving).
        fh, fw = ((h - 4) // 2 - 4) // 2, ((w - 4) // 2 - 4) // 2
        if fh < 1 or fw < 1:
            raise ZooError(f"mnist-conv needs inputs of at least 16x16, got {h}x{w}")
        self.conv1 = nn.Conv2d(c, 20, 5, 1)
        self.conv2 = nn.Conv2d(20, 50, 5, 1)
        self.fc1 = nn.Linear(50 * fh * fw, 500)
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


@register_model("mnist-fc", family="deepshift-mnist", input_size=(1, 28, 28))
def mnist_fc(num_classes: int = 10, in_channels: int = 1, input_size: InputSize = (1, 28, 28)) -> nn.Module:
    """DeepShift's MNIST MLP: 784-512-512-10 with ReLU and dropout 0.2."""
    return MnistFC(num_classes, (in_channels, *input_size[1:]))


@register_model("mnist-conv", family="deepshift-mnist", input_size=(1, 28, 28))
def mnist_conv(num_classes: int = 10, in_channels: int = 1, input_size: InputSize = (1, 28, 28)) -> nn.Module:
    """DeepShift's MNIST CNN: conv20-pool-conv50-pool-fc500-fc10."""
    return MnistConv(num_classes, (in_channels, *input_size[1:]))


# ---------------------------------------------------------------------------------------------
# CIFAR ResNets (He et al. 2016), ResNet-18 for CIFAR and ShiftResNets (Wu et al. 2018)
# ---------------------------------------------------------------------------------------------

class BasicBlock(nn.Module):
    """Two 3x3 conv + BN; a 1x1 conv + BN shortcut ("option B") when the shape changes."""

    def __init__(self, in_planes: int, out_planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != out_planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, out_planes, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


BlockFactory = Callable[[int, int, int], nn.Module]


class CifarResNet(nn.Module):
    """3x3 stem (no max-pool) + stages of residual blocks + global average pool + Linear."""

    def __init__(self, block: BlockFactory, blocks_per_stage: Sequence[int], widths: Sequence[int],
                 num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        stages, planes = [], widths[0]
        for i, (n, width) in enumerate(zip(blocks_per_stage, widths)):
            stride = 1 if i == 0 else 2  # the first stage keeps the stem's resolution
            layers = []
            for j in range(n):
                layers.append(block(planes, width, stride if j == 0 else 1))
                planes = width
            stages.append(nn.Sequential(*layers))
        # Named layer1..layerN like torchvision's ResNet, so names read the same across zoos.
        for i, stage in enumerate(stages, 1):
            self.add_module(f"layer{i}", stage)
        self.num_stages = len(stages)
        self.fc = nn.Linear(planes, num_classes)
        for m in self.modules():
            # He init for conv and linear, as in the CIFAR ResNet paper.
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out" if isinstance(m, nn.Conv2d) else "fan_in",
                                        nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{i}")(x)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


def _create_resnet(depth: int, *, num_classes: int, in_channels: int, block: str = "basic",
                   expansion: float = 1.0) -> nn.Module:
    """The CIFAR ResNet layout of depth 6n+2: three stages of n blocks, 16/32/64 channels."""
    if (depth - 2) % 6:
        raise ZooError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
    n = (depth - 2) // 6
    if block == "basic":
        factory: BlockFactory = BasicBlock
    else:  # ShiftResNet: the 3x3 convs become 1x1 conv -> spatial shift -> 1x1 conv
        def factory(i: int, o: int, s: int) -> nn.Module:
            return ConvShiftConv(i, o, s, expansion)
    return CifarResNet(factory, (n, n, n), (16, 32, 64), num_classes, in_channels)


# One named function per variant (timm's pattern): each shows up by name in tracebacks and
# profiles, and its docstring's first line is the registered description.

@register_model("resnet20", family="cifar-resnet")
def resnet20(num_classes: int = 10, in_channels: int = 3, input_size: InputSize = (3, 32, 32)) -> nn.Module:
    """CIFAR ResNet-20 (He et al. 2016), 16/32/64 channels, 1x1-conv shortcuts"""
    return _create_resnet(20, num_classes=num_classes, in_channels=in_channels)


@register_model("resnet32", family="cifar-resnet")
def resnet32(num_classes: int = 10, in_channels: int = 3, input_size: InputSize = (3, 32, 32)) -> nn.Module:
    """CIFAR ResNet-32 (He et al. 2016), 16/32/64 channels, 1x1-conv shortcuts"""
    return _create_resnet(32, num_classes=num_classes, in_channels=in_channels)


@register_model("resnet44", family="cifar-resnet")
def resnet44(num_classes: int = 10, in_channels: int = 3, input_size: InputSize = (3, 32, 32)) -> nn.Module:
    """CIFAR ResNet-44 (He et al. 2016), 16/32/64 channels, 1x1-conv shortcuts"""
    return _create_resnet(44, num_classes=num_classes, in_channels=in_channels)


@register_model("resnet56", family="cifar-resnet")
def resnet56(num_classes: int = 10, in_channels: int = 3, input_size: InputSize = (3, 32, 32)) -> nn.Module:
    """CIFAR ResNet-56 (He et al. 2016), 16/32/64 channels, 1x1-conv shortcuts"""
    return _create_resnet(56, num_classes=num_classes, in_channels=in_channels)


@register_model("resnet110", family="cifar-resnet")
def resnet110(num_classes: int = 10, in_channels: int = 3, input_size: InputSize = (3, 32, 32)) -> nn.Module:
    """CIFAR ResNet-110 (He et al. 2016), 16/32/64 channels, 1x1-conv shortcuts"""
    return _create_resnet(110, num_classes=num_classes, in_channels=in_channels)


@register_model("shiftresnet20", family="shiftresnet")
def shiftresnet20(num_classes: int = 10, in_channels: int = 3, input_size: InputSize = (3, 32, 32),
                  expansion: float = 3.0) -> nn.Module:
    """ShiftResNet-20 (Wu et al. 2018): conv-shift-conv blocks, expansion kwarg"""
    return _create_resnet(20, num_classes=num_classes, in_channels=in_channels, block="shift",
                          expansion=expansion)


@register_model("shiftresnet56", family="shiftresnet")
def shiftresnet56(num_classes: int = 10, in_channels: int = 3, input_size: InputSize = (3, 32, 32),
                  expansion: float = 3.0) -> nn.Module:
    """ShiftResNet-56 (Wu et al. 2018): conv-shift-conv blocks, expansion kwarg"""
    return _create_resnet(56, num_classes=num_classes, in_channels=in_channels, block="shift",
                          expansion=expansion)


@register_model("shiftresnet110", family="shiftresnet")
def shiftresnet110(num_classes: int = 10, in_channels: int = 3, input_size: InputSize = (3, 32, 32),
                   expansion: float = 3.0) -> nn.Module:
    """ShiftResNet-110 (Wu et al. 2018): conv-shift-conv blocks, expansion kwarg"""
    return _create_resnet(110, num_classes=num_classes, in_channels=in_channels, block="shift",
                          expansion=expansion)


@register_model("resnet18-cifar", family="cifar-resnet")
def resnet18_cifar(num_classes: int = 10, in_channels: int = 3, input_size: InputSize = (3, 32, 32)) -> nn.Module:
    """ResNet-18 for 32x32 inputs: 3x3 stem, no max-pool, 64/128/256/512 channels."""
    return CifarResNet(BasicBlock, (2, 2, 2, 2), (64, 128, 256, 512), num_classes, in_channels)


# ---------------------------------------------------------------------------------------------
# MobileNetV2 for CIFAR
# ---------------------------------------------------------------------------------------------

def _conv_bn_relu6(i: int, o: int, k: int = 1, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(i, o, k, stride, k // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(o), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand -> 3x3 depthwise -> 1x1 linear projection (+ identity)."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = in_planes * expand
        layers = [] if expand == 1 else [_conv_bn_relu6(in_planes, hidden)]
        layers += [_conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, out_planes, 1, bias=False), nn.BatchNorm2d(out_planes)]
        self.block = nn.Sequential(*layers)
        # The paper's rule: identity shortcut only where the shape is unchanged.
        self.residual = stride == 1 and in_planes == out_planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.residual else out


class MobileNetV2Cifar(nn.Module):
    """MobileNetV2 (width 1.0) for 32x32 inputs: stride 1 in the stem and in the 24-channel
    stage, so 32x32 ends at 4x4 instead of 1x1 (the common CIFAR variant)."""

    # (expansion, out channels, blocks, first stride)
    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2),
                (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn_relu6(in_channels, 32, 3, 1)]
        planes = 32
        for t, c, n, s in self.SETTINGS:
            for j in range(n):
                layers.append(InvertedResidual(planes, c, s if j == 0 else 1, t))
                planes = c
        layers.append(_conv_bn_relu6(planes, 1280))
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(0.2)
        self.classifier = nn.Linear(1280, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1)
        return self.classifier(self.dropout(x))


@register_model("mobilenetv2-cifar", family="mobilenet")
def mobilenetv2_cifar(num_classes: int = 10, in_channels: int = 3, input_size: InputSize = (3, 32, 32)) -> nn.Module:
    """MobileNetV2 for 32x32 inputs (stride 1 in the stem and the first downsampling stage)."""
    return MobileNetV2Cifar(num_classes, in_channels)


# ---------------------------------------------------------------------------------------------
# VGG with BN for CIFAR
# ---------------------------------------------------------------------------------------------

_VGG_CFG: dict[int, tuple[int | str, ...]] = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
}


class VGGCifar(nn.Module):
    """3x3 conv + BN + ReLU stacks with max-pools, global average pool, one Linear."""

    def __init__(self, cfg: Sequence[int | str], num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        planes = in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                # No conv bias: the BN right after it has its own shift.
                layers += [nn.Conv2d(planes, int(v), 3, padding=1, bias=False), nn.BatchNorm2d(int(v)),
                           nn.ReLU(inplace=True)]
                planes = int(v)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # At 32x32 the features are already 1x1; the pool lets larger inputs work too.
        x = torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1)
        return self.classifier(x)


def _create_vgg(depth: int, *, num_classes: int, in_channels: int, input_size: InputSize) -> nn.Module:
    """VGG-``depth`` (11 or 16) with BN; five max-pools, so inputs need at least 32x32."""
    if min(input_size[1:]) < 32:
        raise ZooError(f"vgg{depth}-cifar pools 5 times and needs inputs of at least 32x32, got {input_size}")
    return VGGCifar(_VGG_CFG[depth], num_classes, in_channels)


@register_model("vgg11-cifar", family="vgg")
def vgg11_cifar(num_classes: int = 10, in_channels: int = 3, input_size: InputSize = (3, 32, 32)) -> nn.Module:
    """VGG-11 with BN for 32x32 inputs, one Linear classifier"""
    return _create_vgg(11, num_classes=num_classes, in_channels=in_channels, input_size=input_size)


@register_model("vgg16-cifar", family="vgg")
def vgg16_cifar(num_classes: int = 10, in_channels: int = 3, input_size: InputSize = (3, 32, 32)) -> nn.Module:
    """VGG-16 with BN for 32x32 inputs, one Linear classifier"""
    return _create_vgg(16, num_classes=num_classes, in_channels=in_channels, input_size=input_size)


# ---------------------------------------------------------------------------------------------
# torchvision models as tv-<name>
# ---------------------------------------------------------------------------------------------

def _tv_default_size(tv_name: str) -> InputSize:
    return (3, 299, 299) if tv_name == "inception_v3" else (3, 224, 224)


def _first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    for name, m in model.named_modules():
        if type(m) is nn.Conv2d:
            return name, m
    raise ZooError("model has no nn.Conv2d to adapt to a new number of input channels")


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def _adapt_first_conv(model: nn.Module, in_channels: int, tv_name: str) -> None:
    """Swap the stem conv for one with ``in_channels`` inputs. The RGB filters (pretrained or
    freshly initialized) are folded: each new channel gets their sum / in_channels, so an
    input whose channels are all equal gives the RGB model's response to that gray image."""
    name, old = _first_conv(model)
    if old.in_channels != 3 or old.groups != 1:
        raise ZooError(f"cannot adapt tv-{tv_name} to in_channels={in_channels}: its first conv "
                         f"{name!r} has {old.in_channels} inputs, groups={old.groups}")
    new = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding,  # type: ignore[arg-type]
                    old.dilation, old.groups, old.bias is not None, old.padding_mode,
                    device=old.weight.device, dtype=old.weight.dtype)
    if not old.weight.is_meta:
        with torch.no_grad():
            rgb_sum = old.weight.sum(dim=1, keepdim=True)
            # Spread the summed RGB response evenly so a constant image keeps its activation.
            new.weight.copy_(rgb_sum.repeat(1, in_channels, 1, 1) / in_channels)
            if old.bias is not None:
                new.bias.copy_(old.bias)  # type: ignore[union-attr]
    _set_submodule(model, name, new)
    if getattr(model, "transform_input", False):
        model.transform_input = False  # GoogLeNet/Inception re-normalize exactly 3 RGB channels


def _replace_head(model: nn.Module, num_classes: int) -> None:
    """Give a pretrained model a fresh classifier with ``num_classes`` outputs."""
    name = convertible_layers(model)[-1]
    old = model.get_submodule(name)
    if isinstance(old, nn.Linear):
        new: nn.Module = nn.Linear(old.in_features, num_classes, old.bias is not None)
    elif isinstance(old, nn.Conv2d):  # SqueezeNet classifies with a 1x1 conv
        new = nn.Conv2d(old.in_channels, num_classes, old.kernel_size, old.stride,  # type: ignore[arg-type]
                        old.padding, bias=old.bias is not None)  # type: ignore[arg-type]
    else:
        raise ZooError(f"cannot replace classifier {name!r} of type {type(old).__name__}")
    _set_submodule(model, name, new.to(old.weight.device))


def _create_torchvision(name: str, num_classes: int, in_channels: int | None,
                        input_size: int | Sequence[int] | None, pretrained: bool, **kw: Any) -> nn.Module:
    import torchvision

    tv_name = name[len(TV_PREFIX):]
    if tv_name not in _torchvision_names():
        raise _unknown(name)
    c, h, w = _resolve_input(_tv_default_size(tv_name), in_channels, input_size)
    if input_size is not None:
        # Only the transformers fix their input size at construction.
        if tv_name.startswith("vit_"):
            if h != w:
                raise ZooError(f"{name} needs square inputs, got {h}x{w}")
            kw.setdefault("image_size", h)
        elif tv_name.startswith("maxvit"):
            kw.setdefault("input_size", (h, w))
    if tv_name in ("googlenet", "inception_v3"):
        # Auxiliary heads make training-mode outputs tuples; our training loop expects a tensor.
        kw.setdefault("aux_logits", False)
        kw.setdefault("init_weights", not pretrained)
    if pretrained:
        try:
            model = torchvision.models.get_model(tv_name, weights="DEFAULT", **kw)
        except (OSError, RuntimeError) as e:  # URLError is an OSError; a corrupt file a RuntimeError
            reason = " ".join(str(e).split())[:200]
            raise RuntimeError(f"could not download torchvision's pretrained weights for {name} "
                               f"({type(e).__name__}: {reason}); download them elsewhere and pass "
                               f"--weights FILE (autodsnn.models.load_weights)") from None
        if num_classes != 1000:
            _replace_head(model, num_classes)
    else:
        try:
            model = torchvision.models.get_model(tv_name, weights=None, num_classes=num_classes, **kw)
        except (ValueError, TypeError) as e:  # torchvision's messages span lines; keep one
            raise ZooError(f"torchvision cannot build {tv_name} with {kw or 'its defaults'} "
                             f"(input {c}x{h}x{w}): {' '.join(str(e).split())[:300]}") from None
    if c != 3:
        _adapt_first_conv(model, c, tv_name)
    return model


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------

def _first(keys: Sequence[str], n: int = 3) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > n else "")


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a float checkpoint into ``model`` (in place, strict) and return the model.

    Accepts a raw state_dict or a dict holding it under "model" or "state_dict"; a
    DataParallel "module." prefix is stripped. Only tensors and plain containers are unpickled
    (``weights_only=True``), so untrusted files cannot run code."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ZooError(f"cannot read {path} as a weights-only checkpoint (save model.state_dict(), "
                         f"not the model): {first[:200]}") from None
    if isinstance(ckpt, Mapping):
        for key in ("model", "state_dict"):
            if isinstance(ckpt.get(key), Mapping):
                ckpt = ckpt[key]
                break
    if not isinstance(ckpt, Mapping) or not all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise ZooError(f"{path} holds no state_dict (expected name -> tensor, or one under 'model'/'state_dict')")
    state = dict(ckpt)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}

    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = ([f"missing {_first(missing)}"] if missing else []) + \
                ([f"unexpected {_first(unexpected)}"] if unexpected else [])
        raise ZooError(f"{path} does not match the {type(model).__name__}: {'; '.join(parts)}")
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if state[k].shape != v.shape]
    if shapes:
        raise ZooError(f"{path} has {len(shapes)} tensors of the wrong shape "
                         f"(checkpoint vs model): {_first(shapes)}")
    model.load_state_dict(state, strict=True)
    return model
