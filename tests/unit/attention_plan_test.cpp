// The CUDA attention's host planner (kernels/cuda/attention_plan.h), checked without a GPU: the
// fold points of every CTA sit at multiples of the split size from position 0 whatever the step
// holds (R3), every (row, kv head, split) is covered exactly once, the work list is ordered
// longest first, and fast mode's splits depend on the batch (the negative control's source).
#include "kernels/cuda/attention_plan.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <tuple>
#include <utility>
#include <vector>

namespace invar::kernels::cuda {
namespace {

constexpr AttentionDims kDims{.q_heads = 32, .kv_heads = 8, .head_dim = 128, .scale = 0.088f};
constexpr int kGroup = 4;  // q heads per kv head

// A step of sequences given as (query tokens, kv length after the step).
struct Step {
  std::vector<int32_t> q_indptr{0};
  std::vector<int32_t> kv_lens;
  Step& add(int q_len, int kv_len) {
    q_indptr.push_back(q_indptr.back() + q_len);
    kv_lens.push_back(kv_len);
    return *this;
  }
  AttentionPlan plan() const {
    return {.num_seqs = int(kv_lens.size()),
            .q_indptr = q_indptr.data(),
            .kv_lens = kv_lens.data(),
            .block_tables = nullptr,
            .max_blocks_per_seq = 0,
            .block_size = 16};
  }
};

AttentionWork plan(const Step& step, KernelMode mode, AttentionPlanOptions o = {}) {
  if (o.sm_count == 0) o.sm_count = 132;
  auto w = plan_attention_work(step.plan(), kDims, mode, o);
  EXPECT_TRUE(w.ok()) << w.status().message();
  return w.ok() ? std::move(w).value() : AttentionWork{};
}

int last_tile(const AttnItem& it) {  // the last tile a CTA's last row reaches, + 1
  const int last_pos = it.kv_len - it.q_len + (it.row_begin + it.nrows - 1) / kGroup;
  return std::min(it.tile_end, last_pos / kAttnKvTile + 1);
}

// What decides a sequence's bits in the plan: for every kv head and row, which tiles it walks
// and where it folds. Grouping, CTA order and record addresses must not matter.
using Recipe = std::map<std::tuple<int, int, int>, std::vector<int>>;  // (seq q_begin, head, row)
Recipe recipe_of(const AttentionWork& w, int q_begin) {
  Recipe r;
  for (const AttnItem& it : w.items) {
    if (it.q_begin != q_begin) continue;
    for (int row = it.row_begin; row < it.row_begin + it.nrows; ++row) {
      auto& tiles = r[{0, it.kv_head, row}];
      for (int t = it.tile_begin; t < last_tile(it); ++t)
        tiles.push_back(t * 1000 + t / it.split_tiles);
    }
  }
  for (auto& [key, tiles] : r) std::sort(tiles.begin(), tiles.end());
  return r;
}

TEST(AttentionPlan, InvariantFoldsAtFixedSplitsWhateverTheBatch) {
  Step alone;
  alone.add(1, 3000);
  Step loaded;
  loaded.add(7, 40).add(300, 5000).add(1, 3000).add(1, 17).add(64, 64);
  const AttentionWork a = plan(alone, KernelMode::invariant);
  const AttentionWork b = plan(loaded, KernelMode::invariant);
  for (const AttentionWork* w : {&a, &b}) {
    for (const AttnItem& it : w->items) {
      EXPECT_EQ(it.split_tiles, kAttnSplitTiles);
      if (it.record >= 0) {
        EXPECT_EQ(it.tile_begin % kAttnSplitTiles, 0);  // splits counted from tile 0
      }
    }
  }
  // The decode sequence (q_begin 0 alone, 307 in the loaded step) walks the same tiles and
  // folds at the same points in both steps.
  EXPECT_EQ(recipe_of(a, 0), recipe_of(b, 307));
  EXPECT_FALSE(recipe_of(a, 0).empty());
}

TEST(AttentionPlan, EveryRowAndSplitIsCoveredOnce) {
  Step step;
  step.add(1, 2049).add(3, 700).add(150, 150).add(16, 4096).add(40, 4000);
  // Fast mode ignores split_group; its splits come from the load.
  for (const auto& [mode, group] : {std::pair{KernelMode::invariant, 0},
                                    {KernelMode::invariant, 1}, {KernelMode::invariant, 3},
                                    {KernelMode::invariant, 100}, {KernelMode::fast, 0}})
    for (int cta_rows : {kAttnRowsPerCta, kAttnRowsPerCtaWide}) {
      const AttentionWork w = plan(step, mode, {.split_group = group, .rows_per_cta = cta_rows});
      for (const AttnItem& it : w.items) {
        EXPECT_LE(it.nrows, it.record >= 0 ? kAttnRowsPerCta : cta_rows);
      }
      // (q_begin, head, row, tile) -> times computed
      std::map<std::tuple<int, int, int, int>, int> seen;
      for (const AttnItem& it : w.items) {
        for (int row = it.row_begin; row < it.row_begin + it.nrows; ++row) {
          const int pos = it.kv_len - it.q_len + row / kGroup;
          for (int t = it.tile_begin; t < std::min(it.tile_end, pos / kAttnKvTile + 1); ++t)
            seen[{it.q_begin, it.kv_head, row, t}]++;
        }
      }
      for (int s = 0; s < int(step.kv_lens.size()); ++s) {
        const int q_len = step.q_indptr[s + 1] - step.q_indptr[s];
        for (int h = 0; h < kDims.kv_heads; ++h) {
          for (int row = 0; row < q_len * kGroup; ++row) {
            const int pos = step.kv_lens[s] - q_len + row / kGroup;
            for (int t = 0; t <= pos / kAttnKvTile; ++t)
              EXPECT_EQ((seen[{step.q_indptr[s], h, row, t}]), 1)
                  << "seq " << s << " head " << h << " row " << row << " tile " << t << " group "
                  << group << " rows per CTA " << cta_rows << " " << kernel_mode_name(mode);
          }
        }
      }
      // One merge per (split sequence, kv head), with the split count of its longest row.
      for (const MergeItem& m : w.merges) {
        const int splits = (m.kv_len - 1) / kAttnKvTile / m.split_tiles + 1;
        EXPECT_EQ(m.record_stride, splits);
      }
      // Each split item names the merge of its sequence and kv head, and each merge counts the
      // items that write its states (the fused merge waits for exactly that many).
      std::vector<int> parts(w.merges.size(), 0);
      for (const AttnItem& it : w.items) {
        if (it.record < 0) {
          EXPECT_EQ(it.merge, -1);
          continue;
        }
        ASSERT_GE(it.merge, 0);
        ASSERT_LT(it.merge, int(w.merges.size()));
        const MergeItem& m = w.merges[size_t(it.merge)];
        EXPECT_EQ(m.q_begin, it.q_begin);
        EXPECT_EQ(m.kv_head, it.kv_head);
        EXPECT_EQ(m.record, it.record);
        ++parts[size_t(it.merge)];
      }
      for (size_t i = 0; i < w.merges.size(); ++i) EXPECT_EQ(w.merges[i].parts, parts[i]);
    }
}

TEST(AttentionPlan, ShortSequencesSplitAcrossCtasLongOnesWalkInRowBlocks) {
  Step step;
  step.add(1, 4096).add(200, 4096);
  const AttentionWork w = plan(step, KernelMode::invariant, {.split_group = 1});
  int decode_ctas = 0, prefill_ctas = 0;
  for (const AttnItem& it : w.items) {
    if (it.q_begin == 0) {
      EXPECT_GE(it.record, 0);
      EXPECT_EQ(it.tile_end - it.tile_begin, kAttnSplitTiles);
      ++decode_ctas;
    } else {
      EXPECT_EQ(it.record, -1);
      EXPECT_LE(it.nrows, kAttnRowsPerCta);
      EXPECT_EQ(it.tile_begin, 0);
      ++prefill_ctas;
    }
  }
  EXPECT_EQ(decode_ctas, kDims.kv_heads * 4096 / (kAttnKvTile * kAttnSplitTiles));
  EXPECT_EQ(prefill_ctas,
            kDims.kv_heads * ((200 * kGroup + kAttnRowsPerCta - 1) / kAttnRowsPerCta));
  EXPECT_EQ(w.merges.size(), size_t(kDims.kv_heads));
  EXPECT_EQ(w.records, int64_t(kDims.kv_heads) * kGroup * 16);
  EXPECT_EQ(w.split_items(), decode_ctas);
}

// The wgmma kernel's 128-row CTAs (rows_per_cta = kAttnRowsPerCtaWide) change which rows share a
// CTA, never what a row computes: every row walks the same tiles up to its own last one and folds
// at the same points (the tiles a wide CTA adds past a row's last are no-ops for it, which the GPU
// test proves bitwise), and the split items are the same items.
TEST(AttentionPlan, WideCtasKeepEveryRowsTilesAndFolds) {
  Step step;
  step.add(1, 3000).add(7, 40).add(300, 5000).add(33, 33).add(64, 64).add(17, 700).add(2, 9000);
  auto per_row = [](const AttentionWork& w) {
    // (q_begin, head, row) -> its own tiles and their splits
    std::map<std::tuple<int, int, int>, std::vector<int>> r;
    for (const AttnItem& it : w.items) {
      for (int row = it.row_begin; row < it.row_begin + it.nrows; ++row) {
        const int own_last = (it.kv_len - it.q_len + row / kGroup) / kAttnKvTile + 1;
        for (int t = it.tile_begin; t < std::min(it.tile_end, own_last); ++t)
          r[{it.q_begin, it.kv_head, row}].push_back(t * 1000 + t / it.split_tiles);
      }
    }
    for (auto& [key, tiles] : r) std::sort(tiles.begin(), tiles.end());
    return r;
  };
  auto split_items = [](const AttentionWork& w) {
    std::vector<std::tuple<int, int, int, int, int>> v;
    for (const AttnItem& it : w.items)
      if (it.record >= 0)
        v.emplace_back(it.q_begin, it.kv_head, it.tile_begin, it.tile_end, it.nrows);
    std::sort(v.begin(), v.end());
    return v;
  };
  for (int group : {0, 1, 5}) {
    const AttentionWork narrow = plan(step, KernelMode::invariant, {.split_group = group});
    const AttentionWork wide = plan(step, KernelMode::invariant,
                                    {.split_group = group, .rows_per_cta = kAttnRowsPerCtaWide});
    EXPECT_EQ(per_row(narrow), per_row(wide)) << "split group " << group;
    EXPECT_EQ(split_items(narrow), split_items(wide)) << "split group " << group;
    EXPECT_EQ(narrow.records, wide.records);
    EXPECT_EQ(narrow.merges.size(), wide.merges.size());
    // 300 tokens x 4 heads = 1200 rows: 19 CTAs of 64 rows, 10 of 128, per kv head.
    auto whole_row_ctas = [](const AttentionWork& w, int q_begin) {
      return std::count_if(w.items.begin(), w.items.end(), [&](const AttnItem& it) {
        return it.q_begin == q_begin && it.record < 0;
      });
    };
    EXPECT_EQ(whole_row_ctas(narrow, 8), 19 * kDims.kv_heads);
    EXPECT_EQ(whole_row_ctas(wide, 8), 10 * kDims.kv_heads);
  }
}

TEST(AttentionPlan, LongestCtasFirst) {
  Step step;
  step.add(1, 90).add(500, 2000).add(1, 9000).add(33, 33);
  const AttentionWork w = plan(step, KernelMode::invariant);
  for (size_t i = 1; i < w.items.size(); ++i) {
    EXPECT_GE(last_tile(w.items[i - 1]) - w.items[i - 1].tile_begin,
              last_tile(w.items[i]) - w.items[i].tile_begin);
  }
}

// Fast mode sizes a decode's splits by how many decodes share the step: the same request folds
// at other points in a bigger batch, which is what its negative control detects.
TEST(AttentionPlan, FastModeSplitsDependOnTheBatch) {
  Step alone, loaded;
  alone.add(1, 3000);
  loaded.add(1, 3000);
  for (int i = 0; i < 15; ++i) loaded.add(1, 500 + i);
  const AttentionWork a = plan(alone, KernelMode::fast);
  const AttentionWork b = plan(loaded, KernelMode::fast);
  auto split_of_first = [](const AttentionWork& w) {
    for (const AttnItem& it : w.items)
      if (it.q_begin == 0) return it.split_tiles;
    return -1;
  };
  EXPECT_NE(split_of_first(a), split_of_first(b));
  EXPECT_NE(recipe_of(a, 0), recipe_of(b, 0));
}

TEST(AttentionPlan, RefusesWhatTheKernelsCannotRun) {
  Step step;
  step.add(4, 3);  // fewer cached positions than queries
  EXPECT_FALSE(plan_attention_work(step.plan(), kDims, KernelMode::invariant, {}).ok());
  Step fine;
  fine.add(1, 1);
  AttentionDims d = kDims;
  d.head_dim = 96;
  EXPECT_FALSE(plan_attention_work(fine.plan(), d, KernelMode::invariant, {}).ok());
  d = kDims;
  d.q_heads = 30;
  EXPECT_FALSE(plan_attention_work(fine.plan(), d, KernelMode::invariant, {}).ok());
  EXPECT_FALSE(
      plan_attention_work(fine.plan(), kDims, KernelMode::invariant, {.rows_per_cta = 96}).ok());
}

}  // namespace
}  // namespace invar::kernels::cuda
