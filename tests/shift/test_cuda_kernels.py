"""CUDA shift kernels (native/shift_cuda.cu) against float64 / int64 references.

Skipped without a CUDA device. Packed codes and decode tables are built here from random codes,
independently of the Python packing code: a code is ``neg << (code_bits - 1) | j``; 4-bit codes go two
to a byte (even column in the low nibble; the padding nibble of odd rows is filled with a nonzero code
that must be ignored), 8-bit codes one to a byte. Float mode must match float64 within float32
rounding, integer mode must match the int64 reference bit for bit.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="the CUDA shift kernels need a CUDA device")

DEV = "cuda"
IN_SCALE, LO, HI = 2.0 ** 4, -8.0, 8.0 - 2.0 ** -4  # 4 fractional bits, 8-bit signed activations
OUT_SCALE = 2.0 ** -12
# (weight_bits, has_zero): code_bits 4 for weight_bits <= 4, else 8. For the integer mode every
# nonzero shift must lie in 0..30: (6, True) reaches exactly 30.
FLOAT_WEIGHTS = [(3, True), (4, False), (5, True), (8, True)]
INT_WEIGHTS = [(3, True), (4, False), (5, True), (6, True)]


@pytest.fixture(scope="module")
def ext():
    from autodsnn.shift.native_cuda import native_cuda

    module = native_cuda()
    assert module is not None, "a CUDA device is present but the CUDA shift kernels did not build"
    return module


# --- building layers -----------------------------------------------------------------------------

def code_bits_for(weight_bits: int) -> int:
    return 4 if weight_bits <= 4 else 8


def random_codes(o: int, k: int, weight_bits: int, has_zero: bool, gen: torch.Generator) -> torch.Tensor:
    """(o, k) uint8 canonical codes: neg << (code_bits - 1) | j, zero codes (j = 0) with neg = 0."""
    code_bits = code_bits_for(weight_bits)
    j = torch.randint(0, 2 ** (weight_bits - 1), (o, k), generator=gen)
    neg = torch.randint(0, 2, (o, k), generator=gen)
    if has_zero:
        neg = torch.where(j == 0, torch.zeros_like(neg), neg)
    return ((neg << (code_bits - 1)) | j).to(torch.uint8)


def tables(weight_bits: int, has_zero: bool, shift_max: int) -> tuple[torch.Tensor, torch.Tensor]:
    """values (float32, 0 or +-2^e) and shifts (int32, e - kbase, 32 for zero and unused codes) for all
    2^code_bits codes. Magnitude index j decodes to 2^(shift_max - (j - 1)) (j >= 1) if has_zero,
    else to 2^(shift_max - j); kbase is the smallest exponent."""
    code_bits = code_bits_for(weight_bits)
    sign_bit = 1 << (code_bits - 1)
    exps = {j: shift_max - (j - 1 if has_zero else j) for j in range(2 ** (weight_bits - 1))
            if not (has_zero and j == 0)}
    kbase = min(exps.values())
    values = torch.zeros(2 ** code_bits, dtype=torch.float32)
    shifts = torch.full((2 ** code_bits,), 32, dtype=torch.int32)
    for code in range(2 ** code_bits):
        j, neg = code & (sign_bit - 1), bool(code & sign_bit)
        if j in exps:
            values[code] = (-1.0 if neg else 1.0) * 2.0 ** exps[j]
            shifts[code] = exps[j] - kbase
    return values, shifts


def pack(codes: torch.Tensor, code_bits: int) -> torch.Tensor:
    if code_bits == 8:
        return codes.contiguous()
    o, k = codes.shape
    if k % 2:  # padding nibble: a nonzero code, which the kernels must ignore
        codes = torch.cat([codes, torch.full((o, 1), 1, dtype=torch.uint8)], dim=1)
    return (codes[:, 0::2] | (codes[:, 1::2] << 4)).contiguous()


def multipliers(codes: torch.Tensor, shifts: torch.Tensor, code_bits: int) -> torch.Tensor:
    """int64 sign * 2^shift per weight (0 for zero codes)."""
    c = codes.long()
    s = shifts.long()[c]
    sign = 1 - 2 * ((c >> (code_bits - 1)) & 1)
    return torch.where(s <= 31, torch.ones_like(s) << s.clamp(max=31), torch.zeros_like(s)) * sign


def quantize(x: torch.Tensor) -> torch.Tensor:
    return torch.round(torch.clamp(x.cpu(), LO, HI) * IN_SCALE).to(torch.int64)  # round half to even


def finish_int(acc: torch.Tensor, bias_float: torch.Tensor) -> torch.Tensor:
    # The kernels add mod 2^32 (the layers keep their sums within int32; wrapping here lets the tests
    # use shifts up to 30 without caring), then round to float32, scale, add the float bias.
    acc = torch.remainder(acc + 2 ** 31, 2 ** 32) - 2 ** 31
    y = acc.to(torch.float32) * OUT_SCALE
    if bias_float.numel():
        y = y + bias_float.cpu()
    return y


class Layer:
    def __init__(self, o: int, k: int, weight_bits: int, has_zero: bool, seed: int, shift_max: int = 1):
        gen = torch.Generator().manual_seed(seed)
        self.code_bits = code_bits_for(weight_bits)
        self.codes = random_codes(o, k, weight_bits, has_zero, gen)
        values, shifts = tables(weight_bits, has_zero, shift_max)
        self.weight = values.double()[self.codes.long()]  # (o, k) float64, exact
        self.mult = multipliers(self.codes, shifts, self.code_bits)
        self.packed = pack(self.codes, self.code_bits).to(DEV)
        self.values, self.shifts = values.to(DEV), shifts.to(DEV)
        self.bias = torch.randn(o, generator=gen).to(DEV)
        self.offset = torch.randint(-2 ** 20, 2 ** 20, (o,), generator=gen, dtype=torch.int32).to(DEV)


def empty() -> torch.Tensor:
    return torch.empty(0, device=DEV)


def twice(fn):
    """Run a kernel twice: outputs must be finite and identical (no uninitialised or racy results)."""
    y1, y2 = fn(), fn()
    torch.cuda.synchronize()
    assert torch.isfinite(y1).all(), "non-finite outputs from finite inputs"
    assert torch.equal(y1, y2), "two runs differ"
    return y1.cpu()


def assert_float_close(y: torch.Tensor, ref: torch.Tensor, scale: torch.Tensor) -> None:
    """Within float32 accumulation rounding: error <= 2e-5 * sum |x||w| (+ |bias|) per element."""
    assert y.shape == ref.shape
    err = (y.double() - ref).abs()
    tol = 2e-5 * scale + 1e-30
    worst = (err / tol).max().item()
    assert worst <= 1.0, f"float mode off by {worst:.3g}x the tolerance (max error {err.max().item():.3g})"


# --- linear --------------------------------------------------------------------------------------

# (n, k, o): GEMV for n <= 8 (packed rows 16-, 4- and 1-byte aligned; several K tiles), tiled above.
LINEAR_SHAPES = [(1, 37, 5), (1, 784, 128), (2, 64, 33), (3, 1000, 70), (5, 129, 40), (8, 4099, 10),
                 (1, 8192, 20), (4, 3000, 30), (9, 129, 70), (64, 512, 256), (64, 33, 5), (300, 77, 65)]


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("weight_bits,has_zero", FLOAT_WEIGHTS)
@pytest.mark.parametrize("n,k,o", LINEAR_SHAPES)
def test_linear_float_matches_float64(ext, n, k, o, weight_bits, has_zero, with_bias):
    layer = Layer(o, k, weight_bits, has_zero, seed=n * 1000 + k + o + weight_bits)
    x = torch.randn(n, k, device=DEV)
    bias = layer.bias if with_bias else empty()
    y = twice(lambda: ext.linear_float(x, layer.packed, layer.code_bits, layer.values, bias))
    xd = x.double().cpu()
    ref = F.linear(xd, layer.weight, bias.double().cpu() if with_bias else None)
    scale = xd.abs() @ layer.weight.abs().T + (bias.double().cpu().abs() if with_bias else 0.0)
    assert_float_close(y, ref, scale)


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("weight_bits,has_zero", INT_WEIGHTS)
@pytest.mark.parametrize("n,k,o", LINEAR_SHAPES)
def test_linear_int_exact(ext, n, k, o, weight_bits, has_zero, with_bias):
    layer = Layer(o, k, weight_bits, has_zero, seed=n * 1000 + k + o + weight_bits + 7)
    x = torch.randn(n, k, device=DEV) * 4  # some values beyond [LO, HI]: clamped
    bias_float = torch.randn(o, device=DEV) if with_bias else empty()
    y = twice(lambda: ext.linear_int(x, layer.packed, layer.code_bits, layer.shifts, IN_SCALE, LO, HI, layer.offset,
                                     OUT_SCALE, bias_float))
    ref = finish_int(quantize(x) @ layer.mult.T + layer.offset.long().cpu(), bias_float)
    assert torch.equal(y, ref)


def test_linear_no_overflow_case_equals_float_mode_sum(ext):
    """Small shifts, no wrap-around: the integer path's sum equals the exact sum of q * w."""
    layer = Layer(20, 50, 3, True, seed=3)
    x = torch.randn(2, 50, device=DEV)
    y = ext.linear_int(x, layer.packed, layer.code_bits, layer.shifts, IN_SCALE, LO, HI, layer.offset, 1.0, empty())
    exact = quantize(x) @ layer.mult.T + layer.offset.long().cpu()
    assert exact.abs().max() < 2 ** 24  # exactly representable in float32
    assert torch.equal(y.cpu(), exact.to(torch.float32))


