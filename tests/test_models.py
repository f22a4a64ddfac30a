"""Tests for autodsnn.models: registry, every model's forward/backward, reference sizes, weights."""
from __future__ import annotations

import dataclasses
import socket

import pytest
import torch
from torch import nn

from autodsnn.zoo import models
from autodsnn.zoo.models import (ModelInfo, create_model, list_models, load_weights, model_info,
                             num_convertible_layers, register_model)
from autodsnn.shift import convertible_layers

OURS = list_models(include_torchvision=False)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("name", OURS)
def test_forward_backward(name: str) -> None:
    info = model_info(name)
    model = create_model(name, num_classes=7).train()
    out = model(torch.randn(2, *info.input_size))
    assert out.shape == (2, 7)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    # keep_float names the first and the last convertible layer, both real modules.
    names = convertible_layers(model)
    assert info.keep_float == (names[0], names[-1])
    assert info.num_convertible == len(names) == num_convertible_layers(name)


def test_registry_contents() -> None:
    for name in ["mnist-fc", "mnist-conv", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
                 "resnet18-cifar", "mobilenetv2-cifar", "vgg11-cifar", "vgg16-cifar",
                 "shiftresnet20", "shiftresnet56", "shiftresnet110"]:
        assert name in OURS
    assert list_models("shiftresnet*") == ["shiftresnet110", "shiftresnet20", "shiftresnet56"]
    tv = list_models("tv-*")
    assert {"tv-resnet18", "tv-mobilenet_v2", "tv-vgg16", "tv-googlenet"} <= set(tv)
    assert not any("fasterrcnn" in n or "r3d" in n for n in tv)  # classification models only
    assert list_models() == sorted(list_models())


def test_reference_parameter_counts() -> None:
    assert n_params(create_model("resnet20")) == 272_474
    assert n_params(create_model("shiftresnet20", expansion=3)) == 95_642
    assert n_params(create_model("shiftresnet20")) == 95_642  # expansion 3 is the default
    assert n_params(create_model("shiftresnet20", expansion=1)) < 95_642


def test_mnist_nets_follow_deepshift() -> None:
    assert num_convertible_layers("mnist-conv") == 4
    assert num_convertible_layers("mnist-fc") == 3
    fc = create_model("mnist-fc")
    assert [m.in_features for m in fc.modules() if isinstance(m, nn.Linear)] == [784, 512, 512]
    conv = create_model("mnist-conv")
    assert conv.fc1.in_features == 800 and conv.fc2.out_features == 10
    # conv1 520 + conv2 25,050 + fc1 400,500 + fc2 5,010, as DeepShift's ConvMNIST.
    assert n_params(conv) == 431_080
    # The first linear layer follows the input size.
    assert create_model("mnist-conv", input_size=32).fc1.in_features == 50 * 5 * 5
    assert create_model("mnist-fc", in_channels=3, input_size=(32, 32)).fc1.in_features == 3 * 32 * 32
    with pytest.raises(ValueError, match="at least 16x16"):
        create_model("mnist-conv", input_size=12)


def test_inputs_adapt_to_the_data_set() -> None:
    model = create_model("resnet20", num_classes=100, in_channels=1)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 100)
    assert model_info("resnet20", in_channels=1).input_size == (1, 32, 32)
    assert model_info("mnist-fc", input_size=(3, 32, 32)).input_size == (3, 32, 32)
    with pytest.raises(ValueError, match="contradicts"):
        create_model("resnet20", in_channels=1, input_size=(3, 32, 32))


def test_model_info() -> None:
    info = model_info("mnist-conv")
    assert isinstance(info, ModelInfo)
    assert info.input_size == (1, 28, 28) and info.family == "deepshift-mnist"
    assert info.keep_float == ("conv1", "fc2") and info.num_convertible_layers() == 4
    assert info.description
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.name = "x"  # type: ignore[misc]  # frozen
    tv = model_info("tv-resnet18")
    assert tv.input_size == (3, 224, 224) and tv.keep_float == ("conv1", "fc") and tv.pretrained_available
    assert model_info("tv-inception_v3").input_size == (3, 299, 299)


def test_unknown_names_and_arguments() -> None:
    with pytest.raises(ValueError, match="did you mean.*resnet20") as err:
        create_model("resnt20")
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="unknown model"):
        create_model("tv-not_a_model")
    with pytest.raises(ValueError, match="unknown model"):
        model_info("nope")
    with pytest.raises(ValueError, match="expansion"):
        create_model("resnet20", expansion=2)
    with pytest.raises(ValueError, match="no pretrained weights"):
        create_model("resnet20", pretrained=True)


def test_register_model_decorator() -> None:
    @register_model("tiny-test-net", family="test", input_size=(1, 4, 4))
    def tiny(num_classes: int = 10, in_channels: int = 1, input_size=(1, 4, 4)) -> nn.Module:
        """A tiny test net."""
        return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 16, num_classes))

    try:
        assert "tiny-test-net" in list_models("tiny-*")
        assert create_model("tiny-test-net", num_classes=3)(torch.randn(2, 1, 4, 4)).shape == (2, 3)
        assert model_info("tiny-test-net").description == "A tiny test net."
        with pytest.raises(ValueError, match="already registered"):
            register_model("tiny-test-net")(tiny)
    finally:
        models._REGISTRY.pop("tiny-test-net", None)
    with pytest.raises(ValueError, match="reserved"):
        register_model("tv-mine")


