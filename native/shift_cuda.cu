// CUDA kernels for frozen shift layers (autodsnn.shift.native_cuda). Weights arrive as packed codes
// (4-bit codes two to a byte, even column in the low nibble; 8-bit codes one to a byte), rows in
// PyTorch's (out, in[, kh, kw]) order, and are decoded through a per-layer table:
//   float mode:   values[code] (0 or +-2^e, exact), float32 accumulation;
//   integer mode: shifts[code] (0..30, 32 = zero code) with the sign in the code's top bit. Inputs
//                 are quantized to q = rint(clamp(x, lo, hi) * in_scale), products are q * (+-2^s)
//                 (= +-(q << s)), accumulated mod 2^32 (the exact sum fits int32: Python checks), then
//                 y = float(offset + acc) * out_scale (+ bias_float), each step rounded on its own.
//
// Kernels (256 threads each; outputs from the caching allocator, nothing else allocated):
//   gemv_kernel     linear, batch <= 8. A warp owns R rows; each lane reads V packed bytes of every row
//                   (V = 16, 4 or 1 by alignment), so each packed byte is read once per call. The block
//                   stages a K-tile of the batch's activations in shared memory, (column, batch)
//                   interleaved and padded so that the lanes' vector reads do not conflict; the decode
//                   table is replicated per lane (bank = lane) so lookups never conflict. Warp-shuffle
//                   reduction at the end; no atomics, so results are deterministic.
//   gemm_kernel     implicit GEMM (M = batch * output pixels, N = channels of one group, K = Cg*kh*kw)
//                   for linear with batch > 8 and for conv with >= 16 output channels per group. BK = 16,
//                   double-buffered shared tiles, the weight tile decoded once into shared memory and
//                   reused by the whole M tile; im2col indices advanced incrementally (no divisions in
//                   the main loop, no im2col buffer).
//   conv_direct     conv with few output channels per group (depthwise included): one thread per output
//                   pixel, OB channels of one group per block, weights decoded into shared memory.
#include <torch/extension.h>
// c10's stream and guard headers rather than ATen/cuda/CUDAContext.h, which needs the cuBLAS and
// cuSPARSE headers that a minimal toolkit lacks; at::cuda::getCurrentCUDAStream is this function.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>
#include <type_traits>

