// Paged causal GQA attention for mixed prefill/decode batches (interface and recipe:
// attention.h), its host-side planner, the split-merge kernel and kv_store.
//   S = sequences, T = tokens, Hq / Hkv = query / kv heads, G = Hq / Hkv, D = head dim,
//   row = one (token, q head) pair of a sequence and kv head: row r is token r / G, head r % G
//
// A CTA is 4 warps; warp w owns rows 16w..16w+15 of the CTA and every column of a KV tile, so a
// row's arithmetic (its mma chains, its max/sum trees over the 4 lanes of a quad, its softmax
// updates) is the same whichever rows share the CTA and however many warps have rows. All four
// warps load tiles (cp.async, two stages); warps without rows only load.
// Where a row's positions end before the CTA's last tile, the later tiles are no-ops for it by
// construction (no state update, alpha = 1, p = 0 exactly).
#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "core/hash.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/cuda_check.h"

namespace invar::kernels::cuda {
namespace {

using bf16 = __nv_bfloat16;

constexpr int kTile = kAttnKvTile;
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kRowsPerWarp = 16;
constexpr int kMaxRows = kWarps * kRowsPerWarp;  // rows per CTA
constexpr int kNoSplit = 1 << 30;                // split_tiles of fast-mode prefill: never fold
// SMs of a full H100/H200, for the invariant planner's CTA sizing: a constant, not the device's
// count (R5); the sizing never changes bits anyway (tests/cuda/attention_test.cu).
constexpr int64_t kHopperSms = 132;

// One CTA's work: rows [row_begin, row_begin + nrows) of sequence `seq` for one kv head, tiles
// [tile_begin, min(tile_end, last tile of the CTA's last row) ]. Split states (record >= 0):
// row r's state of split k goes to record + r * record_stride + k.
struct AttnItem {
  int32_t seq;
  int32_t q_begin;  // first token of the sequence in q / out
  int32_t q_len;
  int32_t kv_len;
  int32_t kv_head;
  int32_t row_begin;
  int32_t nrows;
  int32_t tile_begin;
  int32_t tile_end;
  int32_t split_tiles;  // fold period in tiles, counted from tile 0
  int32_t record;       // < 0: write the output; else the split states' base
  int32_t record_stride;
};

// Folds the split states of one sequence and kv head: row r's states are
// record + r * record_stride + k for k = 0 .. (P / kTile) / split_tiles.
struct MergeItem {
  int32_t q_begin;
  int32_t q_len;
  int32_t kv_len;
  int32_t kv_head;
  int32_t rows;
  int32_t record;
  int32_t record_stride;
  int32_t split_tiles;
};

struct AttnParams {
  const AttnItem* items;
  const bf16* q;
  int64_t q_stride;
  const bf16* k;
  const bf16* v;
  const int32_t* block_tables;
  int max_blocks;
  int block_size;
  int kv_heads;
  int group;
  float scale_log2;  // scale * log2(e): scores live in base 2
  bf16* out;
  int64_t out_stride;
  float* rec_m;    // [records]
  float* rec_l;    // [records]
  float* rec_acc;  // [records, D]
};

struct MergeParams {
  const MergeItem* items;
  int group;
  bf16* out;
  int64_t out_stride;
  const float* rec_m;
  const float* rec_l;
  const float* rec_acc;
};

// ---- device helpers -------------------------------------------------------------------------

__device__ __forceinline__ float ex2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return uint32_t(__cvta_generic_to_shared(p));
}

// 16-byte async copy; zero-fills the destination when !pred (src must still be a valid address).
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool pred) {
  const int n = pred ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n");
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// c += a (16x16, row) * b (16x8, col), bf16 in, f32 accumulate.
__device__ __forceinline__ void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                          uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
}

// The split fold, shared by the in-CTA fold and the merge kernel: the same operations in the
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

