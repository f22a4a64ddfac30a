import pytest
import torch
from torch import nn

from autodsnn.shift import ENERGY_45NM, ConvShiftConv, ShiftConfig, convert, cost


def test_float_conv_counts():
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
    c = cost(model, (3, 32, 32))
    # The first conv: one MAC per weight per output pixel (ShiftResNet's counter had this 4x too high).
    assert c.layers[0].macs == 32 * 32 * 16 * 3 * 3 * 3 == 442_368
    assert c.macs == 442_368 + 16 * 10
    assert c.params == 16 * 27 + 32 + 170
    assert c.model_bits == 32 * c.params
    assert c.shifts == 0
    bn = 16 * 32 * 32
    expected = (c.macs * (ENERGY_45NM.fp32_mul + ENERGY_45NM.fp32_add) + 10 * ENERGY_45NM.fp32_add
                + bn * (ENERGY_45NM.fp32_mul + ENERGY_45NM.fp32_add)
                + 16 * 32 * 32 * ENERGY_45NM.fp32_add + 16 * ENERGY_45NM.fp32_mul)
    compute = c.total_energy_pj - c.energy_pj["weight_memory"]
    assert compute == pytest.approx(expected)
    assert c.energy_pj["weight_memory"] == pytest.approx(c.model_bits * ENERGY_45NM.dram_bit)


def test_batch_scales_ops_not_params():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.LazyLinear(4))
    model(torch.zeros(1, 3, 10, 10))
    one, four = cost(model, (1, 3, 10, 10)), cost(model, (4, 3, 10, 10))
    assert four.macs == 4 * one.macs and four.params == one.params


@pytest.mark.parametrize("act", [None, (4, 8)])
def test_shift_layer_counts_nonzero_weights_and_bits(act):
    conv = nn.Conv2d(4, 6, 3, padding=1, bias=True)
    with torch.no_grad():
        conv.weight.fill_(0.5)
        conv.weight[0].zero_()  # a whole output channel of zeros costs nothing
    model = nn.Sequential(conv)
    convert(model, ShiftConfig(mode="q", weight_bits=4, zero_level=True, act_int_bits=act and act[0],
                               act_frac_bits=act and act[1]))
    c = cost(model, (2, 4, 5, 5))
    nonzero = 5 * 4 * 9
    positions = 2 * 5 * 5
    assert c.macs == 0 and c.shifts == positions * nonzero
    assert c.adds == positions * nonzero + 2 * 6 * 5 * 5  # shift-adds + bias adds
    assert c.model_bits == 6 * 4 * 9 * 4 + 6 * 32
    assert c.shift_params == 6 * 4 * 9 + 6
    per_shift = ENERGY_45NM.shift if act else ENERGY_45NM.exponent_add
    per_add = ENERGY_45NM.int32_add if act else ENERGY_45NM.fp32_add
    assert c.energy_pj["shift_add"] == pytest.approx(c.shifts * per_shift + c.adds * per_add)


def test_shift_network_costs_less_than_float():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
                          nn.Flatten(), nn.Linear(32 * 8 * 8, 10))
    before = cost(model, (3, 8, 8))
    convert(model, ShiftConfig(mode="ps", weight_bits=4, act_int_bits=4, act_frac_bits=4))
    after = cost(model, (3, 8, 8))
    assert after.params == before.params
    assert after.model_bits * 8 == pytest.approx(before.model_bits, rel=0.05)
    assert after.total_energy_pj < before.total_energy_pj / 5


def test_spatial_shift_is_free_and_block_counts():
    block = ConvShiftConv(16, 16, expansion=3)
    c = cost(block, (16, 8, 8))
    mid = 48
    assert c.macs == 8 * 8 * (16 * mid + mid * 16)
    assert [r.kind for r in c.layers if r.name == "shift"] == ["SpatialShift"]
    assert [r.macs + r.adds + r.muls for r in c.layers if r.name == "shift"] == [0]
    assert c.params == 16 * mid * 2 + 2 * mid + 2 * 16


def test_unreached_parameters_still_count():
    class WithAux(nn.Module):
        def __init__(self):
            super().__init__()
            self.main = nn.Linear(4, 2)
            self.aux = nn.Linear(4, 2)

        def forward(self, x):
            return self.main(x)

    c = cost(WithAux(), (1, 4))
    assert c.params == 20 and c.macs == 8


class _SharedAndLooped(nn.Module):
    """One Linear reached under two names and called four times, then a head."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.alias = self.fc
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        for _ in range(3):
            x = torch.relu(self.fc(x))
        return self.head(self.alias(x))


class _Functional(nn.Module):
    """A layer written with F.linear on the module's own parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 8))
        self.b = nn.Parameter(torch.zeros(4))
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(torch.nn.functional.linear(x, self.w, self.b))


def test_storage_once_per_tensor_operations_once_per_call():
    """Issue 13, kind 6, against hand counts (batch 1)."""
    c = cost(_SharedAndLooped(), (1, 8))
    assert c.params == (8 * 8 + 8) + (8 * 2 + 2)            # the shared Linear stored once: 90
    assert c.model_bits == 32 * 90
    assert c.macs == 4 * 64 + 16                              # four calls of fc, one of head
    assert c.adds == 4 * 8 + 2                                # their bias adds
    c = cost(_Functional(), (1, 8))
    assert c.params == 4 * 8 + 4 + 4 * 2 + 2 and c.macs == 32 + 8   # the functional layer counted too


def test_a_shared_shift_layer_stores_its_codes_once():
    model = _SharedAndLooped()
    convert(model, ShiftConfig(mode="q", weight_bits=4, shift_max=0))
    assert model.alias is model.fc  # still one module
    c = cost(model, (1, 8))
    sign_fc, _ = model.fc.sign_and_shift()
    sign_head, _ = model.head.sign_and_shift()
    assert c.params == 90 and c.macs == 0
    assert c.model_bits == 4 * (64 + 16) + 32 * (8 + 2)
    assert c.shifts == 4 * int((sign_fc != 0).sum()) + int((sign_head != 0).sum())
