import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autodsnn.shift import ShiftConfig, ShiftConfigError, ShiftConv2d, ShiftLinear
from autodsnn.shift.quant import CodeSet
from code_sets import VARIANTS, config

MODES = VARIANTS  # q, ps, dense and q with its optional zero level


def pow2_weights(shape, lo=-6, hi=0, zeros=True, generator=None):
    """Random weights that are already in every mode's code set (except zero for dense)."""
    exp = torch.randint(lo, hi + 1, shape, generator=generator).float()
    sign = torch.randint(0, 2, shape, generator=generator).float() * 2 - 1
    w = sign * torch.exp2(exp)
    if zeros:
        w[torch.rand(shape, generator=generator) < 0.2] = 0.0
    return w


def in_code_set(w: torch.Tensor, codes: CodeSet) -> bool:
    return set(w.detach().flatten().tolist()) <= set(codes.levels().tolist())


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("bits", range(2, 9))
@pytest.mark.parametrize("rounding", ["deterministic", "stochastic"])
def test_every_forward_weight_is_in_the_code_set(mode, bits, rounding):
    cfg = config(mode, weight_bits=bits, shift_max=1, rounding=rounding)
    conv = ShiftConv2d(8, 16, 3, config=cfg)
    lin = ShiftLinear(32, 8, config=cfg)
    for layer in (conv, lin):
        layer.train()
        with torch.no_grad():  # spread latents over and beyond the whole range
            for p in layer.weight_quant.parameters():
                p.mul_(torch.exp2(torch.empty_like(p).uniform_(-bits * 2, 4)))
        for training in (True, False):
            layer.train(training)
            w = layer.quantized_weight()
            assert in_code_set(w, layer.codes), (mode, bits)
            if not layer.codes.has_zero:
                assert (w != 0).all()
            sign, shift = layer.sign_and_shift()
            assert sign.dtype == torch.int8 and shift.dtype == torch.int16
            assert int(shift.min()) >= layer.codes.shift_min and int(shift.max()) <= layer.codes.shift_max


@pytest.mark.parametrize("mode", MODES)
def test_power_of_two_float_layer_is_reproduced(mode):
    g = torch.Generator().manual_seed(0)
    cfg = config(mode, weight_bits=5)
    zeros = cfg.code_set().has_zero
    conv = nn.Conv2d(6, 10, 3, padding=1, bias=True)
    lin = nn.Linear(20, 7)
    with torch.no_grad():
        conv.weight.copy_(pow2_weights(conv.weight.shape, zeros=zeros, generator=g))
        lin.weight.copy_(pow2_weights(lin.weight.shape, zeros=zeros, generator=g))
    sconv, slin = ShiftConv2d.from_float(conv, cfg), ShiftLinear.from_float(lin, cfg)
    x = torch.randn(3, 6, 9, 9)
    for layer in (sconv, slin):
        layer.eval()
    assert torch.equal(sconv.quantized_weight(), conv.weight)
    assert torch.allclose(sconv(x), conv(x), atol=1e-6)
    v = torch.randn(4, 20)
    assert torch.equal(slin.quantized_weight(), lin.weight)
    assert torch.allclose(slin(v), lin(v), atol=1e-6)


@pytest.mark.parametrize("kw", [
    dict(groups=4),
    dict(groups=16, in_channels=16, out_channels=16),  # depthwise
    dict(dilation=2, padding=2),
    dict(stride=2, padding=1),
    dict(stride=(2, 1), padding=(0, 2), dilation=(1, 3)),
    dict(padding="same", dilation=2),
    dict(padding=1, padding_mode="reflect"),
    dict(padding=1, padding_mode="circular"),
    dict(padding=2, padding_mode="replicate", bias=False),
])
@pytest.mark.parametrize("mode", MODES)
def test_conv_features_match_float_conv_on_pow2_weights(kw, mode):
    g = torch.Generator().manual_seed(1)
    args = dict(in_channels=8, out_channels=12, kernel_size=3)
    args.update(kw)
    conv = nn.Conv2d(**args)
    with torch.no_grad():
        conv.weight.copy_(pow2_weights(conv.weight.shape, zeros=config(mode).code_set().has_zero, generator=g))
    layer = ShiftConv2d.from_float(conv, config(mode)).eval()
    x = torch.randn(2, args["in_channels"], 11, 13)
    expected = conv(x)
    out = layer(x)
    assert out.shape == expected.shape
    assert torch.allclose(out, expected, atol=1e-5)
    if kw.get("padding_mode", "zeros") == "zeros" and not isinstance(kw.get("padding"), str):
        ref = F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)
        assert torch.allclose(out, ref, atol=1e-5)


