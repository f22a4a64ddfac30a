import math

import pytest
import torch

from autodsnn.shift.errors import ShiftConfigError
from autodsnn.shift.modes import code_set_variants
from autodsnn.shift.quant import (CodeSet, FixedPoint, dense_weight, ps_weight, quantize_fixed_point, quantize_pow2,
                                  round_pow2_ste)

ALL_BITS = range(2, 9)
VARIANTS = code_set_variants()  # (mode, has_zero), q's optional zero level included


@pytest.mark.parametrize("mode,has_zero", VARIANTS)
@pytest.mark.parametrize("bits", ALL_BITS)
def test_code_set_sizes(mode, has_zero, bits):
    codes = CodeSet(mode, bits, shift_max=1, has_zero=has_zero)
    assert codes.has_zero == has_zero
    # every code of the b-bit word is used exactly once (with a zero level, zero takes one magnitude code)
    assert codes.num_levels == (2 ** bits - 1 if codes.has_zero else 2 ** bits)
    assert codes.shift_max == 1
    assert codes.shift_max - codes.shift_min + 1 == codes.num_shifts
    assert len(codes.levels()) == codes.num_levels


@pytest.mark.parametrize("bits", ALL_BITS)
def test_q_is_deepshift_q_and_its_zero_level_is_an_option(bits):
    """DeepShift-Q (Elhoushi et al.; their code): +-2^k for k in [-(2^(b-1) - 1), 0], 2^b levels, no
    zero. zero_level=True: one magnitude code is 0, one exponent fewer (autodsnn <= 0.2's q)."""
    top = 2 ** (bits - 1) - 1
    deepshift_q = sorted([s * 2.0 ** -k for k in range(0, top + 1) for s in (-1, 1)])
    assert CodeSet("q", bits).levels().tolist() == deepshift_q and len(deepshift_q) == 2 ** bits
    with_zero = sorted([0.0] + [s * 2.0 ** -k for k in range(0, top) for s in (-1, 1)])
    assert CodeSet("q", bits, has_zero=True).levels().tolist() == with_zero
    assert CodeSet("ps", bits).levels().tolist() == with_zero  # DeepShift-PS keeps its zero


def test_at_two_bits_deepshift_initialised_weights_become_half_not_zero():
    """The issue's example: a kaiming-initialised 784x512 layer (|w| < 1/28) at 2 bits is +-0.5
    everywhere in DeepShift-Q (clamped up to the smallest level), 0 everywhere with a zero level."""
    w = torch.nn.Linear(784, 512).weight.detach()
    sign, exp = quantize_pow2(w, CodeSet("q", 2))
    assert torch.equal((sign * torch.exp2(exp)).abs(), torch.full_like(w, 0.5))
    assert torch.equal(torch.sign(sign), torch.sign(w))
    sign, _ = quantize_pow2(w, CodeSet("q", 2, has_zero=True))
    assert (sign == 0).all()


@pytest.mark.parametrize("mode,has_zero", [("ps", False), ("dense", True), ("q", 1)])
def test_a_zero_level_a_mode_cannot_have_is_refused(mode, has_zero):
    with pytest.raises(ShiftConfigError, match="zero"):
        CodeSet(mode, 4, has_zero=has_zero)


def test_deepshift_default_range():
    # DeepShift's 5-bit ranges: Q shifts -15..0 (zero-free); PS -14..0 and zero.
    assert (CodeSet("q", 5).shift_min, CodeSet("q", 5).has_zero) == (-15, False)
    c = CodeSet("ps", 5)
    assert (c.shift_min, c.shift_max, c.has_zero) == (-14, 0, True)
    assert CodeSet("dense", 3).levels().tolist() == [-1, -0.5, -0.25, -0.125, 0.125, 0.25, 0.5, 1]


@pytest.mark.parametrize("bits", [1, 9, 0, 3.5, True])
def test_impossible_bits_rejected(bits):
    with pytest.raises(ShiftConfigError, match="weight_bits"):
        CodeSet("q", bits)


@pytest.mark.parametrize("mode,has_zero", VARIANTS)
@pytest.mark.parametrize("bits", ALL_BITS)
def test_encode_decode_roundtrip(mode, has_zero, bits):
    codes = CodeSet(mode, bits, shift_max=2, has_zero=has_zero)
    w = torch.randn(500) * 3
    sign, exp = quantize_pow2(w, codes)
    packed = codes.encode(sign, exp)
    assert packed.dtype == torch.uint8 and int(packed.max()) < 2 ** bits
    s2, e2 = codes.decode(packed)
    assert torch.equal(s2.float() * torch.exp2(e2.float()), sign * torch.exp2(exp))


