// Paged causal GQA attention on Hopper (sm_90a): the work items of attention_plan.h (whole-row
// CTAs of up to 128 rows, split CTAs of up to 64) computed with wgmma and TMA, for the bits of the
// mma.sync kernel of attention.cu.
//   S = sequences, T = tokens, Hq / Hkv = query / kv heads, G = Hq / Hkv, D = head dim (64, 128),
//   row = one (token, q head) pair of a sequence and kv head: row r is token r / G, head r % G
//
// Algorithm. A CTA is three warpgroups. Warpgroup 0 produces: one warp gathers every 64-position
// K and V tile of the paged cache into a ring of kStages shared-memory stages guarded by
// mbarriers, one TMA copy per cache page and 64-column half, 128-byte swizzled (cp.async with
// zero fill for the tile that holds the CTA's last position, and for block sizes no TMA box fits).
// Warpgroups 1 and 2 own rows 0..63 and 64..127 of the CTA. Per tile each computes
// S = Q K^T (wgmma m64n64k16; A = Q in registers, B = the K tile; D / 16 k-steps in order into a
// zeroed accumulator), the recipe's softmax step on those registers, acc *= alpha, and
// acc += P V (wgmma m64nDk16; A = P rounded to bf16 in registers, B = the V tile read MN-major;
// 4 k-steps in order). At the end of every split it folds (m, l, acc) into (M, L, O) (O in shared
// memory) or writes the split's state. setmaxnreg moves registers from producer to consumers.
//
// Why the bits are the mma.sync kernel's: per row the same operations in the same order, through
// the same device functions (attention_recipe.cuh); the products are wgmma k-chains where
// attention.cu has mma.sync k-chains over the same k order, and those give equal bits (measured,
// bench/results/attention-notes.md). Per warp, wgmma's m64nN accumulator and its register A
// operand have mma.sync's m16n8 / m16k16 fragment layouts, so the softmax code is shared as is.
// Which rows share a CTA or warpgroup never enters a row's arithmetic: rows are independent in
// every instruction, and tiles past a row's last position are no-ops for it (attention.cu).
#include <cuda.h>
#include <cudaTypedefs.h>

#include <cstring>
#include <cute/arch/mma_sm90_desc.hpp>
#include <cute/arch/mma_sm90_gmma.hpp>
#include <string>
#include <type_traits>
#include <utility>

#include "kernels/cuda/attention_recipe.cuh"
#include "kernels/cuda/device.h"
#include "kernels/cuda/sm90/attention_sm90.h"
#include "kernels/cuda/sm90/attention_sm90_layout.h"

namespace invar::kernels::cuda::sm90 {
namespace {

using bf16 = __nv_bfloat16;
namespace gmma = cute::SM90::GMMA;

constexpr int kTile = kAttnKvTile;  // positions per tile (R3)
constexpr int kWgRows = 64;         // rows of one consumer warpgroup: wgmma's M
constexpr int kConsumers = 2;
static_assert(kConsumers * kWgRows == kAttnRowsPerCtaWide, "the planner's CTA size");
static_assert(kAttnRowsPerCta <= kWgRows, "a split item fits one consumer warpgroup");
constexpr int kThreads = 128 * (1 + kConsumers);
constexpr int kStages = 3;
// Registers per thread after setmaxnreg: the producer needs few; the consumers hold Q, S and acc
// (D = 128: 32 + 32 + 64) and must not spill. setmaxnreg.inc takes registers from the CTA's pool,
// which is what the launch gave it (__launch_bounds__(384, 1): 168 per thread), never more: a
// split over that would leave a consumer warpgroup waiting forever.
constexpr int kLaunchRegs = 168;  // 65536 / 384, rounded down to ptxas's granularity of 8
constexpr int kProducerRegs = 24;
constexpr int kConsumerRegs = 240;
static_assert(128 * kProducerRegs + 128 * kConsumers * kConsumerRegs <= kLaunchRegs * kThreads,
              "setmaxnreg split within the CTA's register pool");
static_assert(kLaunchRegs * kThreads <= 65536, "one CTA per SM fits the register file");
constexpr int kProducerLanes = 32;  // each arrives once per phase of a full barrier

// Shared memory of one K or V tile and the descriptors that read it: attention_sm90_layout.h.
constexpr int kRowBytes = int(kAttnRowBytes);
constexpr int kHalfBytes = int(kAttnHalfBytes);

template <int D>
struct SmemPlan {
  static constexpr int kTileBytes = kTile * D * 2;
  static constexpr int kK = 0;
  static constexpr int kV = kStages * kTileBytes;
  static constexpr int kO = 2 * kStages * kTileBytes;
  // The lean schedule's Q: a tile per consumer warpgroup (its 64 rows, laid out as a K tile).
  static constexpr int kQ = kO + (D / 2) * (128 * kConsumers) * 4;
  static constexpr int kBars = kQ + kConsumers * kTileBytes;  // full_k, full_v, empty
  static constexpr int kBytes = kBars + 3 * kStages * 8;
  static constexpr size_t kAlloc = size_t(kBytes) + 1024;  // room to align the base to 1024
};

struct WgmmaParams {
  CUtensorMap tmap_k;  // [slots, Hkv, D] view of the K cache, box [box_rows, 1, 64]
  CUtensorMap tmap_v;
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
  int box_rows;      // 0: every tile by cp.async
  float scale_log2;  // scale * log2(e): scores live in base 2
  bf16* out;
  int64_t out_stride;
  float* rec_m;
  float* rec_l;
  float* rec_acc;
};

// ---- PTX wrappers ---------------------------------------------------------------------------

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return uint32_t(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void mbar_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes)
               : "memory");
}
// Waits until the phase of parity `parity` has completed (acquire: what was released before the
// arrivals, and the TMA bytes counted on it, is visible after). Called by whole warps; lanes may
// leave the spin at different tries, so the warp reconverges before the .sync.aligned wgmma and
// shuffle instructions that follow.
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  uint32_t done = 0;
  do {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
        "selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
  } while (!done);
  __syncwarp();
}