// One warp, one KV tile: scores of its 16 rows against the tile's 64 positions, the online
// softmax update and acc += P V. pos0 / pos1: absolute positions of this lane's two rows
// (lane / 4 and lane / 4 + 8; -1 for padding rows). The per-query work of decode and prefill.
template <int D>
__device__ __forceinline__ void attend_tile(const uint32_t (&qf)[D / 16][4], const bf16* sk,
                                            const bf16* sv, int tile_start, int pos0, int pos1,
                                            float scale_log2, float (&m)[2], float (&l)[2],
                                            float (&acc)[D / 8][4], int lane) {
  constexpr int kStride = D + 8;
  float s[kTile / 8][4];
#pragma unroll
  for (int j = 0; j < kTile / 8; ++j) {
    s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
  }
  // S = Q K^T: n-block j = positions 8j..8j+7, k over D in order.
#pragma unroll
  for (int j = 0; j < kTile / 8; ++j) {
#pragma unroll
    for (int kk = 0; kk < D / 16; kk += 2) {
      uint32_t b[4];
      ldmatrix_x4(b, smem_addr(sk + (j * 8 + (lane & 7)) * kStride + kk * 16 + (lane >> 3) * 8));
      mma_16816(s[j], qf[kk], b[0], b[1]);
      mma_16816(s[j], qf[kk + 1], b[2], b[3]);
    }
  }
  // Scale into base 2, mask positions past the row's own (causal; exact -inf), row max.
  const int col0 = tile_start + 2 * (lane & 3);
  float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
  for (int j = 0; j < kTile / 8; ++j) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int kp = col0 + j * 8 + e;
      s[j][e] = kp <= pos0 ? __fmul_rn(s[j][e], scale_log2) : -INFINITY;
      s[j][2 + e] = kp <= pos1 ? __fmul_rn(s[j][2 + e], scale_log2) : -INFINITY;
      mx0 = fmaxf(mx0, s[j][e]);
      mx1 = fmaxf(mx1, s[j][2 + e]);
    }
  }
  mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
  mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
  mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
  mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
  const bool act0 = tile_start <= pos0, act1 = tile_start <= pos1;
  const float mn0 = fmaxf(m[0], mx0), mn1 = fmaxf(m[1], mx1);
  const float mu0 = mn0 == -INFINITY ? 0.0f : mn0;
  const float mu1 = mn1 == -INFINITY ? 0.0f : mn1;
  // An inactive row (its positions ended in an earlier tile) keeps its state: alpha = 1, p = 0.
  const float al0 = act0 ? ex2(__fsub_rn(m[0], mu0)) : 1.0f;
  const float al1 = act1 ? ex2(__fsub_rn(m[1], mu1)) : 1.0f;
  // p = 2^(s - m); masked s = -inf gives p = 0 exactly. Row sums: 16 values of this lane in
  // order, then the quad's fixed tree.
  float rs0 = 0.0f, rs1 = 0.0f;
#pragma unroll
  for (int j = 0; j < kTile / 8; ++j) {
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
    l[0] = __fmaf_rn(l[0], al0, rs0);
    m[0] = mn0;
  }
  if (act1) {
    l[1] = __fmaf_rn(l[1], al1, rs1);
    m[1] = mn1;
  }
#pragma unroll
  for (int n = 0; n < D / 8; ++n) {
    acc[n][0] = __fmul_rn(acc[n][0], al0);
    acc[n][1] = __fmul_rn(acc[n][1], al0);
    acc[n][2] = __fmul_rn(acc[n][2], al1);
    acc[n][3] = __fmul_rn(acc[n][3], al1);
  }
  // acc += P V: k-step kk = positions 16kk..16kk+15 (score n-blocks 2kk, 2kk+1), in order.
#pragma unroll
  for (int kk = 0; kk < kTile / 16; ++kk) {
    uint32_t a[4];
    a[0] = pack_bf16(s[2 * kk][0], s[2 * kk][1]);
    a[1] = pack_bf16(s[2 * kk][2], s[2 * kk][3]);
    a[2] = pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]);
    a[3] = pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
    for (int n = 0; n < D / 8; n += 2) {
      uint32_t b[4];
      ldmatrix_x4_trans(b, smem_addr(sv + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * kStride +
                                     n * 8 + (lane >> 4) * 8));
      mma_16816(acc[n], a, b[0], b[1]);
      mma_16816(acc[n + 1], a, b[2], b[3]);
    }
  }
}

template <int D>
__host__ __device__ constexpr int kv_stage_elems() {
  return 2 * kTile * (D + 8);  // K and V tiles of one stage
}
template <int D>
constexpr size_t attention_smem_bytes() {
  // Two KV stages, then a region that holds Q while it is read into registers and the fold
  // state O ([D / 2, kThreads] f32, each thread its own column) after.
  constexpr size_t q_bytes = size_t(kMaxRows) * (D + 8) * 2;
  constexpr size_t o_bytes = size_t(D / 2) * kThreads * 4;
  return size_t(2) * kv_stage_elems<D>() * 2 + (q_bytes > o_bytes ? q_bytes : o_bytes);
}

