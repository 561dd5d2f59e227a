// The step scheduler on its own (no model): admission, decode-first packing, the token budget,
// block-aligned prefill cuts, prefix-cache matches and preemption when blocks run out.
#include "engine/scheduler.h"

#include <gtest/gtest.h>

#include <numeric>

#include "test_paths.h"

namespace invar::engine {
namespace {

class Scheduler : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto t = tokenizer::Tokenizer::from_hf_dir(invar::testing::test_data("tokenizer/smollm2"));
    ASSERT_TRUE(t.ok()) << t.status().message();
    tok_ = new tokenizer::Tokenizer(std::move(t).value());
  }
  static void TearDownTestSuite() {
    delete tok_;
    tok_ = nullptr;
  }

  // A request whose prompt is `len` tokens starting at `first`.
  void submit(int len, int first = 100, int prompt_logprobs = -1) {
    RequestParams p;
    p.prompt_logprobs = prompt_logprobs;
    p.prompt.resize(size_t(len));
    std::iota(p.prompt.begin(), p.prompt.end(), first);
    waiting_.push_back(std::make_unique<Sequence>(next_id_++, p, [](const RequestEvent&) {}, *tok_));
  }

  // Pretends the step ran: advances each scheduled sequence and, where its tokens are all
  // computed, appends one sampled token.
  void run(const StepPlan& plan, BlockManager& blocks) {
    for (const auto& e : plan.entries) {
      e.seq->computed += e.count;
      blocks.register_prefix(e.seq->tokens, e.seq->computed, e.seq->table);
      if (e.seq->remaining() == 0) e.seq->tokens.push_back(7);
    }
  }

  static StepLimits limits(int max_running, int token_budget) {
    return {.max_running = max_running, .token_budget = token_budget, .max_blocks_per_seq = 64};
  }

  static inline tokenizer::Tokenizer* tok_ = nullptr;  // Sequence needs one for its text
  std::deque<std::unique_ptr<Sequence>> waiting_;
  std::vector<std::unique_ptr<Sequence>> running_;
  uint64_t next_id_ = 1;
};

TEST_F(Scheduler, AdmitsUpToMaxRunningAndPacksDecodesFirst) {
  BlockManager blocks(64, 16, false);
  for (int i = 0; i < 3; ++i) submit(40);
  auto plan = schedule_step(waiting_, running_, blocks, limits(2, 100));
  EXPECT_EQ(running_.size(), 2u);
  EXPECT_EQ(waiting_.size(), 1u);
  ASSERT_EQ(plan.entries.size(), 2u);
  EXPECT_EQ(plan.entries[0].count, 40);
  EXPECT_EQ(plan.entries[1].count, 40);
  run(plan, blocks);
  // Both now decode (1 token each) and come first; nothing else can be admitted.
  plan = schedule_step(waiting_, running_, blocks, limits(2, 100));
  ASSERT_EQ(plan.entries.size(), 2u);
  EXPECT_EQ(plan.entries[0].count, 1);
  EXPECT_EQ(plan.entries[1].count, 1);
}

// The step plan carries the model's batch plan: the entries' tokens in entry order, each at its
// absolute position and KV slot, and a logits row exactly for the entries that complete.
TEST_F(Scheduler, StepPlanHoldsTheBatchPlanAndEachEntrysLogitRow) {
  BlockManager blocks(64, 16, false);
  submit(20, 100);
  auto plan = schedule_step(waiting_, running_, blocks, limits(4, 64));
  run(plan, blocks);  // the first request now decodes
  submit(100, 500);   // cut at 48 by the budget below: no logits row this step
  submit(3, 900);     // completes its prompt: a logits row
  plan = schedule_step(waiting_, running_, blocks, limits(4, 64));
  ASSERT_EQ(plan.entries.size(), 3u);
  const model::BatchPlan& b = plan.batch;
  ASSERT_EQ(b.num_seqs(), 3);
  EXPECT_EQ(plan.entries[0].count, 1);
  EXPECT_EQ(plan.entries[1].count, 48);
  EXPECT_EQ(plan.entries[2].count, 3);
  EXPECT_EQ(b.num_tokens(), 52);
  EXPECT_EQ(b.q_indptr, (std::vector<int32_t>{0, 1, 49, 52}));
  EXPECT_EQ(b.kv_lens, (std::vector<int32_t>{21, 48, 3}));
  EXPECT_EQ(b.token_ids[0], 7);  // the decode's sampled token
  EXPECT_EQ(b.positions[0], 20);
  EXPECT_EQ(b.token_ids[1], 500);
  EXPECT_EQ(b.positions[48], 47);
  EXPECT_EQ(b.token_ids[49], 900);
  EXPECT_EQ(plan.entries[0].logit_row, 0);
  EXPECT_EQ(plan.entries[1].logit_row, -1);
  EXPECT_EQ(plan.entries[2].logit_row, 1);
  EXPECT_EQ(b.logit_rows, (std::vector<int32_t>{0, 51}));
  for (int t = 0; t < b.num_tokens(); ++t) {
    const int s = t < 1 ? 0 : t < 49 ? 1 : 2;
    const Sequence& seq = *plan.entries[size_t(s)].seq;
    const int pos = b.positions[size_t(t)];
    EXPECT_EQ(b.slots[size_t(t)], int64_t(seq.table[size_t(pos / 16)]) * 16 + pos % 16);
  }
  EXPECT_EQ(b.max_blocks_per_seq, 64);
}

