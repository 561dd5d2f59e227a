// The per-query arithmetic of the CUDA attention recipe (R3, attention.h), shared by every
// attention kernel: the mma.sync kernel (attention.cu: decode, split CTAs, and prefill by default)
// and the wgmma kernel (sm90/attention_sm90.cu: prefill on Hopper). Both call these functions,
// so a row's softmax, rescale, P rounding and split fold are one instruction sequence whichever
// kernel computes it; only the matrix products differ in instruction (mma.sync m16n8k16 or
// wgmma m64nNk16), and those give equal bits for equal k-ordered chains (measured on an H100,
// bench/results/attention-notes.md).
//   Fragment legend: a warp owns 16 rows of a score tile; lane holds rows lane / 4 (h = 0) and
//   lane / 4 + 8 (h = 1), columns 8j + 2 (lane % 4) + {0, 1}; s[j][2h + e] is (row h, column
//   8j + 2 (lane % 4) + e). This is mma.sync's m16n8 accumulator and, per warp, wgmma's m64nN.
// Device code only; every operation has an explicit rounding (_rn intrinsics, ex2 in asm) so
// no contraction or reassociation is left to the compiler.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

namespace invar::kernels::cuda::attn {

__device__ __forceinline__ float ex2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
}

// The largest of row h's 2 kN8 values of a lane (the fragment legend), as a tree: 4 levels of
// dependent instructions for a 64-position tile instead of a 16-long chain. Any order gives the
// same bits: max is exact, and fmaxf drops a NaN operand whatever its place.
template <int kN8>
__device__ __forceinline__ float tree_max(const float (&s)[kN8][4], int h) {
  float t[kN8];
#pragma unroll
  for (int j = 0; j < kN8; ++j) t[j] = fmaxf(s[j][2 * h], s[j][2 * h + 1]);
#pragma unroll
  for (int w = 1; w < kN8; w *= 2) {
#pragma unroll
    for (int j = 0; j + w < kN8; j += 2 * w) t[j] = fmaxf(t[j], t[j + w]);
  }
  return t[0];
}

// One KV tile of 8 * kN8 positions starting at absolute position tile_start: scores s (raw
// Q K^T, f32) become p = 2^(s * scale_log2 - m_new) in place, masked positions (past the row's
// own position: causal) exactly 0; the row state (m, l) is updated and the accumulator factor
// alpha returned in al[h]. pos0 / pos1: absolute positions of the lane's two rows (-1 for padding
// rows). A row whose positions ended before this tile is left as it was (alpha = 1, p = 0).
// kMask = false is for a tile whose every position lies at or before both of the lane's rows'
// positions (the caller checks): the mask would keep every score, so leaving it out gives the
// same bits with fewer instructions.
template <int kN8, bool kMask = true>
__device__ __forceinline__ void softmax_tile(float (&s)[kN8][4], int tile_start, int pos0, int pos1,
                                             float scale_log2, float (&m)[2], float (&l)[2],
                                             float (&al)[2], int lane) {
  // Scale into base 2, mask positions past the row's own (causal; exact -inf), row max.
  const int col0 = tile_start + 2 * (lane & 3);
#pragma unroll
  for (int j = 0; j < kN8; ++j) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      if constexpr (kMask) {
        const int kp = col0 + j * 8 + e;
        s[j][e] = kp <= pos0 ? __fmul_rn(s[j][e], scale_log2) : -INFINITY;
        s[j][2 + e] = kp <= pos1 ? __fmul_rn(s[j][2 + e], scale_log2) : -INFINITY;
      } else {
        s[j][e] = __fmul_rn(s[j][e], scale_log2);
        s[j][2 + e] = __fmul_rn(s[j][2 + e], scale_log2);
      }
    }
  }
  float mx0 = tree_max<kN8>(s, 0), mx1 = tree_max<kN8>(s, 1);
  mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
  mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
  mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
  mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
  const bool act0 = !kMask || tile_start <= pos0, act1 = !kMask || tile_start <= pos1;
  const float mn0 = fmaxf(m[0], mx0), mn1 = fmaxf(m[1], mx1);
  const float mu0 = mn0 == -INFINITY ? 0.0f : mn0;
  const float mu1 = mn1 == -INFINITY ? 0.0f : mn1;
  // An inactive row (its positions ended in an earlier tile) keeps its state: alpha = 1, p = 0.
  al[0] = act0 ? ex2(__fsub_rn(m[0], mu0)) : 1.0f;
  al[1] = act1 ? ex2(__fsub_rn(m[1], mu1)) : 1.0f;
  // p = 2^(s - m); masked s = -inf gives p = 0 exactly. Row sums: the lane's values in order,
  // then the quad's fixed tree.
  float rs0 = 0.0f, rs1 = 0.0f;
#pragma unroll
  for (int j = 0; j < kN8; ++j) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      s[j][e] = ex2(__fsub_rn(s[j][e], mu0));
      s[j][2 + e] = ex2(__fsub_rn(s[j][2 + e], mu1));
      rs0 = __fadd_rn(rs0, s[j][e]);
      rs1 = __fadd_rn(rs1, s[j][2 + e]);
    }
  }
  rs0 = __fadd_rn(rs0, __shfl_xor_sync(0xffffffffu, rs0, 1));
  rs0 = __fadd_rn(rs0, __shfl_xor_sync(0xffffffffu, rs0, 2));
  rs1 = __fadd_rn(rs1, __shfl_xor_sync(0xffffffffu, rs1, 1));
  rs1 = __fadd_rn(rs1, __shfl_xor_sync(0xffffffffu, rs1, 2));
  if (act0) {
    l[0] = __fmaf_rn(l[0], al[0], rs0);
    m[0] = mn0;
  }
  if (act1) {
    l[1] = __fmaf_rn(l[1], al[1], rs1);
    m[1] = mn1;
  }
}

