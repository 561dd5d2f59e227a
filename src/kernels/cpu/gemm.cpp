// gemm: y[m, n] = sum_k x[m, k] * w[n, k] (+ bias[n]), f32 activations, f32/bf16/f16 or packed
// (block-quantized, core/block_quant.h) weights, f32 accumulation.
//
// Algorithm: register-blocked inner products. A tile of MR rows x NR columns keeps one logical
// 8-lane accumulator per output and walks K in 8-wide chunks, so each weight chunk loaded is
// reused by MR rows and each activation chunk by NR columns; decode with a batch streams the
// weights once per step. Every output, whatever tile shape or tail computes it, gets the same
// instruction sequence: fused multiply-adds over k in ascending chunks, a zero-padded K tail,
// then the fixed 8-lane tree of simd-inl.h, then + bias (R1, R2). Threads split N into
// contiguous tile ranges, never K. Up to 16 rows (decode) the weights stream once, each column
// tile serving all row tiles from L1. bf16/f16 weights widen to f32 in registers; for M > 16 a
// weight block is widened once into a scratch panel and reused, which is exact and therefore
// changes no bits. Packed weights are decoded (decode-inl.h, bit for bit core's decode_to_f32)
// into an f32 scratch before the same f32 tiles run on them: up to 16 rows, the NR rows of one
// column tile at a time (in L1, serving every row tile); beyond, a cache block of rows, as the
// 16-bit panel. Up to 8 rows (decode steps), blocks of 32 (q8_0, q4_0, q4_1) are instead decoded
// in registers, two weight rows per AVX-512 vector, and multiplied as they come, with the same
// per-output instruction sequence. So a packed GEMM gives the bits of the f32 GEMM over the
// decoded weights, for every M and thread count.
//   M = rows (tokens), N = output features, K = input features, MR x NR = register tile
#include <algorithm>
#include <array>
#include <cassert>
#include <cstdlib>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels/cpu/ops.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/gemm.cpp"
#include "kernels/cpu/simd_targets.h"
// clang-format off
#include <hwy/foreach_target.h>
#include <hwy/highway.h>
// clang-format on
#include "kernels/cpu/decode-inl.h"
#include "kernels/cpu/simd-inl.h"

