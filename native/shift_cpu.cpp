// CPU kernels for frozen shift layers (autodsnn.shift.kernels).
//
// Float mode: each weight code decodes to an exact +-2^k (or 0), so every product is exact and
// only the float32 accumulation rounds. Integer mode: inputs are rounded to fixed point
// (rint(clamp(x, lo, hi) * in_scale), ties to even), each weight is applied as a shift of that
// integer and a sign, the sum is kept in int32 (Python checks it cannot overflow), then rounded
// once to float32 and scaled by a power of two: the result equals the exact reference in
// autodsnn/shift/integer.py bit for bit. Build with -ffp-contract=off so that scale-then-add
// epilogues are not fused into one rounding.
//
// Layouts (built by autodsnn/shift/kernels.py):
//   canonical code: neg << (code_bits - 1) | j, code_bits 4 (weight_bits <= 4) or 8; zero codes
//     have neg = 0.
//   linear "panels": (ceil(O/32), K, 32 codes): for each block of 32 outputs and each input k the
//     32 codes are adjacent. 4-bit: 16 bytes, byte t holds output t (low nibble) and output
//     16+t (high nibble); 8-bit: 32 bytes. One vector load decodes 32 weights of one column.
//   conv "rows": (O, K) codes row-major, K = (C/groups)*kh*kw in PyTorch's (c, ki, kj) order,
//     4-bit codes two per byte (even column in the low nibble). Conv weights are decoded per call
//     (a few thousand codes) into per-thread buffers that only ever grow.
//
// Parallelism: OpenMP over (output panel, batch-row block) for linear layers, so batch 1 uses
// every core, and over (image, group, 32-position tile) for convolutions.
#include <torch/extension.h>
#include <omp.h>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <array>
#include <limits>
#include <type_traits>
#include <vector>

#if defined(__AVX512F__) && defined(__AVX512BW__)
#include <immintrin.h>
#define AUTODSNN_AVX512 1
#else
#define AUTODSNN_AVX512 0
#endif

namespace {

constexpr int kPanel = 32;   // outputs per linear panel
constexpr int kRows = 8;     // batch rows per linear tile / output channels per conv tile
constexpr int kMaxStride = 16;  // conv strides the kernels accept
constexpr int kSegs = 3;     // 16-position segments per conv tile (8 channels x 48 positions in registers)

bool g_poison = false;  // tests: fill outputs with NaN first, so unwritten elements show

torch::Tensor new_output(at::IntArrayRef sizes, const torch::Tensor& like) {
  auto y = torch::empty(sizes, like.options());
  if (g_poison) y.fill_(std::numeric_limits<float>::quiet_NaN());
  return y;
}

// Per-thread scratch that only ever grows: no heap allocation per call once warm.
template <typename T>
class Scratch {
 public:
  T* get(size_t n) {
    if (buf_.size() < n) buf_.resize(n);
    return buf_.data();
  }

 private:
  std::vector<T> buf_;
};

inline int code_at(const uint8_t* row, int64_t k, int code_bits) {
  return code_bits == 4 ? (row[k >> 1] >> ((k & 1) * 4)) & 0xF : row[k];
}

// Inputs rounded to integers exactly as FixedPoint rounding does (clamp, scale, rint).
void quantize_inputs(const float* x, int64_t n, float in_scale, float lo, float hi, int32_t* q) {
#pragma omp parallel for schedule(static) if (n > 32768)
  for (int64_t i = 0; i < n; ++i) {
    float v = x[i];
    v = v < lo ? lo : (v > hi ? hi : v);
    q[i] = static_cast<int32_t>(std::nearbyint(v * in_scale));
  }
}

struct Geometry {
  int64_t N, C, H, W, OC, kh, kw, sh, sw, ph, pw, dh, dw, G, Cg, OCg, K, OH, OW, P;
};

Geometry conv_geometry(const torch::Tensor& x, int64_t OC, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                       int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t G) {
  TORCH_CHECK(x.dim() == 4, "conv input must be NCHW, got ", x.dim(), " dims");
  Geometry g{};
  g.N = x.size(0); g.C = x.size(1); g.H = x.size(2); g.W = x.size(3);
  g.OC = OC; g.kh = kh; g.kw = kw; g.sh = sh; g.sw = sw; g.ph = ph; g.pw = pw; g.dh = dh; g.dw = dw; g.G = G;
  TORCH_CHECK(G >= 1 && g.C % G == 0 && OC % G == 0, "channels (", g.C, " in, ", OC, " out) must divide by groups=", G);
  TORCH_CHECK(sh >= 1 && sw >= 1 && dh >= 1 && dw >= 1 && ph >= 0 && pw >= 0, "bad stride/dilation/padding");
  TORCH_CHECK(sh <= kMaxStride && sw <= kMaxStride, "conv strides above ", kMaxStride, " are not supported");
  g.Cg = g.C / G; g.OCg = OC / G; g.K = g.Cg * kh * kw;
  g.OH = (g.H + 2 * ph - dh * (kh - 1) - 1) / sh + 1;
  g.OW = (g.W + 2 * pw - dw * (kw - 1) - 1) / sw + 1;
  TORCH_CHECK(g.OH > 0 && g.OW > 0, "input ", g.H, "x", g.W, " is too small for this convolution");
  g.P = g.OH * g.OW;
  return g;
}

// Where the lanes of a conv tile go: runs of lanes [a, b) of segment seg, stored at y + shift + lane.
struct TileStores {
  static constexpr int kMax = kSegs * 17;
  int count = 0;
  int seg[kMax], a[kMax], b[kMax];
  int64_t shift[kMax];
  void add(int sg, int lo, int hi, int64_t sh) {
    seg[count] = sg;
    a[count] = lo;
    b[count] = hi;
    shift[count] = sh;
    ++count;
  }
};

#if AUTODSNN_AVX512

// Masked stores never touch masked-off lanes (nor fault on them), so base may point before y.
inline void store_tile(float* y, const __m512* v, const TileStores& st) {
  for (int i = 0; i < st.count; ++i) {
    const uint32_t m = ((1u << st.b[i]) - 1u) & ~((1u << st.a[i]) - 1u);
    _mm512_mask_storeu_ps(y + st.shift[i], static_cast<__mmask16>(m), v[st.seg[i]]);
  }
}

inline __mmask16 lane_mask(int64_t valid) {
  return valid >= 16 ? static_cast<__mmask16>(0xFFFF) : valid <= 0 ? 0 : static_cast<__mmask16>((1u << valid) - 1);
}

// ---- linear, float mode ---------------------------------------------------------------------
struct DecodeF4 {  // 16-entry table in one register, indexed by the 4-bit code (permutexvar uses 4 bits)
  static constexpr int kBytes = 16;
  __m512 table;
  inline void operator()(const uint8_t* p, __m512& w0, __m512& w1) const {
    const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    w0 = _mm512_permutexvar_ps(v, table);
    w1 = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), table);
  }
};

struct DecodeF8 {  // exponent arithmetic: bits = sign << 31 | (e_top - j) << 23, zero code -> 0
  static constexpr int kBytes = 32;
  __m512i e_top;
  bool has_zero;
  inline __m512 one(const uint8_t* p) const {
    const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    const __m512i j = _mm512_and_si512(v, _mm512_set1_epi32(0x7F));
    __m512i bits = _mm512_slli_epi32(_mm512_sub_epi32(e_top, j), 23);
    bits = _mm512_or_si512(bits, _mm512_and_si512(_mm512_slli_epi32(v, 24), _mm512_set1_epi32(INT32_MIN)));
    if (has_zero) bits = _mm512_maskz_mov_epi32(_mm512_test_epi32_mask(j, j), bits);
    return _mm512_castsi512_ps(bits);
  }
  inline void operator()(const uint8_t* p, __m512& w0, __m512& w1) const {
    w0 = one(p);
    w1 = one(p + 16);
  }
};