TEST_F(Scheduler, BudgetCutsPrefillOnBlockBoundaries) {
  BlockManager blocks(64, 16, false);
  submit(100);
  auto plan = schedule_step(waiting_, running_, blocks, limits(4, 40));
  ASSERT_EQ(plan.entries.size(), 1u);
  EXPECT_EQ(plan.entries[0].count, 32);  // 40 rounded down to the 16-token block boundary
  run(plan, blocks);
  plan = schedule_step(waiting_, running_, blocks, limits(4, 40));
  EXPECT_EQ(plan.entries[0].count, 32);
  run(plan, blocks);
  plan = schedule_step(waiting_, running_, blocks, limits(4, 40));
  EXPECT_EQ(plan.entries[0].count, 36);  // the rest of the prompt: no cut needed
}

TEST_F(Scheduler, DecodesTakeTheBudgetBeforePrefills) {
  BlockManager blocks(64, 16, false);
  submit(20);
  auto plan = schedule_step(waiting_, running_, blocks, limits(4, 64));
  run(plan, blocks);  // the first request now decodes
  submit(200);
  plan = schedule_step(waiting_, running_, blocks, limits(4, 17));
  ASSERT_EQ(plan.entries.size(), 2u);
  EXPECT_EQ(plan.entries[0].seq->id, 1u);
  EXPECT_EQ(plan.entries[0].count, 1);
  EXPECT_EQ(plan.entries[1].count, 16);  // 16 of the 200, block aligned
}

TEST_F(Scheduler, PrefixCacheServesFullBlocksButNeverTheLastToken) {
  BlockManager blocks(64, 16, true);
  submit(48);
  auto plan = schedule_step(waiting_, running_, blocks, limits(4, 100));
  run(plan, blocks);
  submit(48);  // the same prompt
  plan = schedule_step(waiting_, running_, blocks, limits(4, 100));
  EXPECT_EQ(plan.cached_tokens, 32);  // 3 full blocks, but the last token must be computed
  EXPECT_EQ(running_.back()->computed, 32);
  EXPECT_EQ(plan.entries.back().count, 16);
}

TEST_F(Scheduler, PreemptsTheYoungestWhenBlocksRunOut) {
  BlockManager blocks(6, 16, false);  // 96 tokens of KV
  submit(48);  // 3 full blocks; its first sampled token (position 48) needs a fourth
  submit(40);  // 3 blocks, the last one with room
  auto plan = schedule_step(waiting_, running_, blocks, limits(4, 100));
  ASSERT_EQ(plan.entries.size(), 2u);
  run(plan, blocks);
  Sequence* first = running_[0].get();
  plan = schedule_step(waiting_, running_, blocks, limits(4, 100));
  EXPECT_EQ(plan.preempted, 1);
  ASSERT_EQ(running_.size(), 1u);
  EXPECT_EQ(running_[0].get(), first);
  ASSERT_EQ(waiting_.size(), 1u);
  EXPECT_EQ(waiting_.front()->computed, 0);  // recomputed on readmission
  EXPECT_TRUE(waiting_.front()->table.empty());
  EXPECT_EQ(blocks.num_used(), 4);
}

// prompt_logprobs: every prompt position gets a logits row, at most max_logit_rows a step
// (memory stays bounded for any prompt), the chunk stops at the prompt's end, rows of other
// entries fit beside it, and the prefix cache is skipped.
TEST_F(Scheduler, PromptLogprobsGetEveryRowInBoundedChunks) {
  BlockManager blocks(64, 16, true);
  submit(48);
  auto plan = schedule_step(waiting_, running_, blocks, limits(4, 100));
  run(plan, blocks);                       // its blocks are now in the prefix cache; it decodes
  submit(48, 100, /*prompt_logprobs=*/2);  // the same prompt
  StepLimits l = limits(4, 100);
  l.max_logit_rows = 20;
  plan = schedule_step(waiting_, running_, blocks, l);
  EXPECT_EQ(plan.cached_tokens, 0);
  ASSERT_EQ(plan.entries.size(), 2u);
  EXPECT_EQ(plan.entries[0].count, 1);  // the decode: one row
  EXPECT_EQ(plan.entries[0].logit_row, 0);
  const auto& scored = plan.entries[1];
  EXPECT_EQ(scored.count, 16);  // 19 rows left, cut to the block boundary
  EXPECT_EQ(scored.first_row, 1);
  EXPECT_EQ(scored.logit_row, -1);
  ASSERT_EQ(plan.batch.logit_rows.size(), 17u);
  for (int r = 0; r < 16; ++r) EXPECT_EQ(plan.batch.logit_rows[size_t(1 + r)], 1 + r);
  run(plan, blocks);
  run(plan = schedule_step(waiting_, running_, blocks, l), blocks);
  plan = schedule_step(waiting_, running_, blocks, l);  // the last 16: completes, 16 + 1 rows
  ASSERT_EQ(plan.entries.size(), 2u);
  EXPECT_EQ(plan.entries[1].count, 16);
  EXPECT_EQ(plan.entries[1].first_row, 1);
  EXPECT_EQ(plan.entries[1].logit_row, 16);
  EXPECT_LE(plan.batch.logit_rows.size(), 20u);
}

}  // namespace
}  // namespace invar::engine