template <int D>
__global__ void __launch_bounds__(kThreads) attention_kernel(const AttnParams p) {
  constexpr int kStride = D + 8;  // bf16 per smem row: 16-byte pad, conflict-free ldmatrix
  constexpr int kChunks = D / 8;  // 16-byte chunks per row
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* s_kv = reinterpret_cast<bf16*>(smem);
  unsigned char* s_qo = smem + size_t(2) * kv_stage_elems<D>() * 2;
  bf16* s_q = reinterpret_cast<bf16*>(s_qo);
  float* s_o = reinterpret_cast<float*>(s_qo);

  const AttnItem it = p.items[blockIdx.x];
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int G = p.group;
  const int first_pos = it.kv_len - it.q_len;
  const int max_pos = first_pos + (it.row_begin + it.nrows - 1) / G;  // the CTA's last row
  const int tile_lo = it.tile_begin;
  const int tile_hi = min(it.tile_end, max_pos / kTile + 1);
  const int32_t* table = p.block_tables + int64_t(it.seq) * p.max_blocks;
  const int bs = p.block_size;

  // Q rows of this CTA (padding rows zero-filled).
  for (int idx = tid; idx < kMaxRows * kChunks; idx += kThreads) {
    const int r = idx / kChunks, c = idx % kChunks;
    const bool ok = r < it.nrows;
    const bf16* src = p.q;
    if (ok) {
      const int rr = it.row_begin + r;
      src = p.q + int64_t(it.q_begin + rr / G) * p.q_stride + int64_t(it.kv_head * G + rr % G) * D +
            c * 8;
    }
    cp_async16(smem_addr(s_q + r * kStride + c * 8), src, ok);
  }
  cp_async_commit();

  // K/V tile `tile` into `stage`; positions past the CTA's last row are zero-filled, never read.
  auto load_tile = [&](int stage, int tile) {
    bf16* sk = s_kv + stage * kv_stage_elems<D>();
    bf16* sv = sk + kTile * kStride;
    for (int idx = tid; idx < kTile * kChunks; idx += kThreads) {
      const int i = idx / kChunks, c = idx % kChunks;
      const int pos = tile * kTile + i;
      const bool ok = pos <= max_pos;
      const bf16* ks = p.k;
      const bf16* vs = p.v;
      if (ok) {
        const int64_t slot = int64_t(table[pos / bs]) * bs + pos % bs;
        const int64_t off = (slot * p.kv_heads + it.kv_head) * D + c * 8;
        ks = p.k + off;
        vs = p.v + off;
      }
      cp_async16(smem_addr(sk + i * kStride + c * 8), ks, ok);
      cp_async16(smem_addr(sv + i * kStride + c * 8), vs, ok);
    }
  };
  if (tile_lo < tile_hi) load_tile(0, tile_lo);
  cp_async_commit();

  cp_async_wait<1>();  // Q has landed
  __syncthreads();
  const bool has_rows = warp * kRowsPerWarp < it.nrows;
  uint32_t qf[D / 16][4];
  if (has_rows) {
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      ldmatrix_x4(qf[kk], smem_addr(s_q + (warp * kRowsPerWarp + (lane & 15)) * kStride + kk * 16 +
                                    (lane >> 4) * 8));
    }
  }
  const int r0 = warp * kRowsPerWarp + (lane >> 2), r1 = r0 + 8;
  const int pos0 = r0 < it.nrows ? first_pos + (it.row_begin + r0) / G : -1;
  const int pos1 = r1 < it.nrows ? first_pos + (it.row_begin + r1) / G : -1;
  __syncthreads();  // Q is in registers: its shared memory becomes the fold state

  const bool to_output = it.record < 0;
  if (to_output && has_rows) {
#pragma unroll
    for (int j = 0; j < D / 2; ++j) s_o[j * kThreads + tid] = 0.0f;
  }
  float M[2] = {-INFINITY, -INFINITY}, L[2] = {0.0f, 0.0f};
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  float acc[D / 8][4];
#pragma unroll
  for (int n = 0; n < D / 8; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;

  for (int tile = tile_lo; tile < tile_hi; ++tile) {
    const int stage = (tile - tile_lo) & 1;
    if (tile + 1 < tile_hi) load_tile(stage ^ 1, tile + 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    if (has_rows) {
      const bf16* sk = s_kv + stage * kv_stage_elems<D>();
      attend_tile<D>(qf, sk, sk + kTile * kStride, tile * kTile, pos0, pos1, p.scale_log2, m, l,
                     acc, lane);
      // End of a split (fixed from tile 0) or of the CTA's tiles: fold in split order, or
      // write the split's state for the merge. A row whose positions all lie before this split
      // has nothing to fold or write.
      if ((tile + 1) % it.split_tiles == 0 || tile + 1 == tile_hi) {
        const int split = tile / it.split_tiles;
        const int split_start = split * it.split_tiles * kTile;
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int pos = h == 0 ? pos0 : pos1;
          if (pos >= split_start && to_output) {
            float a, b;
            fold_weights(M[h], L[h], m[h], l[h], a, b);
#pragma unroll
            for (int n = 0; n < D / 8; ++n) {
#pragma unroll
              for (int e = 0; e < 2; ++e) {
                float& o = s_o[(n * 4 + 2 * h + e) * kThreads + tid];
                o = fold_value(o, acc[n][2 * h + e], a, b);
              }
            }
          } else if (pos >= split_start) {
            const int r = h == 0 ? r0 : r1;
            const int64_t rec = int64_t(it.record) + int64_t(r) * it.record_stride + split;
            if ((lane & 3) == 0) {
              p.rec_m[rec] = m[h];
              p.rec_l[rec] = l[h];
            }
            float* dst = p.rec_acc + rec * D + 2 * (lane & 3);
#pragma unroll
            for (int n = 0; n < D / 8; ++n) {
              *reinterpret_cast<float2*>(dst + n * 8) =
                  make_float2(acc[n][2 * h], acc[n][2 * h + 1]);
            }
          }
          m[h] = -INFINITY;
          l[h] = 0.0f;
#pragma unroll
          for (int n = 0; n < D / 8; ++n) acc[n][2 * h] = acc[n][2 * h + 1] = 0.0f;
        }
      }
    }
    __syncthreads();  // every warp is done with this stage before it is refilled
  }
  if (!has_rows || !to_output) return;

  const int col = 2 * (lane & 3);
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int r = h == 0 ? r0 : r1;
    if (r >= it.nrows) continue;
    const int rr = it.row_begin + r;
    bf16* dst = p.out + int64_t(it.q_begin + rr / G) * p.out_stride +
                int64_t(it.kv_head * G + rr % G) * D + col;
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      const float o0 = finish(s_o[(n * 4 + 2 * h) * kThreads + tid], L[h]);
      const float o1 = finish(s_o[(n * 4 + 2 * h + 1) * kThreads + tid], L[h]);
      *reinterpret_cast<__nv_bfloat162*>(dst + n * 8) = __floats2bfloat162_rn(o0, o1);
    }
  }
}