// One TMA box of a 3-d tensor map into shared memory, completing on `bar` (bytes counted).
__device__ __forceinline__ void tma_load_3d(uint32_t dst, const CUtensorMap* map, int x, int y,
                                            int z, uint32_t bar) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, "
      "{%2, %3, %4}], [%5];\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(x), "r"(y), "r"(z), "r"(bar)
      : "memory");
}
__device__ __forceinline__ void prefetch_tensormap(const CUtensorMap* map) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
}

// 16-byte async copy; zero-fills the destination when !pred (src must still be a valid address).
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool pred) {
  const int n = pred ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(n)
               : "memory");
}
__device__ __forceinline__ void cp_async_wait_all() {
  asm volatile("cp.async.wait_all;\n" ::: "memory");
}
// Orders this thread's generic-proxy shared-memory writes before later async-proxy reads
// (wgmma, TMA) that a barrier makes them precede.
__device__ __forceinline__ void fence_proxy_async() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

template <int N>
__device__ __forceinline__ void setmaxnreg_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}
template <int N>
__device__ __forceinline__ void setmaxnreg_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}

template <int N>
__device__ __forceinline__ void fence_regs(float (&r)[N][4]) {
#pragma unroll
  for (int i = 0; i < N; ++i) {
#pragma unroll
    for (int e = 0; e < 4; ++e) cute::warpgroup_fence_operand(r[i][e]);
  }
}

// d (m64 x 8N, this warp's m16 slice as d[j][0..3]) += a (m64 x k16, registers) * B (descriptor).
// scale Zero: d = a * B, the accumulator's old values unread.
template <class Op, int N, size_t... I>
__device__ __forceinline__ void wgmma_rs(const uint32_t (&a)[4], uint64_t desc, float (&d)[N][4],
                                         std::index_sequence<I...>,
                                         gmma::ScaleOut scale = gmma::ScaleOut::One) {
  Op::fma(a[0], a[1], a[2], a[3], desc, d[I / 4][I % 4]..., scale);
}

// S = Q K^T of one tile: D / 16 wgmma k-steps in order into s (zeroed by the caller, as
// mma.sync's chain starts from a zero accumulator).
template <int D>
__device__ __forceinline__ void wgmma_scores(const uint32_t (&qf)[D / 16][4], uint32_t k_tile,
                                             float (&s)[kTile / 8][4]) {
  using Op = gmma::MMA_64x64x16_F32BF16BF16_RS<gmma::Major::K, gmma::Major::K>;
  const uint64_t desc = attn_k_desc(k_tile, 0);
  fence_regs(s);
  cute::warpgroup_arrive();
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk)
    wgmma_rs<Op>(qf[kk], desc + attn_k_desc_step(kk), s, std::make_index_sequence<kTile / 2>{});
  cute::warpgroup_commit_batch();
  cute::warpgroup_wait<0>();
  fence_regs(s);
}

// acc += P V of one tile: 4 wgmma k-steps (16 positions each) in order.
template <int D>
__device__ __forceinline__ void wgmma_pv(const uint32_t (&pf)[kTile / 16][4], uint32_t v_tile,
                                         float (&acc)[D / 8][4]) {
  using Op = std::conditional_t<D == 128,
                                gmma::MMA_64x128x16_F32BF16BF16_RS<gmma::Major::K, gmma::Major::MN>,
                                gmma::MMA_64x64x16_F32BF16BF16_RS<gmma::Major::K, gmma::Major::MN>>;
  const uint64_t desc = attn_v_desc(v_tile, 0);
  fence_regs(acc);
  cute::warpgroup_arrive();
#pragma unroll
  for (int kk = 0; kk < kTile / 16; ++kk)
    wgmma_rs<Op>(pf[kk], desc + attn_v_desc_step(kk), acc, std::make_index_sequence<D / 2>{});
  cute::warpgroup_commit_batch();
  cute::warpgroup_wait<0>();
  fence_regs(acc);
}

// S = Q K^T with Q from shared memory (a tile laid out as a K tile: K-major, 128-byte swizzle).
template <class Op, int N, size_t... I>
__device__ __forceinline__ void wgmma_ss(uint64_t desc_a, uint64_t desc_b, float (&d)[N][4],
                                         std::index_sequence<I...>, gmma::ScaleOut scale) {
  Op::fma(desc_a, desc_b, d[I / 4][I % 4]..., scale);
}

// The same products issued without waiting, for the pipelined consumers: each call is one
// wgmma group (commit) that the caller waits for with warpgroup_wait<n> and then fences.
template <int D>
__device__ __forceinline__ void issue_scores(const uint32_t (&qf)[D / 16][4], uint32_t k_tile,
                                             float (&s)[kTile / 8][4]) {
  using Op = gmma::MMA_64x64x16_F32BF16BF16_RS<gmma::Major::K, gmma::Major::K>;
  const uint64_t desc = attn_k_desc(k_tile, 0);
  fence_regs(s);
  cute::warpgroup_arrive();
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    wgmma_rs<Op>(qf[kk], desc + attn_k_desc_step(kk), s, std::make_index_sequence<kTile / 2>{});
  }
  cute::warpgroup_commit_batch();
}
// The lean schedule's S: Q read from its shared-memory tile q_tile. The first k-step ignores s
// (wgmma's zero scale) instead of adding to an s zeroed per tile: the chain's first partial sum
// is a + 0 or a, equal but for the sign of an exact zero, and a score's zero sign never reaches
// an output (scores enter the recipe only through fmaxf and differences fed to ex2, and
// 2^(+0) = 2^(-0) = 1).
template <int D>
__device__ __forceinline__ void issue_scores_ss(uint32_t q_tile, uint32_t k_tile,
                                                float (&s)[kTile / 8][4]) {
  using Op = gmma::MMA_64x64x16_F32BF16BF16_SS<gmma::Major::K, gmma::Major::K>;
  const uint64_t desc_q = attn_k_desc(q_tile, 0), desc_k = attn_k_desc(k_tile, 0);
  fence_regs(s);
  cute::warpgroup_arrive();
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    wgmma_ss<Op>(desc_q + attn_k_desc_step(kk), desc_k + attn_k_desc_step(kk), s,
                 std::make_index_sequence<kTile / 2>{},
                 kk == 0 ? gmma::ScaleOut::Zero : gmma::ScaleOut::One);
  }
  cute::warpgroup_commit_batch();
}