// MR batch rows x 32 outputs over all K; U independent accumulator sets hide FMA latency when
// MR is small (batch 1 would otherwise wait on two dependency chains).
template <int MR, int U, typename Dec>
void linear_f32_tile(const float* x, int64_t K, const uint8_t* panel, const Dec& dec, const float* bias,
                     float* y, int64_t O, int64_t valid) {
  __m512 acc[U][MR][2];
  for (int u = 0; u < U; ++u)
    for (int r = 0; r < MR; ++r) acc[u][r][0] = acc[u][r][1] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + U <= K; k += U) {
#pragma GCC unroll 8
    for (int u = 0; u < U; ++u) {
      __m512 w0, w1;
      dec(panel + (k + u) * Dec::kBytes, w0, w1);
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
        const __m512 xb = _mm512_set1_ps(x[r * K + k + u]);
        acc[u][r][0] = _mm512_fmadd_ps(xb, w0, acc[u][r][0]);
        acc[u][r][1] = _mm512_fmadd_ps(xb, w1, acc[u][r][1]);
      }
    }
  }
  for (; k < K; ++k) {
    __m512 w0, w1;
    dec(panel + k * Dec::kBytes, w0, w1);
    for (int r = 0; r < MR; ++r) {
      const __m512 xb = _mm512_set1_ps(x[r * K + k]);
      acc[0][r][0] = _mm512_fmadd_ps(xb, w0, acc[0][r][0]);
      acc[0][r][1] = _mm512_fmadd_ps(xb, w1, acc[0][r][1]);
    }
  }
  const __mmask16 m0 = lane_mask(valid), m1 = lane_mask(valid - 16);
  const __m512 b0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
  const __m512 b1 = bias ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
  for (int r = 0; r < MR; ++r) {
    __m512 s0 = acc[0][r][0], s1 = acc[0][r][1];
    for (int u = 1; u < U; ++u) {
      s0 = _mm512_add_ps(s0, acc[u][r][0]);
      s1 = _mm512_add_ps(s1, acc[u][r][1]);
    }
    _mm512_mask_storeu_ps(y + r * O, m0, _mm512_add_ps(s0, b0));
    _mm512_mask_storeu_ps(y + r * O + 16, m1, _mm512_add_ps(s1, b1));
  }
}

// ---- linear, integer mode -------------------------------------------------------------------
// A weight column decodes to per-lane shift counts and sign masks (0 or -1). A term is
// (q << shift) ^ sign, which is -(q << shift) - 1 for negative weights; the "+1" per negative
// weight is independent of the input and is folded into the per-output offset by Python.
struct DecodeI4 {
  static constexpr int kBytes = 16;
  __m512i shifts;  // 16 entries: shift count per code (32 for zero, which shifts everything out)
  inline void operator()(const uint8_t* p, __m512i& sh0, __m512i& sg0, __m512i& sh1, __m512i& sg1) const {
    const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    const __m512i v1 = _mm512_srli_epi32(v, 4);
    sh0 = _mm512_permutexvar_epi32(v, shifts);
    sg0 = _mm512_srai_epi32(_mm512_slli_epi32(v, 28), 31);
    sh1 = _mm512_permutexvar_epi32(v1, shifts);
    sg1 = _mm512_srai_epi32(_mm512_slli_epi32(v1, 28), 31);
  }
};

struct DecodeI8 {  // shift = sh_top - j; zero code -> 32
  static constexpr int kBytes = 32;
  __m512i sh_top;
  bool has_zero;
  inline void one(const uint8_t* p, __m512i& sh, __m512i& sg) const {
    const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    const __m512i j = _mm512_and_si512(v, _mm512_set1_epi32(0x7F));
    sh = _mm512_sub_epi32(sh_top, j);
    if (has_zero) sh = _mm512_mask_mov_epi32(_mm512_set1_epi32(32), _mm512_test_epi32_mask(j, j), sh);
    sg = _mm512_srai_epi32(_mm512_slli_epi32(v, 24), 31);
  }
  inline void operator()(const uint8_t* p, __m512i& sh0, __m512i& sg0, __m512i& sh1, __m512i& sg1) const {
    one(p, sh0, sg0);
    one(p + 16, sh1, sg1);
  }
};

template <int MR, typename Dec>
void linear_int_tile(const int32_t* q, int64_t K, const uint8_t* panel, const Dec& dec, const int32_t* offset,
                     float out_scale, const float* bias_float, float* y, int64_t O, int64_t valid) {
  const __mmask16 m0 = lane_mask(valid), m1 = lane_mask(valid - 16);
  __m512i acc[MR][2];
  const __m512i o0 = _mm512_maskz_loadu_epi32(m0, offset), o1 = _mm512_maskz_loadu_epi32(m1, offset + 16);
  for (int r = 0; r < MR; ++r) {
    acc[r][0] = o0;
    acc[r][1] = o1;
  }
  for (int64_t k = 0; k < K; ++k) {
    __m512i sh0, sg0, sh1, sg1;
    dec(panel + k * Dec::kBytes, sh0, sg0, sh1, sg1);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m512i qb = _mm512_set1_epi32(q[r * K + k]);
      acc[r][0] = _mm512_add_epi32(acc[r][0], _mm512_xor_si512(_mm512_sllv_epi32(qb, sh0), sg0));
      acc[r][1] = _mm512_add_epi32(acc[r][1], _mm512_xor_si512(_mm512_sllv_epi32(qb, sh1), sg1));
    }
  }
  const __m512 scale = _mm512_set1_ps(out_scale);
  for (int r = 0; r < MR; ++r) {
    __m512 v0 = _mm512_mul_ps(_mm512_cvtepi32_ps(acc[r][0]), scale);
    __m512 v1 = _mm512_mul_ps(_mm512_cvtepi32_ps(acc[r][1]), scale);
    if (bias_float) {
      v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, bias_float));
      v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, bias_float + 16));
    }
    _mm512_mask_storeu_ps(y + r * O, m0, v0);
    _mm512_mask_storeu_ps(y + r * O + 16, m1, v1);
  }
}

// ---- conv2d tiles: 8 output channels x 32 positions -------------------------------------------
// A tile reads, for each k, 32 consecutive values at src + koff[k] (an im2col tile, or the padded
// input directly for stride 1) and writes its lanes through TileStores.
// w: [K][8] weights of 8 channels (zero-padded past the last channel).
// Epilogue: acc * scale[r] + bias[r] (scale: a folded BatchNorm, or null).
void conv_f32_tile(const float* const* src, const int64_t* koff, int64_t K, const float* w, const float* scale,
                   const float* bias, float* y, int64_t P, int64_t channels, const TileStores& st) {
  __m512 acc[kRows][kSegs];
  for (int r = 0; r < kRows; ++r)
    for (int q = 0; q < kSegs; ++q) acc[r][q] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; ++k) {
    __m512 c[kSegs];
    for (int q = 0; q < kSegs; ++q) c[q] = _mm512_loadu_ps(src[q] + koff[k]);
#pragma GCC unroll 8
    for (int r = 0; r < kRows; ++r) {
      const __m512 wb = _mm512_set1_ps(w[k * kRows + r]);
      for (int q = 0; q < kSegs; ++q) acc[r][q] = _mm512_fmadd_ps(wb, c[q], acc[r][q]);
    }
  }
  for (int r = 0; r < channels; ++r) {
    const __m512 b = _mm512_set1_ps(bias ? bias[r] : 0.0f);
    __m512 v[kSegs];
    if (scale) {
      const __m512 sc = _mm512_set1_ps(scale[r]);
      for (int q = 0; q < kSegs; ++q) v[q] = _mm512_fmadd_ps(acc[r][q], sc, b);
    } else {
      for (int q = 0; q < kSegs; ++q) v[q] = _mm512_add_ps(acc[r][q], b);
    }
    store_tile(y + r * P, v, st);
  }
}