// One CTA per (sequence, kv head); warp w folds rows w, w + 4, ...; lane i owns D / 32 dims.
template <int D>
__global__ void __launch_bounds__(kThreads) attention_merge_kernel(const MergeParams p) {
  constexpr int kPer = D / 32;
  const MergeItem it = p.items[blockIdx.x];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int G = p.group;
  for (int r = warp; r < it.rows; r += kWarps) {
    const int t = r / G;
    const int pos = it.kv_len - it.q_len + t;
    const int splits = (pos / kTile) / it.split_tiles + 1;
    float M = -INFINITY, L = 0.0f;
    float o[kPer];
#pragma unroll
    for (int e = 0; e < kPer; ++e) o[e] = 0.0f;
    const int64_t rec0 = int64_t(it.record) + int64_t(r) * it.record_stride;
    // The fold is sequential (split order); its inputs are not: load kBatch splits, then fold.
    constexpr int kBatch = 16;
    for (int k0 = 0; k0 < splits; k0 += kBatch) {
      float mk[kBatch], lk[kBatch], ak[kBatch][kPer];
#pragma unroll
      for (int j = 0; j < kBatch; ++j) {
        if (k0 + j < splits) {
          const int64_t rec = rec0 + k0 + j;
          mk[j] = p.rec_m[rec];
          lk[j] = p.rec_l[rec];
          const float* src = p.rec_acc + rec * D + lane * kPer;
          if constexpr (kPer == 4) {
            const float4 v = *reinterpret_cast<const float4*>(src);
            ak[j][0] = v.x, ak[j][1] = v.y, ak[j][2] = v.z, ak[j][3] = v.w;
          } else {
            const float2 v = *reinterpret_cast<const float2*>(src);
            ak[j][0] = v.x, ak[j][1] = v.y;
          }
        }
      }
#pragma unroll
      for (int j = 0; j < kBatch; ++j) {
        if (k0 + j < splits) {
          float a, b;
          fold_weights(M, L, mk[j], lk[j], a, b);
#pragma unroll
          for (int e = 0; e < kPer; ++e) o[e] = fold_value(o[e], ak[j][e], a, b);
        }
      }
    }
    bf16* dst = p.out + int64_t(it.q_begin + t) * p.out_stride +
                int64_t(it.kv_head * G + r % G) * D + lane * kPer;
#pragma unroll
    for (int e = 0; e < kPer; e += 2) {
      *reinterpret_cast<__nv_bfloat162*>(dst + e) =
          __floats2bfloat162_rn(finish(o[e], L), finish(o[e + 1], L));
    }
  }
}