@pytest.mark.parametrize("mode,has_zero", [v for v in VARIANTS if v[0] != "ps"])
@pytest.mark.parametrize("bits", ALL_BITS)
@pytest.mark.parametrize("stochastic", [False, True])
def test_quantized_values_are_in_code_set(mode, has_zero, bits, stochastic):
    codes = CodeSet(mode, bits, shift_max=1, has_zero=has_zero)
    w = torch.cat([torch.randn(2000) * 10.0 ** torch.empty(2000).uniform_(-6, 1), torch.zeros(3)])
    sign, exp = quantize_pow2(w, codes, stochastic=stochastic)
    wq = sign * torch.exp2(exp)
    allowed = set(codes.levels().tolist())
    assert set(wq.tolist()) <= allowed
    if not codes.has_zero:
        assert (wq != 0).all()


def test_deterministic_rounding_is_nearest_in_log_domain():
    codes = CodeSet("q", 8, shift_max=4)
    w = torch.tensor([1.0, 1.40, 1.42, 3.0, 0.3, -5.0, -0.7])
    sign, exp = quantize_pow2(w, codes)
    assert (sign * torch.exp2(exp)).tolist() == [1.0, 1.0, 2.0, 4.0, 0.25, -4.0, -0.5]


def test_saturation_and_flush_to_zero():
    codes = CodeSet("q", 3, shift_max=0, has_zero=True)  # levels 0, +-1, +-0.5, +-0.25
    w = torch.tensor([100.0, -100.0, 0.2, 0.17, 0.1, 0.0, -0.01])
    sign, exp = quantize_pow2(w, codes)
    assert (sign * torch.exp2(exp)).tolist() == [1.0, -1.0, 0.25, 0.0, 0.0, 0.0, 0.0]
    for zero_free in (CodeSet("q", 3, shift_max=0), CodeSet("dense", 3, shift_max=0)):  # raised to +-2^-3
        sign, exp = quantize_pow2(w, zero_free)
        assert (sign * torch.exp2(exp)).tolist() == [1.0, -1.0, 0.25, 0.125, 0.125, 0.125, -0.125]


def test_stochastic_rounding_is_unbiased():
    torch.manual_seed(0)
    codes = CodeSet("q", 6, shift_max=2)
    w = torch.full((200_000,), 0.3)  # between 0.25 and 0.5
    sign, exp = quantize_pow2(w, codes, stochastic=True)
    values = (sign * torch.exp2(exp)).unique().tolist()
    assert values == [0.25, 0.5]
    assert abs(float((sign * torch.exp2(exp)).mean()) - 0.3) < 2e-3


def test_q_gradient_is_straight_through_float64():
    codes = CodeSet("q", 5)
    w = torch.randn(64, dtype=torch.float64, requires_grad=True)
    g = torch.randn(64, dtype=torch.float64)
    (round_pow2_ste(w, codes) * g).sum().backward()
    assert torch.equal(w.grad, g)


def test_ps_gradients_match_deepshift_formulas_float64():
    codes = CodeSet("ps", 5)
    p = torch.empty(300, dtype=torch.float64).uniform_(-10, 0).requires_grad_()
    s = torch.empty(300, dtype=torch.float64).uniform_(-1, 1).requires_grad_()
    w = ps_weight(p, s, codes)
    g = torch.randn_like(w)
    (w * g).sum().backward()
    rounded_p = torch.floor(p.detach() + 0.5)
    assert torch.allclose(p.grad, g * w.detach() * math.log(2.0), rtol=0, atol=1e-12)
    assert torch.allclose(s.grad, g * torch.exp2(rounded_p), rtol=0, atol=1e-12)
    # The same gradients from autograd through a smooth surrogate that equals W at this point:
    p2, s2 = p.detach().clone().requires_grad_(), s.detach().clone().requires_grad_()
    sign = torch.floor(s.detach() + 0.5)
    surrogate = ((sign + (s2 - s2.detach())) * torch.exp2(rounded_p + (p2 - p2.detach()))
                 * torch.where(sign == 0, 0.0, 1.0).double())
    surrogate = surrogate + (s2 - s2.detach()) * torch.exp2(rounded_p) * (sign == 0)
    (surrogate * g).sum().backward()
    assert torch.allclose(p2.grad, p.grad, atol=1e-12) and torch.allclose(s2.grad, s.grad, atol=1e-12)