@pytest.mark.parametrize("code_bits_weights", [(3, True), (6, True)])
def test_linear_misaligned_packed_rows(ext, code_bits_weights):
    """A packed tensor whose data pointer is not 16- or 4-byte aligned takes the byte-load path."""
    weight_bits, has_zero = code_bits_weights
    layer = Layer(40, 64, weight_bits, has_zero, seed=11)
    flat = torch.zeros(layer.packed.numel() + 1, dtype=torch.uint8, device=DEV)
    flat[1:] = layer.packed.reshape(-1)
    shifted = flat[1:].view(layer.packed.shape)
    assert shifted.is_contiguous() and shifted.data_ptr() % 4 != 0
    x = torch.randn(3, 64, device=DEV) * 4
    args = (layer.shifts, IN_SCALE, LO, HI, layer.offset, OUT_SCALE, empty())
    assert torch.equal(ext.linear_int(x, shifted, layer.code_bits, *args),
                       ext.linear_int(x, layer.packed, layer.code_bits, *args))


def test_linear_empty_batch_and_current_stream(ext):
    layer = Layer(7, 9, 4, False, seed=5)
    y = ext.linear_float(torch.empty(0, 9, device=DEV), layer.packed, 4, layer.values, empty())
    assert y.shape == (0, 7)
    x = torch.randn(4, 9, device=DEV)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        y = ext.linear_float(x, layer.packed, 4, layer.values, layer.bias)
    stream.synchronize()
    ref = ext.linear_float(x, layer.packed, 4, layer.values, layer.bias)
    assert torch.equal(y, ref)