// kv_store: one thread per 16-byte chunk of a (token, kv head) row.
__global__ void kv_store_kernel(const bf16* k, int64_t k_stride, const bf16* v, int64_t v_stride,
                                const int64_t* slots, int64_t tokens, int kv_heads, int dim,
                                bf16* ck, bf16* cv) {
  const int chunks = dim / 8;
  const int64_t total = tokens * kv_heads * chunks;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / (int64_t(kv_heads) * chunks);
    const int rem = int(i % (int64_t(kv_heads) * chunks));
    const int64_t slot = slots[t];
    if (slot < 0) continue;
    const int64_t dst = slot * kv_heads * dim + int64_t(rem) * 8;
    const int64_t src_k = t * k_stride + int64_t(rem) * 8;
    const int64_t src_v = t * v_stride + int64_t(rem) * 8;
    *reinterpret_cast<uint4*>(ck + dst) = *reinterpret_cast<const uint4*>(k + src_k);
    *reinterpret_cast<uint4*>(cv + dst) = *reinterpret_cast<const uint4*>(v + src_v);
  }
}

bool aligned16(const void* p) {
  return aligned_to(p, 16);
}

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

}  // namespace

Status kv_store(const bf16* k, int64_t k_stride, const bf16* v, int64_t v_stride,
                const int64_t* slots, int64_t tokens, const KvCacheRef& cache,
                cudaStream_t stream) {
  if (tokens <= 0) return {};
  if (cache.head_dim % 8 || k_stride % 8 || v_stride % 8 || !aligned16(k) || !aligned16(v) ||
      !aligned16(cache.k) || !aligned16(cache.v)) {
    return Status::error(
        "kv_store: head_dim and row strides must be multiples of 8 elements and "
        "every pointer 16-byte aligned");
  }
  const int64_t total = tokens * cache.kv_heads * (cache.head_dim / 8);
  const int blocks = int(std::min<int64_t>(ceil_div(total, 256), 65536));
  kv_store_kernel<<<blocks, 256, 0, stream>>>(k, k_stride, v, v_stride, slots, tokens,
                                              cache.kv_heads, cache.head_dim, cache.k, cache.v);
  return cuda_status(cudaGetLastError(), "kv_store: kernel launch");
}

struct CudaAttention::State {
  int device = 0;
  int sm_count = 0;
  AttentionDims dims;
  bool planned = false;
  // The step's work list: host staging (pinned) and its device copy, [items][merge items].
  std::vector<AttnItem> items;
  std::vector<MergeItem> merges;
  void* host_buf = nullptr;
  size_t host_cap = 0;
  void* dev_buf = nullptr;
  size_t dev_cap = 0;
  cudaEvent_t uploaded = nullptr;  // the last upload has read host_buf
  int64_t n_items = 0, n_merges = 0, n_split_items = 0;
  // Split states.
  float* rec_m = nullptr;
  float* rec_l = nullptr;
  float* rec_acc = nullptr;
  int64_t rec_cap = 0;      // records
  int64_t rec_acc_cap = 0;  // floats
  int split_group = 0;      // splits per split CTA; 0: chosen from the load
  int split_tiles = kAttnSplitTiles;

  ~State() {
    if (uploaded) cudaEventDestroy(uploaded);
    if (host_buf) cudaFreeHost(host_buf);
    if (dev_buf) cudaFree(dev_buf);
    if (rec_m) cudaFree(rec_m);
    if (rec_l) cudaFree(rec_l);
    if (rec_acc) cudaFree(rec_acc);
  }
};

