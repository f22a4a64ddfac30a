import pytest
import torch
from torch import nn

from autodsnn.models import create_model
from autodsnn.shift import ShiftConfig, ShiftLinear, convert, freeze
from autodsnn.shift.kernels import DeployedShiftLinear, deploy, native_cpu, pack_codes, unpack_codes
from autodsnn.shift.quant import CodeSet


@pytest.mark.parametrize("bits", range(2, 9))
@pytest.mark.parametrize("k", [1, 7, 16])
def test_pack_unpack_roundtrip(bits, k):
    codes = torch.randint(0, 2 ** bits, (5, k), dtype=torch.uint8)
    packed = pack_codes(codes, bits)
    assert packed.shape[1] == ((k + 1) // 2 if bits <= 4 else k)
    assert torch.equal(unpack_codes(packed, bits, k), codes)


def test_native_kernel_builds_here():
    assert native_cpu() is not None  # CI builds and tests the CPU kernels


@pytest.mark.parametrize("mode", ["q", "ps", "dense"])
@pytest.mark.parametrize("bits", [2, 3, 4, 5, 8])
@pytest.mark.parametrize("n,k,o", [(1, 37, 5), (3, 64, 33), (17, 129, 8)])
def test_deployed_linear_matches_float64_reference(mode, bits, n, k, o):
    torch.manual_seed(bits * 100 + k)
    lin = nn.Linear(k, o)
    layer = ShiftLinear.from_float(lin, ShiftConfig(mode=mode, weight_bits=bits, shift_max="auto")).eval()
    freeze(layer)
    deployed = DeployedShiftLinear.from_shift_linear(layer)
    x = torch.randn(n, k)
    y = deployed(x)
    assert deployed.path == "native-cpu"
    ref = torch.nn.functional.linear(x.double(), layer.quantized_weight().double(), layer.bias.double())
    assert torch.isfinite(y).all()
    tol = 1e-6 * (x.abs().double() @ layer.quantized_weight().abs().double().T).max() + 1e-7
    assert (y.double() - ref).abs().max() <= tol
    if mode != "dense":
        assert (layer.sign_and_shift()[0] == 0).any() or bits > 3  # zero codes exercised at low bits


def test_deployed_model_predicts_like_the_emulated_one():
    torch.manual_seed(0)
    model = create_model("mnist-fc", num_classes=10)
    convert(model, ShiftConfig(mode="ps", weight_bits=4, shift_max="auto", act_int_bits=4, act_frac_bits=8))
    model.eval()
    x = torch.randn(64, 1, 28, 28)
    emulated = model(x)
    report = deploy(model)
    assert list(report.values()) == ["packed linear"] * 3
    deployed = model(x)
    assert torch.equal(deployed.argmax(1), emulated.argmax(1))
    assert torch.allclose(deployed, emulated, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("fmt", [(3, 5, True), (2, 4, False), (8, 8, True), (16, 12, True)])
def test_native_fixed_point_equals_torch_path(fmt):
    from autodsnn.shift.quant import FixedPoint, quantize_fixed_point
    f = FixedPoint(*fmt)
    x = torch.randn(40_000) * 2 ** (f.int_bits + 1)
    x[:8] = torch.tensor([0.5, 1.5, -0.5, 2.5, float("nan"), float("inf"), -float("inf"), 0.0]) / 2 ** f.frac_bits
    grid = x.view(200, 200)
    native = quantize_fixed_point(grid, f)  # CPU float32 contiguous: the native pass
    reference = quantize_fixed_point(grid.t(), f).t()  # non-contiguous: the PyTorch path
    assert torch.equal(native.isnan(), reference.isnan())
    assert torch.equal(native[~native.isnan()], reference[~reference.isnan()])
    assert native.is_contiguous() and not grid.t().is_contiguous()
    y = x.clone().requires_grad_()
    quantize_fixed_point(y, f).sum().backward()  # the backward is unchanged: clipped STE
    assert set(y.grad.unique().tolist()) <= {0.0, 1.0}