// wi: [K][8][2] (shift count, sign mask) per channel.
void conv_int_tile(const int32_t* const* src, const int64_t* koff, int64_t K, const int32_t* wi,
                   const int32_t* offset, float out_scale, const float* bias_float, float* y, int64_t P,
                   int64_t channels, const TileStores& st) {
  __m512i acc[kRows][kSegs];
  for (int r = 0; r < kRows; ++r)
    for (int q = 0; q < kSegs; ++q) acc[r][q] = _mm512_set1_epi32(r < channels ? offset[r] : 0);
  for (int64_t k = 0; k < K; ++k) {
    __m512i c[kSegs];
    for (int q = 0; q < kSegs; ++q) c[q] = _mm512_loadu_si512(src[q] + koff[k]);
    const int32_t* wk = wi + k * kRows * 2;
#pragma GCC unroll 8
    for (int r = 0; r < kRows; ++r) {
      const __m512i sh = _mm512_set1_epi32(wk[2 * r]), sg = _mm512_set1_epi32(wk[2 * r + 1]);
      for (int q = 0; q < kSegs; ++q)
        acc[r][q] = _mm512_add_epi32(acc[r][q], _mm512_xor_si512(_mm512_sllv_epi32(c[q], sh), sg));
    }
  }
  const __m512 scale = _mm512_set1_ps(out_scale);
  for (int r = 0; r < channels; ++r) {
    __m512 v[kSegs];
    for (int q = 0; q < kSegs; ++q) {
      v[q] = _mm512_mul_ps(_mm512_cvtepi32_ps(acc[r][q]), scale);
      if (bias_float) v[q] = _mm512_add_ps(v[q], _mm512_set1_ps(bias_float[r]));
    }
    store_tile(y + r * P, v, st);
  }
}

// Convolutions with many output channels per group use this tile instead: 16 channels per
// vector, CV vectors, and NP = 24 / CV output positions that each broadcast one input value per
// tap (24 accumulators). Positions are independent, so a tile takes valid positions only (any
// rows, any images): no lanes spent on border columns, which the position-vectorized tile pays
// on small maps.
constexpr int kMaxPos = 12;

template <int CV, int kPos = 24 / CV>
void conv_f32_tile_cv(const float* const* base, const int64_t* koff, int64_t K, const float* wt, int64_t ldw,
                      const float* scale, const float* bias, float* const* out, int64_t P, int npos) {
  __m512 acc[kPos][CV];
  for (int j = 0; j < kPos; ++j)
    for (int c = 0; c < CV; ++c) acc[j][c] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; ++k) {
    __m512 wv[CV];
    for (int c = 0; c < CV; ++c) wv[c] = _mm512_loadu_ps(wt + k * ldw + 16 * c);
    const int64_t off = koff[k];
#pragma GCC unroll 12
    for (int j = 0; j < kPos; ++j) {
      const __m512 xb = _mm512_set1_ps(base[j][off]);
      for (int c = 0; c < CV; ++c) acc[j][c] = _mm512_fmadd_ps(xb, wv[c], acc[j][c]);
    }
  }
  const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                         _mm512_set1_epi32(static_cast<int32_t>(P)));
  for (int c = 0; c < CV; ++c) {
    const __m512 b = bias ? _mm512_loadu_ps(bias + 16 * c) : _mm512_setzero_ps();
    const __m512 sc = scale ? _mm512_loadu_ps(scale + 16 * c) : _mm512_set1_ps(1.0f);
    for (int j = 0; j < npos; ++j) {
      const __m512 v = scale ? _mm512_fmadd_ps(acc[j][c], sc, b) : _mm512_add_ps(acc[j][c], b);
      _mm512_i32scatter_ps(out[j] + 16 * c * P, idx, v, 4);
    }
  }
}

#else  // portable path: GCC/Clang vector extensions, compiled to whatever -march offers (AVX2, SSE, NEON)

// 8-lane vectors (one AVX2 register; GCC lowers wider ones badly without AVX-512). Weights decode
// by exponent arithmetic: the same bits as the value tables.
typedef float vf __attribute__((vector_size(32)));
typedef int32_t vi __attribute__((vector_size(32)));
typedef uint32_t vu __attribute__((vector_size(32)));
constexpr int kV = 8;
constexpr int kLanes = 16 * kSegs;
// Float-mode tiles may fuse multiply and add (float mode is "within rounding"); the file is built
// with -ffp-contract=off for the integer-mode epilogues.
#define AUTODSNN_CONTRACT __attribute__((optimize("fp-contract=fast")))