Result<std::unique_ptr<CudaAttention>> CudaAttention::create(int device) {
  std::unique_ptr<CudaAttention> a(new CudaAttention());
  a->state_ = std::make_unique<State>();
  State& s = *a->state_;
  s.device = device;
  INVAR_RETURN_IF_ERROR(cuda_status(cudaSetDevice(device), "CudaAttention: cudaSetDevice"));
  INVAR_RETURN_IF_ERROR(
      cuda_status(cudaDeviceGetAttribute(&s.sm_count, cudaDevAttrMultiProcessorCount, device),
                  "CudaAttention: reading the SM count"));
  INVAR_RETURN_IF_ERROR(cuda_status(cudaEventCreateWithFlags(&s.uploaded, cudaEventDisableTiming),
                                    "CudaAttention: cudaEventCreate"));
  INVAR_RETURN_IF_ERROR(cuda_status(
      cudaFuncSetAttribute(attention_kernel<64>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           int(attention_smem_bytes<64>())),
      "CudaAttention: shared memory limit (D = 64)"));
  INVAR_RETURN_IF_ERROR(cuda_status(
      cudaFuncSetAttribute(attention_kernel<128>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           int(attention_smem_bytes<128>())),
      "CudaAttention: shared memory limit (D = 128)"));
  return Result<std::unique_ptr<CudaAttention>>(std::move(a));
}

CudaAttention::~CudaAttention() = default;

void CudaAttention::set_split_tiles_for_experiments(int tiles) {
  state_->split_tiles = tiles > 0 ? tiles : kAttnSplitTiles;
}

void CudaAttention::set_split_group(int splits_per_cta) {
  state_->split_group = std::max(0, splits_per_cta);
}

CudaAttention::Stats CudaAttention::stats() const {
  return {state_->n_items, state_->n_split_items, state_->n_merges};
}

uint64_t CudaAttention::launch_key() const {
  const State& st = *state_;
  return Fnv1a64()
      .add(uint64_t(st.n_items))
      .add(uint64_t(st.n_merges))
      .add(uint64_t(st.dims.head_dim))
      .add(st.dev_buf)
      .add(st.rec_m)
      .add(st.rec_l)
      .add(st.rec_acc)
      .value();
}

