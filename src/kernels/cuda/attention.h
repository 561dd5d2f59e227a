// Causal grouped-query attention over a paged bf16 KV cache on NVIDIA GPUs, for varlen batches
// that mix prefill chunks and decode steps (one kernel family for both).
//   S = sequences, T = tokens in the step, Hq / Hkv = query / kv heads, G = Hq / Hkv,
//   D = head dim (64 or 128), P = a query's absolute position
//
// Recipe (R3), the same for every query wherever it sits:
//   - a query row (token, q head) walks KV positions 0..P in tiles of kAttnKvTile positions
//     aligned to absolute position 0; per tile: scores on tensor cores (mma m16n8k16, k over D
//     in order), masked scores = -inf, online softmax in base 2 (running max m, sum l, scaled
//     accumulator acc), P x V on tensor cores;
//   - every kAttnSplitTiles tiles (a split, also aligned to position 0) the state (m, l, acc)
//     is folded into (M, L, O) in split order 0, 1, 2, ...; out = O / L.
// A CTA computes up to 64 rows of one sequence and one kv head. A prefill CTA walks all splits
// and folds in shared memory; a decode step (or a short chunk) spreads its splits over CTAs
// (one or more consecutive splits each), every split's state is written, and a merge kernel
// folds the states in the same order with the same arithmetic. Which of the two a sequence gets,
// and how many consecutive splits one split CTA computes, are host-side choices (plan) that never
// change bits; the split count of a query depends on its own position only.
// The merges run inside the attention launch when it has at most one CTA per SM (small-batch
// decode, where a second launch is a large share of the step): the last split CTA of a sequence
// and kv head to finish (counted by an integer atomic) folds its states, with the merge kernel's
// arithmetic in split order, so which CTA finishes last changes no bit (MergePlacement).
//
// Two kernels compute the recipe: the mma.sync kernel (attention.cu, every GPU; 64-row CTAs) and,
// on Hopper, the wgmma kernel (sm90/attention_sm90.cu; TMA, warp-specialized, 128-row CTAs).
// Per row they run the same operations in the same order (attention_recipe.cuh), and wgmma's
// k-chains give the bits of mma.sync's, so which kernel computed a row never changes it; the
// GPU test compares the two bit for bit. The default is mma.sync everywhere; the wgmma kernel
// is chosen per CudaAttention (set_prefill_kernel) for whole-row items (prefill), while split
// items (decode, short chunks) stay on mma.sync unless set_split_kernel says otherwise.
//
// `fast` mode (baseline and negative control): the usual load-dependent heuristics. Decode
// sequences get ~2 x SM-count / (batch x Hkv) splits, prefill sequences no split at all, so
// the bits of a query depend on the batch.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>

#include "core/status.h"
#include "kernels/cuda/attention_plan.h"
#include "kernels/types.h"

namespace invar::kernels::cuda {

// One layer of the paged cache in device memory: [num_blocks, block_size, Hkv, D] bf16 each.
struct KvCacheRef {
  __nv_bfloat16* k = nullptr;
  __nv_bfloat16* v = nullptr;
  int num_blocks = 0;
  int block_size = 0;
  int kv_heads = 0;
  int head_dim = 0;
};

// Writes this step's K and V rows into their cache slots (slot = block * block_size + offset;
// a negative slot is skipped: padding). Row t of k is k + t * k_stride, heads contiguous.
Status kv_store(const __nv_bfloat16* k, int64_t k_stride,  // [T, Hkv, D]
                const __nv_bfloat16* v, int64_t v_stride,  // [T, Hkv, D]
                const int64_t* slots,                      // [T], device
                int64_t tokens, const KvCacheRef& cache, cudaStream_t stream);

// Which kernel computes a class of work items (see above): the same bits either way.
enum class AttentionKernel {
  mma_sync,  // attention.cu: any GPU
  wgmma,     // sm90/attention_sm90.cu: sm_90 (H100, H200) only
};
const char* attention_kernel_name(AttentionKernel k);

// How the wgmma kernel's consumer warpgroups schedule a tile's work (sm90/attention_sm90.cu):
// every schedule computes each row with the same operations in the same order, so the same
// bits; they differ in what overlaps.
enum class WgmmaPipeline {
  serial,    // S = Q K^T, softmax, acc += P V, one after another
  overlap,   // tile i + 1's S and softmax overlap tile i's P V (FlashAttention-3's intra-warpgroup)
  pingpong,  // overlap, and the two consumer warpgroups take turns at the tensor cores
  lean,      // pingpong with fewer instructions per tile (sm90/attention_sm90.cu, kLean)
};
const char* wgmma_pipeline_name(WgmmaPipeline p);

// Where a step's merges run: the same bits in every placement (attention_test).
enum class MergePlacement {
  per_step,    // in the attention launch when it has at most one CTA per SM, else their own
  fused,       // in the attention launch: the last split CTA of a sequence and kv head folds
  own_launch,  // a merge kernel after the attention launch
};

// Plan on the host once per step, run on the device once per layer (graph-capturable).
// Owns the device work list and the split-state buffers; no handle lives in a global.
class CudaAttention {
 public:
  static Result<std::unique_ptr<CudaAttention>> create(int device);
  ~CudaAttention();
  CudaAttention(const CudaAttention&) = delete;
  CudaAttention& operator=(const CudaAttention&) = delete;