HWY_BEFORE_NAMESPACE();
namespace invar::kernels::cpu {
namespace HWY_NAMESPACE {

// Register tile: accumulators take about three quarters of the vector registers.
#if HWY_TARGET == HWY_SCALAR
constexpr size_t kMr = 2, kNr = 2;
#elif HWY_MAX_BYTES >= 64
constexpr size_t kMr = 4, kNr = 6;  // AVX-512: 32 registers (256-bit vectors used)
#else
constexpr size_t kMr = 4, kNr = 3;  // AVX2: 16 registers; NEON: kSub = 2
#endif

// Weight columns per cache block: the block is re-read from L2 by every row tile.
constexpr size_t kBlockBytes = 192 * 1024;
// Up to this many rows (decode batches) the weights stream from memory exactly once, column
// tile by column tile, each tile serving every row tile while it is in L1.
constexpr size_t kStreamRows = 16;
// How many column tiles ahead the streaming loop prefetches.
constexpr size_t kPfTiles = 2;

// One MR x NR tile over the full K. `next`, if set, is a later tile's weights, prefetched into
// L2 (L1 holds this tile and x) at the pace this tile's are consumed: a decode step streams W
// from memory, and the hardware prefetcher alone restarts too slowly at every tile. (A GCC/Clang
// builtin: Highway 1.0's Prefetch only targets L1.)
template <size_t MR, size_t NR, typename WT>
HWY_NOINLINE void gemm_tile(const float* HWY_RESTRICT x,                   // [MR, K], row stride K
                            const WT* HWY_RESTRICT w,                      // [NR, K], row stride K
                            size_t k_dim, const float* HWY_RESTRICT bias,  // [NR] or null
                            float* HWY_RESTRICT y, size_t ldy,             // [MR, ldy]
                            const WT* next) {
  constexpr size_t kSlots = (MR * NR + 7) / 8 * 8;
  constexpr size_t kPfBytes = NR * kChunk * sizeof(WT);  // next-tile bytes per k chunk
  Acc8 acc[kSlots];
  for (size_t i = 0; i < kSlots; ++i) acc[i] = zero8();

  const char* pf = reinterpret_cast<const char*>(next);
  size_t k = 0;
  for (; k + kChunk <= k_dim; k += kChunk) {
    if (pf) {
      for (size_t b = 0; b < kPfBytes; b += 64) __builtin_prefetch(pf + b, 0, 2);
      pf += kPfBytes;
    }
    Acc8 wv[NR];
    for (size_t n = 0; n < NR; ++n) wv[n] = load8(w + n * k_dim + k);
    for (size_t m = 0; m < MR; ++m) {
      const Acc8 xv = load8(x + m * k_dim + k);
      for (size_t n = 0; n < NR; ++n) fma8(xv, wv[n], acc[m * NR + n]);
    }
  }
  if (k < k_dim) {  // K tail: the same fma on a zero-padded chunk, for every row and column
    const size_t rest = k_dim - k;
    Acc8 wv[NR];
    for (size_t n = 0; n < NR; ++n) wv[n] = load8_tail(w + n * k_dim + k, rest);
    for (size_t m = 0; m < MR; ++m) {
      const Acc8 xv = load8_tail(x + m * k_dim + k, rest);
      for (size_t n = 0; n < NR; ++n) fma8(xv, wv[n], acc[m * NR + n]);
    }
  }

  float sums[kSlots];
  for (size_t g = 0; g < kSlots; g += 8) reduce8x8(acc + g, sums + g);
  for (size_t m = 0; m < MR; ++m) {
    for (size_t n = 0; n < NR; ++n) {
      float v = sums[m * NR + n];
      if (bias) v += bias[n];
      y[m * ldy + n] = v;
    }
  }
}

template <typename WT>
using TileFn = void (*)(const float*, const WT*, size_t, const float*, float*, size_t, const WT*);

template <typename WT, size_t... I>
constexpr std::array<TileFn<WT>, sizeof...(I)> make_tiles(std::index_sequence<I...>) {
  return {&gemm_tile<I / kNr + 1, I % kNr + 1, WT>...};
}

// tiles[(mr - 1) * kNr + (nr - 1)] computes an mr x nr tile.
template <typename WT>
HWY_INLINE const TileFn<WT>* tile_table() {
  static constexpr auto kTable = make_tiles<WT>(std::make_index_sequence<kMr * kNr>());
  return kTable.data();
}

// Row tiles over one block of columns: the block stays in cache while rows stream past it.
template <typename WT>
HWY_INLINE void gemm_block(const float* x, const WT* w, const float* bias, float* y, size_t m_dim,
                           size_t n_dim, size_t k_dim, size_t n0, size_t n1) {
  const TileFn<WT>* tiles = tile_table<WT>();
  for (size_t m0 = 0; m0 < m_dim; m0 += kMr) {
    const size_t mr = std::min(kMr, m_dim - m0);
    for (size_t n = n0; n < n1; n += kNr) {
      const size_t nr = std::min(kNr, n1 - n);
      tiles[(mr - 1) * kNr + (nr - 1)](x + m0 * k_dim, w + (n - n0) * k_dim, k_dim,
                                       bias ? bias + n : nullptr, y + m0 * n_dim + n, n_dim,
                                       nullptr);
    }
  }
}

// Columns [c0, c1) of y, for all rows.
template <typename WT>
void gemm_columns(const float* x, const WT* w, const float* bias, float* y, size_t m_dim,
                  size_t n_dim, size_t k_dim, size_t c0, size_t c1) {
  if (m_dim <= kStreamRows) {
    const TileFn<WT>* tiles = tile_table<WT>();
    for (size_t n = c0; n < c1; n += kNr) {
      const size_t nr = std::min(kNr, c1 - n);
      for (size_t m0 = 0; m0 < m_dim; m0 += kMr) {
        const size_t mr = std::min(kMr, m_dim - m0);
        // The first row tile prefetches kPfTiles column tiles ahead; the others hit in cache.
        const WT* next =
            m0 == 0 && n + (kPfTiles + 1) * kNr <= c1 ? w + (n + kPfTiles * kNr) * k_dim : nullptr;
        tiles[(mr - 1) * kNr + (nr - 1)](x + m0 * k_dim, w + n * k_dim, k_dim,
                                         bias ? bias + n : nullptr, y + m0 * n_dim + n, n_dim,
                                         next);
      }
    }
    return;
  }
  const size_t block = std::max(kNr, (kBlockBytes / (k_dim * sizeof(float))) / kNr * kNr);
  for (size_t n0 = c0; n0 < c1; n0 += block) {
    const size_t n1 = std::min(n0 + block, c1);
    const WT* wb = w + n0 * k_dim;
    if constexpr (std::is_same_v<WT, float>) {
      gemm_block<float>(x, wb, bias, y, m_dim, n_dim, k_dim, n0, n1);
    } else {
      // Widen the 16-bit block to f32 once (exact) and let every row tile reuse it.
      thread_local std::vector<float> panel;  // per-thread scratch, reused across calls
      const size_t count = (n1 - n0) * k_dim;
      if (panel.size() < count) panel.resize(block * k_dim);
      size_t i = 0;
      for (; i + kChunk <= count; i += kChunk) store8(load8(wb + i), panel.data() + i);
      if (i < count) {
        alignas(32) float t[kChunk];
        store8(load8_tail(wb + i, count - i), t);
        std::copy(t, t + (count - i), panel.data() + i);
      }
      gemm_block<float>(x, panel.data(), bias, y, m_dim, n_dim, k_dim, n0, n1);
    }
  }
}

// Columns [c0, c1) of y, for all rows, from packed rows of row_bytes each: decoded to f32 (the
// decoder's bits are core's decode_to_f32), then the f32 tiles, so the recipe is the f32 one.
void gemm_columns_packed(const float* x, const uint8_t* w, size_t row_bytes, DecodeRowFn decode,
                         const float* bias, float* y, size_t m_dim, size_t n_dim, size_t k_dim,
                         size_t c0, size_t c1) {
  thread_local std::vector<float> panel;  // per-thread scratch, reused across calls
  if (m_dim <= kStreamRows) {
    // One column tile at a time: its NR decoded rows stay in L1 for every row tile.
    if (panel.size() < kNr * k_dim) panel.resize(kNr * k_dim);
    const TileFn<float>* tiles = tile_table<float>();
    for (size_t n = c0; n < c1; n += kNr) {
      const size_t nr = std::min(kNr, c1 - n);
      for (size_t r = 0; r < nr; ++r)
        decode(w + (n + r) * row_bytes, k_dim, panel.data() + r * k_dim);
      for (size_t m0 = 0; m0 < m_dim; m0 += kMr) {
        const size_t mr = std::min(kMr, m_dim - m0);
        tiles[(mr - 1) * kNr + (nr - 1)](x + m0 * k_dim, panel.data(), k_dim,
                                         bias ? bias + n : nullptr, y + m0 * n_dim + n, n_dim,
                                         nullptr);
      }
    }
    return;
  }
  const size_t block = std::max(kNr, (kBlockBytes / (k_dim * sizeof(float))) / kNr * kNr);
  if (panel.size() < block * k_dim) panel.resize(block * k_dim);
  for (size_t n0 = c0; n0 < c1; n0 += block) {
    const size_t n1 = std::min(n0 + block, c1);
    for (size_t r = n0; r < n1; ++r)
      decode(w + r * row_bytes, k_dim, panel.data() + (r - n0) * k_dim);
    gemm_block<float>(x, panel.data(), bias, y, m_dim, n_dim, k_dim, n0, n1);
  }
}

// ---------------------------------------------------------------- packed, decode steps
// Up to kPairRows activation rows, blocks of 32 (q8_0, q4_0, q4_1) are decoded in registers, two
// weight rows per Pair (decode-inl.h), and multiplied as they come: no decoded row goes through
// memory, and one AVX-512 instruction carries two rows' 8-lane chains. Each output is the same
// fused multiply-add chain over k ascending, then the same reduce8x8 tree and + bias, as
// gemm_tile's over decode_row's floats: the same bits (R2; packed_test checks M = 1..65 against
// M = 1 and against the f32 gemm over the decoded weights). A column tile of kPairCols weight
// rows serves row tiles of up to 4 activation rows, decoded again for each (from L1).
constexpr size_t kPairRows = 8;

// Pairs per call: the accumulators and a block's activation chunks fit in the registers.
template <size_t MR>
constexpr size_t pairs_per_tile() {
  if constexpr (kWSub == 1) return MR <= 2 ? 4 : 2;
  return MR == 1 ? 2 : 1;
}
constexpr size_t kPairCols = 2 * pairs_per_tile<1>();  // weight rows per column tile
// Column tiles ahead that are prefetched into L2, at the pace this one is consumed.
constexpr size_t kPairPfTiles = 1;

// out[m, i] = sum over k of x[m, k] * (decoded row i), for the 2 NP rows (a, b of each pair).
// `next`, if set, is a later column tile (kPairCols contiguous rows), prefetched into L2.
template <size_t MR, size_t NP, class Codec>
HWY_NOINLINE void gemm_pairs_tile(const float* HWY_RESTRICT x,  // [MR, K], row stride K
                                  size_t k_dim,
                                  const uint8_t* const* rows,  // [2 NP] packed rows
                                  float* HWY_RESTRICT out,     // [MR, ldo]
                                  size_t ldo, const uint8_t* next) {
  constexpr size_t kPfBytes = kPairCols * Codec::kBytes;  // next-tile bytes per block
  const char* pf = reinterpret_cast<const char*>(next);
  Pair acc[MR][NP];
  for (size_t m = 0; m < MR; ++m)
    for (size_t p = 0; p < NP; ++p) acc[m][p] = zero_pair();
  const uint8_t* r[2 * NP];
  for (size_t i = 0; i < 2 * NP; ++i) r[i] = rows[i];
  for (size_t k = 0; k < k_dim; k += 32) {
    if (pf) {
      for (size_t b = 0; b < kPfBytes; b += 64) __builtin_prefetch(pf + b, 0, 2);
      pf += kPfBytes;
    }
    for (size_t p = 0; p < NP; ++p) {
      Pair w[4];
      Codec::decode(r[2 * p], r[2 * p + 1], w);
      for (size_t c = 0; c < 4; ++c)
        for (size_t m = 0; m < MR; ++m) fma_pair(dup8(x + m * k_dim + k + 8 * c), w[c], acc[m][p]);
    }
    for (size_t i = 0; i < 2 * NP; ++i) r[i] += Codec::kBytes;
  }
  constexpr size_t kOut = MR * 2 * NP, kSlots = (kOut + 7) / 8 * 8;
  Acc8 a8[kSlots];
  for (size_t m = 0; m < MR; ++m)
    for (size_t p = 0; p < NP; ++p)
      split_pair(acc[m][p], a8[m * 2 * NP + 2 * p], a8[m * 2 * NP + 2 * p + 1]);
  for (size_t i = kOut; i < kSlots; ++i) a8[i] = zero8();
  float sums[kSlots];
  for (size_t g = 0; g < kSlots; g += 8) reduce8x8(a8 + g, sums + g);
  for (size_t m = 0; m < MR; ++m)
    for (size_t i = 0; i < 2 * NP; ++i) out[m * ldo + i] = sums[m * 2 * NP + i];
}

// out[m, 0 .. 2 pairs) for MR activation rows: calls of pairs_per_tile<MR>() pairs, then single
// pairs.
template <class Codec, size_t MR>
void gemm_pairs_rows(const float* x, size_t k_dim, const uint8_t* const* rows, size_t pairs,
                     float* out, const uint8_t* next) {
  constexpr size_t kNp = pairs_per_tile<MR>();
  size_t p = 0;
  for (; p + kNp <= pairs; p += kNp, next = nullptr)
    gemm_pairs_tile<MR, kNp, Codec>(x, k_dim, rows + 2 * p, out + 2 * p, 2 * pairs, next);
  for (; p < pairs; ++p, next = nullptr)
    gemm_pairs_tile<MR, 1, Codec>(x, k_dim, rows + 2 * p, out + 2 * p, 2 * pairs, next);
}

// Columns [c0, c1) of y for all m_dim <= kPairRows rows: column tiles of kPairCols weight rows
// (an odd last row paired with itself), each serving row tiles of up to 4 rows.
template <class Codec>
void gemm_pairs_columns(const float* x, const uint8_t* w, size_t row_bytes, const float* bias,
                        float* y, size_t m_dim, size_t n_dim, size_t k_dim, size_t c0, size_t c1) {
  const uint8_t* rows[kPairCols];
  float out[4 * kPairCols];
  for (size_t n = c0; n < c1; n += kPairCols) {
    const size_t cols = std::min(kPairCols, c1 - n), pairs = (cols + 1) / 2;
    for (size_t i = 0; i < 2 * pairs; ++i) rows[i] = w + (n + std::min(i, cols - 1)) * row_bytes;
    const uint8_t* next = n + (kPairPfTiles + 1) * kPairCols <= c1
                              ? w + (n + kPairPfTiles * kPairCols) * row_bytes
                              : nullptr;
    for (size_t m0 = 0; m0 < m_dim; m0 += 4) {
      const size_t mr = std::min<size_t>(4, m_dim - m0);
      const float* xm = x + m0 * k_dim;
      const uint8_t* pf = m0 == 0 ? next : nullptr;
      switch (mr) {
        case 1:
          gemm_pairs_rows<Codec, 1>(xm, k_dim, rows, pairs, out, pf);
          break;
        case 2:
          gemm_pairs_rows<Codec, 2>(xm, k_dim, rows, pairs, out, pf);
          break;
        case 3:
          gemm_pairs_rows<Codec, 3>(xm, k_dim, rows, pairs, out, pf);
          break;
        default:
          gemm_pairs_rows<Codec, 4>(xm, k_dim, rows, pairs, out, pf);
          break;
      }
      for (size_t m = 0; m < mr; ++m) {
        for (size_t i = 0; i < cols; ++i) {
          float v = out[m * 2 * pairs + i];
          if (bias) v += bias[n + i];
          y[(m0 + m) * n_dim + n + i] = v;
        }
      }
    }
  }
}

using PairColumnsFn = void (*)(const float*, const uint8_t*, size_t, const float*, float*, size_t,
                               size_t, size_t, size_t, size_t);

// The in-register path for m rows of type t, or nullptr (then decode_row and the f32 tiles).
PairColumnsFn pair_columns_fn(DType t, int64_t m) {
  if constexpr (!kHasPairs) return nullptr;
  if (m > int64_t(kPairRows)) return nullptr;
  switch (t) {
    case DType::q8_0:
      return &gemm_pairs_columns<PairQ8_0>;
    case DType::q4_0:
      return &gemm_pairs_columns<PairQ4_0>;
    case DType::q4_1:
      return &gemm_pairs_columns<PairQ4_1>;
    default:
      return nullptr;
  }
}

// Threads only for chunks of at least ~80 us: waking and joining a worker costs tens of
// microseconds, so a small decode gemm runs faster on one core. A column tile costs about its
// weight bytes at 20 GB/s, plus its decode for packed weights (~2 G elements/s), plus its
// multiply-adds at 50 G/s (one core, measured).
int64_t column_tile_grain(int64_t m, int64_t k, double weight_bytes_per_elem, bool packed) {
  const double tile_us = double(kNr) * double(k) * weight_bytes_per_elem / 20e3 +
                         (packed ? double(kNr) * double(k) / 2e3 : 0.0) +
                         double(m) * double(kNr) * double(k) / 50e3;
  return std::max<int64_t>(1, int64_t(80.0 / tile_us));
}

template <typename WT>
void gemm_typed(const float* x, const WT* w, const float* bias, int64_t m, int64_t n, int64_t k,
                float* y, ThreadPool& pool) {
  const int64_t n_tiles = (n + int64_t(kNr) - 1) / int64_t(kNr);
  const int64_t grain = column_tile_grain(m, k, double(sizeof(WT)), false);
  pool.parallel_for(n_tiles, grain, [&](int64_t b, int64_t e) HWY_ATTR {
    const size_t c0 = size_t(b) * kNr;
    const size_t c1 = std::min(size_t(e) * kNr, size_t(n));
    gemm_columns<WT>(x, w, bias, y, size_t(m), size_t(n), size_t(k), c0, c1);
  });
}

void gemm_packed(const float* x, const WeightRef& w, const float* bias, int64_t m, float* y,
                 ThreadPool& pool) {
  const DecodeRowFn decode = decode_row_fn(w.dtype);
  const uint8_t* wb = static_cast<const uint8_t*>(w.data);
  const size_t row_bytes = dtype_row_bytes(w.dtype, w.cols);
  const int64_t n = w.rows, k = w.cols;
  const int64_t n_tiles = (n + int64_t(kNr) - 1) / int64_t(kNr);
  const int64_t grain = column_tile_grain(m, k, double(row_bytes) / double(k), true);
  if (const PairColumnsFn pairs = pair_columns_fn(w.dtype, m)) {
    const int64_t pair_tiles = (n + int64_t(kPairCols) - 1) / int64_t(kPairCols);
    const int64_t pair_grain = std::max<int64_t>(1, grain * int64_t(kNr) / int64_t(kPairCols));
    pool.parallel_for(pair_tiles, pair_grain, [&](int64_t b, int64_t e) HWY_ATTR {
      const size_t c0 = size_t(b) * kPairCols;
      const size_t c1 = std::min(size_t(e) * kPairCols, size_t(n));
      pairs(x, wb, row_bytes, bias, y, size_t(m), size_t(n), size_t(k), c0, c1);
    });
    return;
  }
  pool.parallel_for(n_tiles, grain, [&](int64_t b, int64_t e) HWY_ATTR {
    const size_t c0 = size_t(b) * kNr;
    const size_t c1 = std::min(size_t(e) * kNr, size_t(n));
    gemm_columns_packed(x, wb, row_bytes, decode, bias, y, size_t(m), size_t(n), size_t(k), c0, c1);
  });
}

void gemm_impl(const float* x, const WeightRef& w, const float* bias, int64_t m, float* y,
               ThreadPool& pool) {
  switch (w.dtype) {
    case DType::f32:
      return gemm_typed(x, static_cast<const float*>(w.data), bias, m, w.rows, w.cols, y, pool);
    case DType::bf16:
      return gemm_typed(x, static_cast<const Bf16*>(w.data), bias, m, w.rows, w.cols, y, pool);
    case DType::f16:
      return gemm_typed(x, static_cast<const F16*>(w.data), bias, m, w.rows, w.cols, y, pool);
    case DType::q8_0:
    case DType::q4_0:
    case DType::q4_1:
    case DType::q2_k:
    case DType::q3_k:
    case DType::q4_k:
    case DType::q5_k:
    case DType::q6_k:
      return gemm_packed(x, w, bias, m, y, pool);
  }
}

// out[r, :] = the f32 decode of packed row r (the test hook of decode-inl.h).
void decode_rows_impl(DType t, const uint8_t* src, int64_t rows, int64_t cols, float* out) {
  const DecodeRowFn decode = decode_row_fn(t);
  const size_t row_bytes = dtype_row_bytes(t, cols);
  for (int64_t r = 0; r < rows; ++r)
    decode(src + size_t(r) * row_bytes, size_t(cols), out + r * cols);
}

}  // namespace HWY_NAMESPACE
}  // namespace invar::kernels::cpu
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace invar::kernels::cpu {

HWY_EXPORT(gemm_impl);
HWY_EXPORT(decode_rows_impl);

void decode_rows(DType t, const uint8_t* src, int64_t rows, int64_t cols, float* out) {
  assert(dtype_is_packed(t) && cols % dtype_block(t).elems == 0);
  HWY_DYNAMIC_DISPATCH(decode_rows_impl)(t, src, rows, cols, out);
}

void gemm(const float* x, const WeightRef& w, const float* bias, int64_t m, float* y,
          ThreadPool& pool) {
  if (m <= 0 || w.rows <= 0) return;
  if (w.cols <= 0) {  // empty reduction
    for (int64_t r = 0; r < m; ++r)
      for (int64_t c = 0; c < w.rows; ++c) y[r * w.rows + c] = bias ? bias[c] : 0.0f;
    return;
  }
  HWY_DYNAMIC_DISPATCH(gemm_impl)(x, w, bias, m, y, pool);
}

}  // namespace invar::kernels::cpu
#endif