template <int N>
__device__ __forceinline__ void fence_regs(uint32_t (&r)[N][4]) {
#pragma unroll
  for (int i = 0; i < N; ++i) {
#pragma unroll
    for (int e = 0; e < 4; ++e) cute::warpgroup_fence_operand(r[i][e]);
  }
}

template <int D>
__device__ __forceinline__ void issue_pv(uint32_t (&pf)[kTile / 16][4], uint32_t v_tile,
                                         float (&acc)[D / 8][4]) {
  using Op = std::conditional_t<D == 128,
                                gmma::MMA_64x128x16_F32BF16BF16_RS<gmma::Major::K, gmma::Major::MN>,
                                gmma::MMA_64x64x16_F32BF16BF16_RS<gmma::Major::K, gmma::Major::MN>>;
  const uint64_t desc = attn_v_desc(v_tile, 0);
  fence_regs(acc);
  fence_regs(pf);
  cute::warpgroup_arrive();
#pragma unroll
  for (int kk = 0; kk < kTile / 16; ++kk)
    wgmma_rs<Op>(pf[kk], desc + attn_v_desc_step(kk), acc, std::make_index_sequence<D / 2>{});
  cute::warpgroup_commit_batch();
}

// Named barriers of the ping-pong schedule (0 is __syncthreads'): consumer warpgroup w waits on
// barrier w for its turn at the tensor cores and hands the turn to the other one after issuing.
constexpr int kConsumerThreads = 128 * kConsumers;
__device__ __forceinline__ void named_bar_sync(int id) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "n"(kConsumerThreads) : "memory");
}
__device__ __forceinline__ void named_bar_arrive(int id) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "n"(kConsumerThreads) : "memory");
}

// ---- producer -------------------------------------------------------------------------------

// One tile by cp.async (all 32 lanes): positions past max_pos are zero-filled and never read from
// the cache, so every row the consumers multiply is finite (p = 0 there, as in attention.cu).
template <int D>
__device__ __forceinline__ void gather_tile(const WgmmaParams& p, const AttnItem& it,
                                            const int32_t* table, uint32_t sk, uint32_t sv,
                                            int first, int max_pos, int lane) {
  constexpr int kChunks = D / 8;  // 16-byte chunks per row
  const int bs = p.block_size;
  for (int idx = lane; idx < kTile * kChunks; idx += 32) {
    const int row = idx / kChunks, c = idx % kChunks;
    const int pos = first + row;
    const bool ok = pos <= max_pos;
    const bf16* ks = p.k;
    const bf16* vs = p.v;
    if (ok) {
      const int64_t slot = int64_t(table[pos / bs]) * bs + pos % bs;
      const int64_t off = (slot * p.kv_heads + it.kv_head) * D + c * 8;
      ks = p.k + off;
      vs = p.v + off;
    }
    const uint32_t dst = attn_tile_byte(row, c * 8);
    cp_async16(sk + dst, ks, ok);
    cp_async16(sv + dst, vs, ok);
  }
}

template <int D>
__device__ __forceinline__ void produce(const WgmmaParams& p, const AttnItem& it, uint32_t k_base,
                                        uint32_t v_base, uint32_t bars, int tile_lo, int tile_hi,
                                        int max_pos) {
  constexpr int kTileBytes = SmemPlan<D>::kTileBytes;
  const int lane = threadIdx.x & 31;
  const int bs = p.block_size;
  const int box_rows = p.box_rows;
  const int32_t* table = p.block_tables + int64_t(it.seq) * p.max_blocks;
  if (box_rows > 0 && lane == 0) {
    prefetch_tensormap(&p.tmap_k);
    prefetch_tensormap(&p.tmap_v);
  }
  const int pages = box_rows > 0 ? kTile / box_rows : 0;
  // Cache slot of the tile's page `lane` (lanes < pages). The block table is read one tile
  // ahead, so that its global-memory latency overlaps the wait for a free stage instead of
  // delaying the tile's copies (the consumers waited on K and V for a fifth of the prefill
  // loop: attention-notes.md).
  auto page_slot = [&](int tile) {  // only for the tiles the TMA path below copies
    if (lane >= pages || tile >= tile_hi || tile * kTile + kTile - 1 > max_pos) return 0;
    const int pos = tile * kTile + lane * box_rows;
    return table[pos / bs] * bs + pos % bs;
  };
  int next_slot = page_slot(tile_lo);
  for (int tile = tile_lo; tile < tile_hi; ++tile) {
    const int i = tile - tile_lo, stage = i % kStages;
    const uint32_t full_k = bars + 8 * stage, full_v = bars + 8 * (kStages + stage);
    const uint32_t empty = bars + 8 * (2 * kStages + stage);
    const int slot = next_slot;
    next_slot = page_slot(tile + 1);
    mbar_wait(empty, ((i / kStages) & 1) ^ 1);  // the first round passes at once
    const uint32_t sk = k_base + stage * kTileBytes, sv = v_base + stage * kTileBytes;
    const int first = tile * kTile;
    if (box_rows > 0 && first + kTile - 1 <= max_pos) {
      // Every position of the tile is one of the CTA's: a TMA box per page and half.
      if (lane == 0) {
        mbar_arrive_expect_tx(full_k, kTileBytes);
        mbar_arrive_expect_tx(full_v, kTileBytes);
      } else {
        mbar_arrive(full_k);
        mbar_arrive(full_v);
      }
      for (int j = 0; j < pages; ++j) {
        const int slot_j = __shfl_sync(0xffffffffu, slot, j);
        if (lane == 0) {
#pragma unroll
          for (int h = 0; h < D / 64; ++h) {
            const uint32_t off = h * kHalfBytes + j * box_rows * kRowBytes;
            tma_load_3d(sk + off, &p.tmap_k, h * 64, it.kv_head, slot_j, full_k);
            tma_load_3d(sv + off, &p.tmap_v, h * 64, it.kv_head, slot_j, full_v);
          }
        }
      }
    } else {
      // The tile of the CTA's last position (or a block size no box fits): cp.async with zero
      // fill, completed and fenced for the async proxy before this lane's arrival.
      gather_tile<D>(p, it, table, sk, sv, first, max_pos, lane);
      cp_async_wait_all();
      fence_proxy_async();
      mbar_arrive(full_k);
      mbar_arrive(full_v);
    }
  }
}

