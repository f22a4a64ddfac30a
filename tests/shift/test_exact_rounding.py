"""Nearest power of two, exactly (issue 13, kinds 1 and 2): every mode, every width 2..8, every
float32 within +-64 ulps of every threshold sqrt(2) * 2^k in range, subnormals, +-0, against a
reference computed with rational arithmetic on the floats' exact values; and every entry point
(Q forward, quantize_pow2, PS and DenseShift from float weights, freeze, export, the packed
codes' decode) agrees with it. Ties of DeepShift-PS's latents are symmetric in sign."""
from fractions import Fraction

import numpy as np
import pytest
import torch
from torch import nn

from autodsnn.shift import ShiftConfig, convert, freeze
from autodsnn.shift.modes import code_set_variants
from autodsnn.shift.packing import canonical_codes, decode_canonical
from autodsnn.shift.quant import _SQRT_HALF, CodeSet, nearest_exponent, ps_round, quantize_pow2, round_pow2_ste

VARIANTS = code_set_variants()  # (mode, has_zero): q with and without its optional zero level
WIDTHS = range(2, 9)


def reference_exponent(v: float) -> int:
    """The k with sqrt(2) * 2^(k-1) <= v < sqrt(2) * 2^k, in exact rational arithmetic:
    v^2 >= 2^(2k-1) decides it (v > 0)."""
    x = Fraction(v) ** 2
    k = Fraction(v).numerator.bit_length() - Fraction(v).denominator.bit_length()
    while x >= Fraction(2) ** (2 * (k + 1) - 1):
        k += 1
    while x < Fraction(2) ** (2 * k - 1):
        k -= 1
    return k


def reference_value(v: float, codes: CodeSet) -> float:
    """The code set's value for v: nearest exponent, saturated at shift_max, below shift_min
    flushed to 0 (sets with zero) or raised to the smallest level (zero-free sets)."""
    if v == 0:
        return 0.0 if codes.has_zero else float(np.copysign(2.0 ** codes.shift_min, v))
    k = reference_exponent(abs(v))
    if k < codes.shift_min:
        return 0.0 if codes.has_zero else float(np.copysign(2.0 ** codes.shift_min, v))
    return float(np.copysign(2.0 ** min(k, codes.shift_max), v))


def near_thresholds(codes: CodeSet) -> torch.Tensor:
    """Every float32 within +-64 ulps of sqrt(2) * 2^k for k from one below the smallest level's
    threshold to one above the largest, both signs, plus subnormals and +-0."""
    values = []
    for k in range(codes.shift_min - 1, codes.shift_max + 2):
        center = np.float32(np.sqrt(2.0) * 2.0 ** k)
        bits = np.array([center], dtype=np.float32).view(np.int32)[0]
        values.append((np.arange(bits - 64, bits + 65, dtype=np.int32)).view(np.float32))
    subnormals = np.array([1, 2, 3, 2 ** 20, 2 ** 23 - 1], dtype=np.int32).view(np.float32)
    out = np.concatenate(values + [subnormals, np.array([0.0], dtype=np.float32)])
    out = out[np.isfinite(out) & (np.abs(out) < 3e38)]
    return torch.from_numpy(np.concatenate([out, -out]))


def _expected(w: torch.Tensor, codes: CodeSet) -> torch.Tensor:
    return torch.tensor([reference_value(float(v), codes) for v in w.tolist()], dtype=torch.float32)


def test_the_threshold_constant_is_the_smallest_float_at_or_above_sqrt_half():
    c = Fraction(_SQRT_HALF)
    below = Fraction(np.nextafter(_SQRT_HALF, 0.0))
    assert c * c >= Fraction(1, 2) > below * below