@pytest.mark.parametrize("name", ["tv-resnet18", "tv-mobilenet_v2"])
def test_torchvision_models_run(name: str) -> None:
    model = create_model(name, num_classes=5).train()
    out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 5)
    out.sum().backward()


def test_torchvision_adapts_channels_and_heads() -> None:
    gray = create_model("tv-resnet18", num_classes=4, in_channels=1)
    assert gray.conv1.in_channels == 1
    assert gray(torch.randn(2, 1, 64, 64)).shape == (2, 4)
    net = create_model("tv-googlenet", num_classes=3, input_size=64).train()
    assert isinstance(net(torch.randn(2, 3, 64, 64)), torch.Tensor)  # no aux-logit tuples
    with pytest.raises(ValueError, match="cannot build maxvit_t"):
        create_model("tv-maxvit_t", input_size=64)  # 64 does not divide into its windows


def test_pretrained_download_fails_clearly(tmp_path, monkeypatch) -> None:
    # A real download attempt (no mocks), into an empty cache, bounded in time.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(10)
    try:
        model = create_model("tv-squeezenet1_1", num_classes=3, pretrained=True)
    except RuntimeError as e:
        msg = str(e)
        assert "could not download" in msg and "--weights FILE" in msg and "\n" not in msg
        return
    finally:
        socket.setdefaulttimeout(old_timeout)
    # With a network the weights arrive: then the fresh head must still fit num_classes.
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3)
    pytest.skip("network available: the weights downloaded, the error path was not exercised")


@pytest.mark.parametrize("wrap", [None, "model", "state_dict", "module."])
def test_load_weights_round_trip(tmp_path, wrap) -> None:
    src = create_model("resnet20").eval()
    state = src.state_dict()
    if wrap == "module.":
        ckpt = {"module." + k: v for k, v in state.items()}
    else:
        ckpt = state if wrap is None else {wrap: state, "epoch": 3}
    path = tmp_path / "w.pt"
    torch.save(ckpt, path)
    dst = create_model("resnet20").eval()
    assert load_weights(dst, path) is dst
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(src(x), dst(x))


def test_load_weights_errors(tmp_path) -> None:
    path = tmp_path / "fc.pt"
    torch.save(create_model("mnist-fc").state_dict(), path)
    with pytest.raises(ValueError, match="missing conv1.weight.*unexpected fc3") as err:
        load_weights(create_model("mnist-conv"), path)
    assert "\n" not in str(err.value)

    wide = tmp_path / "r100.pt"
    torch.save(create_model("resnet20", num_classes=100).state_dict(), wide)
    with pytest.raises(ValueError, match=r"wrong shape.*fc.weight \(100, 64\) vs \(10, 64\)"):
        load_weights(create_model("resnet20"), wide)

    whole = tmp_path / "whole.pt"
    torch.save(create_model("mnist-fc"), whole)  # a pickled module, not a state_dict
    with pytest.raises(ValueError, match="weights-only"):
        load_weights(create_model("mnist-fc"), whole)

    with pytest.raises(FileNotFoundError):
        load_weights(create_model("mnist-fc"), tmp_path / "absent.pt")


# Registered descriptions and families of the variants that share one private builder.
_VARIANTS = {
    **{f"resnet{d}": ("cifar-resnet", f"CIFAR ResNet-{d} (He et al. 2016), 16/32/64 channels, 1x1-conv shortcuts")
       for d in (20, 32, 44, 56, 110)},
    **{f"shiftresnet{d}": ("shiftresnet", f"ShiftResNet-{d} (Wu et al. 2018): conv-shift-conv blocks, expansion kwarg")
       for d in (20, 56, 110)},
    **{f"vgg{d}-cifar": ("vgg", f"VGG-{d} with BN for 32x32 inputs, one Linear classifier") for d in (11, 16)},
}


def test_every_builder_is_named_after_its_model() -> None:
    builders = {name: models._REGISTRY[name].builder for name in list_models(include_torchvision=False)}
    names = [b.__name__ for b in builders.values()]
    assert len(set(names)) == len(names)  # no anonymous closures sharing one name
    for name, builder in builders.items():
        assert builder.__name__ == name.replace("-", "_")
        assert builder.__doc__, f"{name} has no docstring"


@pytest.mark.parametrize("name", sorted(_VARIANTS))
def test_variant_metadata_unchanged(name: str) -> None:
    family, description = _VARIANTS[name]
    entry = models._REGISTRY[name]
    assert (entry.family, entry.description, entry.input_size) == (family, description, (3, 32, 32))


def test_errors_are_zoo_errors() -> None:
    from autodsnn.errors import AutoDSNNError
    from autodsnn.zoo import ZooError

    assert issubclass(ZooError, AutoDSNNError) and issubclass(ZooError, ValueError)
    for call in (lambda: create_model("resnt20"), lambda: model_info("nope"),
                 lambda: create_model("resnet20", expansion=2), lambda: create_model("vgg11-cifar", input_size=16)):
        with pytest.raises(ZooError):
            call()
