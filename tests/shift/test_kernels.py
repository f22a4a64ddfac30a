"""Native shift kernels: packed format, float mode within rounding, integer mode bit-exact."""
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autodsnn.zoo.models import create_model
from autodsnn.shift import ShiftConfig, ShiftConv2d, ShiftLinear, ShiftConfigError, convert, freeze, integer
from autodsnn.shift.kernels import DeployedShiftConv2d, DeployedShiftLinear, deploy, inference_path
from autodsnn.shift.packing import canonical_codes, code_bits, decode_canonical, pack_codes, unpack_codes, value_table
from autodsnn.shift.native import native_cpu, native_cpu_portable
from autodsnn.shift.quant import CodeSet
from code_sets import VARIANTS, split as _split

ACT = dict(act_int_bits=3, act_frac_bits=5)


@pytest.fixture(scope="module", params=["avx512", "portable"])
def backend(request):
    """Both builds of the CPU kernels; outputs are NaN-poisoned so unwritten elements show."""
    module = native_cpu() if request.param == "avx512" else native_cpu_portable()
    assert module is not None  # CI builds and tests the CPU kernels
    module.set_poison(True)
    yield module
    module.set_poison(False)


@pytest.mark.parametrize("bits", range(2, 9))
@pytest.mark.parametrize("variant", VARIANTS)
def test_canonical_codes_pack_and_decode_round_trip(bits, variant):
    mode, zero_level = _split(variant)
    codes = CodeSet(mode, bits, shift_max=1, has_zero=zero_level)
    levels = codes.levels()
    w = levels[torch.randint(0, len(levels), (6, 7))]
    sign = w.sign().to(torch.int8)
    shift = torch.where(w == 0, float(codes.shift_min), torch.where(w == 0, 1.0, w.abs()).log2()).to(torch.int16)
    canon = canonical_codes(codes, sign, shift)
    cb = code_bits(bits)
    assert int(canon.max()) < 2 ** cb and ((canon >> (cb - 1)) & 1)[w == 0].sum() == 0  # zero has no sign
    packed = pack_codes(canon, cb)
    assert packed.shape[1] == (4 if cb == 4 else 7)
    assert torch.equal(unpack_codes(packed, cb, 7), canon)
    dsign, dshift = decode_canonical(canon, codes)
    assert torch.equal(dsign.double() * torch.exp2(dshift.double()), w)
    assert torch.equal(value_table(codes)[canon.long()].double(), w)


def _narrow(module):
    """Keep weight magnitudes within 2^-9 of the largest, so that 8-bit codes sum in int32."""
    with torch.no_grad():
        w = module.weight
        w.copy_(w.sign() * w.abs().clamp(min=float(w.abs().max()) / 512))
    return module


def _linear(variant, bits, k, o, act=True, seed=0):
    torch.manual_seed(seed)
    mode, zero_level = _split(variant)
    cfg = ShiftConfig(mode=mode, weight_bits=bits, shift_max="auto", zero_level=zero_level, **(ACT if act else {}))
    return freeze(ShiftLinear.from_float(_narrow(nn.Linear(k, o)), cfg).eval())


def _tol(x, w):
    return 1e-6 * (x.abs().double() @ w.abs().double().T).max() + 1e-6


@pytest.mark.parametrize("variant,bits", list(itertools.product(VARIANTS, range(2, 9))))
@pytest.mark.parametrize("n,k,o", [(1, 37, 5), (3, 64, 33), (9, 129, 70)])
def test_linear_float_mode_within_rounding_of_float64(backend, variant, bits, n, k, o):
    layer = _linear(variant, bits, k, o, act=False, seed=bits + k)
    deployed = DeployedShiftLinear(layer, "float")
    deployed.native_module = backend
    x = torch.randn(n, k)
    y = deployed(x)
    assert deployed.path == "native-cpu float"
    ref = F.linear(x.double(), layer.quantized_weight().double(), layer.bias.double())
    assert torch.isfinite(y).all()
    assert (y.double() - ref).abs().max() <= _tol(x, layer.quantized_weight())
    if layer.codes.has_zero and bits <= 3:
        assert (layer.sign_and_shift()[0] == 0).any()  # zero codes are exercised