template <typename V, typename T>
inline V load(const T* p) {
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline vi bytes8(const uint8_t* p) {  // 8 bytes -> 8 lanes (two broadcasts and a variable shift)
  uint32_t lo, hi;
  std::memcpy(&lo, p, 4);
  std::memcpy(&hi, p + 4, 4);
  const vu w = {lo, lo, lo, lo, hi, hi, hi, hi};
  const vu sh = {0, 8, 16, 24, 0, 8, 16, 24};
  return (vi)((w >> sh) & 0xFFu);
}

struct CodeBits {  // what a code means: magnitude mask, sign position, top exponent, zero code
  int32_t j_mask, sign_shift, top;
  bool has_zero;
  vi j(vi c) const { return c & j_mask; }
  vi neg_mask(vi c) const { return -((c >> sign_shift) & 1); }            // -1 for negative weights
  vi live_mask(vi c) const { return has_zero ? (j(c) != 0) : vi{} - 1; }  // 0 for zero weights
};

inline vf decode_float(vi c, const CodeBits& cb) {  // sign << 31 | (top - j) << 23, zero code -> 0
  return (vf)((((cb.top - cb.j(c)) << 23) | (cb.neg_mask(c) << 31)) & cb.live_mask(c));
}

// The 32 codes of one panel column, outputs 0-7, 8-15, 16-23, 24-31.
inline void panel_codes(const uint8_t* p, int code_bits, vi (&c)[4]) {
  if (code_bits == 4) {
    const vi b0 = bytes8(p), b1 = bytes8(p + 8);
    c[0] = b0 & 15;
    c[1] = b1 & 15;
    c[2] = b0 >> 4;
    c[3] = b1 >> 4;
  } else {
    for (int g = 0; g < 4; ++g) c[g] = bytes8(p + 8 * g);
  }
}

template <int MR>
AUTODSNN_CONTRACT void linear_f32_tile_v(const float* x, int64_t K, const uint8_t* panel, int64_t bytes, int code_bits,
                       const CodeBits& cb, const float* bias, float* y, int64_t O, int64_t valid) {
  vf acc[MR][4] = {};
  for (int64_t k = 0; k < K; ++k) {
    vi c[4];
    panel_codes(panel + k * bytes, code_bits, c);
    vf w[4];
    for (int g = 0; g < 4; ++g) w[g] = decode_float(c[g], cb);
    for (int r = 0; r < MR; ++r) {
      const float xv = x[r * K + k];
      const vf xb = {xv, xv, xv, xv, xv, xv, xv, xv};
      for (int g = 0; g < 4; ++g) acc[r][g] += xb * w[g];
    }
  }
  for (int r = 0; r < MR; ++r) {
    float out[kPanel];
    std::memcpy(out, acc[r], sizeof out);
    for (int64_t t = 0; t < valid; ++t) y[r * O + t] = out[t] + (bias ? bias[t] : 0.0f);
  }
}

template <int MR>
void linear_int_tile_v(const int32_t* q, int64_t K, const uint8_t* panel, int64_t bytes, int code_bits,
                       const CodeBits& cb, const int32_t* offset, float out_scale, const float* bias_float, float* y,
                       int64_t O, int64_t valid) {
  vu acc[MR][4];
  for (int r = 0; r < MR; ++r)
    for (int g = 0; g < 4; ++g) acc[r][g] = load<vu>(offset + kV * g);
  for (int64_t k = 0; k < K; ++k) {
    vi c[4];
    panel_codes(panel + k * bytes, code_bits, c);
    vu sh[4], sg[4], live[4];
    for (int g = 0; g < 4; ++g) {  // shift = top - j (the codes a layer uses stay within 0..30)
      sh[g] = (vu)((cb.top - cb.j(c[g])) & 31);
      sg[g] = (vu)cb.neg_mask(c[g]);
      live[g] = (vu)cb.live_mask(c[g]);
    }
    for (int r = 0; r < MR; ++r) {
      const uint32_t qv = static_cast<uint32_t>(q[r * K + k]);
      const vu qb = {qv, qv, qv, qv, qv, qv, qv, qv};
      for (int g = 0; g < 4; ++g) acc[r][g] += ((qb << sh[g]) & live[g]) ^ sg[g];
    }
  }
  for (int r = 0; r < MR; ++r) {
    int32_t sums[kPanel];
    std::memcpy(sums, acc[r], sizeof sums);
    for (int64_t t = 0; t < valid; ++t) {
      float v = static_cast<float>(sums[t]) * out_scale;
      if (bias_float) v = v + bias_float[t];
      y[r * O + t] = v;
    }
  }
}

void store_tile(float* y, const float* v, const TileStores& st) {
  for (int i = 0; i < st.count; ++i)
    for (int t = st.a[i]; t < st.b[i]; ++t) y[st.shift[i] + t] = v[16 * st.seg[i] + t];
}

AUTODSNN_CONTRACT void conv_f32_tile(const float* const* src, const int64_t* koff, int64_t K, const float* w,
                                     const float* scale, const float* bias, float* y, int64_t P, int64_t channels,
                                     const TileStores& st) {
  constexpr int kVecs = kLanes / kV;
  vf acc[kRows][kVecs] = {};
  for (int64_t k = 0; k < K; ++k) {
    vf c[kVecs];
    for (int i = 0; i < kVecs; ++i) c[i] = load<vf>(src[i / 2] + koff[k] + kV * (i % 2));
    for (int r = 0; r < kRows; ++r) {
      const float wv = w[k * kRows + r];
      const vf wb = {wv, wv, wv, wv, wv, wv, wv, wv};
      for (int i = 0; i < kVecs; ++i) acc[r][i] += wb * c[i];
    }
  }
  for (int64_t r = 0; r < channels; ++r) {
    float v[kLanes];
    std::memcpy(v, acc[r], sizeof v);
    for (int t = 0; t < kLanes; ++t) v[t] = (scale ? v[t] * scale[r] : v[t]) + (bias ? bias[r] : 0.0f);
    store_tile(y + r * P, v, st);
  }
}

void conv_int_tile(const int32_t* const* src, const int64_t* koff, int64_t K, const int32_t* wi,
                   const int32_t* offset, float out_scale, const float* bias_float, float* y, int64_t P,
                   int64_t channels, const TileStores& st) {
  constexpr int kVecs = kLanes / kV;
  vu acc[kRows][kVecs];
  for (int r = 0; r < kRows; ++r) {
    const uint32_t o = static_cast<uint32_t>(r < channels ? offset[r] : 0);
    for (int i = 0; i < kVecs; ++i) acc[r][i] = vu{o, o, o, o, o, o, o, o};
  }
  for (int64_t k = 0; k < K; ++k) {
    vu c[kVecs];
    for (int i = 0; i < kVecs; ++i) c[i] = load<vu>(src[i / 2] + koff[k] + kV * (i % 2));
    for (int r = 0; r < kRows; ++r) {
      const int32_t sh = wi[(k * kRows + r) * 2], sg = wi[(k * kRows + r) * 2 + 1];
      if (sh >= 32) continue;  // zero weight (its sign mask is 0)
      for (int i = 0; i < kVecs; ++i) acc[r][i] += (c[i] << sh) ^ static_cast<uint32_t>(sg);
    }
  }
  for (int64_t r = 0; r < channels; ++r) {
    int32_t sums[kLanes];
    std::memcpy(sums, acc[r], sizeof sums);
    float v[kLanes];
    for (int t = 0; t < kLanes; ++t) {
      v[t] = static_cast<float>(sums[t]) * out_scale;
      if (bias_float) v[t] = v[t] + bias_float[r];
    }
    store_tile(y + r * P, v, st);
  }
}

#endif

int64_t check_panels(const torch::Tensor& x, const torch::Tensor& panels, int64_t code_bits, int64_t O) {
  TORCH_CHECK(x.device().is_cpu() && x.dim() == 2 && x.is_contiguous(), "x must be a contiguous (N, K) CPU tensor");
  TORCH_CHECK(code_bits == 4 || code_bits == 8, "code_bits must be 4 or 8, got ", code_bits);
  TORCH_CHECK(panels.scalar_type() == torch::kUInt8 && panels.is_contiguous() && panels.dim() == 3,
              "panels must be contiguous uint8 (P, K, bytes)");
  TORCH_CHECK(panels.size(1) == x.size(1), "x has ", x.size(1), " features, the layer ", panels.size(1));
  TORCH_CHECK(panels.size(2) == (code_bits == 4 ? 16 : 32), "panel width does not match code_bits");
  TORCH_CHECK(panels.size(0) * kPanel >= O && (panels.size(0) - 1) * kPanel < O, "panels do not cover ", O, " outputs");
  return x.size(1);
}

// Calls fn(std::integral_constant<int, rows>) so that tile templates get the row count (1..kRows).
template <typename Fn>
void with_rows(int64_t rows, Fn fn) {
  switch (rows) {
    case 1: fn(std::integral_constant<int, 1>{}); break;
    case 2: fn(std::integral_constant<int, 2>{}); break;
    case 3: fn(std::integral_constant<int, 3>{}); break;
    case 4: fn(std::integral_constant<int, 4>{}); break;
    case 5: fn(std::integral_constant<int, 5>{}); break;
    case 6: fn(std::integral_constant<int, 6>{}); break;
    case 7: fn(std::integral_constant<int, 7>{}); break;
    default: fn(std::integral_constant<int, kRows>{}); break;
  }
}

// Tile loop shared by both linear modes: fn(p, row0, rows) computes one tile.
template <typename Fn>
void for_linear_tiles(int64_t P, int64_t N, Fn fn) {
  const int64_t blocks = (N + kRows - 1) / kRows;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t p = 0; p < P; ++p)
    for (int64_t b = 0; b < blocks; ++b) fn(p, b * kRows, std::min<int64_t>(kRows, N - b * kRows));
}

}  // namespace

// ---- bound functions ------------------------------------------------------------------------

torch::Tensor linear_float(torch::Tensor x, torch::Tensor panels, int64_t code_bits, torch::Tensor values,
                           int64_t e_top, bool has_zero, torch::Tensor bias, int64_t O) {
  TORCH_CHECK(x.scalar_type() == torch::kFloat32, "linear_float needs float32 input");
  const int64_t K = check_panels(x, panels, code_bits, O), N = x.size(0), P = panels.size(0);
  TORCH_CHECK(values.scalar_type() == torch::kFloat32 && values.numel() == (1 << code_bits), "values table size");
  auto y = new_output({N, O}, x);
  const float* xp = x.data_ptr<float>();
  const uint8_t* pp = panels.data_ptr<uint8_t>();
  const float* bp = bias.numel() ? bias.data_ptr<float>() : nullptr;
  float* yp = y.data_ptr<float>();
  const int64_t bytes = panels.size(2);
#if AUTODSNN_AVX512
  auto run = [&](const auto& dec) {
    using Dec = std::decay_t<decltype(dec)>;
    for_linear_tiles(P, N, [&](int64_t p, int64_t r0, int64_t rows) {
      const float* xr = xp + r0 * K;
      const uint8_t* pan = pp + p * K * bytes;
      const float* b = bp ? bp + p * kPanel : nullptr;
      float* yr = yp + r0 * O + p * kPanel;
      const int64_t valid = std::min<int64_t>(kPanel, O - p * kPanel);
      with_rows(rows, [&](auto mr) {
        constexpr int MR = decltype(mr)::value;
        linear_f32_tile<MR, MR == 1 ? 4 : (MR < 4 ? 2 : 1), Dec>(xr, K, pan, dec, b, yr, O, valid);
      });
    });
  };
  if (code_bits == 4) run(DecodeF4{_mm512_loadu_ps(values.data_ptr<float>())});
  else run(DecodeF8{_mm512_set1_epi32(static_cast<int32_t>(e_top)), has_zero});
#else
  const CodeBits cb{(1 << (code_bits - 1)) - 1, static_cast<int32_t>(code_bits - 1), static_cast<int32_t>(e_top), has_zero};
  for_linear_tiles(P, N, [&](int64_t p, int64_t r0, int64_t rows) {
    const int64_t valid = std::min<int64_t>(kPanel, O - p * kPanel);
    with_rows(rows, [&](auto mr) {
      linear_f32_tile_v<decltype(mr)::value>(xp + r0 * K, K, pp + p * K * bytes, bytes, static_cast<int>(code_bits), cb,
                                             bp ? bp + p * kPanel : nullptr, yp + r0 * O + p * kPanel, O, valid);
    });
  });
#endif
  return y;
}