Status CudaAttention::plan(const AttentionPlan& hp, const AttentionDims& dims, KernelMode mode,
                           cudaStream_t stream) {
  State& st = *state_;
  st.planned = false;
  if (dims.head_dim != 64 && dims.head_dim != 128) {
    return Status::error("attention: head_dim " + std::to_string(dims.head_dim) +
                         " is not supported (64 or 128)");
  }
  if (dims.kv_heads <= 0 || dims.q_heads % dims.kv_heads) {
    return Status::error("attention: q_heads must be a positive multiple of kv_heads");
  }
  st.dims = dims;
  const int G = dims.q_heads / dims.kv_heads;
  st.items.clear();
  st.merges.clear();
  int64_t records = 0;

  // Fast mode: decode-like sequences (one warp of rows) share 2 waves of CTAs among them.
  int decode_seqs = 0;
  for (int s = 0; s < hp.num_seqs; ++s) {
    const int q_len = hp.q_indptr[s + 1] - hp.q_indptr[s];
    if (q_len > 0 && q_len * G <= kRowsPerWarp) ++decode_seqs;
  }

  // Invariant mode: consecutive splits of a sequence share a CTA when there are many (each
  // still writes its own state, so the grouping never changes bits): ~2 waves of 2 CTAs/SM.
  int64_t split_units = 0;
  if (mode == KernelMode::invariant) {
    for (int s = 0; s < hp.num_seqs; ++s) {
      const int q_len = hp.q_indptr[s + 1] - hp.q_indptr[s];
      const int tiles = int(ceil_div(std::max(hp.kv_lens[s], 1), kTile));
      if (q_len > 0 && q_len * G <= kMaxRows && tiles > st.split_tiles) {
        split_units += ceil_div(tiles, st.split_tiles) * dims.kv_heads;
      }
    }
  }
  const int group = st.split_group > 0 ? st.split_group
                                       : int(std::max<int64_t>(1, split_units / (4 * kHopperSms)));

  for (int s = 0; s < hp.num_seqs; ++s) {
    const int q_begin = hp.q_indptr[s];
    const int q_len = hp.q_indptr[s + 1] - q_begin;
    const int kv_len = hp.kv_lens[s];
    if (q_len <= 0) continue;
    if (kv_len < q_len) {
      return Status::error("attention plan: sequence " + std::to_string(s) + " has kv_len " +
                           std::to_string(kv_len) + " < its " + std::to_string(q_len) +
                           " query tokens; kv_lens counts the cache after this step's writes");
    }
    const int rows = q_len * G;
    const int tiles = int(ceil_div(kv_len, kTile));
    int split_tiles = st.split_tiles;
    bool split_ctas = false;
    int per_cta = 1;  // splits per split CTA
    if (mode == KernelMode::invariant) {
      // Any choice here gives the same bits; a sequence whose rows fit one CTA spreads its
      // splits over CTAs, a longer one walks them in one CTA per 64 rows.
      split_ctas = rows <= kMaxRows && tiles > st.split_tiles;
      per_cta = group;
    } else if (rows <= kRowsPerWarp) {
      const int want =
          int(ceil_div(2 * int64_t(st.sm_count), int64_t(decode_seqs) * dims.kv_heads));
      const int n = std::max(1, std::min(want, tiles));
      split_tiles = int(ceil_div(tiles, n));
      split_ctas = ceil_div(tiles, split_tiles) > 1;
    } else {
      split_tiles = kNoSplit;
    }
    if (split_ctas) {
      const int splits = int(ceil_div(tiles, split_tiles));
      for (int h = 0; h < dims.kv_heads; ++h) {
        const int64_t base = records + int64_t(h) * rows * splits;
        if (base + int64_t(rows) * splits > INT32_MAX) {
          return Status::error("attention plan: too many split states in one step");
        }
        for (int k = 0; k < splits; k += per_cta) {
          st.items.push_back({s, q_begin, q_len, kv_len, h, 0, rows, k * split_tiles,
                              std::min(tiles, (k + per_cta) * split_tiles), split_tiles,
                              int32_t(base), splits});
        }
        st.merges.push_back({q_begin, q_len, kv_len, h, rows, int32_t(base), splits, split_tiles});
      }
      records += int64_t(dims.kv_heads) * rows * splits;
    } else {
      // Last row blocks first: they walk the most tiles (longest CTAs start first).
      for (int rb = int(ceil_div(rows, kMaxRows)) - 1; rb >= 0; --rb) {
        for (int h = 0; h < dims.kv_heads; ++h) {
          st.items.push_back({s, q_begin, q_len, kv_len, h, rb * kMaxRows,
                              std::min(kMaxRows, rows - rb * kMaxRows), 0, tiles, split_tiles, -1,
                              0});
        }
      }
    }
  }
  // Longest CTAs first across sequences too (order never changes bits).
  auto work = [&](const AttnItem& a) {
    const int last = a.kv_len - a.q_len + (a.row_begin + a.nrows - 1) / G;
    return std::min(a.tile_end, last / kTile + 1) - a.tile_begin;
  };
  std::stable_sort(st.items.begin(), st.items.end(),
                   [&](const AttnItem& a, const AttnItem& b) { return work(a) > work(b); });

  st.n_items = int64_t(st.items.size());
  st.n_merges = int64_t(st.merges.size());
  st.n_split_items = 0;
  for (const AttnItem& it : st.items) st.n_split_items += it.record >= 0;

  // Split-state buffers.
  if (records > st.rec_cap || records * dims.head_dim > st.rec_acc_cap) {
    const int64_t cap = std::max<int64_t>(records, 2 * st.rec_cap);
    const int64_t acc_cap = std::max<int64_t>(records * dims.head_dim, 2 * st.rec_acc_cap);
    INVAR_RETURN_IF_ERROR(cuda_status(cudaStreamSynchronize(stream), "attention plan: sync"));
    if (st.rec_m) cudaFree(st.rec_m);
    if (st.rec_l) cudaFree(st.rec_l);
    if (st.rec_acc) cudaFree(st.rec_acc);
    st.rec_m = st.rec_l = st.rec_acc = nullptr;
    st.rec_cap = st.rec_acc_cap = 0;
    INVAR_RETURN_IF_ERROR(
        cuda_status(cudaMalloc(&st.rec_m, size_t(cap) * 4), "attention plan: alloc"));
    INVAR_RETURN_IF_ERROR(
        cuda_status(cudaMalloc(&st.rec_l, size_t(cap) * 4), "attention plan: alloc"));
    INVAR_RETURN_IF_ERROR(
        cuda_status(cudaMalloc(&st.rec_acc, size_t(acc_cap) * 4), "attention plan: alloc"));
    st.rec_cap = cap;
    st.rec_acc_cap = acc_cap;
  }

  // Upload the work list.
  const size_t item_bytes = st.items.size() * sizeof(AttnItem);
  const size_t bytes = item_bytes + st.merges.size() * sizeof(MergeItem);
  if (bytes > 0) {
    INVAR_RETURN_IF_ERROR(cuda_status(cudaEventSynchronize(st.uploaded), "attention plan: sync"));
    if (bytes > st.host_cap) {
      if (st.host_buf) cudaFreeHost(st.host_buf);
      st.host_buf = nullptr;
      st.host_cap = 0;
      INVAR_RETURN_IF_ERROR(
          cuda_status(cudaMallocHost(&st.host_buf, bytes * 2), "attention plan: pinned alloc"));
      st.host_cap = bytes * 2;
    }
    if (bytes > st.dev_cap) {
      INVAR_RETURN_IF_ERROR(cuda_status(cudaStreamSynchronize(stream), "attention plan: sync"));
      if (st.dev_buf) cudaFree(st.dev_buf);
      st.dev_buf = nullptr;
      st.dev_cap = 0;
      INVAR_RETURN_IF_ERROR(
          cuda_status(cudaMalloc(&st.dev_buf, bytes * 2), "attention plan: alloc"));
      st.dev_cap = bytes * 2;
    }
    unsigned char* h = static_cast<unsigned char*>(st.host_buf);
    if (!st.items.empty())
      std::copy_n(reinterpret_cast<const unsigned char*>(st.items.data()), item_bytes, h);
    if (!st.merges.empty()) {
      std::copy_n(reinterpret_cast<const unsigned char*>(st.merges.data()),
                  st.merges.size() * sizeof(MergeItem), h + item_bytes);
    }
    INVAR_RETURN_IF_ERROR(
        cuda_status(cudaMemcpyAsync(st.dev_buf, st.host_buf, bytes, cudaMemcpyHostToDevice, stream),
                    "attention plan: upload"));
    INVAR_RETURN_IF_ERROR(
        cuda_status(cudaEventRecord(st.uploaded, stream), "attention plan: event"));
  }
  st.planned = true;
  return {};
}

