// Paged causal GQA attention for mixed prefill/decode batches (interface and recipe:
// attention.h): the attention and split-merge kernels, kv_store, and the upload of the work
// list that attention_plan.cpp plans on the host.
//   S = sequences, T = tokens, Hq / Hkv = query / kv heads, G = Hq / Hkv, D = head dim,
//   row = one (token, q head) pair of a sequence and kv head: row r is token r / G, head r % G
//
// A CTA is 4 warps; warp w owns rows 16w..16w+15 of the CTA and every column of a KV tile, so a
// row's arithmetic (its mma chains, its max/sum trees over the 4 lanes of a quad, its softmax
// updates) is the same whichever rows share the CTA and however many warps have rows. All four
// warps load tiles (cp.async; two stages, or four in launches of at most one CTA per SM); warps
// without rows only load. A CTA whose rows fit one warp (decode at small batch) is a spread CTA
// by default: all four warps compute its tiles, split by score columns and by output dimensions,
// each element with the same operations in the same order (attend_tile_spread), so again the same
// bits. Where a row's positions end before the CTA's last tile, the later tiles are no-ops for it
// by construction (no state update, alpha = 1, p = 0 exactly).
#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/hash.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/attention_recipe.cuh"
#include "kernels/cuda/device.h"
#include "kernels/cuda/grid.h"
#include "kernels/cuda/sm90/attention_sm90.h"