// ---- consumers ------------------------------------------------------------------------------

// Q as wgmma's register A, k-step kk = dims 16kk..16kk+15: the m16k16 fragment of the warp's 16
// rows r0, r1 (this lane's), straight from global memory (padding rows are zero, as
// attention.cu's).
template <int D>
__device__ __forceinline__ void load_q(const WgmmaParams& p, const AttnItem& it, int r0, int r1,
                                       int lane, uint32_t (&qf)[D / 16][4]) {
  const int G = p.group;
  const uint32_t* q0 = nullptr;
  const uint32_t* q1 = nullptr;
  auto row_ptr = [&](int r) {
    const int rr = it.row_begin + r;
    return reinterpret_cast<const uint32_t*>(p.q + int64_t(it.q_begin + rr / G) * p.q_stride +
                                             int64_t(it.kv_head * G + rr % G) * D);
  };
  if (r0 < it.nrows) q0 = row_ptr(r0);
  if (r1 < it.nrows) q1 = row_ptr(r1);
  const int c = lane & 3;
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    qf[kk][0] = q0 ? __ldg(q0 + 8 * kk + c) : 0u;
    qf[kk][1] = q1 ? __ldg(q1 + 8 * kk + c) : 0u;
    qf[kk][2] = q0 ? __ldg(q0 + 8 * kk + 4 + c) : 0u;
    qf[kk][3] = q1 ? __ldg(q1 + 8 * kk + 4 + c) : 0u;
  }
}

// The lean schedule's Q: rows wg_row0 .. wg_row0 + 63 of the CTA into the warpgroup's tile at
// q_tile (the layout of a K tile, attention_sm90_layout.h), padding rows zero; all 128 threads
// of the warpgroup, which then wait for each other at named barrier `bar`. The generic-proxy
// writes are fenced for wgmma's async-proxy reads.
template <int D>
__device__ __forceinline__ void store_q(const WgmmaParams& p, const AttnItem& it, int wg_row0,
                                        uint32_t q_tile, int tid, int bar) {
  constexpr int kChunks = D / 8;  // 16 bytes each
  const int G = p.group;
  for (int idx = tid; idx < kWgRows * kChunks; idx += 128) {
    const int row = idx / kChunks, c = idx % kChunks, r = wg_row0 + row;
    uint4 v = make_uint4(0u, 0u, 0u, 0u);
    if (r < it.nrows) {
      const int rr = it.row_begin + r;
      v = __ldg(reinterpret_cast<const uint4*>(p.q + int64_t(it.q_begin + rr / G) * p.q_stride +
                                               int64_t(it.kv_head * G + rr % G) * D + c * 8));
    }
    asm volatile(
        "st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"r"(q_tile + attn_tile_byte(row, c * 8)),
        "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w)
        : "memory");
  }
  fence_proxy_async();
  asm volatile("bar.sync %0, 128;\n" ::"r"(bar) : "memory");
}

// A whole-row item's rows out of O (shared memory) and L.
template <int D>
__device__ __forceinline__ void write_output(const WgmmaParams& p, const AttnItem& it,
                                             const int (&row)[2], const float* my_o, int o_stride,
                                             const float (&L)[2], int lane) {
  const int G = p.group;
  bf16* dst[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int rr = it.row_begin + row[h];
    dst[h] = row[h] < it.nrows ? p.out + int64_t(it.q_begin + rr / G) * p.out_stride +
                                     int64_t(it.kv_head * G + rr % G) * D
                               : nullptr;
  }
  attn::write_rows<D / 8>(dst, my_o, o_stride, L, 0, lane);
}

template <int N>
__device__ __forceinline__ void zero(float (&r)[N][4]) {
#pragma unroll
  for (int j = 0; j < N; ++j) r[j][0] = r[j][1] = r[j][2] = r[j][3] = 0.0f;
}