def test_dense_gradients_float64():
    codes = CodeSet("dense", 4)
    s = torch.tensor([-2.0, -0.5, 0.3, 1.5], dtype=torch.float64, requires_grad=True)
    m = torch.tensor([0.3, 0.1, 0.02, 0.6], dtype=torch.float64, requires_grad=True)
    w = dense_weight(s, m, codes)
    assert w.tolist() == [-0.25, -0.125, 2 ** -6, 0.5]
    g = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    (w * g).sum().backward()
    assert s.grad.tolist() == [1 * 0.25, 2 * 0.125, 3 * 2 ** -6, 4 * 0.5]  # the layer keeps |s| <= 1 itself
    assert m.grad.tolist() == [-1.0, -2.0, 3.0, 4.0]


@pytest.mark.parametrize("fmt", [FixedPoint(3, 5, True), FixedPoint(2, 4, False), FixedPoint(16, 16, True),
                                 FixedPoint(20, 20, True)])
def test_fixed_point_grid_range_and_rounding(fmt):
    x = torch.randn(10_000) * 2 ** (fmt.int_bits + 1)
    q = quantize_fixed_point(x, fmt)
    k = q * 2 ** fmt.frac_bits
    assert torch.equal(k, torch.round(k))
    assert float(k.min()) >= fmt.qmin and float(k.max()) <= fmt.qmax
    inside = (x * 2 ** fmt.frac_bits >= fmt.qmin) & (x * 2 ** fmt.frac_bits <= fmt.qmax)
    assert (q[inside] - x[inside]).abs().max() <= 2 ** -fmt.frac_bits / 2 + 1e-6 * 2 ** fmt.int_bits


def test_fixed_point_ties_to_even_on_both_paths():
    x = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5]) / 4  # exact ties on a 2-fraction-bit grid
    narrow = quantize_fixed_point(x, FixedPoint(4, 2))
    wide = quantize_fixed_point(x.double(), FixedPoint(4, 2))  # float64 takes the generic path
    assert narrow.tolist() == [0.0, 0.5, 0.5, -0.0, -0.5]
    assert torch.equal(narrow.double(), wide)


def test_fixed_point_gradient_is_clipped_ste():
    fmt = FixedPoint(1, 2, signed=False)  # range [0, 1.75]
    for dtype in (torch.float32, torch.float64):
        x = torch.tensor([-1.0, 0.3, 1.0, 5.0], dtype=dtype, requires_grad=True)
        quantize_fixed_point(x, fmt).sum().backward()
        assert x.grad.tolist() == [0.0, 1.0, 1.0, 0.0]


def test_bad_activation_format():
    with pytest.raises(ShiftConfigError, match="0 magnitude bits"):
        FixedPoint(0, 0)
    with pytest.raises(ShiftConfigError, match="int_bits"):
        FixedPoint(-1, 3)


@pytest.mark.parametrize("mode,has_zero", VARIANTS)
@pytest.mark.parametrize("bits,shift_max", [(2, 0), (3, 0), (5, 0), (5, 3), (8, 0), (8, 60), (8, -10), (7, -60)])
def test_float32_bit_path_equals_generic_rounding(mode, has_zero, bits, shift_max):
    from autodsnn.shift.quant import round_pow2_values
    codes = CodeSet(mode, bits, shift_max, has_zero)
    mags = torch.exp2(torch.empty(20_000, dtype=torch.float64).uniform_(-140, 110))
    w64 = mags * (torch.randint(0, 2, (20_000,)) * 2 - 1)
    # exact powers of two, values next to the sqrt(2) thresholds, zeros, infinities, subnormals
    edges = torch.tensor([0.0, -0.0, 1.0, 2 ** -126, 2 ** -140, 1.4142134, 1.4142137, -0.70710677, -0.7071068,
                          float("inf"), -float("inf"), 3e38], dtype=torch.float64)
    w = torch.cat([w64, edges]).float()
    fast = round_pow2_values(w, codes)
    sign, exp = quantize_pow2(w.double(), codes)
    generic = (sign * torch.exp2(exp)).float()
    if _f32 := (-125 <= codes.shift_min and codes.shift_max <= 127):
        assert torch.equal(fast, generic), (mode, bits, shift_max)
    assert torch.equal(fast, generic) or not _f32