namespace {

constexpr int kThreads = 256;

// Element type of activations/weights in shared memory and of the accumulators: float in float mode,
// uint32 in integer mode (wrap-around arithmetic, exact mod 2^32).
template <bool INT>
using Elem = typename std::conditional<INT, uint32_t, float>::type;

template <typename T> struct Vec4;
template <> struct Vec4<float> { using type = float4; };
template <> struct Vec4<uint32_t> { using type = uint4; };
template <typename T> struct Vec2;
template <> struct Vec2<float> { using type = float2; };
template <> struct Vec2<uint32_t> { using type = uint2; };

struct Quant {
  float in_scale, lo, hi;
};

struct Epi {
  const float* bias;        // float mode, may be null
  const int* offset;        // integer mode
  const float* bias_float;  // integer mode, may be null
  float out_scale;          // integer mode
};

struct ConvShape {
  int N, C, H, W, O, OH, OW, kh, kw, sh, sw, ph, pw, dh, dw, groups, Cg, Og, Kg, M;
};

struct KernelArgs {
  const float* x;
  const uint8_t* w;
  const void* table;  // float values[2^cb] or int shifts[2^cb]
  float* y;
  int row_bytes;
  Epi epi;
  Quant q;
  ConvShape s;
};

__device__ __forceinline__ uint32_t quantize(float v, const Quant q) {
  v = fminf(fmaxf(v, q.lo), q.hi);
  return static_cast<uint32_t>(__float2int_rn(__fmul_rn(v, q.in_scale)));
}

template <bool INT>
__device__ __forceinline__ Elem<INT> load_x(const float* p, const Quant q) {
  const float v = __ldg(p);
  if constexpr (INT) {
    return quantize(v, q);
  } else {
    return v;
  }
}

__device__ __forceinline__ float mac(float acc, float a, float b) { return fmaf(a, b, acc); }
__device__ __forceinline__ uint32_t mac(uint32_t acc, uint32_t a, uint32_t b) { return acc + a * b; }

// Decoded weight of one code: the float value, or the integer multiplier +-2^s (0 for zero codes).
template <bool INT, int CB>
__device__ __forceinline__ Elem<INT> table_entry(const void* table, int code) {
  if constexpr (INT) {
    const int s = __ldg(static_cast<const int*>(table) + code);
    uint32_t m = (s >= 0 && s < 32) ? (1u << s) : 0u;
    if ((code >> (CB - 1)) & 1) m = 0u - m;
    return m;
  } else {
    return __ldg(static_cast<const float*>(table) + code);
  }
}

template <bool INT>
__device__ __forceinline__ float finish(Elem<INT> acc, int oc, const Epi e) {
  if constexpr (INT) {
    const uint32_t total = acc + static_cast<uint32_t>(__ldg(e.offset + oc));
    float y = __fmul_rn(__int2float_rn(static_cast<int>(total)), e.out_scale);
    if (e.bias_float != nullptr) y = __fadd_rn(y, __ldg(e.bias_float + oc));
    return y;
  } else {
    return e.bias != nullptr ? acc + __ldg(e.bias + oc) : acc;
  }
}

// CNT consecutive shared-memory elements into registers, 16 or 8 bytes at a time where possible
// (callers guarantee the matching alignment).
template <typename T, int CNT>
__device__ __forceinline__ void lds(const T* p, T (&r)[CNT]) {
  if constexpr (CNT % 4 == 0) {
    using V4 = typename Vec4<T>::type;
#pragma unroll
    for (int i = 0; i < CNT / 4; ++i) {
      const V4 v = reinterpret_cast<const V4*>(p)[i];
      r[4 * i] = v.x;
      r[4 * i + 1] = v.y;
      r[4 * i + 2] = v.z;
      r[4 * i + 3] = v.w;
    }
  } else if constexpr (CNT % 2 == 0) {
    using V2 = typename Vec2<T>::type;
#pragma unroll
    for (int i = 0; i < CNT / 2; ++i) {
      const V2 v = reinterpret_cast<const V2*>(p)[i];
      r[2 * i] = v.x;
      r[2 * i + 1] = v.y;
    }
  } else {
#pragma unroll
    for (int i = 0; i < CNT; ++i) r[i] = p[i];
  }
}

// ------------------------------------------------------------------------------------------------
// GEMV (linear, batch <= 8)

template <int CB, int NB, int V>
struct GemvCfg {
  static constexpr int CPB = CB == 4 ? 2 : 1;       // codes per byte
  static constexpr int W = V * CPB;                 // columns per lane unit (V bytes)
  static constexpr int UW = W * NB;                 // activations per unit
  static constexpr int PAD = UW >= 8 ? 4 : 0;       // words of padding after each unit (bank spread)
  static constexpr int US = UW + PAD;               // unit stride in shared memory
  static constexpr int MU = 4096 / (NB * 32 * W) > 1 ? 4096 / (NB * 32 * W) : 1;
  static constexpr int UT = 32 * MU;                // units per K-tile
  static constexpr int KT = UT * W;                 // columns per K-tile (a power of two)
  static constexpr int R = NB >= 8 ? 2 : 4;         // rows per warp
  static constexpr int ROWS = (kThreads / 32) * R;  // rows per block
  static constexpr int NT = 1 << CB;                // table entries
  static constexpr int COPIES = CB == 4 ? 32 : 16;  // table replicas (entry-major, replica = lane)
  static constexpr int WB = V >= 4 ? 4 : 1;         // bytes decoded per inner step
  static constexpr int WORDS = V / WB;
  static constexpr int CW = WB * CPB;               // columns per inner step
};

template <int V>
__device__ __forceinline__ void load_packed(const uint8_t* p, uint32_t (&w)[V >= 4 ? V / 4 : 1]) {
  if constexpr (V == 16) {
    const uint4 v = __ldg(reinterpret_cast<const uint4*>(p));
    w[0] = v.x;
    w[1] = v.y;
    w[2] = v.z;
    w[3] = v.w;
  } else if constexpr (V == 4) {
    w[0] = __ldg(reinterpret_cast<const unsigned int*>(p));
  } else {
    static_assert(V == 1, "V must be 16, 4 or 1");
    w[0] = __ldg(p);
  }
}

template <int CB, bool INT, int NB, int V>
__global__ void __launch_bounds__(kThreads) gemv_kernel(const KernelArgs a) {
  using C = GemvCfg<CB, NB, V>;
  using T = Elem<INT>;
  __shared__ __align__(16) T xs[C::UT * C::US];
  __shared__ T tab[C::NT * C::COPIES];

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int N = a.s.N, K = a.s.Kg, O = a.s.O;
  for (int i = tid; i < C::NT * C::COPIES; i += kThreads) tab[i] = table_entry<INT, CB>(a.table, i / C::COPIES);
  const T* tl = tab + (lane % C::COPIES);

  const int row0 = blockIdx.x * C::ROWS + warp * C::R;
  const bool active = row0 < O;  // warp-uniform
  const uint8_t* wr[C::R];
#pragma unroll
  for (int r = 0; r < C::R; ++r) wr[r] = a.w + static_cast<int64_t>(min(row0 + r, O - 1)) * a.row_bytes;

  T acc[C::R][NB];
#pragma unroll
  for (int r = 0; r < C::R; ++r)
#pragma unroll
    for (int n = 0; n < NB; ++n) acc[r][n] = T(0);

  const int row_units = a.row_bytes / V;  // V divides row_bytes
  const int tiles = (row_units + C::UT - 1) / C::UT;
  for (int t = 0; t < tiles; ++t) {
    __syncthreads();  // table written (t = 0) / previous tile consumed
    const int k0 = t * C::KT;
    const int units = min(C::UT, row_units - t * C::UT);  // units of this tile (same for every row)
    const int cols = units * C::W;                          // staged columns; those >= K are zeros
#pragma unroll
    for (int n = 0; n < NB; ++n) {
      for (int c = tid; c < cols; c += kThreads) {
        const int col = k0 + c;
        T v = T(0);
        if (n < N && col < K) v = load_x<INT>(a.x + static_cast<int64_t>(n) * K + col, a.q);
        xs[(c / C::W) * C::US + (c % C::W) * NB + n] = v;
      }
    }
    __syncthreads();
    if (!active) continue;
    for (int u = lane; u < units; u += 32) {
      const int64_t boff = static_cast<int64_t>(t * C::UT + u) * V;
      uint32_t wv[C::R][C::WORDS];
#pragma unroll
      for (int r = 0; r < C::R; ++r) load_packed<V>(wr[r] + boff, wv[r]);
      const T* xu = xs + u * C::US;
#pragma unroll
      for (int wi = 0; wi < C::WORDS; ++wi) {
        T xr[C::CW * NB];
        lds<T, C::CW * NB>(xu + wi * C::CW * NB, xr);
#pragma unroll
        for (int r = 0; r < C::R; ++r) {
          const uint32_t word = wv[r][wi];
#pragma unroll
          for (int j = 0; j < C::CW; ++j) {
            const T wj = tl[((word >> (j * CB)) & (C::NT - 1)) * C::COPIES];
#pragma unroll
            for (int n = 0; n < NB; ++n) acc[r][n] = mac(acc[r][n], xr[j * NB + n], wj);
          }
        }
      }
    }
  }
  if (!active) return;  // warp-uniform: whole warps leave, shuffles below stay full-warp
#pragma unroll
  for (int r = 0; r < C::R; ++r)
#pragma unroll
    for (int n = 0; n < NB; ++n)
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) acc[r][n] += __shfl_xor_sync(0xffffffffu, acc[r][n], off);
  // lane r * NB + n writes (row0 + r, n)
  T mine = T(0);
#pragma unroll
  for (int r = 0; r < C::R; ++r)
#pragma unroll
    for (int n = 0; n < NB; ++n)
      if (lane == r * NB + n) mine = acc[r][n];
  const int r = lane / NB, n = lane % NB, o = row0 + r;
  if (r < C::R && n < N && o < O) a.y[static_cast<int64_t>(n) * O + o] = finish<INT>(mine, o, a.epi);
}