torch::Tensor linear_int(torch::Tensor x, torch::Tensor panels, int64_t code_bits, torch::Tensor shifts,
                         int64_t sh_top, bool has_zero, double in_scale, double lo, double hi, torch::Tensor offset,
                         double out_scale, torch::Tensor bias_float, int64_t O) {
  TORCH_CHECK(x.scalar_type() == torch::kFloat32, "linear_int needs float32 input");
  const int64_t K = check_panels(x, panels, code_bits, O), N = x.size(0), P = panels.size(0);
  TORCH_CHECK(shifts.scalar_type() == torch::kInt32 && shifts.numel() == (1 << code_bits), "shifts table size");
  TORCH_CHECK(offset.scalar_type() == torch::kInt32 && offset.numel() >= P * kPanel, "offset must be int32 padded to the panels");
  TORCH_CHECK(bias_float.numel() == 0 || bias_float.numel() >= P * kPanel, "bias_float must be padded to the panels");
  auto y = new_output({N, O}, x);
  static thread_local Scratch<int32_t> qbuf;
  int32_t* q = qbuf.get(static_cast<size_t>(N * K));
  quantize_inputs(x.data_ptr<float>(), N * K, static_cast<float>(in_scale), static_cast<float>(lo),
                  static_cast<float>(hi), q);
  const uint8_t* pp = panels.data_ptr<uint8_t>();
  const int32_t* op = offset.data_ptr<int32_t>();
  const float* bf = bias_float.numel() ? bias_float.data_ptr<float>() : nullptr;
  float* yp = y.data_ptr<float>();
  const float os = static_cast<float>(out_scale);
  const int64_t bytes = panels.size(2);
#if AUTODSNN_AVX512
  auto run = [&](const auto& dec) {
    using Dec = std::decay_t<decltype(dec)>;
    for_linear_tiles(P, N, [&](int64_t p, int64_t r0, int64_t rows) {
      const int32_t* qr = q + r0 * K;
      const uint8_t* pan = pp + p * K * bytes;
      const int32_t* off = op + p * kPanel;
      const float* b = bf ? bf + p * kPanel : nullptr;
      float* yr = yp + r0 * O + p * kPanel;
      const int64_t valid = std::min<int64_t>(kPanel, O - p * kPanel);
      with_rows(rows, [&](auto mr) { linear_int_tile<decltype(mr)::value, Dec>(qr, K, pan, dec, off, os, b, yr, O, valid); });
    });
  };
  if (code_bits == 4) run(DecodeI4{_mm512_loadu_si512(shifts.data_ptr<int32_t>())});
  else run(DecodeI8{_mm512_set1_epi32(static_cast<int32_t>(sh_top)), has_zero});
#else
  const CodeBits cb{(1 << (code_bits - 1)) - 1, static_cast<int32_t>(code_bits - 1), static_cast<int32_t>(sh_top), has_zero};
  for_linear_tiles(P, N, [&](int64_t p, int64_t r0, int64_t rows) {
    const int64_t valid = std::min<int64_t>(kPanel, O - p * kPanel);
    with_rows(rows, [&](auto mr) {
      linear_int_tile_v<decltype(mr)::value>(q + r0 * K, K, pp + p * K * bytes, bytes, static_cast<int>(code_bits), cb,
                                             op + p * kPanel, os, bf ? bf + p * kPanel : nullptr,
                                             yp + r0 * O + p * kPanel, O, valid);
    });
  });
#endif
  return y;
}

namespace {

// Convolutions read their input from a "phase grid": the input split by (row mod stride, column
// mod stride) into zero-bordered planes. On that grid every tap (c, ki, kj) of every output
// position is one fixed offset from the position's index p = oh * Wq + ow, so a run of outputs
// reads 16 consecutive values per tap: no im2col. (Stride 1: a single phase, the zero-padded
// input.) Lanes that fall in the border columns (ow >= OW) are computed and dropped.
struct PhaseGrid {
  // Hq x Wq cells per plane, rows Ws apart: consecutive rows share their zero border columns
  // (Ws = Wq - shared), so a 3x3 pad-1 conv on 8x8 maps spends 1 dropped lane per row, not 2.
  int64_t min_dr, min_dc, Hq, Wq, Ws, plane, per_image;
  // Only the phases some tap reads are built (a 1x1 stride-2 conv reads one of four).
  std::array<int64_t, kMaxStride> row_phase, col_phase;  // phase -> its index among the built ones, or -1
  int64_t rows_built = 0, cols_built = 0;
};

inline int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

PhaseGrid phase_grid(const Geometry& g) {
  int64_t min_dr = 0, max_dr = 0, min_dc = 0, max_dc = 0;
  for (int64_t i = 0; i < g.kh; ++i) {
    const int64_t d = floor_div(i * g.dh - g.ph, g.sh);
    min_dr = i ? std::min(min_dr, d) : d;
    max_dr = i ? std::max(max_dr, d) : d;
  }
  for (int64_t j = 0; j < g.kw; ++j) {
    const int64_t d = floor_div(j * g.dw - g.pw, g.sw);
    min_dc = j ? std::min(min_dc, d) : d;
    max_dc = j ? std::max(max_dc, d) : d;
  }
  PhaseGrid pg{};
  pg.row_phase.fill(-1);
  pg.col_phase.fill(-1);
  for (int64_t i = 0; i < g.kh; ++i) {
    const int64_t a = i * g.dh - g.ph, r = a - floor_div(a, g.sh) * g.sh;
    if (pg.row_phase[r] < 0) pg.row_phase[r] = pg.rows_built++;
  }
  for (int64_t j = 0; j < g.kw; ++j) {
    const int64_t b = j * g.dw - g.pw, rc = b - floor_div(b, g.sw) * g.sw;
    if (pg.col_phase[rc] < 0) pg.col_phase[rc] = pg.cols_built++;
  }
  pg.min_dr = min_dr;
  pg.min_dc = min_dc;
  pg.Hq = g.OH + max_dr - min_dr;
  pg.Wq = g.OW + max_dc - min_dc;
  int64_t shared = pg.Wq - g.OW;
  for (int64_t rc = 0; rc < g.sw; ++rc) {
    if (pg.col_phase[rc] < 0) continue;
    int64_t lead = 0, trail = 0;
    while (lead < pg.Wq && (lead + min_dc) * g.sw + rc < 0) ++lead;
    while (trail < pg.Wq && (pg.Wq - 1 - trail + min_dc) * g.sw + rc >= g.W) ++trail;
    shared = std::min({shared, lead, trail});
  }
  pg.Ws = pg.Wq - shared;
  pg.plane = pg.Hq * pg.Ws + shared;
  pg.per_image = g.C * pg.rows_built * pg.cols_built * pg.plane;
  return pg;
}

template <typename T, typename Convert>
const T* phase_input(const float* x, const Geometry& g, const PhaseGrid& pg, Scratch<T>& buf, Convert convert) {
  const int64_t total = g.N * pg.per_image, slack = pg.Wq + 64;  // slack: reads of dropped lanes
  T* out = buf.get(static_cast<size_t>(total + slack));
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < g.N * g.C; ++i) {
    const float* src = x + i * g.H * g.W;
    for (int64_t r = 0; r < g.sh; ++r)
      for (int64_t rc = 0; rc < g.sw; ++rc) {
        if (pg.row_phase[r] < 0 || pg.col_phase[rc] < 0) continue;
        T* dst = out + ((i * pg.rows_built + pg.row_phase[r]) * pg.cols_built + pg.col_phase[rc]) * pg.plane;
        for (int64_t q = 0; q < pg.Hq; ++q) {
          T* row = dst + q * pg.Ws;  // its last Wq - Ws cells are the next row's first (all zero)
          const int64_t ih = (q + pg.min_dr) * g.sh + r;
          if (ih < 0 || ih >= g.H) {
            std::fill(row, row + pg.Wq, T(0));
            continue;
          }
          const float* in = src + ih * g.W;
          for (int64_t qc = 0; qc < pg.Wq; ++qc) {
            const int64_t iw = (qc + pg.min_dc) * g.sw + rc;
            row[qc] = iw >= 0 && iw < g.W ? convert(in[iw]) : T(0);
          }
        }
      }
  }
  std::fill(out + total, out + total + slack, T(0));
  return out;
}