@pytest.mark.parametrize("sign_grad", ["scaled", "unscaled"])
@pytest.mark.parametrize("bits,shift_max", [(2, 0), (5, 0), (8, 3), (8, -60)])  # -60: levels below float32's range
def test_fused_ps_weight_equals_the_pytorch_path(monkeypatch, sign_grad, bits, shift_max):
    """The native fused PS forward/backward gives bit for bit what the PyTorch ops give: ties
    (S = +-0.5, P = k + 0.5), clamps at both ends, signed zeros, and NaN wherever a latent is not
    finite (the PyTorch path is the reference: the native module is hidden for it)."""
    from autodsnn.shift import quant
    if quant.native_cpu() is None:
        pytest.skip("the native CPU kernels are not built")
    codes = CodeSet("ps", bits, shift_max)
    gen = torch.Generator().manual_seed(bits)
    shift = torch.empty(4000).uniform_(codes.shift_min - 3, codes.shift_max + 3, generator=gen)
    sign = torch.empty(4000).uniform_(-1.5, 1.5, generator=gen)
    shift[:8] = torch.tensor([-2.5, -3.5, 0.5, -0.5, codes.shift_min - 0.5, codes.shift_max + 0.5, -1.0, 0.0])
    sign[:8] = torch.tensor([0.5, -0.5, -0.0, 0.49999997, -0.50000006, 1.0, -1.0, 0.0])
    shift[8:12] = torch.tensor([float("nan"), float("inf"), 1.0, -1.0])
    sign[8:12] = torch.tensor([0.7, 0.7, float("nan"), -float("inf")])
    grad = torch.randn(4000, generator=gen)

    def run():
        p, s = shift.clone().requires_grad_(), sign.clone().requires_grad_()
        w = ps_weight(p, s, codes, sign_grad=sign_grad)
        w.backward(grad)
        return w.detach(), p.grad, s.grad

    fused = run()
    monkeypatch.setattr(quant, "native_cpu", lambda: None)
    reference = run()
    finite = torch.isfinite(shift) & torch.isfinite(sign)
    for got, want in zip(fused, reference):
        assert torch.equal(got[finite], want[finite])
        assert torch.equal(torch.signbit(got[finite]), torch.signbit(want[finite]))  # -0.0 stays -0.0
    assert fused[0][~finite].isnan().all() and reference[0][~finite].isnan().all()


@pytest.mark.parametrize("bits,shift_max", [(2, 0), (3, 0), (5, 4), (8, 0), (8, 64), (8, 2), (8, -60)])
def test_fused_dense_weight_equals_the_pytorch_path(monkeypatch, bits, shift_max):
    """The native fused DenseShift forward gives bit for bit what the PyTorch ops give: values
    next to every sqrt(2) * 2^k threshold, both clamps, signed zeros of the sign latent, NaN where
    a latent is not finite."""
    from autodsnn.shift import quant
    if quant.native_cpu() is None:
        pytest.skip("the native CPU kernels are not built")
    codes = CodeSet("dense", bits, shift_max)
    gen = torch.Generator().manual_seed(bits)
    magnitude = torch.exp2(torch.empty(4000).uniform_(codes.shift_min - 4, codes.shift_max + 3, generator=gen))
    thresholds = torch.tensor([2.0 ** (k + 0.5) for k in range(codes.shift_min - 1, min(codes.shift_max + 1, 127))])
    near = torch.cat([thresholds, torch.nextafter(thresholds, torch.zeros(1)), torch.nextafter(thresholds,
                                                                                             torch.full((1,), 1e38))])
    magnitude[:len(near)] = near
    sign = torch.empty(4000).uniform_(-1, 1, generator=gen)
    sign[:4] = torch.tensor([0.0, -0.0, 1.0, -1.0])
    magnitude[-3:] = torch.tensor([float("nan"), float("inf"), 0.5])
    sign[-3:] = torch.tensor([0.3, -0.3, float("nan")])
    # NaNs whose bits are the largest the bit path sees (its carry must not overflow on them)
    magnitude[-5:-3] = torch.tensor([0x7FFFFFFF, -1], dtype=torch.int32).view(torch.float32)

    def run():
        return dense_weight(sign, magnitude, codes)

    fused = run()
    monkeypatch.setattr(quant, "native_cpu", lambda: None)
    reference = run()
    finite = torch.isfinite(sign) & torch.isfinite(magnitude)
    assert torch.equal(fused[finite], reference[finite])
    assert torch.equal(torch.signbit(fused[finite]), torch.signbit(reference[finite]))
    assert fused[~finite].isnan().all() and reference[~finite].isnan().all()