@pytest.mark.parametrize("variant,bits", list(itertools.product(VARIANTS, range(2, 9))))
@pytest.mark.parametrize("n,k,o", [(1, 37, 5), (3, 64, 33), (9, 129, 70)])
def test_linear_integer_mode_equals_reference_exactly(backend, variant, bits, n, k, o):
    layer = _linear(variant, bits, k, o, seed=bits * 7 + k)
    deployed = DeployedShiftLinear(layer, "integer")
    deployed.native_module = backend
    x = torch.randn(n, k) * 4  # some inputs saturate
    y = deployed(x)
    assert deployed.path == "native-cpu integer"
    ref = integer.reference_linear(x, deployed.integer_weight(), deployed.plan)
    assert torch.equal(y, ref)
    # and the definition is the layer's own arithmetic, up to float32 accumulation rounding
    assert (ref.double() - layer(x).double()).abs().max() <= _tol(layer.input_quant(x), layer.quantized_weight())


CONVS = [  # (in, out, kernel, stride, padding, dilation, groups, size)
    (3, 16, 3, 1, 1, 1, 1, 9), (16, 16, 3, 2, 1, 1, 1, 8), (8, 8, 3, 1, 2, 2, 8, 7), (6, 9, 1, 1, 0, 1, 3, 5),
    (4, 20, 5, 2, 0, 1, 2, 13), (5, 3, (1, 3), (2, 1), (0, 1), (1, 2), 1, 11), (16, 32, 1, 2, 0, 1, 1, 8),
    (8, 64, 3, 1, 1, 1, 1, 7), (64, 64, 3, 2, 1, 2, 2, 9), (6, 48, 3, 1, 0, 1, 1, 5),
    # 64k output channels per group and >= 1024 positions: the channel-vectorized float tile
    (8, 64, 3, 1, 1, 1, 1, 23), (16, 128, 3, 2, 1, 1, 2, 64),
]


def _conv(variant, bits, spec, act=True, seed=0):
    torch.manual_seed(seed)
    cin, cout, ks, st, pd, dl, g, _ = spec
    mode, zero_level = _split(variant)
    cfg = ShiftConfig(mode=mode, weight_bits=bits, shift_max="auto", zero_level=zero_level, **(ACT if act else {}))
    return freeze(ShiftConv2d.from_float(_narrow(nn.Conv2d(cin, cout, ks, st, pd, dl, g)), cfg).eval())


@pytest.mark.parametrize("spec", CONVS)
@pytest.mark.parametrize("variant,bits", [("q", 2), ("q+zero", 3), ("ps", 4), ("dense", 3), ("ps", 5), ("dense", 8)])
def test_conv2d_float_mode_within_rounding(backend, spec, variant, bits):
    layer = _conv(variant, bits, spec, act=False, seed=bits)
    deployed = DeployedShiftConv2d(layer, "float")
    deployed.native_module = backend
    x = torch.randn(2, spec[0], spec[-1], spec[-1])
    y = deployed(x)
    assert deployed.path == "native-cpu float"
    ref = F.conv2d(x.double(), layer.quantized_weight().double(), layer.bias.double(), layer.stride, layer.padding,
                   layer.dilation, layer.groups)
    assert y.shape == ref.shape and torch.isfinite(y).all()
    assert (y.double() - ref).abs().max() <= 1e-5 * ref.abs().max() + 1e-6