Status CudaAttention::run(const bf16* q, int64_t q_stride, const KvCacheRef& cache,
                          const AttentionPlan& dp, bf16* out, int64_t out_stride,
                          cudaStream_t stream) {
  State& st = *state_;
  if (!st.planned) return Status::error("attention: run before a successful plan");
  const AttentionDims& d = st.dims;
  if (cache.head_dim != d.head_dim || cache.kv_heads != d.kv_heads ||
      cache.block_size != dp.block_size || dp.block_size <= 0) {
    return Status::error(
        "attention: the cache's shape does not match the plan's dims and "
        "block size");
  }
  if (q_stride % 8 || out_stride % 2 || !aligned16(q) || !aligned16(cache.k) ||
      !aligned16(cache.v) || (reinterpret_cast<uintptr_t>(out) & 3u)) {
    return Status::error(
        "attention: q must be 16-byte aligned with a row stride that is a "
        "multiple of 8 elements; out 4-byte aligned with an even stride");
  }
  if (st.n_items == 0) return {};
  const AttnItem* items = static_cast<const AttnItem*>(st.dev_buf);
  const MergeItem* merges = reinterpret_cast<const MergeItem*>(items + st.n_items);
  AttnParams p{items,
               q,
               q_stride,
               cache.k,
               cache.v,
               dp.block_tables,
               dp.max_blocks_per_seq,
               dp.block_size,
               d.kv_heads,
               d.q_heads / d.kv_heads,
               d.scale * 1.4426950408889634f,
               out,
               out_stride,
               st.rec_m,
               st.rec_l,
               st.rec_acc};
  if (d.head_dim == 64) {
    attention_kernel<64><<<unsigned(st.n_items), kThreads, attention_smem_bytes<64>(), stream>>>(p);
  } else {
    attention_kernel<128>
        <<<unsigned(st.n_items), kThreads, attention_smem_bytes<128>(), stream>>>(p);
  }
  INVAR_RETURN_IF_ERROR(cuda_status(cudaGetLastError(), "attention: kernel launch"));
  if (st.n_merges > 0) {
    MergeParams mp{merges, d.q_heads / d.kv_heads, out, out_stride, st.rec_m, st.rec_l, st.rec_acc};
    if (d.head_dim == 64) {
      attention_merge_kernel<64><<<unsigned(st.n_merges), kThreads, 0, stream>>>(mp);
    } else {
      attention_merge_kernel<128><<<unsigned(st.n_merges), kThreads, 0, stream>>>(mp);
    }
    INVAR_RETURN_IF_ERROR(cuda_status(cudaGetLastError(), "attention: merge kernel launch"));
  }
  return {};
}

}  // namespace invar::kernels::cuda