@pytest.mark.parametrize("mode,has_zero", VARIANTS)
@pytest.mark.parametrize("bits", WIDTHS)
def test_every_entry_point_rounds_exactly_near_every_threshold(mode, has_zero, bits):
    codes = CodeSet(mode, bits, 0, has_zero)
    w = near_thresholds(codes)
    want = _expected(w, codes)
    # the exponent alone
    finite = w != 0
    exact = torch.tensor([reference_exponent(abs(float(v))) for v in w[finite].tolist()], dtype=torch.float32)
    assert torch.equal(nearest_exponent(w[finite].abs()), exact)
    # quantize_pow2 (freeze, export and sign_and_shift read it) and the Q forward
    sign, exp = quantize_pow2(w, codes)
    assert torch.equal(sign * torch.ldexp(torch.ones_like(exp), exp.to(torch.int32)), want)
    assert torch.equal(round_pow2_ste(w, codes, False), want)
    # conversion from float weights, the eval forward, freeze, and the packed codes' decode
    layer = nn.Linear(len(w), 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(w[None])
    model = nn.Sequential(layer)
    convert(model, ShiftConfig(mode=mode, weight_bits=bits, shift_max=0, zero_level=has_zero))
    model.eval()
    assert torch.equal(model[0].weight_quant().flatten(), want), mode
    s, p = model[0].weight_quant.sign_and_shift()
    packed = canonical_codes(codes, s, p)
    ds, dp = decode_canonical(packed, codes)
    assert torch.equal((ds.float() * torch.ldexp(torch.ones(dp.shape), dp.to(torch.int32))).flatten(), want)
    freeze(model)
    assert torch.equal(model[0].weight_quant().flatten(), want)


@pytest.mark.parametrize("mode", ("q", "ps"))
def test_the_issue_example(mode):
    """[0.70710677, 0.35355338] lie just below sqrt(2) * 2^-1 and sqrt(2) * 2^-2: [0.5, 0.25]."""
    for bits in (5, 8):
        layer = nn.Linear(2, 1, bias=False)
        with torch.no_grad():
            layer.weight.copy_(torch.tensor([[0.70710677, 0.35355338]]))
        model = nn.Sequential(layer)
        convert(model, ShiftConfig(mode=mode, weight_bits=bits, shift_max=0))
        assert model[0].weight_quant().tolist() == [[0.5, 0.25]], (mode, bits)


def test_ps_latent_ties_are_symmetric_and_exact():
    codes = CodeSet("ps", 5, 0)
    sign = torch.tensor([0.5, -0.5, np.nextafter(np.float32(0.5), np.float32(0)), -0.50000006, 0.50000006])
    s, _ = ps_round(torch.zeros(5), sign, codes)
    assert s.tolist() == [0.0, 0.0, 0.0, -1.0, 1.0]  # +-0.5 alike; just below never rounds up
    shift = torch.tensor([-2.5, -3.5, np.nextafter(np.float32(-2.5), np.float32(0)), -0.5, 0.5])
    _, p = ps_round(shift, torch.ones(5), codes)
    assert p.tolist() == [-2.0, -4.0, -2.0, 0.0, 0.0]  # ties to even; just above -2.5 gives -2


@pytest.mark.parametrize("mode,has_zero", [v for v in VARIANTS if v[0] != "ps"])  # ps: its own latents
@pytest.mark.parametrize("bits", (2, 3, 5, 8))
def test_stochastic_rounding_is_unbiased_at_every_level(mode, has_zero, bits):
    """E[round(w)] = w between every pair of adjacent levels, and between 0 and the smallest
    level where zero is one (issue 13, kind 4: +15% at 0.8 x 2^-14 before). The bound: 5
    standard errors of a two-point distribution on the gap, computed here from the levels."""
    codes = CodeSet(mode, bits, 0, has_zero)
    levels = [2.0 ** k for k in range(codes.shift_min, codes.shift_max + 1)]
    pairs = ([(0.0, levels[0])] if codes.has_zero else []) + list(zip(levels, levels[1:]))
    if len(pairs) > 24:  # 8 bits: the boundary to zero, the top, and every 8th pair between
        pairs = pairs[:3] + pairs[3:-3:8] + pairs[-3:]
    n = 40_000
    lo = torch.tensor([a for a, _ in pairs for _ in (0.1, 0.5, 0.9)], dtype=torch.float64)
    hi = torch.tensor([b for _, b in pairs for _ in (0.1, 0.5, 0.9)], dtype=torch.float64)
    frac = torch.tensor([f for _ in pairs for f in (0.1, 0.5, 0.9)], dtype=torch.float64)
    m = (lo + frac * (hi - lo)).float()
    w = m.repeat(n, 1)
    sign, exp = quantize_pow2(w, codes, stochastic=True, generator=torch.Generator().manual_seed(1))
    mean = (sign.double() * torch.exp2(exp.double())).mean(0)
    target = m.double()
    std_err = torch.sqrt((hi - target) * (target - lo)) / n ** 0.5
    assert torch.all((mean - target).abs() <= 5 * std_err + 1e-12 * target), \
        [(float(t), float(a)) for t, a, s in zip(target, mean, std_err) if abs(a - t) > 5 * s][:5]