// acc *= alpha of each row, before this tile's P V is added.
template <int kN8>
__device__ __forceinline__ void rescale(float (&acc)[kN8][4], const float (&al)[2]) {
#pragma unroll
  for (int n = 0; n < kN8; ++n) {
    acc[n][0] = __fmul_rn(acc[n][0], al[0]);
    acc[n][1] = __fmul_rn(acc[n][1], al[0]);
    acc[n][2] = __fmul_rn(acc[n][2], al[1]);
    acc[n][3] = __fmul_rn(acc[n][3], al[1]);
  }
}

// P of k-step kk (positions 16kk..16kk+15 of the tile, score blocks 2kk and 2kk+1) rounded to
// bf16 as the m16k16 A fragment (mma.sync's, and wgmma's register A per warp).
template <int kN8>
__device__ __forceinline__ void p_fragment(const float (&s)[kN8][4], int kk, uint32_t (&a)[4]) {
  a[0] = pack_bf16(s[2 * kk][0], s[2 * kk][1]);
  a[1] = pack_bf16(s[2 * kk][2], s[2 * kk][3]);
  a[2] = pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]);
  a[3] = pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3]);
}

// The split fold, shared by the in-CTA folds and the merge kernel: the same operations in the
// same order (explicit _rn intrinsics: no contraction choice left to the compiler).
//   M' = max(M, m); a = 2^(M - M'); b = 2^(m - M'); L' = L a + l b; O' = O a + acc b
__device__ __forceinline__ void fold_weights(float& M, float& L, float m, float l, float& a,
                                             float& b) {
  const float mn = fmaxf(M, m);
  a = ex2(__fsub_rn(M, mn));  // M = -inf (first split): a = 0
  b = ex2(__fsub_rn(m, mn));
  L = __fmaf_rn(L, a, __fmul_rn(l, b));
  M = mn;
}
__device__ __forceinline__ float fold_value(float o, float acc, float a, float b) {
  return __fmaf_rn(acc, b, __fmul_rn(o, a));
}
__device__ __forceinline__ float finish(float o, float L) {
  return __fdiv_rn(o, L);
}

// ---- a lane's two rows at the end of a split, and at the end of a whole-row item -----------
// Shared by both kernels. A lane keeps n-blocks n0 .. n0 + kN8 - 1 of its rows' accumulators
// (every n-block, n0 = 0, but in attention.cu's spread CTA, whose warps split the dimensions).
// O of row h, value (local n-block n, e) lives at o[(4 n + 2 h + e) * o_stride].

// Where split items write their states for the merge kernel: m, l [records], acc [records, D].
struct SplitRecords {
  float* m;
  float* l;
  float* acc;
};

// The end of split `split` (first position split_start): a whole-row item (to_output) folds the
// split state (m, l, acc) into (M, L, O); a split item writes it as record
// record + row * record_stride + split. A row whose positions all lie before the split has
// nothing to fold or write. Then the split state restarts. write_ml: this lane writes m and l of
// its rows' records (one lane per row does).
template <int D, int kN8>
__device__ __forceinline__ void end_split(const int (&pos)[2], const int (&row)[2], int split,
                                          int split_start, bool to_output, float* o, int o_stride,
                                          float (&M)[2], float (&L)[2], float (&m)[2],
                                          float (&l)[2], float (&acc)[kN8][4], int n0,
                                          bool write_ml, const SplitRecords& out, int64_t record,
                                          int record_stride, int lane) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    if (pos[h] >= split_start && to_output) {
      float a, b;
      fold_weights(M[h], L[h], m[h], l[h], a, b);
#pragma unroll
      for (int n = 0; n < kN8; ++n) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          float& v = o[(n * 4 + 2 * h + e) * o_stride];
          v = fold_value(v, acc[n][2 * h + e], a, b);
        }
      }
    } else if (pos[h] >= split_start) {
      const int64_t rec = record + int64_t(row[h]) * record_stride + split;
      if (write_ml) {
        out.m[rec] = m[h];
        out.l[rec] = l[h];
      }
      float* dst = out.acc + rec * D + n0 * 8 + 2 * (lane & 3);
#pragma unroll
      for (int n = 0; n < kN8; ++n) {
        *reinterpret_cast<float2*>(dst + n * 8) = make_float2(acc[n][2 * h], acc[n][2 * h + 1]);
      }
    }
    m[h] = -INFINITY;
    l[h] = 0.0f;
#pragma unroll
    for (int n = 0; n < kN8; ++n) acc[n][2 * h] = acc[n][2 * h + 1] = 0.0f;
  }
}

// A whole-row item's output: O / L of the lane's rows, rounded to bf16. dst[h]: the row's
// output (its D values), nullptr for a padding row.
template <int kN8>
__device__ __forceinline__ void write_rows(__nv_bfloat16* const (&dst)[2], const float* o,
                                           int o_stride, const float (&L)[2], int n0, int lane) {
  const int col = 2 * (lane & 3);
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    if (!dst[h]) continue;
#pragma unroll
    for (int n = 0; n < kN8; ++n) {
      const float o0 = finish(o[(n * 4 + 2 * h) * o_stride], L[h]);
      const float o1 = finish(o[(n * 4 + 2 * h + 1) * o_stride], L[h]);
      *reinterpret_cast<__nv_bfloat162*>(dst[h] + (n0 + n) * 8 + col) =
          __floats2bfloat162_rn(o0, o1);
    }
  }
}

}  // namespace invar::kernels::cuda::attn