namespace invar::kernels::cuda {
namespace {

using bf16 = __nv_bfloat16;
using attn::finish;
using attn::fold_value;
using attn::fold_weights;

constexpr int kTile = kAttnKvTile;
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kRowsPerWarp = kAttnRowsPerWarp;
constexpr int kMaxRows = kAttnRowsPerCta;  // rows per CTA
static_assert(kMaxRows == kWarps * kRowsPerWarp, "one 16-row mma tile per warp");
// Scores live in base 2 (ex2): the softmax scale is multiplied by log2(e) once.
constexpr float kLog2e = 1.4426950408889634f;

struct AttnParams {
  const AttnItem* items;
  const int32_t* item_count;  // CTAs past it return at once (a grid fixed for CUDA graphs)
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
  float* rec_m;      // [records]
  float* rec_l;      // [records]
  float* rec_acc;    // [records, D]
  int spread_rows;   // items of at most this many rows run as spread CTAs (0 or kRowsPerWarp)
  int scores_ahead;  // CudaAttention::set_scores_ahead (spread CTAs with kDeepStages only)
  // The merge folded into this launch (MergePlacement): the step's merges and
  // one arrival counter per merge (zero between launches). nullptr: a merge launch follows.
  const MergeItem* merges;
  int32_t* merge_arrivals;
};

struct MergeParams {
  const MergeItem* items;
  const int32_t* item_count;
  int group;
  bf16* out;
  int64_t out_stride;
  const float* rec_m;
  const float* rec_l;
  const float* rec_acc;
};

// ---- device helpers -------------------------------------------------------------------------

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
  // The recipe's softmax step and rescale (attention_recipe.cuh), shared with the wgmma kernel.
  float al[2];
  attn::softmax_tile<kTile / 8>(s, tile_start, pos0, pos1, scale_log2, m, l, al, lane);
  attn::rescale<D / 8>(acc, al);
  // acc += P V: k-step kk = positions 16kk..16kk+15 (score n-blocks 2kk, 2kk+1), in order.
#pragma unroll
  for (int kk = 0; kk < kTile / 16; ++kk) {
    uint32_t a[4];
    attn::p_fragment<kTile / 8>(s, kk, a);
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

// The spread form of attend_tile, for a CTA whose rows fit one warp (decode at small batch, short
// chunks), where attend_tile would leave three warps without work while one computes every
// tile. Every warp holds the same 16 rows; warp w computes the scores of positions
// 16w..16w+15 (score n-blocks kJ w ..) with attend_tile's k-chains, the tile's scores meet in
// shared memory, every warp runs the recipe's softmax step on all of them (the same operations
// on the same values: the same m, l, alpha and P in every warp), and warp w adds P V to its
// kN8 n-blocks of dimensions from n-block kN8 w, each with attend_tile's k-chain over positions.
// So each element's operations and their order are attend_tile's, and so are its bits
// (attention_test: SpreadCtasGiveTheBitsOfOneWarpOnEveryBatch). Two halves, so that a CTA can
// compute the next tile's scores while it runs this tile's softmax (attention_cta):
//
// spread_scores: this warp's score n-blocks of the K tile at sk into s_scores, laid out as
// s_scores[(4 j + c) * 32 + lane] = value c of score n-block j in the fragment legend's lane.
template <int D>
__device__ __forceinline__ void spread_scores(const uint32_t (&qf)[D / 16][4], const bf16* sk,
                                              float* s_scores, int warp, int lane) {
  constexpr int kStride = D + 8;
  constexpr int kJ = kTile / 8 / kWarps;  // score n-blocks per warp
  float own[kJ][4];
#pragma unroll
  for (int jj = 0; jj < kJ; ++jj) own[jj][0] = own[jj][1] = own[jj][2] = own[jj][3] = 0.0f;
#pragma unroll
  for (int jj = 0; jj < kJ; ++jj) {
    const int j = warp * kJ + jj;
#pragma unroll
    for (int kk = 0; kk < D / 16; kk += 2) {
      uint32_t b[4];
      ldmatrix_x4(b, smem_addr(sk + (j * 8 + (lane & 7)) * kStride + kk * 16 + (lane >> 3) * 8));
      mma_16816(own[jj], qf[kk], b[0], b[1]);
      mma_16816(own[jj], qf[kk + 1], b[2], b[3]);
    }
  }
#pragma unroll
  for (int jj = 0; jj < kJ; ++jj) {
#pragma unroll
    for (int c = 0; c < 4; ++c) s_scores[((warp * kJ + jj) * 4 + c) * 32 + lane] = own[jj][c];
  }
}

// spread_softmax_pv: the whole tile's scores (every warp's, after a barrier) through the
// recipe's softmax step, then acc += P V over this warp's n-blocks of the V tile at sv.
template <int D>
__device__ __forceinline__ void spread_softmax_pv(const float* s_scores, const bf16* sv, int warp,
                                                  int tile_start, int pos0, int pos1,
                                                  float scale_log2, float (&m)[2], float (&l)[2],
                                                  float (&acc)[D / 8 / kWarps][4], int lane) {
  constexpr int kStride = D + 8;
  constexpr int kN8 = D / 8 / kWarps;  // accumulator n-blocks per warp
  float s[kTile / 8][4];
#pragma unroll
  for (int j = 0; j < kTile / 8; ++j) {
#pragma unroll
    for (int c = 0; c < 4; ++c) s[j][c] = s_scores[(j * 4 + c) * 32 + lane];
  }
  float al[2];
  attn::softmax_tile<kTile / 8>(s, tile_start, pos0, pos1, scale_log2, m, l, al, lane);
  attn::rescale<kN8>(acc, al);
#pragma unroll
  for (int kk = 0; kk < kTile / 16; ++kk) {
    uint32_t a[4];
    attn::p_fragment<kTile / 8>(s, kk, a);
#pragma unroll
    for (int nl = 0; nl < kN8; nl += 2) {
      const int n = warp * kN8 + nl;
      uint32_t b[4];
      ldmatrix_x4_trans(b, smem_addr(sv + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * kStride +
                                     n * 8 + (lane >> 4) * 8));
      mma_16816(acc[nl], a, b[0], b[1]);
      mma_16816(acc[nl + 1], a, b[2], b[3]);
    }
  }
}

template <int D>
__device__ __forceinline__ void attend_tile_spread(const uint32_t (&qf)[D / 16][4], const bf16* sk,
                                                   const bf16* sv, float* s_scores, int warp,
                                                   int tile_start, int pos0, int pos1,
                                                   float scale_log2, float (&m)[2], float (&l)[2],
                                                   float (&acc)[D / 8 / kWarps][4], int lane) {
  spread_scores<D>(qf, sk, s_scores, warp, lane);
  __syncthreads();
  spread_softmax_pv<D>(s_scores, sv, warp, tile_start, pos0, pos1, scale_log2, m, l, acc, lane);
}

template <int D>
__host__ __device__ constexpr int kv_stage_elems() {
  return 2 * kTile * (D + 8);  // K and V tiles of one stage
}
// KV stages of the load pipeline: tiles in flight = stages - 1. Two (one tile ahead) by
// default; a launch of at most one CTA per SM (decode at small batch, where each CTA's few
// tiles are a chain of memory latencies) takes kDeepStages, a whole split in flight.
constexpr int kDefaultStages = 2;
constexpr int kDeepStages = 4;
template <int D, int kStages>
constexpr size_t attention_smem_bytes() {
  // kStages KV stages, then a region that holds Q while it is read into registers and, after, the
  // fold state O ([D / 2, kThreads] f32, each thread its own column) -- or, in a spread CTA, O
  // ([D / 8, kThreads]) and two tiles' scores ([2][kTile / 8, 4, 32] f32: this tile's and the
  // next one's).
  constexpr size_t q_bytes = size_t(kMaxRows) * (D + 8) * 2;
  constexpr size_t o_bytes = size_t(D / 2) * kThreads * 4;
  static_assert(size_t(D / 8) * kThreads * 4 + 2 * size_t(kTile) * kRowsPerWarp * 4 <= o_bytes,
                "the spread CTA's O and scores fit the fold region");
  return size_t(kStages) * kv_stage_elems<D>() * 2 + (q_bytes > o_bytes ? q_bytes : o_bytes);
}

// One CTA's item. kSpread: the item's rows fit one warp and every warp works on them
// (attend_tile_spread); else warp w owns rows 16w..16w+15 (attend_tile). kStages: KV stages of
// the load pipeline (how far loads run ahead; the arithmetic is the same).
template <int D, bool kSpread, int kStages>
__device__ __forceinline__ void attention_cta(const AttnParams& p, const AttnItem& it,
                                              unsigned char* smem) {
  static_assert(kStages >= 2 && (kStages & (kStages - 1)) == 0, "a power of two");
  constexpr int kStride = D + 8;  // bf16 per smem row: 16-byte pad, conflict-free ldmatrix
  constexpr int kChunks = D / 8;  // 16-byte chunks per row
  constexpr int kN8 = kSpread ? D / 8 / kWarps : D / 8;  // accumulator n-blocks per lane
  bf16* s_kv = reinterpret_cast<bf16*>(smem);
  unsigned char* s_qo = smem + size_t(kStages) * kv_stage_elems<D>() * 2;
  bf16* s_q = reinterpret_cast<bf16*>(s_qo);
  float* s_o = reinterpret_cast<float*>(s_qo);
  float* s_scores = s_o + (D / 8) * kThreads;  // spread CTAs only

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int G = p.group;
  const int first_pos = it.kv_len - it.q_len;
  const int max_pos = first_pos + (it.row_begin + it.nrows - 1) / G;  // the CTA's last row
  const int tile_lo = it.tile_begin;
  const int tile_hi = min(it.tile_end, max_pos / kTile + 1);
  const int32_t* table = p.block_tables + int64_t(it.seq) * p.max_blocks;
  const int bs = p.block_size;

  // Q rows of this CTA (padding rows zero-filled; a spread CTA reads rows 0..15 only).
  constexpr int kQRows = kSpread ? kRowsPerWarp : kMaxRows;
  for (int idx = tid; idx < kQRows * kChunks; idx += kThreads) {
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

  // K/V tiles, loaded in order tile_lo, tile_lo + 1, ...: thread tid copies 16-byte chunk
  // tid % kChunks of positions tid / kChunks + k kPosStep, so its positions step by kPosStep
  // through every tile, and its cache block and offset advance by carries instead of a
  // division per copy (address arithmetic was most of a decode CTA's instructions). Positions
  // past the CTA's last row are zero-filled, never read, and their block-table entries (which
  // may lie past the sequence's row) are never loaded.
  constexpr int kPosStep = kThreads / kChunks;
  static_assert(kThreads % kChunks == 0 && kTile % kPosStep == 0, "whole rows per pass");
  const int chunk = tid % kChunks;
  int ld_pos = tile_lo * kTile + tid / kChunks;
  int blk = ld_pos / bs, off = ld_pos % bs;
  int cached_blk = -1;
  int64_t slot0 = 0;  // first slot of cached_blk
  const int64_t head_off = int64_t(it.kv_head) * D + chunk * 8;
  const int64_t slot_elems = int64_t(p.kv_heads) * D;
  auto load_tile = [&](int stage) {
    bf16* sk = s_kv + stage * kv_stage_elems<D>();
    bf16* sv = sk + kTile * kStride;
#pragma unroll
    for (int i = tid / kChunks; i < kTile; i += kPosStep) {
      const bool ok = ld_pos <= max_pos;
      if (ok && blk != cached_blk) {
        cached_blk = blk;
        slot0 = int64_t(__ldg(table + blk)) * bs;
      }
      const int64_t e = (slot0 + off) * slot_elems + head_off;
      cp_async16(smem_addr(sk + i * kStride + chunk * 8), ok ? p.k + e : p.k, ok);
      cp_async16(smem_addr(sv + i * kStride + chunk * 8), ok ? p.v + e : p.v, ok);
      ld_pos += kPosStep;
      off += kPosStep;
      while (off >= bs) {
        off -= bs;
        ++blk;
      }
    }
  };
  // The first kStages - 1 tiles, one commit group each (empty past the CTA's last tile).
#pragma unroll
  for (int i = 0; i < kStages - 1; ++i) {
    if (tile_lo + i < tile_hi) load_tile(i);
    cp_async_commit();
  }

  cp_async_wait<kStages - 1>();  // Q has landed
  __syncthreads();
  const int row_warp = kSpread ? 0 : warp;  // whose 16 rows this warp's lanes hold
  const int n0 = kSpread ? warp * kN8 : 0;  // this warp's first accumulator n-block
  const bool has_rows = row_warp * kRowsPerWarp < it.nrows;
  uint32_t qf[D / 16][4];
  if (has_rows) {
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      ldmatrix_x4(qf[kk], smem_addr(s_q + (row_warp * kRowsPerWarp + (lane & 15)) * kStride +
                                    kk * 16 + (lane >> 4) * 8));
    }
  }
  const int row[2] = {row_warp * kRowsPerWarp + (lane >> 2),
                      row_warp * kRowsPerWarp + (lane >> 2) + 8};
  const int pos[2] = {row[0] < it.nrows ? first_pos + (it.row_begin + row[0]) / G : -1,
                      row[1] < it.nrows ? first_pos + (it.row_begin + row[1]) / G : -1};
  __syncthreads();  // Q is in registers: its shared memory becomes the fold state

  const bool to_output = it.record < 0;
  if (to_output && has_rows) {
#pragma unroll
    for (int j = 0; j < kN8 * 4; ++j) s_o[j * kThreads + tid] = 0.0f;
  }
  float M[2] = {-INFINITY, -INFINITY}, L[2] = {0.0f, 0.0f};
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  float acc[kN8][4];
#pragma unroll
  for (int n = 0; n < kN8; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
  // m and l of a split record: one lane per row (in a spread CTA, warp 0's).
  const bool write_ml = (lane & 3) == 0 && (!kSpread || warp == 0);
  const attn::SplitRecords records{p.rec_m, p.rec_l, p.rec_acc};

  // End of a split (fixed from tile 0) or of the CTA's tiles: fold in split order, or write the
  // split's state for the merge.
  auto end_tile = [&](int tile) {
    if ((tile + 1) % it.split_tiles == 0 || tile + 1 == tile_hi) {
      const int split = tile / it.split_tiles;
      attn::end_split<D, kN8>(pos, row, split, split * it.split_tiles * kTile, to_output, s_o + tid,
                              kThreads, M, L, m, l, acc, n0, write_ml, records, it.record,
                              it.record_stride, lane);
    }
  };
  auto attend_tiles_in_order = [&] {
    for (int tile = tile_lo; tile < tile_hi; ++tile) {
      const int stage = (tile - tile_lo) & (kStages - 1);
      // Tile `tile + kStages - 1` into the stage the previous iteration computed (every warp left
      // it at that iteration's last barrier); then wait for `tile`'s group.
      if (tile + kStages - 1 < tile_hi) load_tile((stage + kStages - 1) & (kStages - 1));
      cp_async_commit();
      cp_async_wait<kStages - 1>();
      __syncthreads();
      if (has_rows) {  // uniform over a spread CTA: its barrier is reached by every warp or none
        const bf16* sk = s_kv + stage * kv_stage_elems<D>();
        if constexpr (kSpread) {
          attend_tile_spread<D>(qf, sk, sk + kTile * kStride, s_scores, warp, tile * kTile, pos[0],
                                pos[1], p.scale_log2, m, l, acc, lane);
        } else {
          attend_tile<D>(qf, sk, sk + kTile * kStride, tile * kTile, pos[0], pos[1], p.scale_log2,
                         m, l, acc, lane);
        }
        end_tile(tile);
      }
      __syncthreads();  // every warp is done with this stage (and the scores) before a refill
    }
  };
  if constexpr (!(kSpread && kStages >= 4)) {
    attend_tiles_in_order();
  } else if (!p.scores_ahead) {
    attend_tiles_in_order();
  } else {
    // Scores ahead: with a whole split's loads in flight, tile t + 1's scores are computed while
    // tile t's softmax runs (independent instructions the scheduler interleaves), so a tile's
    // chain is its softmax and P V only. Each tile's scores, softmax and P V are
    // attend_tile_spread's (spread_scores, spread_softmax_pv): the same bits. One barrier per
    // tile: it publishes tile t's scores, tile t + 1's K and V, and ends every warp's use of the
    // stage that the load after it refills (tile t - 1's).
    auto k_of = [&](int i) { return s_kv + (i & (kStages - 1)) * kv_stage_elems<D>(); };
    auto scores_of = [&](int i) { return s_scores + (i & 1) * (kTile * kRowsPerWarp); };
    cp_async_wait<kStages - 2>();  // and tile_lo
    __syncthreads();
    if (has_rows && tile_lo < tile_hi) spread_scores<D>(qf, k_of(0), scores_of(0), warp, lane);
    auto step = [&](int tile, auto has_next_tag) {
      constexpr bool kHasNext = decltype(has_next_tag)::value;
      const int i = tile - tile_lo;
      cp_async_wait<kStages - 3>();  // this thread's copies of tiles <= tile + 1 have landed
      __syncthreads();
      if (tile + kStages - 1 < tile_hi) load_tile((i + kStages - 1) & (kStages - 1));
      cp_async_commit();
      if (!has_rows) return;
      if constexpr (kHasNext) spread_scores<D>(qf, k_of(i + 1), scores_of(i + 1), warp, lane);
      spread_softmax_pv<D>(scores_of(i), k_of(i) + kTile * kStride, warp, tile * kTile, pos[0],
                           pos[1], p.scale_log2, m, l, acc, lane);
      end_tile(tile);
    };
    int tile = tile_lo;
    for (; tile + 1 < tile_hi; ++tile) step(tile, std::true_type{});
    if (tile < tile_hi) step(tile, std::false_type{});
  }
  if (!has_rows || !to_output) return;

  bf16* dst[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int rr = it.row_begin + row[h];
    dst[h] = row[h] < it.nrows ? p.out + int64_t(it.q_begin + rr / G) * p.out_stride +
                                     int64_t(it.kv_head * G + rr % G) * D
                               : nullptr;
  }
  attn::write_rows<kN8>(dst, s_o + tid, kThreads, L, n0, lane);
}

// Folds one merge item's split states in split order and writes its rows: warp w folds rows
// w, w + 4, ...; lane i owns D / 32 dims. The merge kernel's CTA, or the attention CTA that
// finished a fused merge's last part. Loads bypass L1 (ld.global.cg): in the fused case other
// SMs wrote the states during this launch.
template <int D>
__device__ __forceinline__ void merge_rows(const MergeItem& it, int G, bf16* out,
                                           int64_t out_stride, const float* rec_m,
                                           const float* rec_l, const float* rec_acc) {
  constexpr int kPer = D / 32;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
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
          mk[j] = __ldcg(rec_m + rec);
          lk[j] = __ldcg(rec_l + rec);
          const float* src = rec_acc + rec * D + lane * kPer;
          if constexpr (kPer == 4) {
            const float4 v = __ldcg(reinterpret_cast<const float4*>(src));
            ak[j][0] = v.x, ak[j][1] = v.y, ak[j][2] = v.z, ak[j][3] = v.w;
          } else {
            const float2 v = __ldcg(reinterpret_cast<const float2*>(src));
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
    bf16* dst = out + int64_t(it.q_begin + t) * out_stride + int64_t(it.kv_head * G + r % G) * D +
                lane * kPer;
#pragma unroll
    for (int e = 0; e < kPer; e += 2) {
      *reinterpret_cast<__nv_bfloat162*>(dst + e) =
          __floats2bfloat162_rn(finish(o[e], L), finish(o[e + 1], L));
    }
  }
}

// A fused merge's arrival: after a split CTA has written its states, it counts itself in; the
// CTA that brings the count to the merge's parts folds them all (merge_rows: the merge kernel's
// arithmetic and order, so the same bits) and resets the count for the next launch. The fences
// order every thread's state writes before the count and the count before the last CTA's loads
// (the threadFenceReduction pattern); no float atomics, so no order depends on timing.
template <int D>
__device__ __forceinline__ void arrive_at_merge(const AttnParams& p, int merge) {
  __shared__ int s_last;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    const int arrived = atomicAdd(p.merge_arrivals + merge, 1) + 1;
    s_last = arrived == p.merges[merge].parts;
  }
  __syncthreads();
  if (!s_last) return;
  __threadfence();
  merge_rows<D>(p.merges[merge], p.group, p.out, p.out_stride, p.rec_m, p.rec_l, p.rec_acc);
  if (threadIdx.x == 0) p.merge_arrivals[merge] = 0;
}

template <int D, int kStages>
__global__ void __launch_bounds__(kThreads) attention_kernel(const AttnParams p) {
  extern __shared__ __align__(16) unsigned char smem[];
  if (int(blockIdx.x) >= *p.item_count) return;  // the whole CTA, before any barrier
  const AttnItem it = p.items[blockIdx.x];
  if (it.nrows <= p.spread_rows) {
    attention_cta<D, true, kStages>(p, it, smem);
  } else {
    attention_cta<D, false, kStages>(p, it, smem);
  }
  if (p.merges && it.merge >= 0) arrive_at_merge<D>(p, it.merge);
}

// One CTA per (sequence, kv head).
template <int D>
__global__ void __launch_bounds__(kThreads) attention_merge_kernel(const MergeParams p) {
  if (int(blockIdx.x) >= *p.item_count) return;
  merge_rows<D>(p.items[blockIdx.x], p.group, p.out, p.out_stride, p.rec_m, p.rec_l, p.rec_acc);
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

// Byte offsets of the device work list: two int32 counts (items, merges), then grid_items items,
// then grid_merges merge items, each part 16-byte aligned.
struct WorkLayout {
  size_t items, merges, bytes;
  WorkLayout(int64_t grid_items, int64_t grid_merges)
      : items(16),
        merges(items + size_t(ceil_div(grid_items * int64_t(sizeof(AttnItem)), 16)) * 16),
        bytes(merges + size_t(grid_merges) * sizeof(MergeItem)) {}
};

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

const char* attention_kernel_name(AttentionKernel k) {
  return k == AttentionKernel::wgmma ? "wgmma" : "mma_sync";
}

const char* wgmma_pipeline_name(WgmmaPipeline p) {
  switch (p) {
    case WgmmaPipeline::serial:
      return "serial";
    case WgmmaPipeline::overlap:
      return "overlap";
    case WgmmaPipeline::pingpong:
      return "pingpong";
    case WgmmaPipeline::lean:
      return "lean";
  }
  return "?";
}

struct CudaAttention::State {
  int device = 0;
  int sm_count = 0;
  bool hopper = false;  // sm_90: the wgmma kernel can run
  AttentionKernel prefill_kernel = AttentionKernel::mma_sync;
  AttentionKernel split_kernel = AttentionKernel::mma_sync;
  WgmmaPipeline wgmma_pipeline = WgmmaPipeline::pingpong;
  bool spread = true;  // set_spread_ctas
  MergePlacement merge_placement = MergePlacement::per_step;
  int load_stages = 0;        // set_load_stages (0: chosen per plan)
  bool scores_ahead = false;  // set_scores_ahead
  AttentionDims dims;
  AttentionPlanOptions options;
  bool planned = false;
  int64_t n_items = 0, n_merges = 0, n_split_items = 0, n_spread = 0;
  // The planned work list holds the wgmma kernel's items first, n_wgmma of them.
  int64_t n_wgmma = 0;
  // The plan's choices: merges inside the attention launch, and the mma.sync launch's stages.
  bool merge_fused = false;
  int stages = kDefaultStages;
  // TMA descriptors of the caches run() has seen (one per layer), so a layer encodes once.
  struct CachedMaps {
    KvCacheRef cache;
    sm90::KvTensorMaps maps;
  };
  std::vector<CachedMaps> tensor_maps;
  // CTAs launched: the counts, or with a fixed grid the mma.sync kernel's and the merge
  // kernel's counts rounded up to a power of two (the surplus CTAs return at once), so that CUDA
  // graphs replay across steps. grid_items includes the n_wgmma items (never padded: decode
  // steps, the ones graphs replay, have none).
  bool fixed_grid = false;
  int64_t grid_items = 0, grid_merges = 0;
  // The step's work list, [counts][grid_items items][grid_merges merge items] (WorkLayout):
  // pinned host staging and its device copy.
  PinnedBuffer staging;
  DeviceBuffer work;
  cudaEvent_t uploaded = nullptr;  // the last upload has read `staging`
  // Split states: m, l [records] and acc [records, D].
  DeviceBuffer rec_m, rec_l, rec_acc;
  // Fused merges' arrival counters, int32 [capacity]: zero between launches.
  DeviceBuffer merge_arrivals;

  ~State() {
    if (uploaded) cudaEventDestroy(uploaded);
  }
};

namespace {
template <typename Kernel>
Status allow_smem(Kernel kernel, size_t bytes) {
  return cuda_status(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)),
      "CudaAttention: raising a kernel's shared memory limit to " + std::to_string(bytes) +
          " bytes");
}

// Launches the mma.sync kernel for head dim D with the planned stage count.
template <int D>
void launch_attention(int stages, int64_t grid, const AttnParams& p, cudaStream_t stream) {
  if (stages == kDeepStages) {
    attention_kernel<D, kDeepStages>
        <<<unsigned(grid), kThreads, attention_smem_bytes<D, kDeepStages>(), stream>>>(p);
  } else {
    attention_kernel<D, kDefaultStages>
        <<<unsigned(grid), kThreads, attention_smem_bytes<D, kDefaultStages>(), stream>>>(p);
  }
}
}  // namespace

Result<std::unique_ptr<CudaAttention>> CudaAttention::create(int device) {
  std::unique_ptr<CudaAttention> a(new CudaAttention());
  a->state_ = std::make_unique<State>();
  State& s = *a->state_;
  s.device = device;
  s.options.split_tiles = kAttnSplitTiles;
  INVAR_RETURN_IF_ERROR(cuda_status(cudaSetDevice(device), "CudaAttention: cudaSetDevice"));
  INVAR_RETURN_IF_ERROR(
      cuda_status(cudaDeviceGetAttribute(&s.sm_count, cudaDevAttrMultiProcessorCount, device),
                  "CudaAttention: reading the SM count"));
  INVAR_RETURN_IF_ERROR(cuda_status(cudaEventCreateWithFlags(&s.uploaded, cudaEventDisableTiming),
                                    "CudaAttention: cudaEventCreate"));
  s.options.sm_count = s.sm_count;
  int major = 0;
  INVAR_RETURN_IF_ERROR(
      cuda_status(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device),
                  "CudaAttention: reading the compute capability"));
  s.hopper = major == 9;
  if (s.hopper) INVAR_RETURN_IF_ERROR(sm90::attention_wgmma_setup());
  INVAR_RETURN_IF_ERROR(
      allow_smem(attention_kernel<64, kDefaultStages>, attention_smem_bytes<64, kDefaultStages>()));
  INVAR_RETURN_IF_ERROR(allow_smem(attention_kernel<128, kDefaultStages>,
                                   attention_smem_bytes<128, kDefaultStages>()));
  INVAR_RETURN_IF_ERROR(
      allow_smem(attention_kernel<64, kDeepStages>, attention_smem_bytes<64, kDeepStages>()));
  INVAR_RETURN_IF_ERROR(
      allow_smem(attention_kernel<128, kDeepStages>, attention_smem_bytes<128, kDeepStages>()));
  return Result<std::unique_ptr<CudaAttention>>(std::move(a));
}

CudaAttention::~CudaAttention() = default;

void CudaAttention::set_split_tiles_for_experiments(int tiles) {
  state_->options.split_tiles = tiles > 0 ? tiles : kAttnSplitTiles;
}

namespace {
Status check_kernel_available(bool hopper, AttentionKernel kernel) {
  if (kernel == AttentionKernel::wgmma && !hopper) {
    return Status::error(
        "attention: the wgmma kernel needs an sm_90 GPU (H100, H200); use mma_sync here");
  }
  return {};
}
}  // namespace

Status CudaAttention::set_prefill_kernel(AttentionKernel kernel) {
  INVAR_RETURN_IF_ERROR(check_kernel_available(state_->hopper, kernel));
  state_->prefill_kernel = kernel;
  state_->options.rows_per_cta =
      kernel == AttentionKernel::wgmma ? kAttnRowsPerCtaWide : kAttnRowsPerCta;
  return {};
}

Status CudaAttention::set_split_kernel(AttentionKernel kernel) {
  INVAR_RETURN_IF_ERROR(check_kernel_available(state_->hopper, kernel));
  state_->split_kernel = kernel;
  return {};
}

AttentionKernel CudaAttention::prefill_kernel() const {
  return state_->prefill_kernel;
}

void CudaAttention::set_wgmma_pipeline(WgmmaPipeline pipeline) {
  state_->wgmma_pipeline = pipeline;
}

void CudaAttention::set_split_group(int splits_per_cta) {
  state_->options.split_group = std::max(0, splits_per_cta);
}

void CudaAttention::set_spread_ctas(bool on) {
  state_->spread = on;
}

void CudaAttention::set_fixed_grid(bool on) {
  state_->fixed_grid = on;
}

void CudaAttention::set_merge_placement(MergePlacement placement) {
  state_->merge_placement = placement;
}

Status CudaAttention::set_load_stages(int stages) {
  if (stages != 0 && stages != kDefaultStages && stages != kDeepStages) {
    return Status::error("attention: load stages must be 0 (chosen per step), " +
                         std::to_string(kDefaultStages) + " or " + std::to_string(kDeepStages) +
                         ", not " + std::to_string(stages));
  }
  state_->load_stages = stages;
  return {};
}

void CudaAttention::set_scores_ahead(bool on) {
  state_->scores_ahead = on;
}

CudaAttention::Stats CudaAttention::stats() const {
  return {state_->n_items,  state_->n_split_items, state_->n_merges, state_->n_wgmma,
          state_->n_spread, state_->merge_fused,   state_->stages};
}

uint64_t CudaAttention::launch_key() const {
  const State& st = *state_;
  return Fnv1a64()
      .add(uint64_t(st.grid_items))
      .add(uint64_t(st.grid_merges))
      .add(uint64_t(st.n_wgmma))
      .add(uint64_t(st.dims.head_dim))
      .add(uint64_t(st.spread))
      .add(uint64_t(st.wgmma_pipeline))
      .add(uint64_t(st.merge_fused))
      .add(uint64_t(st.stages))
      .add(st.merge_arrivals.as())
      .add(st.work.as())
      .add(st.rec_m.as())
      .add(st.rec_l.as())
      .add(st.rec_acc.as())
      .value();
}

Status CudaAttention::plan(const AttentionPlan& hp, const AttentionDims& dims, KernelMode mode,
                           cudaStream_t stream) {
  State& st = *state_;
  st.planned = false;
  INVAR_ASSIGN_OR_RETURN(AttentionWork w, plan_attention_work(hp, dims, mode, st.options));
  // The wgmma kernel's items first (one launch each kernel); the order inside each part stays
  // longest first, and no order changes bits.
  auto on_wgmma = [&](const AttnItem& it) {
    return (it.record >= 0 ? st.split_kernel : st.prefill_kernel) == AttentionKernel::wgmma;
  };
  const auto mid = std::stable_partition(w.items.begin(), w.items.end(), on_wgmma);
  st.n_wgmma = int64_t(mid - w.items.begin());
  st.dims = dims;
  st.n_items = int64_t(w.items.size());
  st.n_merges = int64_t(w.merges.size());
  st.n_split_items = w.split_items();
  st.n_spread = st.spread
                    ? std::count_if(mid, w.items.end(),
                                    [](const AttnItem& it) { return it.nrows <= kAttnRowsPerWarp; })
                    : 0;

  // Split-state buffers, grown (to twice the need) before any queued work could still use them.
  const int64_t acc_floats = w.records * dims.head_dim;
  if (size_t(w.records) * 4 > st.rec_m.bytes() || size_t(acc_floats) * 4 > st.rec_acc.bytes()) {
    INVAR_RETURN_IF_ERROR(cuda_status(cudaStreamSynchronize(stream), "attention plan: sync"));
    const size_t records = std::max(size_t(w.records), 2 * (st.rec_m.bytes() / 4));
    const size_t acc = std::max(size_t(acc_floats), 2 * (st.rec_acc.bytes() / 4));
    INVAR_RETURN_IF_ERROR(st.rec_m.reserve(records * 4, "attention split states (m)"));
    INVAR_RETURN_IF_ERROR(st.rec_l.reserve(records * 4, "attention split states (l)"));
    INVAR_RETURN_IF_ERROR(st.rec_acc.reserve(acc * 4, "attention split states (acc)"));
  }

  // Upload the work list: the counts the kernels read, then the items and merges at offsets
  // fixed by the grid sizes (so a graph's kernel arguments stay valid from step to step).
  auto grid_of = [&](int64_t n) {
    if (!st.fixed_grid || n == 0) return n;
    int64_t g = 32;
    while (g < n) g *= 2;
    return g;
  };
  st.grid_items = st.n_wgmma + grid_of(st.n_items - st.n_wgmma);
  st.grid_merges = grid_of(st.n_merges);
  // Small launches (at most one CTA per SM of the reference count, R5) join the merges to the
  // attention launch and keep a whole split's loads in flight: there a CTA's few tiles are a
  // chain of latencies and the merge launch a large share of the step. Bigger launches keep
  // two stages (two CTAs per SM hide each other's latency) and the merge launch: the fused
  // merge's release of every split CTA's states kept each CTA ~1 us longer, 7-12 % slower at
  // 512-1024 CTAs (H100, attention-fused-merge-h100-2026-12-07-f8b1b41.txt).
  const int64_t grid_mma = st.grid_items - st.n_wgmma;
  const bool small_launch = grid_mma <= kReferenceSmCount;
  st.stages = st.load_stages ? st.load_stages : small_launch ? kDeepStages : kDefaultStages;
  // The merges can join the attention launch only when the split items run on it (mma.sync).
  // Arrival counters start at zero and the last arrival resets its own, so they are zeroed only
  // here, when the buffer grows (before it, nothing queued may still count in the old one).
  const MergePlacement where = st.merge_placement;
  st.merge_fused =
      st.n_merges > 0 && st.split_kernel == AttentionKernel::mma_sync &&
      (where == MergePlacement::fused || (where == MergePlacement::per_step && small_launch));
  if (st.merge_fused && size_t(st.n_merges) * 4 > st.merge_arrivals.bytes()) {
    INVAR_RETURN_IF_ERROR(cuda_status(cudaStreamSynchronize(stream), "attention plan: sync"));
    const size_t n = std::max(size_t(st.n_merges), 2 * (st.merge_arrivals.bytes() / 4));
    INVAR_RETURN_IF_ERROR(st.merge_arrivals.reserve(n * 4, "attention merge counters"));
    INVAR_RETURN_IF_ERROR(cuda_status(cudaMemsetAsync(st.merge_arrivals.as(), 0, n * 4, stream),
                                      "attention plan: zeroing the merge counters"));
  }
  const WorkLayout layout(st.grid_items, st.grid_merges);
  if (st.n_items > 0) {
    INVAR_RETURN_IF_ERROR(cuda_status(cudaEventSynchronize(st.uploaded), "attention plan: sync"));
    if (layout.bytes > st.staging.bytes()) {
      INVAR_RETURN_IF_ERROR(
          st.staging.reserve(layout.bytes * 2, "the attention work list (staging)"));
    }
    if (layout.bytes > st.work.bytes()) {
      INVAR_RETURN_IF_ERROR(cuda_status(cudaStreamSynchronize(stream), "attention plan: sync"));
      INVAR_RETURN_IF_ERROR(st.work.reserve(layout.bytes * 2, "the attention work list"));
    }
    unsigned char* h = st.staging.as<unsigned char>();
    // The counts the mma.sync and merge kernels compare blockIdx.x with.
    const int32_t counts[2] = {int32_t(st.n_items - st.n_wgmma), int32_t(st.n_merges)};
    std::copy_n(reinterpret_cast<const unsigned char*>(counts), sizeof(counts), h);
    std::copy_n(reinterpret_cast<const unsigned char*>(w.items.data()),
                w.items.size() * sizeof(AttnItem), h + layout.items);
    std::copy_n(reinterpret_cast<const unsigned char*>(w.merges.data()),
                w.merges.size() * sizeof(MergeItem), h + layout.merges);
    const size_t used = layout.merges + w.merges.size() * sizeof(MergeItem);
    INVAR_RETURN_IF_ERROR(
        cuda_status(cudaMemcpyAsync(st.work.as(), h, used, cudaMemcpyHostToDevice, stream),
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
  if (st.grid_items == 0) return {};
  const WorkLayout layout(st.grid_items, st.grid_merges);
  const unsigned char* work = st.work.as<const unsigned char>();
  const auto* counts = reinterpret_cast<const int32_t*>(work);
  const auto* items = reinterpret_cast<const AttnItem*>(work + layout.items);
  const auto* merges = reinterpret_cast<const MergeItem*>(work + layout.merges);
  if (st.n_wgmma > 0) {
    const sm90::KvTensorMaps* maps = nullptr;
    for (const State::CachedMaps& c : st.tensor_maps) {
      if (c.cache.k == cache.k && c.cache.v == cache.v && c.cache.num_blocks == cache.num_blocks &&
          c.cache.block_size == cache.block_size && c.cache.kv_heads == cache.kv_heads &&
          c.cache.head_dim == cache.head_dim) {
        maps = &c.maps;
        break;
      }
    }
    if (!maps) {
      if (st.tensor_maps.size() >= 1024) st.tensor_maps.clear();  // caches come and go
      State::CachedMaps c{cache, {}};
      INVAR_RETURN_IF_ERROR(sm90::encode_kv_tensor_maps(cache, &c.maps));
      st.tensor_maps.push_back(c);
      maps = &st.tensor_maps.back().maps;
    }
    sm90::AttentionWgmmaArgs a;
    a.items = items;
    a.n_items = st.n_wgmma;
    a.q = q;
    a.q_stride = q_stride;
    a.cache = cache;
    a.maps = maps;
    a.block_tables = dp.block_tables;
    a.max_blocks = dp.max_blocks_per_seq;
    a.group = d.q_heads / d.kv_heads;
    a.scale_log2 = d.scale * kLog2e;
    a.out = out;
    a.out_stride = out_stride;
    a.rec_m = st.rec_m.as<float>();
    a.rec_l = st.rec_l.as<float>();
    a.rec_acc = st.rec_acc.as<float>();
    a.pipeline = st.wgmma_pipeline;
    INVAR_RETURN_IF_ERROR(sm90::attention_wgmma(a, stream));
  }
  const int64_t grid_mma = st.grid_items - st.n_wgmma;
  const AttnParams p{.items = items + st.n_wgmma,
                     .item_count = counts,
                     .q = q,
                     .q_stride = q_stride,
                     .k = cache.k,
                     .v = cache.v,
                     .block_tables = dp.block_tables,
                     .max_blocks = dp.max_blocks_per_seq,
                     .block_size = dp.block_size,
                     .kv_heads = d.kv_heads,
                     .group = d.q_heads / d.kv_heads,
                     .scale_log2 = d.scale * kLog2e,
                     .out = out,
                     .out_stride = out_stride,
                     .rec_m = st.rec_m.as<float>(),
                     .rec_l = st.rec_l.as<float>(),
                     .rec_acc = st.rec_acc.as<float>(),
                     .spread_rows = st.spread ? kRowsPerWarp : 0,
                     .scores_ahead = st.scores_ahead ? 1 : 0,
                     .merges = st.merge_fused ? merges : nullptr,
                     .merge_arrivals = st.merge_arrivals.as<int32_t>()};
  if (grid_mma > 0) {
    if (d.head_dim == 64) {
      launch_attention<64>(st.stages, grid_mma, p, stream);
    } else {
      launch_attention<128>(st.stages, grid_mma, p, stream);
    }
    INVAR_RETURN_IF_ERROR(cuda_status(cudaGetLastError(), "attention: kernel launch"));
  }
  if (st.grid_merges > 0 && !st.merge_fused) {
    const MergeParams mp{.items = merges,
                         .item_count = counts + 1,
                         .group = d.q_heads / d.kv_heads,
                         .out = out,
                         .out_stride = out_stride,
                         .rec_m = st.rec_m.as<const float>(),
                         .rec_l = st.rec_l.as<const float>(),
                         .rec_acc = st.rec_acc.as<const float>()};
    if (d.head_dim == 64) {
      attention_merge_kernel<64><<<unsigned(st.grid_merges), kThreads, 0, stream>>>(mp);
    } else {
      attention_merge_kernel<128><<<unsigned(st.grid_merges), kThreads, 0, stream>>>(mp);
    }
    INVAR_RETURN_IF_ERROR(cuda_status(cudaGetLastError(), "attention: merge kernel launch"));
  }
  return {};
}

}  // namespace invar::kernels::cuda