// Runs tile(srcs, koff, group, stores) in parallel over tiles of kSegs 16-output segments of one
// group (the segments of a tile may belong to different images: small feature maps fill whole
// tiles). Stores address y + (n * OC + oc) * P + oh * OW + ow through their shifts.
// koff[k]: where tap k = (c, ki, kj) reads, relative to an output position's grid index.
void phase_offsets(const Geometry& g, const PhaseGrid& pg, int64_t* koff) {
  for (int64_t c = 0, k = 0; c < g.Cg; ++c)
    for (int64_t ki = 0; ki < g.kh; ++ki) {
      const int64_t a = ki * g.dh - g.ph, dr = floor_div(a, g.sh), r = a - dr * g.sh;
      for (int64_t kj = 0; kj < g.kw; ++kj, ++k) {
        const int64_t b = kj * g.dw - g.pw, dc = floor_div(b, g.sw), rc = b - dc * g.sw;
        koff[k] = ((c * pg.rows_built + pg.row_phase[r]) * pg.cols_built + pg.col_phase[rc]) * pg.plane +
                  (dr - pg.min_dr) * pg.Ws + (dc - pg.min_dc);
      }
    }
}

template <typename T, typename TileFn>
void for_conv_tiles(const T* grid, const Geometry& g, const PhaseGrid& pg, TileFn tile) {
  static thread_local Scratch<int64_t> koff_buf;
  int64_t* koff = koff_buf.get(static_cast<size_t>(g.K));
  phase_offsets(g, pg, koff);
  const int64_t span = g.OH * pg.Ws, segs = (span + 15) / 16, per_group = g.N * segs;
  const int64_t tiles = (per_group + kSegs - 1) / kSegs;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t grp = 0; grp < g.G; ++grp)
    for (int64_t t = 0; t < tiles; ++t) {
      TileStores st;
      const T* src[kSegs];
      for (int q = 0; q < kSegs; ++q) {
        const int64_t s = std::min(kSegs * t + q, per_group - 1);  // past the end: repeat the last, unstored
        const int64_t n = s / segs, p0 = (s % segs) * 16;
        src[q] = grid + n * pg.per_image + grp * g.Cg * pg.rows_built * pg.cols_built * pg.plane + p0;
        if (kSegs * t + q >= per_group) continue;
        const int64_t end = std::min<int64_t>(16, span - p0);
        int64_t lane = 0;
        while (lane < end) {
          const int64_t p = p0 + lane, oh = p / pg.Ws, ow = p % pg.Ws;
          const int64_t stop = std::min(end, lane + g.OW - ow);
          if (ow < g.OW)
            st.add(q, static_cast<int>(lane), static_cast<int>(stop), n * g.OC * g.P + oh * g.OW + ow - lane);
          lane += pg.Ws - ow;
        }
      }
      tile(src, koff, grp, st);
    }
}

void check_conv(const torch::Tensor& x, const torch::Tensor& packed, int64_t OC, const char* name) {
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == torch::kFloat32 && x.is_contiguous(),
              name, " needs a contiguous float32 CPU NCHW input");
  TORCH_CHECK(packed.scalar_type() == torch::kUInt8 && packed.is_contiguous() && packed.size(0) == OC,
              "packed codes must be contiguous uint8 (out_channels, row bytes)");
}

}  // namespace

#if AUTODSNN_AVX512
// Driver of conv_f32_tile_cv: weights decoded channel-contiguous ([group][k][OCg]), tiles of
// kPos valid output positions x 16*CV channels, in parallel.
void conv_channels_vectorized(const float* grid, const Geometry& g, const PhaseGrid& pg, const float* tab,
                              const uint8_t* pk, int64_t row_bytes, int64_t code_bits, const float* sp,
                              const float* bp, float* yp) {
  static thread_local Scratch<float> wtbuf;
  float* wt = wtbuf.get(static_cast<size_t>(g.G * g.K * g.OCg));
  for (int64_t oc = 0; oc < g.OC; ++oc) {
    const int64_t grp = oc / g.OCg, c = oc % g.OCg;
    for (int64_t k = 0; k < g.K; ++k)
      wt[(grp * g.K + k) * g.OCg + c] = tab[code_at(pk + oc * row_bytes, k, static_cast<int>(code_bits))];
  }
  const int CV = g.OCg % 64 == 0 ? 4 : 2;
  const int64_t kPos = 24 / CV;
  const int64_t cblocks = g.OCg / (16 * CV), total = g.N * g.P, tiles = (total + kPos - 1) / kPos;
  static thread_local Scratch<int64_t> koff_buf;
  int64_t* koff = koff_buf.get(static_cast<size_t>(g.K));
  phase_offsets(g, pg, koff);
  const int64_t group_stride = g.Cg * pg.rows_built * pg.cols_built * pg.plane;
#pragma omp parallel for collapse(3) schedule(static)
  for (int64_t grp = 0; grp < g.G; ++grp)
    for (int64_t cb = 0; cb < cblocks; ++cb)
      for (int64_t t = 0; t < tiles; ++t) {
        const float* base[kMaxPos];
        float* out[kMaxPos];
        const int64_t oc0 = grp * g.OCg + cb * 16 * CV;
        const int npos = static_cast<int>(std::min<int64_t>(kPos, total - t * kPos));
        for (int j = 0; j < kPos; ++j) {
          const int64_t i = t * kPos + std::min(j, npos - 1), n = i / g.P, p = i % g.P;
          base[j] = grid + n * pg.per_image + grp * group_stride + (p / g.OW) * pg.Ws + p % g.OW;
          out[j] = yp + (n * g.OC + oc0) * g.P + p;
        }
        const float* w = wt + grp * g.K * g.OCg + cb * 16 * CV;
        const float* s = sp ? sp + oc0 : nullptr;
        const float* b = bp ? bp + oc0 : nullptr;
        if (CV == 4) conv_f32_tile_cv<4>(base, koff, g.K, w, g.OCg, s, b, out, g.P, npos);
        else conv_f32_tile_cv<2>(base, koff, g.K, w, g.OCg, s, b, out, g.P, npos);
      }
}
#endif

