// CPU kernels for frozen shift layers (autodsnn.shift.kernels). Float mode: every weight code
// decodes to an exact +-2^k or 0 through a 256-entry table, so each product is exact and only the
// accumulation rounds. OpenMP over output features (and batch rows); no heap allocation per call
// beyond the output tensor.
#include <torch/extension.h>
#include <omp.h>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

// Decode table: value of every possible code byte (weight_bits <= 8) for this layer's code set.
std::vector<float> make_table(int64_t weight_bits, int64_t shift_max, bool has_zero) {
  std::vector<float> table(256, 0.0f);
  const int sign_bit = 1 << (weight_bits - 1);
  for (int code = 0; code < (1 << weight_bits); ++code) {
    const int j = code & (sign_bit - 1);
    const bool negative = code & sign_bit;
    float value;
    if (has_zero && j == 0) {
      value = 0.0f;
    } else {
      const int shift = has_zero ? static_cast<int>(shift_max) - (j - 1) : static_cast<int>(shift_max) - j;
      value = std::ldexp(1.0f, shift);
    }
    table[code] = negative ? -value : value;
  }
  return table;
}

}  // namespace

// x: (N, K) float32 contiguous; packed: (O, K) uint8 codes (one per byte) or (O, ceil(K/2)) for
// 4-bit packing (low nibble = even column); bias: (O,) float32 or empty.
torch::Tensor linear_float(torch::Tensor x, torch::Tensor packed, torch::Tensor bias, int64_t weight_bits,
                           int64_t shift_max, bool has_zero, bool nibbles, int64_t in_features) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == torch::kFloat32 && x.is_contiguous(), "x must be contiguous float32 (N, K)");
  TORCH_CHECK(packed.scalar_type() == torch::kUInt8 && packed.is_contiguous(), "packed codes must be contiguous uint8");
  TORCH_CHECK(x.size(1) == in_features, "x has ", x.size(1), " features, the layer ", in_features);
  const int64_t N = x.size(0), K = in_features, O = packed.size(0);
  const int64_t row_bytes = packed.size(1);
  auto out = torch::empty({N, O}, x.options());
  const std::vector<float> table = make_table(weight_bits, shift_max, has_zero);
  const float* tab = table.data();
  const float* xp = x.data_ptr<float>();
  const uint8_t* wp = packed.data_ptr<uint8_t>();
  const float* bp = bias.numel() ? bias.data_ptr<float>() : nullptr;
  float* yp = out.data_ptr<float>();
  // Decode a row of weights once into a small per-thread buffer, then dot it with every input row:
  // the codes are read once per call however large the batch.
#pragma omp parallel
  {
    std::vector<float> w(K);
#pragma omp for schedule(static)
    for (int64_t o = 0; o < O; ++o) {
      const uint8_t* row = wp + o * row_bytes;
      if (nibbles) {
        for (int64_t k = 0; k + 1 < K; k += 2) {
          const uint8_t b = row[k >> 1];
          w[k] = tab[b & 0xF];
          w[k + 1] = tab[b >> 4];
        }
        if (K & 1) w[K - 1] = tab[row[K >> 1] & 0xF];
      } else {
        for (int64_t k = 0; k < K; ++k) w[k] = tab[row[k]];
      }
      const float b0 = bp ? bp[o] : 0.0f;
      for (int64_t n = 0; n < N; ++n) {
        const float* xr = xp + n * K;
        float acc0 = 0.f, acc1 = 0.f, acc2 = 0.f, acc3 = 0.f;
        int64_t k = 0;
        for (; k + 3 < K; k += 4) {
          acc0 += xr[k] * w[k];
          acc1 += xr[k + 1] * w[k + 1];
          acc2 += xr[k + 2] * w[k + 2];
          acc3 += xr[k + 3] * w[k + 3];
        }
        for (; k < K; ++k) acc0 += xr[k] * w[k];
        yp[n * O + o] = (acc0 + acc1) + (acc2 + acc3) + b0;
      }
    }
  }
  return out;
}

// Fixed-point rounding of activations in one pass: clamp to [lo, hi], scale by 2^frac, round to
// nearest with ties to even (rint under the default rounding mode), scale back. The same
// operations in the same order as the PyTorch path in autodsnn/shift/quant.py, so the results
// are identical.
torch::Tensor fixed_point_forward(torch::Tensor x, double scale, double lo, double hi) {
  TORCH_CHECK(x.scalar_type() == torch::kFloat32 && x.is_contiguous() && x.device().is_cpu(),
              "x must be a contiguous float32 CPU tensor");
  auto out = torch::empty_like(x);
  const float* xp = x.data_ptr<float>();
  float* yp = out.data_ptr<float>();
  const float s = static_cast<float>(scale), inv = static_cast<float>(1.0 / scale);
  const float flo = static_cast<float>(lo), fhi = static_cast<float>(hi);
  const int64_t n = x.numel();
#pragma omp parallel for schedule(static) if (n > 32768)
  for (int64_t i = 0; i < n; ++i) {
    float v = xp[i];
    v = v < flo ? flo : (v > fhi ? fhi : v);
    yp[i] = std::rint(v * s) * inv;
  }
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("linear_float", &linear_float, "shift linear layer, float activations, packed codes (CPU)");
  m.def("fixed_point_forward", &fixed_point_forward, "fused fixed-point rounding of activations (CPU)");
}