// The serial schedule: per tile S = Q K^T, wait, softmax, rescale, acc += P V, wait. The tensor
// cores idle while this warpgroup computes the softmax (the other warpgroup may fill them).
template <int D>
__device__ __forceinline__ void consume_serial(const WgmmaParams& p, const AttnItem& it,
                                               uint32_t k_base, uint32_t v_base, uint32_t bars,
                                               float* s_o, int wg_row0, int tile_lo, int tile_hi,
                                               int first_pos) {
  constexpr int kTileBytes = SmemPlan<D>::kTileBytes;
  constexpr int kOStride = 128 * kConsumers;  // s_o[j * kOStride + thread]: O of value j
  const int tid = threadIdx.x & 127, warp = tid >> 5, lane = tid & 31;
  float* my_o = s_o + (threadIdx.x - 128);
  const int G = p.group;
  // This lane's rows of the CTA (the fragment legend of attention_recipe.cuh).
  const int r0 = wg_row0 + warp * 16 + (lane >> 2), r1 = r0 + 8;
  const int pos0 = r0 < it.nrows ? first_pos + (it.row_begin + r0) / G : -1;
  const int pos1 = r1 < it.nrows ? first_pos + (it.row_begin + r1) / G : -1;
  const int row[2] = {r0, r1}, pos[2] = {pos0, pos1};
  uint32_t qf[D / 16][4];
  load_q<D>(p, it, r0, r1, lane, qf);

  const bool to_output = it.record < 0;
  const attn::SplitRecords records{p.rec_m, p.rec_l, p.rec_acc};
  float M[2] = {-INFINITY, -INFINITY}, L[2] = {0.0f, 0.0f};
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  float acc[D / 8][4];
  zero(acc);
  if (to_output) {
#pragma unroll
    for (int j = 0; j < D / 2; ++j) my_o[j * kOStride] = 0.0f;
  }

  for (int tile = tile_lo; tile < tile_hi; ++tile) {
    const int i = tile - tile_lo, stage = i % kStages;
    const uint32_t parity = (i / kStages) & 1;
    const uint32_t sk = k_base + stage * kTileBytes, sv = v_base + stage * kTileBytes;

    float s[kTile / 8][4];
    zero(s);
    mbar_wait(bars + 8 * stage, parity);  // K
    wgmma_scores<D>(qf, sk, s);

    float al[2];
    attn::softmax_tile<kTile / 8>(s, tile * kTile, pos0, pos1, p.scale_log2, m, l, al, lane);
    attn::rescale<D / 8>(acc, al);
    uint32_t pf[kTile / 16][4];
#pragma unroll
    for (int kk = 0; kk < kTile / 16; ++kk) attn::p_fragment<kTile / 8>(s, kk, pf[kk]);

    mbar_wait(bars + 8 * (kStages + stage), parity);  // V
    wgmma_pv<D>(pf, sv, acc);
    if (lane == 0) mbar_arrive(bars + 8 * (2 * kStages + stage));  // the stage is free

    // End of a split (fixed from tile 0) or of the CTA's tiles: fold in split order, or write
    // the split's state for the merge; as attention.cu (O in shared memory as there).
    if ((tile + 1) % it.split_tiles == 0 || tile + 1 == tile_hi) {
      const int split = tile / it.split_tiles;
      attn::end_split<D, D / 8>(pos, row, split, split * it.split_tiles * kTile, to_output, my_o,
                                kOStride, M, L, m, l, acc, 0, (lane & 3) == 0, records, it.record,
                                it.record_stride, lane);
    }
  }
  if (to_output) write_output<D>(p, it, row, my_o, kOStride, L, lane);
}