// y = conv(x, w) * scale + bias per output channel (scale empty: y = conv + bias). A BatchNorm
// that follows the conv folds into scale and bias (its weights cannot: they would stop being
// powers of two).
torch::Tensor conv2d_float_scaled(torch::Tensor x, torch::Tensor packed, int64_t code_bits, torch::Tensor values,
                                  torch::Tensor scale, torch::Tensor bias, int64_t OC, int64_t kh, int64_t kw,
                                  int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t G) {
  check_conv(x, packed, OC, "conv2d_float");
  TORCH_CHECK(scale.numel() == 0 || (scale.numel() == OC && scale.scalar_type() == torch::kFloat32 && scale.is_contiguous()),
              "scale must be empty or float32 (out_channels,)");
  TORCH_CHECK(bias.numel() == 0 || (bias.numel() == OC && bias.scalar_type() == torch::kFloat32 && bias.is_contiguous()),
              "bias must be empty or float32 (out_channels,)");
  const Geometry g = conv_geometry(x, OC, kh, kw, sh, sw, ph, pw, dh, dw, G);
  TORCH_CHECK(values.scalar_type() == torch::kFloat32 && values.numel() == (1 << code_bits), "values table size");
  const int64_t blocks = (g.OCg + kRows - 1) / kRows, row_bytes = packed.size(1);
  static thread_local Scratch<float> wbuf, xpad;
  float* w = wbuf.get(static_cast<size_t>(G * blocks * g.K * kRows));
  const float* tab = values.data_ptr<float>();
  const uint8_t* pk = packed.data_ptr<uint8_t>();
  for (int64_t grp = 0; grp < G; ++grp)
    for (int64_t b = 0; b < blocks; ++b)
      for (int64_t k = 0; k < g.K; ++k)
        for (int r = 0; r < kRows; ++r) {
          const int64_t oc = b * kRows + r;
          w[((grp * blocks + b) * g.K + k) * kRows + r] =
              oc < g.OCg ? tab[code_at(pk + (grp * g.OCg + oc) * row_bytes, k, code_bits)] : 0.0f;
        }
  auto y = new_output({g.N, OC, g.OH, g.OW}, x);
  const float* bp = bias.numel() ? bias.data_ptr<float>() : nullptr;
  const float* sp = scale.numel() ? scale.data_ptr<float>() : nullptr;
  float* yp = y.data_ptr<float>();
  const PhaseGrid pg = phase_grid(g);
  const float* grid = phase_input(x.data_ptr<float>(), g, pg, xpad, [](float v) { return v; });
#if AUTODSNN_AVX512
  if (g.OCg % 64 == 0 && g.N * g.P >= 1024 && 16 * g.P < (int64_t{1} << 31)) {
    conv_channels_vectorized(grid, g, pg, tab, pk, row_bytes, code_bits, sp, bp, yp);
    return y;
  }
#endif
  for_conv_tiles(grid, g, pg, [&](const float* const* srcs, const int64_t* koff, int64_t grp, const TileStores& st) {
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t oc0 = grp * g.OCg + b * kRows;
      conv_f32_tile(srcs, koff, g.K, w + (grp * blocks + b) * g.K * kRows, sp ? sp + oc0 : nullptr, bp ? bp + oc0 : nullptr,
                    yp + oc0 * g.P, g.P, std::min<int64_t>(kRows, g.OCg - b * kRows), st);
    }
  });
  return y;
}

torch::Tensor conv2d_float(torch::Tensor x, torch::Tensor packed, int64_t code_bits, torch::Tensor values,
                           torch::Tensor bias, int64_t OC, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                           int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t G) {
  return conv2d_float_scaled(x, packed, code_bits, values, torch::empty({0}, x.options()), bias, OC, kh, kw, sh, sw, ph, pw, dh, dw, G);
}

torch::Tensor conv2d_int(torch::Tensor x, torch::Tensor packed, int64_t code_bits, torch::Tensor shifts,
                         double in_scale, double lo, double hi, torch::Tensor offset, double out_scale,
                         torch::Tensor bias_float, int64_t OC, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                         int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t G) {
  check_conv(x, packed, OC, "conv2d_int");
  const Geometry g = conv_geometry(x, OC, kh, kw, sh, sw, ph, pw, dh, dw, G);
  TORCH_CHECK(shifts.scalar_type() == torch::kInt32 && shifts.numel() == (1 << code_bits), "shifts table size");
  TORCH_CHECK(offset.scalar_type() == torch::kInt32 && offset.numel() == OC, "offset must be int32 (out_channels,)");
  TORCH_CHECK(bias_float.numel() == 0 || bias_float.numel() == OC, "bias_float must have out_channels entries");
  const int64_t blocks = (g.OCg + kRows - 1) / kRows, row_bytes = packed.size(1);
  static thread_local Scratch<int32_t> wbuf, qbuf;
  int32_t* w = wbuf.get(static_cast<size_t>(G * blocks * g.K * kRows * 2));
  const int32_t* tab = shifts.data_ptr<int32_t>();
  const uint8_t* pk = packed.data_ptr<uint8_t>();
  for (int64_t grp = 0; grp < G; ++grp)
    for (int64_t b = 0; b < blocks; ++b)
      for (int64_t k = 0; k < g.K; ++k)
        for (int r = 0; r < kRows; ++r) {
          const int64_t oc = b * kRows + r;
          int32_t s = 32, neg = 0;  // padding channels: zero weights
          if (oc < g.OCg) {
            const int code = code_at(pk + (grp * g.OCg + oc) * row_bytes, k, code_bits);
            s = tab[code];
            neg = (code >> (code_bits - 1)) & 1 ? -1 : 0;
          }
          int32_t* e = w + (((grp * blocks + b) * g.K + k) * kRows + r) * 2;
          e[0] = s;
          e[1] = neg;
        }
  const float fs = static_cast<float>(in_scale), flo = static_cast<float>(lo), fhi = static_cast<float>(hi);
  const PhaseGrid pg = phase_grid(g);
  const int32_t* grid = phase_input(x.data_ptr<float>(), g, pg, qbuf, [=](float v) {
    v = v < flo ? flo : (v > fhi ? fhi : v);
    return static_cast<int32_t>(std::nearbyint(v * fs));
  });
  auto y = new_output({g.N, OC, g.OH, g.OW}, x);
  const int32_t* op = offset.data_ptr<int32_t>();
  const float* bf = bias_float.numel() ? bias_float.data_ptr<float>() : nullptr;
  float* yp = y.data_ptr<float>();
  const float os = static_cast<float>(out_scale);
  for_conv_tiles(grid, g, pg, [&](const int32_t* const* srcs, const int64_t* koff, int64_t grp, const TileStores& st) {
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t oc0 = grp * g.OCg + b * kRows;
      conv_int_tile(srcs, koff, g.K, w + (grp * blocks + b) * g.K * kRows * 2, op + oc0, os, bf ? bf + oc0 : nullptr,
                    yp + oc0 * g.P, g.P, std::min<int64_t>(kRows, g.OCg - b * kRows), st);
    }
  });
  return y;
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

// DeepShift-PS's weight in one pass (training step, deterministic rounding): sign round(clamp(S,
// -1, 1)) and exponent clamp(round(P), shift_min, shift_max), both ties to even (rint), weight =
// sign * 2^exponent. A non-finite latent makes the weight and the magnitude NaN (a diverged
// latent must reach the loss). Returns (weight, magnitude); the same values as the PyTorch path in
// autodsnn/shift/quant.py, which replaced about ten tensor passes per layer and step.
// Elementwise weight passes are memory-light and vectorize (branch-free below); splitting a
// weight tensor over threads only pays for tensors far larger than any layer's weights.
constexpr int64_t kElementwiseParallelMin = int64_t(1) << 22;

inline int32_t float_bits(float v) {
  int32_t b;
  std::memcpy(&b, &v, 4);
  return b;
}
inline float bits_float(int32_t b) {
  float v;
  std::memcpy(&v, &b, 4);
  return v;
}
inline bool finite_bits(int32_t b) { return (b & 0x7F800000) != 0x7F800000; }

