// The host half of the CUDA attention (plan on the host, run on the device): from a step's
// query ranges and KV lengths, the list of CTAs the attention kernel runs and of the merges that
// fold split states. Plain C++, compiled in the CPU-only build too, where tests/unit checks the
// splits, the work list and its order without a GPU. The kernels and their recipe: attention.h.
//   S = sequences, Hq / Hkv = query / kv heads, G = Hq / Hkv, D = head dim,
//   row = one (token, q head) pair of a sequence and kv head: row r is token r / G, head r % G
#pragma once

#include <cstdint>
#include <vector>

#include "core/status.h"
#include "kernels/types.h"

namespace invar::kernels::cuda {

// Positions per softmax tile and tiles per split: fixed, from absolute position 0 (R3).
inline constexpr int kAttnKvTile = 64;
inline constexpr int kAttnSplitTiles = 4;  // 256 positions
// Rows of one warp's mma tile and of one CTA (4 warps). Split items (decode, short chunks) never
// have more rows than kAttnRowsPerCta.
inline constexpr int kAttnRowsPerWarp = 16;
inline constexpr int kAttnRowsPerCta = 64;
// Rows of a whole-row CTA of the Hopper wgmma kernel (sm90/attention_sm90.h): two consumer
// warpgroups of 64 rows. Which rows share a CTA never changes a row's bits (attention.h).
inline constexpr int kAttnRowsPerCtaWide = 128;
// split_tiles of a fast-mode prefill CTA: it never folds.
inline constexpr int kAttnNoSplit = 1 << 30;

struct AttentionDims {
  int q_heads = 0;
  int kv_heads = 0;
  int head_dim = 0;    // 64 or 128
  float scale = 0.0f;  // softmax scale, usually 1 / sqrt(head_dim)
};

// One CTA's work: rows [row_begin, row_begin + nrows) of sequence `seq` for one kv head, tiles
// [tile_begin, min(tile_end, last tile of the CTA's last row)]. Split states (record >= 0):
// row r's state of split k goes to record + r * record_stride + k, and merges[merge] folds them.
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
  int32_t merge;  // split items: the index of the MergeItem that folds their states; else -1
};

// Folds the split states of one sequence and kv head: row r's states are
// record + r * record_stride + k for k = 0 .. (P / kAttnKvTile) / split_tiles. `parts` split
// items write them: when the merge runs inside the attention launch, the last of them to finish
// folds (attention.h, MergePlacement).
struct MergeItem {
  int32_t q_begin;
  int32_t q_len;
  int32_t kv_len;
  int32_t kv_head;
  int32_t rows;
  int32_t record;
  int32_t record_stride;
  int32_t split_tiles;
  int32_t parts;
};

// How the planner may lay out the work. None of it changes bits in invariant mode except
// split_tiles, which is part of the recipe.
struct AttentionPlanOptions {
  int split_tiles = kAttnSplitTiles;  // only benchmarks comparing split sizes change it
  int split_group = 0;  // consecutive splits per split CTA; 0: chosen from the step's load
  int sm_count = 0;     // the device's SMs: fast mode sizes its load-dependent splits by it
  // Rows per whole-row item (an item that walks all its splits and writes the output):
  // kAttnRowsPerCta for the mma.sync kernel, kAttnRowsPerCtaWide for the wgmma kernel.
  int rows_per_cta = kAttnRowsPerCta;
};

struct AttentionWork {
  std::vector<AttnItem> items;    // the attention kernel's grid, longest CTAs first
  std::vector<MergeItem> merges;  // the merge kernel's grid
  int64_t records = 0;            // split states written (each D floats + m + l)
  int64_t split_items() const;    // items that write split states
};

// Plans one step. `plan` needs num_seqs, q_indptr and kv_lens (host arrays); block tables are not
// read. Invariant mode (R3): every item folds every split_tiles tiles from position 0, whatever
// else is in the step; a sequence whose rows fit one CTA (64 rows) spreads its splits over CTAs
// (states merged in split order), a longer one walks them in one CTA per options.rows_per_cta
// rows. Fast mode (the
// negative control): decode-like sequences get ~2 x sm_count / (decodes x Hkv) splits, prefill
// none, so a query's bits depend on the batch.
Result<AttentionWork> plan_attention_work(const AttentionPlan& plan, const AttentionDims& dims,
                                          KernelMode mode, const AttentionPlanOptions& options);

}  // namespace invar::kernels::cuda