def test_constructor_mirrors_float_layers():
    cfg = ShiftConfig(mode="ps")
    conv = ShiftConv2d(4, 8, (3, 5), stride=2, padding=(1, 2), groups=2, bias=False, config=cfg)
    assert conv.bias is None and conv.kernel_size == (3, 5) and conv.groups == 2
    assert conv(torch.randn(1, 4, 10, 10)).shape == (1, 8, 5, 5)
    lin = ShiftLinear(5, 3, bias=False, config=cfg, dtype=torch.float64)
    assert lin(torch.randn(2, 7, 5, dtype=torch.float64)).shape == (2, 7, 3)
    assert "weight" not in dict(conv.named_parameters())  # latents replace the float weight
    assert {n for n, _ in conv.named_parameters()} == {"weight_quant.shift", "weight_quant.sign"}


def test_stochastic_rounding_only_in_training():
    cfg = ShiftConfig(mode="q", weight_bits=6, rounding="stochastic")
    layer = ShiftConv2d(16, 16, 3, config=cfg)
    layer.train()
    assert any(not torch.equal(layer.quantized_weight(), layer.quantized_weight()) for _ in range(5))
    layer.eval()
    first = layer.quantized_weight()
    for _ in range(5):
        assert torch.equal(layer.quantized_weight(), first)
    sign, shift = layer.sign_and_shift()
    assert torch.equal(first, sign.float() * torch.exp2(shift.float()))


@pytest.mark.parametrize("mode", ["ps", "dense"])
def test_stochastic_ps_and_dense_deterministic_in_eval(mode):
    layer = ShiftLinear(64, 64, config=ShiftConfig(mode=mode, rounding="stochastic")).eval()
    assert torch.equal(layer.quantized_weight(), layer.quantized_weight())


@pytest.mark.parametrize("layer", [
    lambda cfg: ShiftLinear(16, 8, config=cfg),
    lambda cfg: ShiftConv2d(16, 8, 1, config=cfg),
])
def test_activation_quantization_same_in_linear_and_conv(layer):
    cfg = ShiftConfig(mode="q", act_int_bits=2, act_frac_bits=3)
    m = layer(cfg).eval()
    x = torch.randn(4, 16) * 3
    xin = x if isinstance(m, ShiftLinear) else x[:, :, None, None]
    q = m.input_quant(xin)
    k = q * 8
    assert torch.equal(k, torch.round(k)) and float(q.min()) >= -4 and float(q.max()) <= 4 - 1 / 8
    # the layer's output is the float op on the quantized input and quantized bias
    w, b = m.quantized_weight(), m.quantized_bias()
    assert torch.equal(b * 8, torch.round(b * 8))
    ref = F.linear(q, w, b) if isinstance(m, ShiftLinear) else F.conv2d(q, w, b)
    assert torch.allclose(m(xin), ref)


def test_unsigned_activations_clip_negative_inputs():
    m = ShiftLinear(4, 2, config=ShiftConfig(act_int_bits=3, act_frac_bits=4, act_signed=False))
    assert float(m.input_quant(torch.tensor([-3.0, 2.0])).min()) == 0.0


