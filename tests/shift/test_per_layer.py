"""Designs per layer: one convert pass gives float, Q, PS and dense layers with different bits
side by side; the mixed model trains, freezes, exports, deploys and costs like a uniform one."""
import pytest
import torch
from torch import nn

from autodsnn.shift import (ShiftConfig, ShiftConfigError, convert, cost, deploy_exported, export_codes, freeze,
                            is_shift_layer)

MAP = {"conv1": None, "conv2": ShiftConfig(mode="q", weight_bits=3),
       "fc*": ShiftConfig(mode="ps", weight_bits=5), "head": ShiftConfig(mode="dense", weight_bits=2)}


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 4, 3), nn.Conv2d(4, 6, 3)
        self.bn = nn.BatchNorm2d(6)
        self.fc1, self.fc2, self.head = nn.Linear(6 * 4 * 4, 32), nn.Linear(32, 16), nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv2(torch.relu(self.conv1(x)))))
        x = torch.flatten(nn.functional.max_pool2d(x, 2), 1)
        return self.head(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def _mixed(seed=0):
    torch.manual_seed(seed)
    net = Net()
    report = convert(net, MAP)
    return net, report


def test_each_layer_gets_the_design_its_first_matching_pattern_names():
    net, report = _mixed()
    kinds = {n: (m.codes.mode, m.codes.weight_bits) for n, m in net.named_modules() if is_shift_layer(m)}
    assert kinds == {"conv2": ("q", 3), "fc1": ("ps", 5), "fc2": ("ps", 5), "head": ("dense", 2)}
    assert isinstance(net.conv1, nn.Conv2d) and not is_shift_layer(net.conv1)
    assert {c.name: c.rule for c in report.converted} == {"conv2": "conv2", "fc1": "fc*", "fc2": "fc*",
                                                          "head": "head"}
    assert report.kept_float == [("conv1", "'conv1': float")]
    text = str(report)
    assert "per-layer map of 4 pattern(s)" in text and "[fc*]" in text
    assert report.to_dict()["per_layer"]["conv1"] is None
    # dict order decides: a catch-all first wins over everything after it
    torch.manual_seed(0)
    first = convert(Net(), {"*": ShiftConfig(mode="q"), "head": None})
    assert len(first.converted) == 5 and first.kept_float == []


def test_unmatched_layers_stay_float_and_bad_maps_are_refused_before_any_swap():
    torch.manual_seed(0)
    net = Net()
    report = convert(net, {"fc1": ShiftConfig(mode="ps")})
    assert report.names == ["fc1"] and ("head", "no pattern matches") in report.kept_float
    fresh = Net()
    with pytest.raises(ShiftConfigError, match=r"pattern 'fc3' matches no convertible layer .* conv1, conv2"):
        convert(fresh, {"fc1": ShiftConfig(mode="ps"), "fc3": ShiftConfig(mode="q")})
    with pytest.raises(ShiftConfigError, match=r"config for 'fc\*' sets shift_depth"):
        convert(fresh, {"fc*": ShiftConfig(mode="ps", shift_depth=1)})
    with pytest.raises(ShiftConfigError, match=r"'head' maps to str"):
        convert(fresh, {"head": "ps"})
    with torch.no_grad():
        fresh.head.weight[0, 0] = float("nan")
    with pytest.raises(ShiftConfigError, match="head"):
        convert(fresh, {"fc1": ShiftConfig(mode="ps"), "head": ShiftConfig(mode="q")})
    assert not any(is_shift_layer(m) for m in fresh.modules())  # nothing half-converted


def test_mixed_model_trains_freezes_exports_and_deploys_to_what_it_computed():
    net, _ = _mixed()
    x, y = torch.randn(16, 1, 12, 12), torch.randint(0, 10, (16,))
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    for _ in range(3):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
    assert torch.isfinite(loss)
    moved = {n.split(".")[0] for n, p in net.named_parameters() if not torch.equal(p, before[n])}
    assert moved >= {"conv1", "conv2", "fc1", "fc2", "head"}  # every layer, whatever its design, learned
    net.eval()
    with torch.no_grad():
        emulated = net(x)
        freeze(net)
        assert torch.equal(net(x), emulated)  # frozen codes compute what the emulation computed
    exported = export_codes(net)
    assert {n: (e["mode"], e["weight_bits"]) for n, e in exported["layers"].items()} == {
        "conv2": ("q", 3), "fc1": ("ps", 5), "fc2": ("ps", 5), "head": ("dense", 2)}
    torch.manual_seed(123)  # a fresh float model: every weight must come from the export
    target = Net().eval()
    convert(target, MAP)
    report = deploy_exported(target, exported, "float")
    assert set(report) == {"conv2", "fc1", "fc2", "head"}
    with torch.no_grad():
        torch.testing.assert_close(target(x), emulated, rtol=1e-5, atol=1e-5)


def test_cost_counts_each_layer_by_its_own_design():
    net, _ = _mixed()
    c = cost(net.eval(), (1, 12, 12))
    rows = {row.name: row for row in c.layers}
    # hand counts: float conv1 has 4 x 10 x 10 outputs of 1 x 3 x 3 MACs and stores 40 float32 values
    assert (rows["conv1"].macs, rows["conv1"].shifts, rows["conv1"].bits) == (3600, 0, 40 * 32)
    # zero-free codes (q, dense) shift for every weight: conv2 has 6 x 8 x 8 outputs of 4 x 3 x 3,
    # head 10 outputs of 16; storage is each layer's own width plus float32 biases
    assert (rows["conv2"].macs, rows["conv2"].shifts, rows["conv2"].bits) == (0, 6 * 64 * 36, 216 * 3 + 6 * 32)
    assert (rows["head"].macs, rows["head"].shifts, rows["head"].bits) == (0, 160, 160 * 2 + 10 * 32)
    assert (rows["fc2"].macs, rows["fc2"].bits) == (0, 512 * 5 + 16 * 32)
    assert c.model_bits == sum(r.bits for r in c.layers)
