// The CUDA attention's host-side planner (attention_plan.h).
#include "kernels/cuda/attention_plan.h"

#include <algorithm>
#include <string>

#include "kernels/cuda/grid.h"

namespace invar::kernels::cuda {
namespace {

int q_len_of(const AttentionPlan& p, int s) {
  return p.q_indptr[s + 1] - p.q_indptr[s];
}

// Invariant mode: consecutive splits of a sequence share a CTA when there are many (each still
// writes its own state, so the grouping never changes bits). The group minimizes a wave model:
// two CTAs share an SM, a wave of 2 x 132 CTAs takes one split's time per split a CTA walks, and
// a last wave of at most 132 CTAs (one per SM) about 0.63 of it. Ties go to the larger group
// (fewer CTAs and states). Fitted to attention_bench's INVAR_ATTN_SPLIT_GROUP sweep on an H100
// (attention-notes.md: 1 x 32768 best at 4, 2 x 8192 and 4 x 4096 at 2, 1 x 8192 at 1). The
// model leaves out a CTA's own cost, so at high load the group stays at least the earlier rule's
// (about 2 waves of 2 CTAs per SM), which the sweep did not reach.
int split_group_for_load(const AttentionPlan& p, const AttentionDims& dims, int group_size,
                         int split_tiles) {
  int64_t split_units = 0;
  for (int s = 0; s < p.num_seqs; ++s) {
    const int tiles = int(ceil_div(std::max(p.kv_lens[s], 1), kAttnKvTile));
    const int64_t rows = int64_t(q_len_of(p, s)) * group_size;
    if (rows > 0 && rows <= kAttnRowsPerCta && tiles > split_tiles)
      split_units += ceil_div(tiles, split_tiles) * dims.kv_heads;
  }
  constexpr int64_t kWave = 2 * kReferenceSmCount;
  constexpr double kLoneCtaWave = 0.63;  // one CTA per SM runs a split in ~0.63 of two's time
  int best = 1;
  double best_cost = 0.0;
  for (int g = 1; g <= 8; ++g) {
    const int64_t ctas = ceil_div(std::max<int64_t>(split_units, 1), g);
    const int64_t rest = ctas % kWave;
    const double waves = double(ctas / kWave) + (rest == 0                   ? 0.0
                                                 : rest <= kReferenceSmCount ? kLoneCtaWave
                                                                             : 1.0);
    const double cost = g * waves;
    if (g == 1 || cost <= best_cost * 1.0001) {  // a tie goes to the larger group
      best = g;
      best_cost = g == 1 ? cost : std::min(best_cost, cost);
    }
  }
  return std::max<int>(best, int(split_units / (4 * kReferenceSmCount)));
}

// Tiles a CTA walks: its range, cut at the last tile its last row reaches.
int item_work(const AttnItem& a, int group_size) {
  const int last = a.kv_len - a.q_len + (a.row_begin + a.nrows - 1) / group_size;
  return std::min(a.tile_end, last / kAttnKvTile + 1) - a.tile_begin;
}

}  // namespace

int64_t AttentionWork::split_items() const {
  return std::count_if(items.begin(), items.end(),
                       [](const AttnItem& it) { return it.record >= 0; });
}

Result<AttentionWork> plan_attention_work(const AttentionPlan& p, const AttentionDims& dims,
                                          KernelMode mode, const AttentionPlanOptions& o) {
  if (dims.head_dim != 64 && dims.head_dim != 128) {
    return Status::error("attention: head_dim " + std::to_string(dims.head_dim) +
                         " is not supported (64 or 128)");
  }
  if (dims.kv_heads <= 0 || dims.q_heads <= 0 || dims.q_heads % dims.kv_heads) {
    return Status::error("attention: q_heads must be a positive multiple of kv_heads");
  }
  if (o.rows_per_cta != kAttnRowsPerCta && o.rows_per_cta != kAttnRowsPerCtaWide) {
    return Status::error("attention plan: rows_per_cta " + std::to_string(o.rows_per_cta) +
                         " is not a CTA size of the kernels (64 or 128)");
  }
  const int G = dims.q_heads / dims.kv_heads;
  const int cta_rows = o.rows_per_cta;
  const bool invariant = mode == KernelMode::invariant;
  const int base_split_tiles = o.split_tiles > 0 ? o.split_tiles : kAttnSplitTiles;

  // Fast mode: decode-like sequences (one warp of rows) share 2 waves of CTAs among them.
  int decode_seqs = 0;
  for (int s = 0; s < p.num_seqs; ++s) {
    const int q_len = q_len_of(p, s);
    if (q_len > 0 && q_len * G <= kAttnRowsPerWarp) ++decode_seqs;
  }
  const int group = !invariant          ? 1
                    : o.split_group > 0 ? o.split_group
                                        : split_group_for_load(p, dims, G, base_split_tiles);

  AttentionWork w;
  for (int s = 0; s < p.num_seqs; ++s) {
    const int q_begin = p.q_indptr[s];
    const int q_len = q_len_of(p, s);
    const int kv_len = p.kv_lens[s];
    if (q_len <= 0) continue;
    if (kv_len < q_len) {
      return Status::error("attention plan: sequence " + std::to_string(s) + " has kv_len " +
                           std::to_string(kv_len) + " < its " + std::to_string(q_len) +
                           " query tokens; kv_lens counts the cache after this step's writes");
    }
    const int rows = q_len * G;
    const int tiles = int(ceil_div(kv_len, kAttnKvTile));
    int split_tiles = base_split_tiles;
    bool split_ctas = false;
    if (invariant) {
      // Any choice here gives the same bits (the fold points stay at multiples of split_tiles).
      split_ctas = rows <= kAttnRowsPerCta && tiles > split_tiles;
    } else if (rows <= kAttnRowsPerWarp) {
      const int want =
          int(ceil_div(2 * int64_t(std::max(o.sm_count, 1)), int64_t(decode_seqs) * dims.kv_heads));
      const int n = std::max(1, std::min(want, tiles));
      split_tiles = int(ceil_div(tiles, n));
      split_ctas = ceil_div(tiles, split_tiles) > 1;
    } else {
      split_tiles = kAttnNoSplit;
    }
    if (split_ctas) {
      const int splits = int(ceil_div(tiles, split_tiles));
      const int parts = int(ceil_div(splits, group));
      for (int h = 0; h < dims.kv_heads; ++h) {
        const auto merge = int32_t(w.merges.size());
        const int64_t base = w.records + int64_t(h) * rows * splits;
        if (base + int64_t(rows) * splits > INT32_MAX) {
          return Status::error("attention plan: too many split states in one step");
        }
        for (int k = 0; k < splits; k += group) {
          w.items.push_back({.seq = s,
                             .q_begin = q_begin,
                             .q_len = q_len,
                             .kv_len = kv_len,
                             .kv_head = h,
                             .row_begin = 0,
                             .nrows = rows,
                             .tile_begin = k * split_tiles,
                             .tile_end = std::min(tiles, (k + group) * split_tiles),
                             .split_tiles = split_tiles,
                             .record = int32_t(base),
                             .record_stride = splits,
                             .merge = merge});
        }
        w.merges.push_back({.q_begin = q_begin,
                            .q_len = q_len,
                            .kv_len = kv_len,
                            .kv_head = h,
                            .rows = rows,
                            .record = int32_t(base),
                            .record_stride = splits,
                            .split_tiles = split_tiles,
                            .parts = parts});
      }
      w.records += int64_t(dims.kv_heads) * rows * splits;
    } else {
      // Last row blocks first: they walk the most tiles.
      for (int rb = int(ceil_div(rows, cta_rows)) - 1; rb >= 0; --rb) {
        for (int h = 0; h < dims.kv_heads; ++h) {
          w.items.push_back({.seq = s,
                             .q_begin = q_begin,
                             .q_len = q_len,
                             .kv_len = kv_len,
                             .kv_head = h,
                             .row_begin = rb * cta_rows,
                             .nrows = std::min(cta_rows, rows - rb * cta_rows),
                             .tile_begin = 0,
                             .tile_end = tiles,
                             .split_tiles = split_tiles,
                             .record = -1,
                             .record_stride = 0,
                             .merge = -1});
        }
      }
    }
  }
  // Longest CTAs first across sequences too, so the last wave is short (order never changes
  // bits: each CTA writes its own rows or states).
  std::stable_sort(w.items.begin(), w.items.end(), [G](const AttnItem& a, const AttnItem& b) {
    return item_work(a, G) > item_work(b, G);
  });
  return w;
}

}  // namespace invar::kernels::cuda