@pytest.mark.parametrize("mode", MODES)
def test_layers_train(mode):
    """A few SGD steps reduce the loss of a small shift regression (gradients reach latents)."""
    torch.manual_seed(0)
    target = nn.Linear(16, 4)
    x = torch.randn(256, 16)
    y = target(x).detach()
    layer = ShiftLinear(16, 4, config=config(mode, weight_bits=6))
    opt = torch.optim.Adam(layer.parameters(), lr=0.02)
    losses = []
    for _ in range(150):
        loss = F.mse_loss(layer(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_ps_latents_stay_bounded():
    layer = ShiftLinear(8, 8, config=ShiftConfig(mode="ps", weight_bits=4)).train()
    with torch.no_grad():
        layer.weight_quant.sign.fill_(50.0)
        layer.weight_quant.shift.fill_(-100.0)
    layer(torch.randn(2, 8))
    assert float(layer.weight_quant.sign.detach().abs().max()) <= 1.0
    assert float(layer.weight_quant.shift.detach().min()) >= layer.codes.shift_min - 0.5


def test_auto_shift_max_minimizes_rounding_error_and_survives_state_dict():
    torch.manual_seed(0)
    lin = nn.Linear(64, 64)
    with torch.no_grad():
        lin.weight.normal_(0.0, 0.5)  # bell-shaped, like trained weights
    w = lin.weight.detach()
    import math
    top = int(math.floor(math.log2(float(w.abs().max())) + 0.5))
    for bits in (2, 3, 5, 8):
        cfg = ShiftConfig(mode="q", weight_bits=bits, shift_max="auto")
        layer = ShiftLinear.from_float(lin, cfg).eval()
        err = lambda top_: float((ShiftLinear.from_float(lin, cfg.replace(shift_max=top_)).eval().quantized_weight()  # noqa: E731
                                  - w).detach().square().sum())
        chosen = layer.codes.shift_max
        errors = {c: err(c) for c in range(top - 8, top + 4)}
        assert errors[chosen] <= min(errors.values()) * (1 + 1e-3)  # (near) least rounding error
        assert all(c <= chosen for c, e in errors.items() if e <= min(errors.values()) * (1 + 1e-3))  # headroom
        if bits >= 5:
            assert chosen > top  # spare levels: room for weights to grow
        if bits == 2:  # one magnitude level: placed where most weights are, not at the largest
            assert chosen < top
            assert (layer.quantized_weight() != 0).float().mean() > 0.3  # not flushed to zero
    fresh = ShiftLinear(64, 64, config=cfg)
    fresh.load_state_dict(layer.state_dict())
    assert fresh.codes == layer.codes
    assert torch.equal(fresh.eval().quantized_weight(), layer.quantized_weight())


@pytest.mark.parametrize("sign_grad", ["scaled", "unscaled"])
def test_ps_sign_gradient_is_scaled_by_the_power_of_two_or_not(sign_grad):
    """dL/dS = dL/dW * 2^round(P) (the paper) or dL/dW (DeepShift's code); dL/dP = dL/dW * W * ln 2
    either way. Computed here by hand for L = sum(W * G)."""
    layer = ShiftLinear(3, 2, bias=False, config=ShiftConfig(mode="ps", weight_bits=5, sign_grad=sign_grad)).train()
    with torch.no_grad():
        layer.weight_quant.shift.copy_(torch.tensor([[-1.2, -3.0, 0.1], [-5.4, -2.6, -0.7]]))
        layer.weight_quant.sign.copy_(torch.tensor([[0.9, -0.8, 0.2], [-0.3, 0.7, -1.0]]))
    g = torch.tensor([[1.0, -2.0, 3.0], [0.5, 4.0, -1.0]])
    (layer.quantized_weight() * g).sum().backward()
    magnitude = torch.tensor([[2.0 ** -1, 2.0 ** -3, 1.0], [2.0 ** -5, 2.0 ** -3, 2.0 ** -1]])
    sign = torch.tensor([[1.0, -1.0, 0.0], [0.0, 1.0, -1.0]])
    want_sign = g * magnitude if sign_grad == "scaled" else g
    assert torch.equal(layer.weight_quant.sign.grad, want_sign)
    assert torch.allclose(layer.weight_quant.shift.grad, g * sign * magnitude * math.log(2), rtol=0, atol=1e-7)


def test_an_unknown_sign_grad_names_the_choices():
    with pytest.raises(ShiftConfigError, match="unknown sign_grad 'both': use one of scaled, unscaled"):
        ShiftConfig(mode="ps", sign_grad="both")