@pytest.mark.parametrize("spec", CONVS)
@pytest.mark.parametrize("variant,bits", [("q", 2), ("q+zero", 3), ("ps", 4), ("dense", 3), ("ps", 5), ("dense", 8)])
def test_conv2d_integer_mode_equals_reference_exactly(backend, spec, variant, bits):
    layer = _conv(variant, bits, spec, seed=bits + 1)
    deployed = DeployedShiftConv2d(layer, "integer")
    deployed.native_module = backend
    x = torch.randn(2, spec[0], spec[-1], spec[-1]) * 4
    y = deployed(x)
    assert deployed.path == "native-cpu integer"
    ref = integer.reference_conv2d(x, deployed.integer_weight(), deployed.plan, deployed.kernel_size,
                                   deployed.stride, deployed.padding, deployed.dilation, deployed.groups)
    assert torch.equal(y, ref)
    assert (ref - layer(x)).abs().max() <= 1e-5 * ref.abs().max() + 1e-6


def test_integer_bias_off_the_grid_is_added_in_float(backend):
    torch.manual_seed(3)
    cfg = ShiftConfig(mode="ps", weight_bits=4, shift_max="auto", quantize_bias=False, **ACT)
    layer = freeze(ShiftLinear.from_float(nn.Linear(20, 7), cfg).eval())
    deployed = DeployedShiftLinear(layer, "integer")
    deployed.native_module = backend
    assert deployed.plan.bias_float is not None
    x = torch.randn(4, 20)
    assert torch.equal(deployed(x), integer.reference_linear(x, deployed.integer_weight(), deployed.plan))


def test_integer_mode_needs_an_activation_format():
    with pytest.raises(ShiftConfigError, match="fixed-point inputs"):
        DeployedShiftLinear(_linear("ps", 4, 8, 3, act=False), "integer")


@pytest.mark.parametrize("span,act,dtype", [(30, (3, 8), torch.float64), (50, (0, 1), torch.int64)])
def test_sums_wider_than_int32_run_the_exact_reference(span, act, dtype):
    torch.manual_seed(0)
    cfg = ShiftConfig(mode="ps", weight_bits=8, shift_max="auto", act_int_bits=act[0], act_frac_bits=act[1])
    lin = nn.Linear(64, 5)
    with torch.no_grad():
        lin.weight[0, :2] = torch.tensor([1.0, 2.0 ** -span])  # 8-bit codes spanning span + 1 exponents
    layer = freeze(ShiftLinear.from_float(lin, cfg).eval())
    deployed = DeployedShiftLinear(layer, "integer")
    x = torch.randn(3, 64) * 2
    y = deployed(x)
    assert not deployed.plan.fits_int32 and deployed.path == "torch integer (exact reference)"
    assert integer.exact_dtype(deployed.plan) == dtype  # float64 GEMM below 2^53, int64 above
    # the definition, computed the slow way: int64 sums, one rounding to float32
    sign, shift = layer.sign_and_shift()
    q = integer.quantize_to_int(x, deployed.plan)
    acc = q @ integer.weight_int(sign, shift, deployed.plan.kbase).T + deployed.plan.bias_int
    assert torch.equal(y, acc.to(torch.float32) * deployed.plan.out_scale)


def test_without_native_kernels_the_torch_paths_compute_the_same(monkeypatch):
    layer = _linear("q", 3, 33, 9)
    x = torch.randn(5, 33)
    native = {m: DeployedShiftLinear(layer, m)(x) for m in ("float", "integer")}
    monkeypatch.setattr("autodsnn.shift.kernels.native_cpu", lambda: None)
    for m in ("float", "integer"):
        d = DeployedShiftLinear(layer, m)
        y = d(x)
        assert d.path.startswith("torch")
        assert torch.equal(y, native[m]) if m == "integer" else torch.allclose(y, native[m], atol=1e-5)


def _shift_resnet20(seed=0, mode="ps", bits=4):
    """A converted CIFAR ResNet-20 in eval mode, with 4.8 fixed-point inputs (integer mode works)."""
    torch.manual_seed(seed)
    model = create_model("resnet20", num_classes=10)
    convert(model, ShiftConfig(mode=mode, weight_bits=bits, shift_max="auto", act_int_bits=4, act_frac_bits=8))
    return model.eval()


