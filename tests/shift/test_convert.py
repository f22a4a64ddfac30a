import math
import pytest
import torch
import torchvision
from torch import nn

from autodsnn.shift import (ShiftConfig, ShiftConfigError, ShiftConv2d, ShiftLinear, convert, convertible_layers,
                            export, export_codes, freeze, load_codes, load_exported, shift_layers)
from autodsnn.shift.convert import EXPORT_FORMAT


class Net(nn.Module):
    """Registration order differs from forward order on purpose."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(8, 3)
        self.body = nn.Conv2d(4, 8, 3, padding=1)
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return self.head(self.pool(torch.relu(self.body(torch.relu(self.stem(x))))).flatten(1))


def test_forward_order_and_shift_depth():
    x = torch.randn(1, 3, 8, 8)
    assert convertible_layers(Net()) == ["head", "body", "stem"]
    assert convertible_layers(Net(), x) == ["stem", "body", "head"]
    net = Net()
    report = convert(net, ShiftConfig(shift_depth=2), example_inputs=x)
    assert report.names == ["stem", "body"] and report.order == "forward"
    assert isinstance(net.stem, ShiftConv2d) and isinstance(net.body, ShiftConv2d)
    assert type(net.head) is nn.Linear
    assert ("head", "beyond shift_depth=2") in report.kept_float
    assert "converted 2 of 3" in str(report)


def test_patterns_types_and_filter():
    net = Net()
    r = convert(net, ShiftConfig(layer_types=("linear",)))
    assert r.names == ["head"] and isinstance(net.head, ShiftLinear)
    net = Net()
    r = convert(net, ShiftConfig(exclude=("stem",)))
    assert sorted(r.names) == ["body", "head"]
    net = Net()
    r = convert(net, ShiftConfig(include=("b*",)))
    assert r.names == ["body"]
    net = Net()
    r = convert(net, ShiftConfig(), filter_fn=lambda m, name: m.weight.shape[0] != 3)
    assert sorted(r.names) == ["body", "stem"]
    assert ("head", "filter_fn") in r.kept_float


def test_already_converted_layers_are_not_converted_twice():
    net = Net()
    convert(net, ShiftConfig())
    assert len(convert(net, ShiftConfig())) == 0


def test_shared_module_replaced_everywhere():
    shared = nn.Linear(4, 4)
    net = nn.Sequential(shared, nn.ReLU(), shared)
    convert(net, ShiftConfig())
    assert isinstance(net[0], ShiftLinear) and net[0] is net[2]


def test_pretrained_weights_kept():
    net = Net()
    with torch.no_grad():
        net.stem.weight.copy_(torch.sign(net.stem.weight) * 0.25)
    ref = net.stem.weight.clone()
    convert(net, ShiftConfig(mode="q"))
    assert torch.equal(net.stem.weight_quant.weight, ref)  # Q starts from the float weights
    for mode in ("ps", "dense"):
        net = Net()
        with torch.no_grad():
            net.stem.weight.copy_(torch.sign(net.stem.weight) * 0.25)
        ref = net.stem.weight.clone()
        convert(net, ShiftConfig(mode=mode))
        net.eval()
        assert torch.equal(net.stem.quantized_weight(), ref)


def test_errors_are_one_clear_line():
    with pytest.raises(ShiftConfigError, match="weight_bits=12 is impossible"):
        ShiftConfig(weight_bits=12)
    with pytest.raises(ShiftConfigError, match="unknown shift mode 'x'"):
        ShiftConfig(mode="x")
    with pytest.raises(ShiftConfigError, match="shift_depth"):
        ShiftConfig(shift_depth=-1)
    with pytest.raises(ShiftConfigError, match="act_int_bits and act_frac_bits"):
        ShiftConfig(act_int_bits=3)
    with pytest.raises(ShiftConfigError, match="rounding"):
        ShiftConfig(rounding="up")
    net = nn.Sequential(nn.ConvTranspose2d(3, 3, 3), nn.Conv2d(3, 3, 3))
    with pytest.raises(ShiftConfigError, match="ConvTranspose2d, which has no shift version"):
        convert(net, ShiftConfig(include=("0",)))
    with pytest.raises(ShiftConfigError, match="needs a torch.nn.Module"):
        convert("resnet", ShiftConfig())
    with pytest.raises(ShiftConfigError) as info:
        ShiftConfig(weight_bits=1)
    assert "\n" not in str(info.value)


def test_config_roundtrip_and_version():
    cfg = ShiftConfig(mode="PS", weight_bits=3, shift_max="auto", act_int_bits=4, act_frac_bits=6,
                      include=["layer*"], rounding="Stochastic")
    assert cfg.mode == "ps" and cfg.include == ("layer*",)
    assert ShiftConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ShiftConfigError, match="unknown ShiftConfig field 'bits'"):
        ShiftConfig.from_dict({"bits": 4})
    with pytest.raises(ShiftConfigError, match="newer"):
        ShiftConfig.from_dict({"version": 99})


# vgg16 (138 M parameters) takes ~10 s per mode on 2 cores: one mode is enough for its layer mix.
@pytest.mark.parametrize("name,size,mode", [(n, s, m)
                                            for n, s in [("resnet18", 64), ("mobilenet_v2", 64), ("googlenet", 64)]
                                            for m in ("q", "ps", "dense")] + [("vgg16", 32, "ps")])
def test_torchvision_models_convert_forward_backward(name, size, mode):
    kw = {"aux_logits": False, "init_weights": True} if name == "googlenet" else {}
    model = torchvision.models.get_model(name, weights=None, num_classes=10, **kw)
    n = len(convertible_layers(model))
    report = convert(model, ShiftConfig(mode=mode, weight_bits=4, act_int_bits=6, act_frac_bits=8))
    assert len(report) == n > 0
    x = torch.randn(2, 3, size, size)
    out = model(x)
    out.sum().backward()
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)


@pytest.mark.parametrize("mode", ["q", "ps", "dense"])
@pytest.mark.parametrize("act", [None, (3, 5)])
def test_freeze_equals_eval_and_export_roundtrips(mode, act, tmp_path):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    cfg = ShiftConfig(mode=mode, weight_bits=4, shift_max="auto",
                      act_int_bits=act and act[0], act_frac_bits=act and act[1])
    convert(model, cfg)
    x = torch.randn(2, 3, 40, 40)
    model.train()
    model(x)  # one training forward: BN statistics and the latent projection move
    model.eval()
    expected = model(x)
    codes_before = export_codes(model)
    freeze(model)
    assert torch.equal(model(x), expected)
    assert not any(p.requires_grad for n, p in model.named_parameters() if "weight_quant" in n)
    path = export(model, tmp_path / "codes.pt")
    data = load_exported(path)
    for name, entry in data["layers"].items():
        assert torch.equal(entry["packed"], codes_before["layers"][name]["packed"])
        rows, cols = entry["shape"][0], math.prod(entry["shape"][1:])  # 4-bit codes: two per byte
        assert entry["code_bits"] == 4 and entry["packed"].shape == (rows, (cols + 1) // 2)
    # A fresh float model of the same architecture gets the same shift layers from the export.
    fresh = torchvision.models.resnet18(num_classes=10)
    fresh.load_state_dict({k: v for k, v in model.state_dict().items() if "weight_quant" not in k}, strict=False)
    load_codes(fresh, path)
    fresh.eval()
    assert len(shift_layers(fresh)) == len(shift_layers(model))
    assert torch.equal(fresh(x), expected)


def test_format_1_exports_still_load(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5))
    convert(model, ShiftConfig(mode="ps", weight_bits=5, shift_depth="all"))
    freeze(model.eval())
    data = export_codes(model)
    entry = data["layers"]["0"]
    sign, shift = model[0].sign_and_shift()
    entry["codes"] = model[0].codes.encode(sign, shift)  # what format 1 stored instead of packed codes
    del entry["packed"], entry["code_bits"]
    data["version"] = 1
    fresh = nn.Sequential(nn.Linear(6, 5))
    fresh[0].bias.data.copy_(model[0].bias)
    load_codes(fresh, data)
    x = torch.randn(3, 6)
    assert torch.equal(fresh(x), model(x))


def test_an_export_from_when_q_had_a_zero_level_still_means_what_it_meant():
    """autodsnn <= 0.2's q spent magnitude code 0 on zero: code j >= 1 was 2^(shift_max - (j - 1)),
    bit 2 the sign (3-bit codes). A format-1 export of that time, written here by hand from that
    layout, must load with those values although q is zero-free now."""
    codes = torch.tensor([[0, 1, 2, 3], [5, 6, 7, 4]], dtype=torch.uint8)
    want = torch.tensor([[0.0, 1.0, 0.5, 0.25], [-1.0, -0.5, -0.25, 0.0]])
    entry = {"kind": "linear", "mode": "q", "weight_bits": 3, "shift_max": 0, "shift_min": -2, "shape": [2, 4],
             "codes": codes, "bias": None, "activation": None}  # format 1 did not record has_zero
    model = load_codes(nn.Sequential(nn.Linear(4, 2, bias=False)), {"format": EXPORT_FORMAT, "version": 1,
                                                                     "layers": {"0": entry}})
    assert torch.equal(model[0].quantized_weight(), want) and model[0].codes.has_zero
    # a format-3 export of a zero-level q layer keeps it too, and re-exports the same codes
    data = export_codes(model)
    assert data["layers"]["0"]["has_zero"] is True
    again = load_codes(nn.Sequential(nn.Linear(4, 2, bias=False)), data)
    assert torch.equal(again[0].quantized_weight(), want)


@pytest.mark.parametrize("version,mode,zero_level", [(1, "q", True), (1, "ps", None), (2, "q", None)])
def test_a_version_1_q_config_keeps_its_zero_level(version, mode, zero_level):
    assert ShiftConfig.from_dict({"version": version, "mode": mode}).zero_level is zero_level
    assert ShiftConfig.from_json(ShiftConfig(mode="q", zero_level=True).to_json()).zero_level is True


def test_load_exported_rejects_other_files(tmp_path):
    torch.save({"hello": 1}, tmp_path / "x.pt")
    with pytest.raises(ShiftConfigError, match="not an autodsnn shift-code export"):
        load_exported(tmp_path / "x.pt")


@pytest.mark.parametrize("name,depth,shape", [("mnist-fc", 1, (1, 28, 28)), ("resnet20", 3, (3, 32, 32))])
def test_a_partial_dsnn_deploys_from_its_export_alone(tmp_path, name, depth, shape):
    """Issue 13, kind 5: mnist-fc with one shifted layer lost its float layers on export (error
    0.88 after deploy_exported). The export carries the whole model: float layers, biases and
    BatchNorm statistics (moved away from their defaults here by a few training-mode passes)."""
    from autodsnn.shift import deploy, deploy_exported
    from autodsnn.zoo import create_model

    torch.manual_seed(0)
    model = create_model(name, num_classes=10)
    convert(model, ShiftConfig(mode="ps", weight_bits=5, shift_depth=depth), example_inputs=torch.zeros(1, *shape))
    with torch.no_grad():
        for _ in range(3):
            model.train()(torch.randn(16, *shape) * 2 + 1)  # BatchNorm running statistics change
    model.eval()
    path = export(freeze(model), tmp_path / "codes.pt")
    fresh = create_model(name, num_classes=10).eval()  # random float weights, default statistics
    deploy_exported(fresh, path, "float")
    deploy(model, "float")
    x = torch.randn(5, *shape)
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))


def test_an_export_refuses_a_model_that_differs_outside_the_shift_layers(tmp_path):
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    convert(model, ShiftConfig(mode="q", weight_bits=5, shift_depth=1))
    path = export(freeze(model.eval()), tmp_path / "codes.pt")
    other = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3), nn.Linear(3, 2))
    with pytest.raises(ShiftConfigError, match="outside its shift layers: it lacks '3.weight'"):
        load_codes(other, path)


def test_a_format_2_export_without_the_rest_warns(tmp_path):
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    convert(model, ShiftConfig(mode="q", weight_bits=5, shift_depth=1))
    data = export_codes(freeze(model.eval()))
    del data["state"]
    data["version"] = 2
    with pytest.warns(UserWarning, match="carries only the shift layers: the model's 2 other tensors"):
        load_codes(nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)), data)