// The pipelined schedule (FlashAttention-3's two overlaps, in an order that keeps every row's
// operations and their order those of the serial schedule):
//  - within a warpgroup, S of tile i + 1 and acc += P V of tile i are issued together, and the
//    softmax of tile i + 1 runs while the tensor cores compute P V of tile i; acc is rescaled by
//    tile i + 1's alpha only after P V of tile i has landed, as in the serial order;
//  - with pingpong, the two consumer warpgroups take turns at issuing (named barriers 1 and 2),
//    so one's softmax overlaps the other's products instead of both competing at once.
// A split that ends at tile i has its (m, l) set aside before tile i + 1's softmax starts the
// next split's state from scratch, and is folded once P V of tile i is in acc: the same values
// the serial schedule folds.
// kLean (the lean schedule, pingpong with fewer instructions per tile): S starts from wgmma's
// zero scale instead of registers zeroed per tile, and reads Q from shared memory, which frees
// the registers that keep O in registers instead of shared memory (no loads and stores at each
// split's fold). Tried and left out (ptxas then serializes the wgmma, C7511): skipping
// acc *= alpha when every alpha of the warp is 1.
template <int D, bool kLean>
__device__ __forceinline__ void consume_pipelined(const WgmmaParams& p, const AttnItem& it,
                                                  uint32_t k_base, uint32_t v_base, uint32_t q_base,
                                                  uint32_t bars, float* s_o, int wg, int tile_lo,
                                                  int tile_hi, int first_pos, bool pingpong) {
  constexpr int kTileBytes = SmemPlan<D>::kTileBytes;
  constexpr int kOStride = 128 * kConsumers;
  const int tid = threadIdx.x & 127, warp = tid >> 5, lane = tid & 31;
  float* my_o = s_o + (threadIdx.x - 128);
  const int G = p.group;
  const int r0 = (wg - 1) * kWgRows + warp * 16 + (lane >> 2), r1 = r0 + 8;
  const int pos0 = r0 < it.nrows ? first_pos + (it.row_begin + r0) / G : -1;
  const int pos1 = r1 < it.nrows ? first_pos + (it.row_begin + r1) / G : -1;
  const int row[2] = {r0, r1}, pos[2] = {pos0, pos1};
  uint32_t qf[kLean ? 1 : D / 16][4];                                   // Q in registers (not lean)
  const uint32_t q_tile = q_base + (wg - 1) * SmemPlan<D>::kTileBytes;  // Q in shared (lean)
  if constexpr (kLean) {
    store_q<D>(p, it, (wg - 1) * kWgRows, q_tile, tid, 2 + wg);  // barriers 3 and 4
  } else {
    load_q<D>(p, it, r0, r1, lane, qf);
  }

  const bool to_output = it.record < 0;
  const attn::SplitRecords records{p.rec_m, p.rec_l, p.rec_acc};
  float M[2] = {-INFINITY, -INFINITY}, L[2] = {0.0f, 0.0f};
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  float acc[D / 8][4];
  zero(acc);
  // O of the lane's rows: registers (lean) or this thread's column of shared memory.
  float o_reg[kLean ? D / 2 : 1];
  float* const o = kLean ? o_reg : my_o;
  constexpr int o_stride = kLean ? 1 : kOStride;
  if (to_output) {
#pragma unroll
    for (int j = 0; j < D / 2; ++j) o[j * o_stride] = 0.0f;
  }
  // Turns: warpgroup 1 issues first. Issue phases: 0 (S of the first tile), then one per tile;
  // warpgroup 2 hands back the turn after every phase but its last, so each barrier sees as many
  // arrivals as waits.
  const int n = tile_hi - tile_lo;
  const int my_bar = wg, other_bar = 3 - wg;
  if (pingpong && wg == 2 && n > 0) named_bar_arrive(1);
  auto take_turn = [&] {
    if (pingpong) named_bar_sync(my_bar);
  };
  auto pass_turn = [&](bool last_phase) {
    if (pingpong && !(wg == 2 && last_phase)) named_bar_arrive(other_bar);
  };
  // The last tile of the split that holds tile_lo (splits are fixed from tile 0); a counter, not
  // a division per tile.
  int next_split_end = (tile_lo / it.split_tiles + 1) * it.split_tiles - 1;
  auto full_k = [&](int i) { return bars + 8 * (i % kStages); };
  auto full_v = [&](int i) { return bars + 8 * (kStages + i % kStages); };
  auto empty = [&](int i) { return bars + 8 * (2 * kStages + i % kStages); };
  auto parity = [](int i) { return uint32_t((i / kStages) & 1); };
  auto k_tile = [&](int i) { return k_base + (i % kStages) * kTileBytes; };
  auto v_tile = [&](int i) { return v_base + (i % kStages) * kTileBytes; };

  // Tiles before `unmasked_end` lie at or before every row of the CTA: their softmax needs no
  // causal mask (it would keep every score: the same bits). The bound is the same for the whole
  // CTA, so the choice is a loop split, not a branch between a wgmma and its wait (ptxas
  // serializes wgmma around divergent code that touches its registers).
  const int unmasked_end = (first_pos + it.row_begin / G + 1) / kTile - tile_lo;
  float s[kTile / 8][4];       // scores of the tile after the current one
  uint32_t pf[kTile / 16][4];  // P of the current tile
  float al[2];
  if (n > 0) {
    if constexpr (!kLean) zero(s);
    mbar_wait(full_k(0), parity(0));
    take_turn();
    if constexpr (kLean) {
      issue_scores_ss<D>(q_tile, k_tile(0), s);
    } else {
      issue_scores<D>(qf, k_tile(0), s);
    }
    pass_turn(false);
    cute::warpgroup_wait<0>();
    fence_regs(s);
    if (unmasked_end > 0) {  // no wgmma in flight here: a branch costs nothing
      attn::softmax_tile<kTile / 8, false>(s, tile_lo * kTile, pos0, pos1, p.scale_log2, m, l, al,
                                           lane);
    } else {
      attn::softmax_tile<kTile / 8>(s, tile_lo * kTile, pos0, pos1, p.scale_log2, m, l, al, lane);
    }
    attn::rescale<D / 8>(acc, al);
#pragma unroll
    for (int kk = 0; kk < kTile / 16; ++kk) attn::p_fragment<kTile / 8>(s, kk, pf[kk]);
  }
  // One tile's phase; kHasNext: a tile follows (its S is issued with this tile's P V). The last
  // tile is peeled off so that no branch separates an issue from its wait: ptxas serializes
  // wgmma where it cannot prove the softmax reads only completed accumulators.
  auto step = [&](int i, auto has_next_tag, auto mask_next_tag) {
    constexpr bool kHasNext = decltype(has_next_tag)::value;
    constexpr bool kMaskNext = decltype(mask_next_tag)::value;
    const int tile = tile_lo + i;
    const bool split_end = tile == next_split_end || tile + 1 == tile_hi;
    if (tile == next_split_end) next_split_end += it.split_tiles;
    if constexpr (kHasNext) {
      if constexpr (!kLean) zero(s);
      mbar_wait(full_k(i + 1), parity(i + 1));
    }
    mbar_wait(full_v(i), parity(i));
    take_turn();
    if constexpr (kHasNext) {
      if constexpr (kLean) {
        issue_scores_ss<D>(q_tile, k_tile(i + 1), s);
      } else {
        issue_scores<D>(qf, k_tile(i + 1), s);
      }
    }
    issue_pv<D>(pf, v_tile(i), acc);
    pass_turn(!kHasNext);

    float m_end[2], l_end[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      m_end[h] = m[h];
      l_end[h] = l[h];
      if (split_end) {
        m[h] = -INFINITY;
        l[h] = 0.0f;
      }
    }
    if constexpr (kHasNext) {
      cute::warpgroup_wait<1>();  // S of tile i + 1 (the older group)
      fence_regs(s);
      attn::softmax_tile<kTile / 8, kMaskNext>(s, (tile + 1) * kTile, pos0, pos1, p.scale_log2, m,
                                               l, al, lane);
    }
    cute::warpgroup_wait<0>();  // acc += P V of tile i
    fence_regs(acc);
    fence_regs(pf);
    if (lane == 0) mbar_arrive(empty(i));  // K and V of tile i are free

    if (split_end) {
      const int split = tile / it.split_tiles;
      attn::end_split<D, D / 8>(pos, row, split, split * it.split_tiles * kTile, to_output, o,
                                o_stride, M, L, m_end, l_end, acc, 0, (lane & 3) == 0, records,
                                it.record, it.record_stride, lane);
    }
    if constexpr (kHasNext) {
      attn::rescale<D / 8>(acc, al);
#pragma unroll
      for (int kk = 0; kk < kTile / 16; ++kk) attn::p_fragment<kTile / 8>(s, kk, pf[kk]);
    }
  };
  int i = 0;
  for (; i + 1 < min(n, unmasked_end); ++i) step(i, std::true_type{}, std::false_type{});
  for (; i + 1 < n; ++i) step(i, std::true_type{}, std::true_type{});
  if (n > 0) step(n - 1, std::false_type{}, std::true_type{});
  if (to_output) write_output<D>(p, it, row, o, o_stride, L, lane);
}