// ------------------------------------------------------------------------------------------------
// Tiled implicit GEMM (linear with batch > 8; conv with many output channels per group)

// k = (c * kh + ki) * kw + kj, advanced by a fixed step without divisions.
struct KDec {
  int c, ki, kj;
};

__device__ __forceinline__ KDec kdec(int k, int kh, int kw) {
  KDec d;
  const int khw = kh * kw;
  d.c = k / khw;
  const int r = k - d.c * khw;
  d.ki = r / kw;
  d.kj = r - d.ki * kw;
  return d;
}

__device__ __forceinline__ KDec kadd(KDec d, const KDec& s, int kh, int kw) {
  d.kj += s.kj;
  int carry = d.kj >= kw ? 1 : 0;
  d.kj -= carry * kw;
  d.ki += s.ki + carry;
  carry = d.ki >= kh ? 1 : 0;
  d.ki -= carry * kh;
  d.c += s.c + carry;
  return d;
}

// Thread tile TM x TO of a BM x BO block tile. LINEAR: lanes run along the output channels (y is
// (N, O) row-major); conv: lanes run along output pixels (y is NCHW). Either way stores coalesce.
template <int CB, bool INT, bool LINEAR, int BM, int BO, int TM, int TO>
__global__ void __launch_bounds__(kThreads) gemm_kernel(const KernelArgs a) {
  using T = Elem<INT>;
  constexpr int BK = 16;
  constexpr int CPB = CB == 4 ? 2 : 1;
  constexpr int BPR = BK / CPB;  // packed bytes per row per k-tile
  constexpr int AS = BM + 4, BS = BO + 4;
  constexpr int A_LOADS = BM * BK / kThreads;
  constexpr int B_ROWS = kThreads / BPR;  // rows per load pass
  constexpr int B_PASSES = BO / B_ROWS;
  constexpr int FM = LINEAR ? BO / TO : BM / TM;  // threads along the fast (lane) dimension
  static_assert((BM / TM) * (BO / TO) == kThreads, "tile does not match the block");
  static_assert(FM == 32, "the fast dimension must span one warp");
  static_assert(BM * BK % kThreads == 0 && BO % B_ROWS == 0, "load mapping");
  static_assert(LINEAR ? TM % 4 == 0 : TO % 4 == 0, "vector fragment loads");

  __shared__ __align__(16) T As[2][BK][AS];
  __shared__ __align__(16) T Bs[2][BK][BS];
  __shared__ T tab[1 << CB];

  const ConvShape s = a.s;  // by value: a reference into the parameter block costs local memory
  const int tid = threadIdx.x;
  const int g = blockIdx.z;
  const int m0 = blockIdx.x * BM, o0 = blockIdx.y * BO;
  for (int i = tid; i < (1 << CB); i += kThreads) tab[i] = table_entry<INT, CB>(a.table, i);

  // A loader state. conv: a fixed output pixel, k = k0 + a_k0 + step * j; linear: a fixed k column.
  const int a_m = LINEAR ? tid / BK : tid % BM;   // linear: first m (then + 16 j); conv: the m
  const int a_k = LINEAR ? tid % BK : tid / BM;   // linear: the k column; conv: first k
  constexpr int KSTEP = kThreads / BM;            // conv: k step between a thread's loads
  bool m_ok = false;
  int ih0 = 0, iw0 = 0;
  const float* xb = a.x;
  KDec kb{0, 0, 0}, kstep{0, 0, 0}, ktile{0, 0, 0};
  if constexpr (!LINEAR) {
    const int m = m0 + a_m;
    m_ok = m < s.M;
    if (m_ok) {
      const int ohw = s.OH * s.OW;
      const int n = m / ohw, pix = m - n * ohw;
      const int oh = pix / s.OW, ow = pix - oh * s.OW;
      ih0 = oh * s.sh - s.ph;
      iw0 = ow * s.sw - s.pw;
      xb = a.x + (static_cast<int64_t>(n) * s.C + static_cast<int64_t>(g) * s.Cg) * s.H * s.W;
    }
    kb = kdec(a_k, s.kh, s.kw);
    kstep = kdec(KSTEP, s.kh, s.kw);
    ktile = kdec(BK, s.kh, s.kw);
  }

  T areg[A_LOADS];
  uint32_t breg[B_PASSES];

  auto load_tile = [&](int k0) {
    if constexpr (LINEAR) {
      const int k = k0 + a_k;
#pragma unroll
      for (int j = 0; j < A_LOADS; ++j) {
        const int m = m0 + a_m + j * (kThreads / BK);
        areg[j] = (m < s.M && k < s.Kg) ? load_x<INT>(a.x + static_cast<int64_t>(m) * s.Kg + k, a.q) : T(0);
      }
    } else {
      KDec d = kb;
#pragma unroll
      for (int j = 0; j < A_LOADS; ++j) {
        T v = T(0);
        if (m_ok && d.c < s.Cg) {
          const int ih = ih0 + d.ki * s.dh, iw = iw0 + d.kj * s.dw;
          if (static_cast<unsigned>(ih) < static_cast<unsigned>(s.H) &&
              static_cast<unsigned>(iw) < static_cast<unsigned>(s.W))
            v = load_x<INT>(xb + (static_cast<int64_t>(d.c) * s.H + ih) * s.W + iw, a.q);
        }
        areg[j] = v;
        d = kadd(d, kstep, s.kh, s.kw);
      }
      kb = kadd(kb, ktile, s.kh, s.kw);
    }
    const int byte0 = k0 / CPB + tid % BPR;
#pragma unroll
    for (int p = 0; p < B_PASSES; ++p) {
      const int o = o0 + p * B_ROWS + tid / BPR;
      breg[p] = (o < s.Og && byte0 < a.row_bytes)
                    ? __ldg(a.w + static_cast<int64_t>(g * s.Og + o) * a.row_bytes + byte0)
                    : 0u;
    }
  };

  auto store_tile = [&](int buf, int k0) {
#pragma unroll
    for (int j = 0; j < A_LOADS; ++j) {
      if constexpr (LINEAR) {
        As[buf][a_k][a_m + j * (kThreads / BK)] = areg[j];
      } else {
        As[buf][a_k + j * KSTEP][a_m] = areg[j];
      }
    }
    const int b = tid % BPR;
#pragma unroll
    for (int p = 0; p < B_PASSES; ++p) {
      const int ol = p * B_ROWS + tid / BPR;
      const bool o_ok = o0 + ol < s.Og;
#pragma unroll
      for (int sub = 0; sub < CPB; ++sub) {
        const int kl = b * CPB + sub;
        const int code = CPB == 2 ? (breg[p] >> (4 * sub)) & 15 : breg[p];
        Bs[buf][kl][ol] = (o_ok && k0 + kl < s.Kg) ? tab[code] : T(0);
      }
    }
  };

  const int fast = tid % FM, slow = tid / FM;
  T acc[TM][TO];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TO; ++j) acc[i][j] = T(0);

  const int tiles = (s.Kg + BK - 1) / BK;
  __syncthreads();  // decode table ready
  if (tiles > 0) {
    load_tile(0);
    store_tile(0, 0);
    __syncthreads();
    for (int t = 0; t < tiles; ++t) {
      const int buf = t & 1;
      const bool more = t + 1 < tiles;
      if (more) load_tile((t + 1) * BK);
#pragma unroll
      for (int kk = 0; kk < BK; ++kk) {
        T av[TM], bv[TO];
        if constexpr (LINEAR) {
          lds<T, TM>(&As[buf][kk][slow * TM], av);
#pragma unroll
          for (int j = 0; j < TO; ++j) bv[j] = Bs[buf][kk][fast + j * FM];
        } else {
#pragma unroll
          for (int i = 0; i < TM; ++i) av[i] = As[buf][kk][fast + i * FM];
          lds<T, TO>(&Bs[buf][kk][slow * TO], bv);
        }
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
          for (int j = 0; j < TO; ++j) acc[i][j] = mac(acc[i][j], av[i], bv[j]);
      }
      if (more) store_tile(buf ^ 1, (t + 1) * BK);
      __syncthreads();
    }
  }

  const int ohw = s.OH * s.OW;
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int m = m0 + (LINEAR ? slow * TM + i : fast + i * FM);
    if (m >= s.M) continue;
    float* yrow;
    int64_t ostride;
    if constexpr (LINEAR) {
      yrow = a.y + static_cast<int64_t>(m) * s.O;
      ostride = 1;
    } else {
      const int n = m / ohw, pix = m - n * ohw;
      yrow = a.y + static_cast<int64_t>(n) * s.O * ohw + pix;
      ostride = ohw;
    }