def test_bad_inputs_raise_clear_errors(ext):
    layer = Layer(6, 10, 4, False, seed=1)
    x = torch.randn(2, 10, device=DEV)
    with pytest.raises(RuntimeError, match="CUDA tensor"):
        ext.linear_float(x.cpu(), layer.packed, 4, layer.values, empty())
    with pytest.raises(RuntimeError, match="float32|Float"):
        ext.linear_float(x.double(), layer.packed, 4, layer.values, empty())
    with pytest.raises(RuntimeError, match="bytes"):
        ext.linear_float(torch.randn(2, 12, device=DEV), layer.packed, 4, layer.values, empty())
    with pytest.raises(RuntimeError, match="entries"):
        ext.linear_float(x, layer.packed, 4, torch.zeros(256, device=DEV), empty())
    with pytest.raises(RuntimeError, match="code_bits"):
        ext.linear_float(x, layer.packed, 5, layer.values, empty())
    with pytest.raises(RuntimeError, match="bias"):
        ext.linear_float(x, layer.packed, 4, layer.values, torch.zeros(5, device=DEV))
    with pytest.raises(RuntimeError, match="contiguous"):
        ext.linear_float(torch.randn(10, 2, device=DEV).T, layer.packed, 4, layer.values, empty())
    with pytest.raises(RuntimeError, match="offset"):
        ext.linear_int(x, layer.packed, 4, layer.shifts, IN_SCALE, LO, HI, layer.offset.long(), OUT_SCALE, empty())
    with pytest.raises(RuntimeError, match="groups"):
        ext.conv2d_float(torch.randn(1, 3, 5, 5, device=DEV), layer.packed, 4, layer.values, empty(),
                         6, 3, 3, 1, 1, 0, 0, 1, 1, 2)