@pytest.mark.parametrize("mode", ["float", "integer"])
def test_deployed_resnet20_predicts_like_the_emulated_one(mode):
    model = _shift_resnet20()
    x = torch.randn(16, 3, 32, 32)
    with torch.no_grad():
        emulated = model(x)
        report = deploy(model, mode)
        deployed = model(x)
    assert len(report) == 22  # 19 convs, 2 shortcuts, fc
    folded = [v for v in report.values() if " + " in v]
    # float mode moves each conv's BatchNorm into its epilogue; integer mode keeps its exact output
    assert len(folded) == (21 if mode == "float" else 0)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == (0 if mode == "float" else 21)
    assert all(v.split(" + ")[0].endswith(mode) for v in report.values())
    assert inference_path(model) == f"native-cpu {mode}"
    assert torch.equal(deployed.argmax(1), emulated.argmax(1))
    assert torch.allclose(deployed, emulated, atol=1e-3, rtol=1e-4)


def test_batchnorm_folds_only_where_it_alone_reads_the_conv(backend):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.bn_a = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
            self.b, self.bn_b = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8, affine=False)

        def forward(self, x):
            y = self.bn_a(self.a(x))
            z = self.b(y)
            return self.bn_b(z) + z  # the conv output is read twice: bn_b must stay

    torch.manual_seed(0)
    net = Net()
    for bn in (net.bn_a, net.bn_b):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    if net.bn_a.affine:
        net.bn_a.weight.data.uniform_(0.5, 2)
    convert(net, ShiftConfig(mode="ps", weight_bits=4, shift_depth="all", shift_max="auto"))
    net.eval()
    x = torch.randn(2, 3, 9, 9)
    with torch.no_grad():
        expected = net(x)
        report = deploy(net, "float")
        for m in net.modules():
            if isinstance(m, DeployedShiftConv2d):
                m.native_module = backend
        got = net(x)
    assert report == {"a": "conv2d float + bn_a", "b": "conv2d float"}
    assert isinstance(net.bn_a, nn.Identity) and isinstance(net.bn_b, nn.BatchNorm2d)
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)
    unfolded = Net()
    convert(unfolded, ShiftConfig(mode="ps", weight_bits=4, shift_depth="all"))
    assert deploy(unfolded.eval(), "float", fold_batchnorm=False) == {"a": "conv2d float", "b": "conv2d float"}


class _Branchy(nn.Module):
    """conv -> BatchNorm, then a branch on the data: torch.fx cannot trace it."""

    def __init__(self, bn: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4) if bn else nn.Identity()

    def forward(self, x):
        y = self.bn(self.conv(x))
        return y if x.sum() > 0 else -y


def test_an_untraceable_model_deploys_unfolded_and_one_warning_says_why():
    torch.manual_seed(0)
    net = _Branchy()
    net.bn.running_var.uniform_(0.5, 2)
    convert(net, ShiftConfig(mode="q", weight_bits=4))
    net.eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        expected = net(x)
        with pytest.warns(UserWarning, match="BatchNorm folding skipped") as record:
            report = deploy(net, "float")
        got = net(x)
    (warning,) = [w for w in record if "BatchNorm folding" in str(w.message)]
    message = str(warning.message)
    assert "_Branchy" in message and "TraceError: symbolically traced variables" in message
    assert "deploy continues without folding" in message and "\n" not in message
    assert warning.filename == __file__  # points at the deploy() call, not into the library
    assert report == {"conv": "conv2d float"} and isinstance(net.bn, nn.BatchNorm2d)
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("case", ["no BatchNorm", "fold_batchnorm=False", "integer mode"])
def test_an_untraceable_model_with_nothing_to_fold_deploys_silently(case, recwarn):
    net = _Branchy(bn=case != "no BatchNorm")
    convert(net, ShiftConfig(mode="q", weight_bits=4, act_int_bits=3, act_frac_bits=5))
    report = deploy(net.eval(), "integer" if case == "integer mode" else "float",
                    fold_batchnorm=case != "fold_batchnorm=False")
    assert report == {"conv": f"conv2d {'integer' if case == 'integer mode' else 'float'}"}
    assert not [w for w in recwarn if "BatchNorm folding" in str(w.message)]