// What both roles derive from the CTA's item. Each role derives it itself after setmaxnreg, so
// no value lives across the role branch (a value shared with the 24-register producer would be
// spilled for the consumers too).
struct CtaWork {
  AttnItem it;
  int first_pos;  // absolute position of the sequence's first query token
  int max_pos;    // the CTA's last row's position
  int tile_lo, tile_hi;
  int consumers;  // consumer warpgroups with rows: 1 or 2
};
__device__ __forceinline__ CtaWork cta_work(const WgmmaParams& p) {
  CtaWork w;
  w.it = p.items[blockIdx.x];
  w.first_pos = w.it.kv_len - w.it.q_len;
  w.max_pos = w.first_pos + (w.it.row_begin + w.it.nrows - 1) / p.group;
  w.tile_lo = w.it.tile_begin;
  w.tile_hi = min(w.it.tile_end, w.max_pos / kTile + 1);
  w.consumers = w.it.nrows > kWgRows ? 2 : 1;
  return w;
}

__device__ __forceinline__ uint32_t smem_base() {
  extern __shared__ unsigned char smem_raw[];
  return (smem_u32(smem_raw) + 1023u) & ~1023u;  // swizzle anchor
}

template <int D, WgmmaPipeline P>
__global__ void __launch_bounds__(kThreads, 1)
    attention_wgmma_kernel(const __grid_constant__ WgmmaParams p) {
  const uint32_t bars = smem_base() + SmemPlan<D>::kBars;
  if (threadIdx.x == 0) {
    const int consumers = p.items[blockIdx.x].nrows > kWgRows ? 2 : 1;
    for (int s = 0; s < kStages; ++s) {
      mbar_init(bars + 8 * s, kProducerLanes);                 // K full
      mbar_init(bars + 8 * (kStages + s), kProducerLanes);     // V full
      mbar_init(bars + 8 * (2 * kStages + s), 4 * consumers);  // empty: one arrival per warp
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();

  const int wg = threadIdx.x / 128;
  if (wg == 0) {
    setmaxnreg_dec<kProducerRegs>();
    if (threadIdx.x < 32) {
      const CtaWork w = cta_work(p);
      const uint32_t base = smem_base();
      produce<D>(p, w.it, base + SmemPlan<D>::kK, base + SmemPlan<D>::kV, base + SmemPlan<D>::kBars,
                 w.tile_lo, w.tile_hi, w.max_pos);
    }
  } else {
    setmaxnreg_inc<kConsumerRegs>();
    const CtaWork w = cta_work(p);
    if (wg <= w.consumers) {  // a warpgroup without rows leaves at once
      extern __shared__ unsigned char smem_raw[];
      const uint32_t base = smem_base();
      float* s_o =
          reinterpret_cast<float*>(smem_raw + (base - smem_u32(smem_raw)) + SmemPlan<D>::kO);
      const uint32_t k_base = base + SmemPlan<D>::kK, v_base = base + SmemPlan<D>::kV;
      const uint32_t bars_base = base + SmemPlan<D>::kBars;
      if constexpr (P == WgmmaPipeline::serial) {
        consume_serial<D>(p, w.it, k_base, v_base, bars_base, s_o, (wg - 1) * kWgRows, w.tile_lo,
                          w.tile_hi, w.first_pos);
      } else {
        constexpr bool kTurns = P == WgmmaPipeline::pingpong || P == WgmmaPipeline::lean;
        consume_pipelined<D, P == WgmmaPipeline::lean>(
            p, w.it, k_base, v_base, base + SmemPlan<D>::kQ, bars_base, s_o, wg, w.tile_lo,
            w.tile_hi, w.first_pos, kTurns && w.consumers == 2);
      }
    }
  }
}

}  // namespace

namespace {
// cuTensorMapEncodeTiled through the runtime's driver entry point, as CUTLASS reaches it: a direct
// call would make every CUDA-enabled program need libcuda.so.1 at start-up, even one that only
// ever runs on the CPU.
Result<PFN_cuTensorMapEncodeTiled_v12000> tensor_map_encoder() {
  static PFN_cuTensorMapEncodeTiled_v12000 fn = nullptr;
  if (fn) return fn;
  void* p = nullptr;
  cudaDriverEntryPointQueryResult found{};
  const cudaError_t e = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000,
                                                         cudaEnableDefault, &found);
  if (e != cudaSuccess || found != cudaDriverEntryPointSuccess || !p) {
    return Status::error(
        "attention (wgmma): the CUDA driver does not provide cuTensorMapEncodeTiled (needs a "
        "driver for CUDA 12.0 or newer)");
  }
  fn = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(p);
  return fn;
}
}  // namespace