std::vector<torch::Tensor> ps_weight_forward(torch::Tensor shift, torch::Tensor sign, int64_t shift_min,
                                             int64_t shift_max) {
  TORCH_CHECK(shift.scalar_type() == torch::kFloat32 && shift.is_contiguous() && shift.device().is_cpu() &&
                  sign.scalar_type() == torch::kFloat32 && sign.is_contiguous() && sign.sizes() == shift.sizes(),
              "shift and sign must be contiguous float32 CPU tensors of one shape");
  auto w = torch::empty_like(shift), magnitude = torch::empty_like(shift);
  const float *pp = shift.data_ptr<float>(), *sp = sign.data_ptr<float>();
  float *wp = w.data_ptr<float>(), *mp = magnitude.data_ptr<float>();
  const float lo = static_cast<float>(shift_min), hi = static_cast<float>(shift_max);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const int64_t n = shift.numel();
  if (shift_min >= -126 && shift_max <= 127) {
    // Every level is a normal float: 2^e is the exponent field e + 127, no libm call, and the
    // loop has no branch, so it vectorizes.
#pragma omp parallel for schedule(static) if (n > kElementwiseParallelMin)
    for (int64_t i = 0; i < n; ++i) {
      const float p = pp[i], s = sp[i];
      const bool finite = finite_bits(float_bits(p)) & finite_bits(float_bits(s));
      const float e = std::min(std::max(std::rint(finite ? p : 0.0f), lo), hi);
      const float m = bits_float((static_cast<int32_t>(e) + 127) << 23);
      const float v = std::rint(std::min(std::max(s, -1.0f), 1.0f)) * m + 0.0f;  // -0 -> +0, as the PyTorch path
      mp[i] = finite ? m : nan;
      wp[i] = finite ? v : nan;
    }
    return {w, magnitude};
  }
#pragma omp parallel for schedule(static) if (n > kElementwiseParallelMin)
  for (int64_t i = 0; i < n; ++i) {  // levels below float32's normal range: ldexp makes the subnormals
    const float p = pp[i], s = sp[i];
    if (!std::isfinite(p) || !std::isfinite(s)) {
      wp[i] = mp[i] = nan;
      continue;
    }
    const float e = std::min(std::max(std::rint(p), lo), hi);
    const float m = std::ldexp(1.0f, static_cast<int>(e));
    mp[i] = m;
    wp[i] = std::rint(std::min(std::max(s, -1.0f), 1.0f)) * m + 0.0f;
  }
  return {w, magnitude};
}

// Its gradients in one pass: dL/dP = dL/dW * W * ln 2 (rounded as (g * W) * ln2 in float32, as the
// PyTorch path) and dL/dS = dL/dW * magnitude (scaled) or dL/dW (unscaled).
std::vector<torch::Tensor> ps_weight_backward(torch::Tensor grad, torch::Tensor w, torch::Tensor magnitude,
                                              bool scaled) {
  TORCH_CHECK(grad.scalar_type() == torch::kFloat32 && w.scalar_type() == torch::kFloat32 &&
                  magnitude.scalar_type() == torch::kFloat32 && grad.device().is_cpu() &&
                  grad.sizes() == w.sizes() && w.sizes() == magnitude.sizes(),
              "grad, w and magnitude must be float32 CPU tensors of one shape");
  auto g = grad.contiguous(), wc = w.contiguous(), mc = magnitude.contiguous();
  auto grad_shift = torch::empty_like(wc), grad_sign = torch::empty_like(wc);
  const float *gp = g.data_ptr<float>(), *wp = wc.data_ptr<float>(), *mp = mc.data_ptr<float>();
  float *dp = grad_shift.data_ptr<float>(), *ds = grad_sign.data_ptr<float>();
  const float ln2 = static_cast<float>(0.69314718055994530942);
  const int64_t n = wc.numel();
  if (scaled) {
#pragma omp parallel for schedule(static) if (n > kElementwiseParallelMin)
    for (int64_t i = 0; i < n; ++i) {
      dp[i] = (gp[i] * wp[i]) * ln2;
      ds[i] = gp[i] * mp[i];
    }
  } else {
#pragma omp parallel for schedule(static) if (n > kElementwiseParallelMin)
    for (int64_t i = 0; i < n; ++i) {
      dp[i] = (gp[i] * wp[i]) * ln2;
      ds[i] = gp[i];
    }
  }
  return {grad_shift, grad_sign};
}

// DenseShift's weight in one pass (training step, deterministic rounding): scale = the magnitude
// latent rounded to the nearest power of two in its float32 bits (carry past sqrt(2) - 1 of the
// mantissa), clamped to [2^shift_min, 2^shift_max] (both normal floats: the caller checks), with
// the sign bit of the sign latent; NaN where a latent is not finite. The same bits as
// round_pow2_values + keep_nonfinite in autodsnn/shift/quant.py. Branch-free: it vectorizes.
torch::Tensor dense_weight_forward(torch::Tensor sign, torch::Tensor magnitude, int64_t shift_min,
                                   int64_t shift_max) {
  TORCH_CHECK(sign.scalar_type() == torch::kFloat32 && sign.is_contiguous() && sign.device().is_cpu() &&
                  magnitude.scalar_type() == torch::kFloat32 && magnitude.is_contiguous() &&
                  magnitude.sizes() == sign.sizes(),
              "sign and magnitude must be contiguous float32 CPU tensors of one shape");
  TORCH_CHECK(shift_min >= -126 && shift_max <= 127 && shift_min <= shift_max, "levels must be normal float32");
  auto w = torch::empty_like(sign);
  const float *sp = sign.data_ptr<float>(), *mp = magnitude.data_ptr<float>();
  float* wp = w.data_ptr<float>();
  const int32_t lo = static_cast<int32_t>((shift_min + 127) << 23), hi = static_cast<int32_t>((shift_max + 127) << 23);
  const uint32_t carry = 0x800000 - 0x3504F4;
  const int32_t nan_bits = float_bits(std::numeric_limits<float>::quiet_NaN());
  const int64_t n = sign.numel();
#pragma omp parallel for schedule(static) if (n > kElementwiseParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const int32_t sb = float_bits(sp[i]), mb = float_bits(mp[i]);
    // unsigned add: a NaN's bits plus the carry may pass INT32_MAX (its result is replaced below)
    int32_t r = static_cast<int32_t>((static_cast<uint32_t>(mb & 0x7FFFFFFF) + carry) & 0x7F800000u);
    r = std::min(std::max(r, lo), hi) | (sb & static_cast<int32_t>(0x80000000u));
    wp[i] = bits_float((finite_bits(sb) & finite_bits(mb)) ? r : nan_bits);
  }
  return w;
}

bool has_avx512() { return AUTODSNN_AVX512 != 0; }
void set_poison(bool on) { g_poison = on; }

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("linear_float", &linear_float, "shift linear layer, float mode, panel layout (CPU)");
  m.def("linear_int", &linear_int, "shift linear layer, integer mode, panel layout (CPU)");
  m.def("conv2d_float", &conv2d_float, "shift conv2d, float mode (CPU)");
  m.def("conv2d_float_scaled", &conv2d_float_scaled, "shift conv2d, float mode, per-channel affine epilogue (CPU)");
  m.def("conv2d_int", &conv2d_int, "shift conv2d, integer mode (CPU)");
  m.def("fixed_point_forward", &fixed_point_forward, "fused fixed-point rounding of activations (CPU)");
  m.def("ps_weight_forward", &ps_weight_forward, "fused DeepShift-PS weight from its latents (CPU)");
  m.def("ps_weight_backward", &ps_weight_backward, "fused DeepShift-PS latent gradients (CPU)");
  m.def("dense_weight_forward", &dense_weight_forward, "fused DenseShift weight from its latents (CPU)");
  m.def("has_avx512", &has_avx512, "whether the build uses the AVX-512 kernels");
  m.def("set_poison", &set_poison, "testing: fill kernel outputs with NaN before computing them");
}