def test_deploy_auto_uses_integer_where_inputs_are_fixed_point():
    model = nn.Sequential(nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 4))
    convert(model, ShiftConfig(mode="ps", weight_bits=4, shift_depth="all", act_int_bits=3, act_frac_bits=5,
                               exclude=("2",)))
    convert(model, ShiftConfig(mode="q", weight_bits=4, include=("2",)))
    report = deploy(model.eval(), "auto")
    assert report == {"0": "linear integer", "2": "linear float"}
    model(torch.randn(3, 10))
    assert inference_path(model) == "native-cpu integer x1, native-cpu float x1"


def test_a_checkpoints_packed_codes_deploy_into_a_fresh_model(tmp_path):
    from autodsnn.shift import deploy_exported, export

    model = _shift_resnet20(seed=1, mode="dense", bits=3)
    path = export(freeze(model), tmp_path / "shift_codes.pt")
    fresh = create_model("resnet20", num_classes=10)
    fresh.load_state_dict({k: v for k, v in model.state_dict().items() if "weight_quant" not in k}, strict=False)
    report = deploy_exported(fresh.eval(), path, "integer")
    assert len(report) == 22
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        reference = model(x)
        deploy(model, "integer")
        assert torch.equal(fresh(x), model(x))  # same codes, same integer arithmetic
    assert torch.allclose(fresh(x), reference, atol=1e-3, rtol=1e-4)


def test_deployed_layers_refuse_to_take_part_in_training():
    deployed = DeployedShiftLinear(_linear("ps", 4, 8, 3), "float")
    x = torch.randn(2, 8, requires_grad=True)
    with pytest.raises(ShiftConfigError, match="inference only"):
        deployed(x)
    with torch.no_grad():
        assert deployed(x).shape == (2, 3)


@pytest.mark.parametrize("mode", ["float", "integer"])
def test_a_deployed_state_dict_loads_into_another_deployed_model(mode):
    def deployed(seed):
        model = _shift_resnet20(seed)
        with torch.no_grad():
            for m in model.modules():  # distinct BatchNorm statistics, so folded epilogues differ
                if isinstance(m, nn.BatchNorm2d):
                    m.running_var.uniform_(0.5, 2.0)
        deploy(model, mode)
        return model

    a, b = deployed(0), deployed(1)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert not torch.equal(a(x), b(x))
        b.load_state_dict(a.state_dict())  # packed codes, biases, folded scales: tables follow
        assert torch.equal(b(x), a(x))


def test_linear_weights_below_float32s_normal_range_take_the_torch_path():
    torch.manual_seed(0)
    cfg = ShiftConfig(mode="ps", weight_bits=8, shift_max=-3)  # levels down to 2^-129
    layer = ShiftLinear.from_float(nn.Linear(16, 4), cfg)
    with torch.no_grad():
        layer.weight_quant.shift[0, 0] = -129.0  # trained that far down: a subnormal float32 weight
        layer.weight_quant.sign[0, 0] = 1.0
    layer = freeze(layer.eval())
    assert layer.sign_and_shift()[1].min() == -129
    deployed = DeployedShiftLinear(layer, "float")
    x = torch.randn(3, 16)
    y = deployed(x)
    assert deployed.path == "torch float"
    ref = F.linear(x.double(), layer.quantized_weight().double(), layer.bias.double())
    assert (y.double() - ref).abs().max() <= _tol(x, layer.quantized_weight())