# --- conv2d --------------------------------------------------------------------------------------

def pair(v):
    return v if isinstance(v, tuple) else (v, v)


# (n, c, h, w, o, kernel, stride, padding, dilation, groups); the comments name the kernel taken.
CONV_SHAPES = [
    (2, 3, 9, 11, 16, 3, 1, 1, 1, 1),               # gemm (32-channel tile), K = 27 odd
    (1, 8, 7, 7, 8, 1, 1, 0, 1, 1),                 # direct, 8 channels per block, 1x1
    (3, 16, 10, 9, 16, 3, 2, 1, 1, 16),             # depthwise, stride 2
    (2, 12, 13, 13, 40, 3, 1, 2, 2, 2),             # gemm, dilation 2, two groups of 20
    (2, 32, 8, 8, 96, 3, 2, 1, 1, 1),               # gemm (64-channel tile), stride 2
    (1, 6, 5, 6, 9, (2, 3), (2, 1), (1, 0), (1, 2), 3),  # direct, asymmetric everything
    (4, 64, 6, 6, 128, 1, 1, 0, 1, 1),              # gemm, 1x1
    (8, 16, 32, 32, 32, 3, 1, 1, 1, 1),             # gemm, M = 8192
    (2, 24, 9, 9, 48, 3, 1, 1, 1, 4),               # direct, 12 channels per group (partial block)
    (1, 600, 5, 5, 4, 3, 1, 1, 1, 1),               # direct, weights decoded in several chunks
    (2, 3, 8, 8, 16, 5, 1, 2, 1, 1),                # gemm, 5x5
    (1, 2, 24, 24, 8, 23, 1, 0, 1, 1),              # few channels but a 23x23 kernel: gemm
]