Status encode_kv_tensor_maps(const KvCacheRef& c, KvTensorMaps* maps) {
  static_assert(sizeof(CUtensorMap) == sizeof(maps->k), "CUtensorMap is 128 bytes");
  maps->box_rows = 0;
  const int bs = c.block_size;
  int box = 0;
  if (bs % 8 == 0 && kTile % bs == 0) {
    box = bs;  // a tile is 64 / bs whole pages
  } else if (bs % kTile == 0) {
    box = kTile;  // a tile lies inside one page
  }
  const int64_t slots = int64_t(c.num_blocks) * bs;
  if (box == 0 || slots > INT32_MAX) return {};  // cp.async gathers (TMA coordinates are int32)
  if (c.head_dim != 64 && c.head_dim != 128) {
    return Status::error("attention (wgmma): head_dim " + std::to_string(c.head_dim) +
                         " is not supported (64 or 128)");
  }
  // [slots, Hkv, D] with D innermost; a box is 64 dims (128 bytes, the swizzle span) of one head
  // for `box` consecutive slots.
  const cuuint64_t dims[3] = {cuuint64_t(c.head_dim), cuuint64_t(c.kv_heads), cuuint64_t(slots)};
  const cuuint64_t strides[2] = {cuuint64_t(c.head_dim) * 2,
                                 cuuint64_t(c.kv_heads) * c.head_dim * 2};
  const cuuint32_t box_dims[3] = {64, 1, cuuint32_t(box)};
  const cuuint32_t elem_strides[3] = {1, 1, 1};
  INVAR_ASSIGN_OR_RETURN(PFN_cuTensorMapEncodeTiled_v12000 encode, tensor_map_encoder());
  CUtensorMap mk, mv;
  for (auto [map, ptr] :
       {std::pair{&mk, static_cast<void*>(c.k)}, std::pair{&mv, static_cast<void*>(c.v)}}) {
    const CUresult r =
        encode(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, ptr, dims, strides, box_dims, elem_strides,
               CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
               CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS) {
      return Status::error(
          "attention (wgmma): cuTensorMapEncodeTiled of the KV cache failed "
          "(CUresult " +
          std::to_string(int(r)) + ")");
    }
  }
  std::memcpy(maps->k, &mk, sizeof(mk));
  std::memcpy(maps->v, &mv, sizeof(mv));
  maps->box_rows = box;
  return {};
}

namespace {
template <int D, WgmmaPipeline P>
Status setup_kernel() {
  // setmaxnreg redistributes the registers the launch gave the CTA: if ptxas ever compiled the
  // kernel to fewer than kLaunchRegs per thread, a consumer's setmaxnreg.inc would wait forever.
  const void* f = reinterpret_cast<const void*>(attention_wgmma_kernel<D, P>);
  cudaFuncAttributes attr{};
  INVAR_RETURN_IF_ERROR(cuda_status(cudaFuncGetAttributes(&attr, f),
                                    "attention (wgmma): reading the kernel's attributes"));
  if (attr.numRegs < kLaunchRegs) {
    return Status::error("attention (wgmma): the kernel was compiled to " +
                         std::to_string(attr.numRegs) + " registers per thread, fewer than the " +
                         std::to_string(kLaunchRegs) +
                         " its setmaxnreg split needs; rebuild with this file's flags");
  }
  return cuda_status(cudaFuncSetAttribute(f, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          int(SmemPlan<D>::kAlloc)),
                     "attention (wgmma): shared memory limit (D = " + std::to_string(D) + ")");
}

template <int D, WgmmaPipeline P>
void launch(const WgmmaParams& p, int64_t n_items, cudaStream_t stream) {
  attention_wgmma_kernel<D, P><<<unsigned(n_items), kThreads, SmemPlan<D>::kAlloc, stream>>>(p);
}

template <int D>
void launch_pipeline(WgmmaPipeline pipeline, const WgmmaParams& p, int64_t n_items,
                     cudaStream_t stream) {
  switch (pipeline) {
    case WgmmaPipeline::serial:
      return launch<D, WgmmaPipeline::serial>(p, n_items, stream);
    case WgmmaPipeline::overlap:
      return launch<D, WgmmaPipeline::overlap>(p, n_items, stream);
    case WgmmaPipeline::pingpong:
      return launch<D, WgmmaPipeline::pingpong>(p, n_items, stream);
    case WgmmaPipeline::lean:
      return launch<D, WgmmaPipeline::lean>(p, n_items, stream);
  }
}
}  // namespace

Status attention_wgmma_setup() {
  for (Status st :
       {setup_kernel<64, WgmmaPipeline::serial>(), setup_kernel<64, WgmmaPipeline::overlap>(),
        setup_kernel<64, WgmmaPipeline::pingpong>(), setup_kernel<64, WgmmaPipeline::lean>(),
        setup_kernel<128, WgmmaPipeline::serial>(), setup_kernel<128, WgmmaPipeline::overlap>(),
        setup_kernel<128, WgmmaPipeline::pingpong>(), setup_kernel<128, WgmmaPipeline::lean>()}) {
    INVAR_RETURN_IF_ERROR(st);
  }
  return {};
}

Status attention_wgmma(const AttentionWgmmaArgs& a, cudaStream_t stream) {
  if (a.n_items <= 0) return {};
  const int D = a.cache.head_dim;
  if ((D != 64 && D != 128) || !a.maps) {
    return Status::error("attention (wgmma): head_dim 64 or 128 and tensor maps are required");
  }
  WgmmaParams p;
  std::memcpy(&p.tmap_k, a.maps->k, sizeof(p.tmap_k));
  std::memcpy(&p.tmap_v, a.maps->v, sizeof(p.tmap_v));
  p.items = a.items;
  p.q = a.q;
  p.q_stride = a.q_stride;
  p.k = a.cache.k;
  p.v = a.cache.v;
  p.block_tables = a.block_tables;
  p.max_blocks = a.max_blocks;
  p.block_size = a.cache.block_size;
  p.kv_heads = a.cache.kv_heads;
  p.group = a.group;
  p.box_rows = a.maps->box_rows;
  p.scale_log2 = a.scale_log2;
  p.out = a.out;
  p.out_stride = a.out_stride;
  p.rec_m = a.rec_m;
  p.rec_l = a.rec_l;
  p.rec_acc = a.rec_acc;
  if (D == 64) {
    launch_pipeline<64>(a.pipeline, p, a.n_items, stream);
  } else {
    launch_pipeline<128>(a.pipeline, p, a.n_items, stream);
  }
  return cuda_status(cudaGetLastError(), "attention (wgmma): kernel launch");
}

}  // namespace invar::kernels::cuda::sm90