#pragma unroll
    for (int j = 0; j < TO; ++j) {
      const int o = o0 + (LINEAR ? fast + j * FM : slow * TO + j);
      if (o >= s.Og) continue;
      const int oc = g * s.Og + o;
      yrow[oc * ostride] = finish<INT>(acc[i][j], oc, a.epi);
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Direct convolution (few output channels per group, depthwise included)

template <int CB>
__device__ __forceinline__ int read_code(const uint8_t* row, int col) {
  if constexpr (CB == 4) {
    const int b = __ldg(row + (col >> 1));
    return (col & 1) ? (b >> 4) : (b & 15);
  } else {
    return __ldg(row + col);
  }
}

template <int OB>
struct DirectCfg {
  static constexpr int KCAP = 4096 / OB;  // decoded weights per channel per chunk
};

template <int CB, bool INT, int OB>
__global__ void __launch_bounds__(kThreads, 4) conv_direct_kernel(const KernelArgs a) {
  using T = Elem<INT>;
  constexpr int KCAP = DirectCfg<OB>::KCAP;
  __shared__ T ws[OB * KCAP];
  __shared__ T tab[1 << CB];

  const ConvShape s = a.s;  // by value: a reference into the parameter block costs local memory
  const int tid = threadIdx.x;
  const int nob = (s.Og + OB - 1) / OB;
  const int g = blockIdx.y / nob, oc0 = (blockIdx.y % nob) * OB;  // oc0: first channel within group
  for (int i = tid; i < (1 << CB); i += kThreads) tab[i] = table_entry<INT, CB>(a.table, i);

  const int khw = s.kh * s.kw, ohw = s.OH * s.OW;
  const int CC = KCAP / khw;  // >= 1: the host sends larger kernels to gemm_kernel
  const int m = blockIdx.x * kThreads + tid;
  const bool m_ok = m < s.M;
  int n = 0, pix = 0, ih0 = 0, iw0 = 0;
  if (m_ok) {
    n = m / ohw;
    pix = m - n * ohw;
    const int oh = pix / s.OW, ow = pix - oh * s.OW;
    ih0 = oh * s.sh - s.ph;
    iw0 = ow * s.sw - s.pw;
  }
  const int64_t hw = static_cast<int64_t>(s.H) * s.W;
  const float* xg = a.x + (static_cast<int64_t>(n) * s.C + static_cast<int64_t>(g) * s.Cg) * hw;

  T acc[OB];
#pragma unroll
  for (int j = 0; j < OB; ++j) acc[j] = T(0);

  __syncthreads();  // decode table ready
  for (int c0 = 0; c0 < s.Cg; c0 += CC) {
    const int cc = min(CC, s.Cg - c0), klen = cc * khw, kbase = c0 * khw;
    for (int idx = tid; idx < OB * klen; idx += kThreads) {
      const int j = idx / klen, kk = idx - j * klen, o = oc0 + j;
      T v = T(0);
      if (o < s.Og)
        v = tab[read_code<CB>(a.w + static_cast<int64_t>(g * s.Og + o) * a.row_bytes, kbase + kk)];
      ws[j * KCAP + kk] = v;
    }
    __syncthreads();
    if (m_ok) {
      for (int c = 0; c < cc; ++c) {
        const float* xc = xg + static_cast<int64_t>(c0 + c) * hw;
        const T* wc = ws + c * khw;
        for (int ki = 0; ki < s.kh; ++ki) {
          const int ih = ih0 + ki * s.dh;
          if (static_cast<unsigned>(ih) >= static_cast<unsigned>(s.H)) continue;
          const float* xr = xc + static_cast<int64_t>(ih) * s.W;
          for (int kj = 0; kj < s.kw; ++kj) {
            const int iw = iw0 + kj * s.dw;
            if (static_cast<unsigned>(iw) >= static_cast<unsigned>(s.W)) continue;
            const T v = load_x<INT>(xr + iw, a.q);
            const int widx = ki * s.kw + kj;
#pragma unroll
            for (int j = 0; j < OB; ++j) acc[j] = mac(acc[j], v, wc[j * KCAP + widx]);
          }
        }
      }
    }
    __syncthreads();  // ws consumed before the next chunk overwrites it
  }
  if (!m_ok) return;
  float* yb = a.y + static_cast<int64_t>(n) * s.O * ohw + pix;
#pragma unroll
  for (int j = 0; j < OB; ++j) {
    const int o = oc0 + j;
    if (o < s.Og) {
      const int oc = g * s.Og + o;
      yb[static_cast<int64_t>(oc) * ohw] = finish<INT>(acc[j], oc, a.epi);
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Launchers

template <bool INT, int CB, int NB>
void launch_gemv_v(int v, dim3 grid, cudaStream_t stream, const KernelArgs& a) {
  switch (v) {
    case 16: gemv_kernel<CB, INT, NB, 16><<<grid, kThreads, 0, stream>>>(a); break;
    case 4: gemv_kernel<CB, INT, NB, 4><<<grid, kThreads, 0, stream>>>(a); break;
    default: gemv_kernel<CB, INT, NB, 1><<<grid, kThreads, 0, stream>>>(a); break;
  }
}

template <bool INT, int CB, int NB>
void launch_gemv_nb_fixed(int v, int O, cudaStream_t stream, const KernelArgs& a) {
  constexpr int rows = GemvCfg<CB, NB, 16>::ROWS;  // independent of V
  const dim3 grid((O + rows - 1) / rows);
  launch_gemv_v<INT, CB, NB>(v, grid, stream, a);
}

template <bool INT, int CB>
void launch_gemv(int nb, int v, int O, cudaStream_t stream, const KernelArgs& a) {
  switch (nb) {
    case 1: launch_gemv_nb_fixed<INT, CB, 1>(v, O, stream, a); break;
    case 2: launch_gemv_nb_fixed<INT, CB, 2>(v, O, stream, a); break;
    case 4: launch_gemv_nb_fixed<INT, CB, 4>(v, O, stream, a); break;
    default: launch_gemv_nb_fixed<INT, CB, 8>(v, O, stream, a); break;
  }
}

template <int CB, bool INT, bool LINEAR, int BM, int BO, int TM, int TO>
void launch_gemm_cfg(cudaStream_t stream, const KernelArgs& a) {
  const int64_t gy = (a.s.Og + BO - 1) / BO;
  TORCH_CHECK(gy <= 65535 && a.s.groups <= 65535, "shift kernels: too many output channels per group (", a.s.Og,
              ") or groups (", a.s.groups, ") for one launch");
  const dim3 grid((a.s.M + BM - 1) / BM, static_cast<unsigned>(gy), a.s.groups);
  gemm_kernel<CB, INT, LINEAR, BM, BO, TM, TO><<<grid, kThreads, 0, stream>>>(a);
}

template <bool INT, bool LINEAR, int CB>
void launch_gemm_cb(cudaStream_t stream, const KernelArgs& a) {
  if constexpr (LINEAR) {
    if (a.s.Og <= 64) launch_gemm_cfg<CB, INT, true, 128, 32, 16, 1>(stream, a);
    else launch_gemm_cfg<CB, INT, true, 64, 128, 8, 4>(stream, a);
  } else {
    if (a.s.Og <= 32) launch_gemm_cfg<CB, INT, false, 256, 32, 8, 4>(stream, a);
    else launch_gemm_cfg<CB, INT, false, 128, 64, 4, 8>(stream, a);
  }
}

template <bool INT, bool LINEAR>
void launch_gemm(int cb, cudaStream_t stream, const KernelArgs& a) {
  if (cb == 4) launch_gemm_cb<INT, LINEAR, 4>(stream, a);
  else launch_gemm_cb<INT, LINEAR, 8>(stream, a);
}

template <int CB, bool INT, int OB>
void launch_direct_ob(cudaStream_t stream, const KernelArgs& a) {
  const int64_t gy = static_cast<int64_t>(a.s.groups) * ((a.s.Og + OB - 1) / OB);
  TORCH_CHECK(gy <= 65535, "shift kernels: too many output channel blocks (", gy, ") for one launch");
  const dim3 grid((a.s.M + kThreads - 1) / kThreads, static_cast<unsigned>(gy));
  conv_direct_kernel<CB, INT, OB><<<grid, kThreads, 0, stream>>>(a);
}

template <bool INT, int CB>
void launch_direct_cb(int ob, cudaStream_t stream, const KernelArgs& a) {
  switch (ob) {
    case 1: launch_direct_ob<CB, INT, 1>(stream, a); break;
    case 4: launch_direct_ob<CB, INT, 4>(stream, a); break;
    default: launch_direct_ob<CB, INT, 8>(stream, a); break;
  }
}

// ------------------------------------------------------------------------------------------------
// Host entry points

void check_tensor(const torch::Tensor& t, const char* name, at::ScalarType dtype, const at::Device& device) {
  TORCH_CHECK(t.is_cuda(), "shift kernels: ", name, " must be a CUDA tensor (got ", t.device(), ")");
  TORCH_CHECK(t.device() == device, "shift kernels: ", name, " is on ", t.device(), " but x is on ", device);
  TORCH_CHECK(t.scalar_type() == dtype, "shift kernels: ", name, " must be ", dtype, " (got ", t.scalar_type(), ")");
  TORCH_CHECK(t.is_contiguous(), "shift kernels: ", name, " must be contiguous");
}

// An optional per-output-channel vector: empty (on any device) or (O,) on x's device.
const float* optional_vector(const torch::Tensor& t, const char* name, int64_t O, const at::Device& device) {
  if (t.numel() == 0) return nullptr;
  check_tensor(t, name, at::kFloat, device);
  TORCH_CHECK(t.dim() == 1 && t.size(0) == O, "shift kernels: ", name, " must have shape (", O, ",) or be empty (got ",
              t.sizes(), ")");
  return t.data_ptr<float>();
}

int64_t packed_row_bytes(int64_t K, int64_t code_bits) { return code_bits == 4 ? (K + 1) / 2 : K; }

// Shared checks: x float32 CUDA contiguous, packed uint8 2-D with the expected row length, the
// decode table of 2^code_bits entries.
void check_common(const torch::Tensor& x, const torch::Tensor& packed, int64_t code_bits, const torch::Tensor& table,
                  at::ScalarType table_dtype, const char* table_name, int64_t K) {
  TORCH_CHECK(x.is_cuda(), "shift kernels: x must be a CUDA tensor (got ", x.device(), ")");
  check_tensor(x, "x", at::kFloat, x.device());
  TORCH_CHECK(code_bits == 4 || code_bits == 8, "shift kernels: code_bits must be 4 or 8 (got ", code_bits, ")");
  check_tensor(packed, "packed", at::kByte, x.device());
  TORCH_CHECK(packed.dim() == 2, "shift kernels: packed must be 2-D (out, bytes per row), got ", packed.sizes());
  TORCH_CHECK(packed.size(1) == packed_row_bytes(K, code_bits), "shift kernels: packed rows have ", packed.size(1),
              " bytes, but ", K, " columns of ", code_bits, "-bit codes need ", packed_row_bytes(K, code_bits));
  check_tensor(table, table_name, table_dtype, x.device());
  TORCH_CHECK(table.numel() == (int64_t{1} << code_bits), "shift kernels: ", table_name, " must have ",
              int64_t{1} << code_bits, " entries for ", code_bits, "-bit codes (got ", table.numel(), ")");
}

void check_int_range(int64_t v, const char* what) {
  TORCH_CHECK(v <= INT_MAX, "shift kernels: ", what, " (", v, ") exceeds the 32-bit index range");
}

KernelArgs kernel_args(const torch::Tensor& x, const torch::Tensor& packed, const void* table, torch::Tensor& y,
                       const Epi& epi, const Quant& q) {
  KernelArgs a{};
  a.x = x.data_ptr<float>();
  a.w = packed.data_ptr<uint8_t>();
  a.table = table;
  a.y = y.data_ptr<float>();
  a.row_bytes = static_cast<int>(packed.size(1));
  a.epi = epi;
  a.q = q;
  return a;
}

template <bool INT>
torch::Tensor run_linear(const torch::Tensor& x, const torch::Tensor& packed, int64_t code_bits, const void* table,
                         const Epi& epi, const Quant& q) {
  const int64_t N = x.size(0), K = x.size(1), O = packed.size(0);
  auto y = torch::empty({N, O}, x.options());
  if (N == 0 || O == 0) return y;
  check_int_range(N, "batch");
  check_int_range(K, "in_features");
  check_int_range(O, "out_features");
  check_int_range(packed.numel(), "packed size");

  KernelArgs a = kernel_args(x, packed, table, y, epi, q);
  a.s = ConvShape{static_cast<int>(N), static_cast<int>(K), 1, 1, static_cast<int>(O), 1, 1, 1, 1, 1, 1, 0, 0, 1, 1,
                  1, static_cast<int>(K), static_cast<int>(O), static_cast<int>(K), static_cast<int>(N)};
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  if (N <= 8) {
    const auto addr = reinterpret_cast<uintptr_t>(a.w);
    const int v = (a.row_bytes % 16 == 0 && addr % 16 == 0) ? 16 : (a.row_bytes % 4 == 0 && addr % 4 == 0) ? 4 : 1;
    const int nb = N == 1 ? 1 : N == 2 ? 2 : N <= 4 ? 4 : 8;
    if (code_bits == 4) launch_gemv<INT, 4>(nb, v, static_cast<int>(O), stream, a);
    else launch_gemv<INT, 8>(nb, v, static_cast<int>(O), stream, a);
  } else {
    launch_gemm<INT, true>(static_cast<int>(code_bits), stream, a);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return y;
}

template <bool INT>
torch::Tensor run_conv(const torch::Tensor& x, const torch::Tensor& packed, int64_t code_bits, const void* table,
                       const Epi& epi, const Quant& q, int64_t out_channels, int64_t kh, int64_t kw, int64_t stride_h,
                       int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dil_h, int64_t dil_w, int64_t groups) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), O = out_channels;
  const int64_t Cg = C / groups, Og = O / groups;
  const int64_t OH = (H + 2 * pad_h - dil_h * (kh - 1) - 1) / stride_h + 1;
  const int64_t OW = (W + 2 * pad_w - dil_w * (kw - 1) - 1) / stride_w + 1;
  auto y = torch::empty({N, O, OH, OW}, x.options());
  if (y.numel() == 0) return y;
  check_int_range(N * OH * OW, "batch * output pixels");
  check_int_range(C * H * W, "input elements per image");
  check_int_range(O * OH * OW, "output elements per image");
  check_int_range(packed.numel(), "packed size");

  KernelArgs a = kernel_args(x, packed, table, y, epi, q);
  a.s = ConvShape{static_cast<int>(N),       static_cast<int>(C),        static_cast<int>(H),
                  static_cast<int>(W),       static_cast<int>(O),        static_cast<int>(OH),
                  static_cast<int>(OW),      static_cast<int>(kh),       static_cast<int>(kw),
                  static_cast<int>(stride_h), static_cast<int>(stride_w), static_cast<int>(pad_h),
                  static_cast<int>(pad_w),   static_cast<int>(dil_h),    static_cast<int>(dil_w),
                  static_cast<int>(groups),  static_cast<int>(Cg),       static_cast<int>(Og),
                  static_cast<int>(Cg * kh * kw), static_cast<int>(N * OH * OW)};
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int ob = Og == 1 ? 1 : Og <= 4 ? 4 : 8;
  const int64_t kcap = ob == 1 ? DirectCfg<1>::KCAP : ob == 4 ? DirectCfg<4>::KCAP : DirectCfg<8>::KCAP;
  if (Og < 16 && kh * kw <= kcap) {
    if (code_bits == 4) launch_direct_cb<INT, 4>(ob, stream, a);
    else launch_direct_cb<INT, 8>(ob, stream, a);
  } else {
    launch_gemm<INT, false>(static_cast<int>(code_bits), stream, a);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return y;
}

void check_linear(const torch::Tensor& x) {
  TORCH_CHECK(x.dim() == 2, "shift kernels: linear x must be 2-D (N, in_features), got ", x.sizes());
}

void check_conv(const torch::Tensor& x, const torch::Tensor& packed, int64_t out_channels, int64_t kh, int64_t kw,
                int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dil_h, int64_t dil_w,
                int64_t groups) {
  TORCH_CHECK(x.dim() == 4, "shift kernels: conv2d x must be 4-D NCHW, got ", x.sizes());
  TORCH_CHECK(groups >= 1 && x.size(1) % groups == 0 && out_channels % groups == 0, "shift kernels: groups=", groups,
              " must divide in_channels=", x.size(1), " and out_channels=", out_channels);
  TORCH_CHECK(packed.dim() == 2 && packed.size(0) == out_channels, "shift kernels: packed has ",
              packed.dim() ? packed.size(0) : 0, " rows, out_channels is ", out_channels);
  TORCH_CHECK(kh >= 1 && kw >= 1, "shift kernels: kernel size must be positive (got ", kh, "x", kw, ")");
  TORCH_CHECK(stride_h >= 1 && stride_w >= 1, "shift kernels: stride must be positive (got ", stride_h, ",", stride_w, ")");
  TORCH_CHECK(dil_h >= 1 && dil_w >= 1, "shift kernels: dilation must be positive (got ", dil_h, ",", dil_w, ")");
  TORCH_CHECK(pad_h >= 0 && pad_w >= 0, "shift kernels: padding must be non-negative (got ", pad_h, ",", pad_w, ")");
  TORCH_CHECK(x.size(2) + 2 * pad_h >= dil_h * (kh - 1) + 1 && x.size(3) + 2 * pad_w >= dil_w * (kw - 1) + 1,
              "shift kernels: input ", x.size(2), "x", x.size(3), " (padded by ", pad_h, ",", pad_w,
              ") is smaller than the dilated kernel");
}

Quant make_quant(double in_scale, double lo, double hi) {
  TORCH_CHECK(lo <= hi, "shift kernels: lo (", lo, ") must not exceed hi (", hi, ")");
  return Quant{static_cast<float>(in_scale), static_cast<float>(lo), static_cast<float>(hi)};
}

Epi int_epi(const torch::Tensor& offset, double out_scale, const torch::Tensor& bias_float, int64_t O,
            const at::Device& device) {
  check_tensor(offset, "offset", at::kInt, device);
  TORCH_CHECK(offset.dim() == 1 && offset.size(0) == O, "shift kernels: offset must have shape (", O, ",), got ",
              offset.sizes());
  return Epi{nullptr, offset.data_ptr<int>(), optional_vector(bias_float, "bias_float", O, device),
             static_cast<float>(out_scale)};
}

}  // namespace

torch::Tensor linear_float(torch::Tensor x, torch::Tensor packed, int64_t code_bits, torch::Tensor values,
                           torch::Tensor bias) {
  check_linear(x);
  check_common(x, packed, code_bits, values, at::kFloat, "values", x.size(1));
  const c10::cuda::CUDAGuard guard(x.device());
  const Epi epi{optional_vector(bias, "bias", packed.size(0), x.device()), nullptr, nullptr, 1.0f};
  return run_linear<false>(x, packed, code_bits, values.data_ptr<float>(), epi, Quant{1.0f, 0.0f, 0.0f});
}

torch::Tensor linear_int(torch::Tensor x, torch::Tensor packed, int64_t code_bits, torch::Tensor shifts,
                         double in_scale, double lo, double hi, torch::Tensor offset, double out_scale,
                         torch::Tensor bias_float) {
  check_linear(x);
  check_common(x, packed, code_bits, shifts, at::kInt, "shifts", x.size(1));
  const c10::cuda::CUDAGuard guard(x.device());
  const Epi epi = int_epi(offset, out_scale, bias_float, packed.size(0), x.device());
  return run_linear<true>(x, packed, code_bits, shifts.data_ptr<int>(), epi, make_quant(in_scale, lo, hi));
}

torch::Tensor conv2d_float(torch::Tensor x, torch::Tensor packed, int64_t code_bits, torch::Tensor values,
                           torch::Tensor bias, int64_t out_channels, int64_t kh, int64_t kw, int64_t stride_h,
                           int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dil_h, int64_t dil_w,
                           int64_t groups) {
  check_conv(x, packed, out_channels, kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups);
  check_common(x, packed, code_bits, values, at::kFloat, "values", x.size(1) / groups * kh * kw);
  const c10::cuda::CUDAGuard guard(x.device());
  const Epi epi{optional_vector(bias, "bias", out_channels, x.device()), nullptr, nullptr, 1.0f};
  return run_conv<false>(x, packed, code_bits, values.data_ptr<float>(), epi, Quant{1.0f, 0.0f, 0.0f}, out_channels,
                         kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups);
}

torch::Tensor conv2d_int(torch::Tensor x, torch::Tensor packed, int64_t code_bits, torch::Tensor shifts,
                         double in_scale, double lo, double hi, torch::Tensor offset, double out_scale,
                         torch::Tensor bias_float, int64_t out_channels, int64_t kh, int64_t kw, int64_t stride_h,
                         int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dil_h, int64_t dil_w,
                         int64_t groups) {
  check_conv(x, packed, out_channels, kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups);
  check_common(x, packed, code_bits, shifts, at::kInt, "shifts", x.size(1) / groups * kh * kw);
  const c10::cuda::CUDAGuard guard(x.device());
  const Epi epi = int_epi(offset, out_scale, bias_float, out_channels, x.device());
  return run_conv<true>(x, packed, code_bits, shifts.data_ptr<int>(), epi, make_quant(in_scale, lo, hi), out_channels,
                        kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("linear_float", &linear_float, "shift linear, float mode, packed codes (CUDA)", py::arg("x"),
        py::arg("packed"), py::arg("code_bits"), py::arg("values"), py::arg("bias"));
  m.def("linear_int", &linear_int, "shift linear, integer mode, packed codes (CUDA)", py::arg("x"), py::arg("packed"),
        py::arg("code_bits"), py::arg("shifts"), py::arg("in_scale"), py::arg("lo"), py::arg("hi"), py::arg("offset"),
        py::arg("out_scale"), py::arg("bias_float"));
  m.def("conv2d_float", &conv2d_float, "shift conv2d, float mode, packed codes (CUDA)", py::arg("x"),
        py::arg("packed"), py::arg("code_bits"), py::arg("values"), py::arg("bias"), py::arg("out_channels"),
        py::arg("kh"), py::arg("kw"), py::arg("stride_h"), py::arg("stride_w"), py::arg("pad_h"), py::arg("pad_w"),
        py::arg("dil_h"), py::arg("dil_w"), py::arg("groups"));
  m.def("conv2d_int", &conv2d_int, "shift conv2d, integer mode, packed codes (CUDA)", py::arg("x"), py::arg("packed"),
        py::arg("code_bits"), py::arg("shifts"), py::arg("in_scale"), py::arg("lo"), py::arg("hi"), py::arg("offset"),
        py::arg("out_scale"), py::arg("bias_float"), py::arg("out_channels"), py::arg("kh"), py::arg("kw"),
        py::arg("stride_h"), py::arg("stride_w"), py::arg("pad_h"), py::arg("pad_w"), py::arg("dil_h"),
        py::arg("dil_w"), py::arg("groups"));
}