  // Builds the step's work list from host copies of plan.q_indptr and plan.kv_lens
  // (plan_attention_work, attention_plan.h) and uploads it on `stream`. May allocate.
  Status plan(const AttentionPlan& host_plan, const AttentionDims& dims, KernelMode mode,
              cudaStream_t stream);

  // out = attention(q, cache) for the planned step. device_plan.block_tables is a device
  // array [S, max_blocks_per_seq]; q row t (one token, all Hq heads) is q + t * q_stride,
  // likewise out. No allocation, no synchronisation.
  Status run(const __nv_bfloat16* q, int64_t q_stride,  // [T, Hq, D]
             const KvCacheRef& cache,                   // [blocks, block_size, Hkv, D] x2
             const AttentionPlan& device_plan,          // block tables on the device
             __nv_bfloat16* out, int64_t out_stride,    // [T, Hq, D]
             cudaStream_t stream);

  // Invariant mode: how many consecutive splits one split CTA computes (each still writes its
  // own state). 0 (the default): chosen from the step's load. Any value gives the same bits;
  // tests force several to prove it.
  void set_split_group(int splits_per_cta);

  // Kernel for whole-row items (prefill: rows that walk all their splits in one CTA). wgmma
  // plans 128-row CTAs. Fails (and changes nothing) for wgmma on a GPU other than sm_90. Takes
  // effect at the next plan().
  Status set_prefill_kernel(AttentionKernel kernel);
  // Kernel for split items (decode, chunks of <= 64 rows); mma.sync unless a test or benchmark
  // asks for wgmma (its split-state path). Same rules as set_prefill_kernel.
  Status set_split_kernel(AttentionKernel kernel);
  AttentionKernel prefill_kernel() const;
  // The wgmma kernel's schedule (pingpong by default); tests and benchmarks compare them.
  void set_wgmma_pipeline(WgmmaPipeline pipeline);
  // Items of at most 16 rows on the mma.sync kernel (decode at small batch, short chunks) run as
  // spread CTAs: four warps share each tile's work instead of one computing it (on by default).
  // The same bits either way; tests and benchmarks turn it off to compare.
  void set_spread_ctas(bool on);
  // Launch grids rounded up to powers of two (CTAs past the step's work return at once), so a
  // CUDA graph captured for one step replays for the next whose work list has as many CTAs up
  // to that size (launch_key). Changes no bit: every CTA's work is the same either way. Pads
  // the mma.sync and merge grids only (the wgmma kernel runs prefill, which graphs do not replay).
  void set_fixed_grid(bool on);
  // Where the merges run (per_step by default). Split items on the wgmma kernel
  // (set_split_kernel) always get the merge launch. Takes effect at the next plan().
  void set_merge_placement(MergePlacement placement);
  // KV stages of the mma.sync kernel's load pipeline (tiles in flight + 1): 2 or 4; 0 (the
  // default): 4 when the launch has at most one CTA per SM (small-batch decode: a CTA's few
  // tiles are a chain of memory latencies), else 2 (two CTAs per SM hide each other's). The
  // same bits whatever the depth. Takes effect at the next plan().
  Status set_load_stages(int stages);
  // Spread CTAs of a 4-stage launch (small-batch decode) compute tile t + 1's scores while tile
  // t's softmax runs: the same bits (attention_test's FusedMergesAndLoadStages...). Off by
  // default until it has run on a GPU. Takes effect at the next run().
  void set_scores_ahead(bool on);

  // The split size in tiles is part of the recipe (kAttnSplitTiles): changing it changes bits.
  // Only for benchmarks that compare split sizes; never in a serving engine.
  void set_split_tiles_for_experiments(int tiles);

  struct Stats {
    int64_t ctas = 0;          // attention CTAs of the planned step
    int64_t split_ctas = 0;    // of which write split states
    int64_t merge_ctas = 0;    // merge CTAs
    int64_t wgmma_ctas = 0;    // of the attention CTAs, those the wgmma kernel runs
    int64_t spread_ctas = 0;   // of the attention CTAs, the mma.sync kernel's spread ones
    bool merge_fused = false;  // the merges run inside the attention launch
    int load_stages = 0;       // the mma.sync launch's KV stages
  };
  Stats stats() const;

  // Everything of the planned step that run() passes to its launches besides the caller's
  // arguments and the device work list's contents: grid sizes and buffer addresses. A CUDA
  // graph that captured run() replays correctly for any later plan with the same key.
  uint64_t launch_key() const;

 private:
  CudaAttention() = default;
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace invar::kernels::cuda