def conv_args(shape):
    n, c, h, w, o, kernel, stride, padding, dilation, groups = shape
    kh, kw = pair(kernel)
    (sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)
    return n, c, h, w, o, kh, kw, sh, sw, ph, pw, dh, dw, groups


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("weight_bits,has_zero", [FLOAT_WEIGHTS[0], FLOAT_WEIGHTS[3]])
@pytest.mark.parametrize("shape", CONV_SHAPES, ids=str)
def test_conv2d_float_matches_float64(ext, shape, weight_bits, has_zero, with_bias):
    n, c, h, w, o, kh, kw, sh, sw, ph, pw, dh, dw, groups = conv_args(shape)
    layer = Layer(o, c // groups * kh * kw, weight_bits, has_zero, seed=c * 100 + o + kh + weight_bits)
    x = torch.randn(n, c, h, w, device=DEV)
    bias = layer.bias if with_bias else empty()
    y = twice(lambda: ext.conv2d_float(x, layer.packed, layer.code_bits, layer.values, bias, o, kh, kw, sh, sw, ph,
                                       pw, dh, dw, groups))
    weight = layer.weight.view(o, c // groups, kh, kw)
    conv = dict(stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw), groups=groups)
    xd = x.double().cpu()
    ref = F.conv2d(xd, weight, bias.double().cpu() if with_bias else None, **conv)
    scale = F.conv2d(xd.abs(), weight.abs(), bias.double().cpu().abs() if with_bias else None, **conv)
    assert_float_close(y, ref, scale)


def int_conv_reference(x, layer, o, kh, kw, sh, sw, ph, pw, dh, dw, groups, bias_float):
    q = quantize(x)
    n, c = q.shape[:2]
    cg, og = c // groups, o // groups
    outs = []
    for g in range(groups):
        # |q| <= 128: exact in float64, so unfold (float only) and convert back
        cols = F.unfold(q[:, g * cg:(g + 1) * cg].double(), (kh, kw), dilation=(dh, dw), padding=(ph, pw),
                        stride=(sh, sw)).round().long()  # (n, cg*kh*kw, L), columns in (c, ki, kj) order
        outs.append(torch.matmul(layer.mult[g * og:(g + 1) * og], cols))  # int64 (n, og, L)
    acc = torch.cat(outs, dim=1) + layer.offset.long().cpu()[None, :, None]
    oh = (x.shape[2] + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (x.shape[3] + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    y = finish_int(acc.transpose(1, 2), bias_float).transpose(1, 2)  # bias per output channel
    return y.reshape(n, o, oh, ow)


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("weight_bits,has_zero", [INT_WEIGHTS[1], INT_WEIGHTS[3]])
@pytest.mark.parametrize("shape", CONV_SHAPES, ids=str)
def test_conv2d_int_exact(ext, shape, weight_bits, has_zero, with_bias):
    n, c, h, w, o, kh, kw, sh, sw, ph, pw, dh, dw, groups = conv_args(shape)
    layer = Layer(o, c // groups * kh * kw, weight_bits, has_zero, seed=c * 100 + o + kh + weight_bits + 3)
    x = torch.randn(n, c, h, w, device=DEV) * 4
    bias_float = torch.randn(o, device=DEV) if with_bias else empty()
    y = twice(lambda: ext.conv2d_int(x, layer.packed, layer.code_bits, layer.shifts, IN_SCALE, LO, HI, layer.offset,
                                     OUT_SCALE, bias_float, o, kh, kw, sh, sw, ph, pw, dh, dw, groups))
    ref = int_conv_reference(x, layer, o, kh, kw, sh, sw, ph, pw, dh, dw, groups, bias_float)
    assert torch.equal(y, ref)


def test_conv2d_padding_is_zero_not_quantized_zero(ext):
    """Padded positions contribute 0 even when 0 lies outside [lo, hi] (padding follows quantization)."""
    layer = Layer(16, 4 * 9, 4, False, seed=2)
    x = torch.rand(1, 4, 6, 6, device=DEV) + 1.0
    lo, hi = 0.5, 4.0
    args = (layer.shifts, IN_SCALE, lo, hi, layer.offset, 1.0, empty(), 16, 3, 3, 1, 1, 1, 1, 1, 1, 1)
    y = ext.conv2d_int(x, layer.packed, 4, *args).cpu()
    q = torch.round(torch.clamp(x.cpu(), lo, hi) * IN_SCALE).double()
    cols = F.unfold(q, (3, 3), padding=1).round().long()
    acc = torch.matmul(layer.mult, cols) + layer.offset.long().cpu()[None, :, None]
    ref = (torch.remainder(acc + 2 ** 31, 2 ** 32) - 2 ** 31).to(torch.float32).reshape(1, 16, 6, 6)
    assert torch.equal(y, ref)



@pytest.mark.parametrize("mode", ["float", "integer"])
def test_deployed_resnet20_on_cuda_matches_the_cpu_kernels(mode):
    from autodsnn.zoo.models import create_model
    from autodsnn.shift import ShiftConfig, convert, deploy, inference_path

    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=10)
    convert(model, ShiftConfig(mode="ps", weight_bits=4, shift_max="auto", act_int_bits=4, act_frac_bits=8))
    model.eval()
    deploy(model, mode)
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        on_cpu = model(x)
        on_gpu = model.cuda()(x.cuda()).cpu()
    assert inference_path(model) == f"native-cuda {mode}"
    if mode == "integer":
        assert torch.equal(on_gpu, on_cpu)  # both equal the int64 definition, so each other
    else:
        assert torch.allclose(on_gpu, on_cpu, atol=1e-4, rtol=1e-4)
