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
  void submit(int len, int first = 100) {
    RequestParams p;
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

  static inline tokenizer::Tokenizer* tok_ = nullptr;  // Sequence needs one for its text
  std::deque<std::unique_ptr<Sequence>> waiting_;
  std::vector<std::unique_ptr<Sequence>> running_;
  uint64_t next_id_ = 1;
};

TEST_F(Scheduler, AdmitsUpToMaxRunningAndPacksDecodesFirst) {
  BlockManager blocks(64, 16, false);
  for (int i = 0; i < 3; ++i) submit(40);
  auto plan = schedule_step(waiting_, running_, blocks, /*max_running=*/2, /*budget=*/100);
  EXPECT_EQ(running_.size(), 2u);
  EXPECT_EQ(waiting_.size(), 1u);
  ASSERT_EQ(plan.entries.size(), 2u);
  EXPECT_EQ(plan.entries[0].count, 40);
  EXPECT_EQ(plan.entries[1].count, 40);
  run(plan, blocks);
  // Both now decode (1 token each) and come first; nothing else can be admitted.
  plan = schedule_step(waiting_, running_, blocks, 2, 100);
  ASSERT_EQ(plan.entries.size(), 2u);
  EXPECT_EQ(plan.entries[0].count, 1);
  EXPECT_EQ(plan.entries[1].count, 1);
}

TEST_F(Scheduler, BudgetCutsPrefillOnBlockBoundaries) {
  BlockManager blocks(64, 16, false);
  submit(100);
  auto plan = schedule_step(waiting_, running_, blocks, 4, /*budget=*/40);
  ASSERT_EQ(plan.entries.size(), 1u);
  EXPECT_EQ(plan.entries[0].count, 32);  // 40 rounded down to the 16-token block boundary
  run(plan, blocks);
  plan = schedule_step(waiting_, running_, blocks, 4, 40);
  EXPECT_EQ(plan.entries[0].count, 32);
  run(plan, blocks);
  plan = schedule_step(waiting_, running_, blocks, 4, 40);
  EXPECT_EQ(plan.entries[0].count, 36);  // the rest of the prompt: no cut needed
}

TEST_F(Scheduler, DecodesTakeTheBudgetBeforePrefills) {
  BlockManager blocks(64, 16, false);
  submit(20);
  auto plan = schedule_step(waiting_, running_, blocks, 4, 64);
  run(plan, blocks);  // the first request now decodes
  submit(200);
  plan = schedule_step(waiting_, running_, blocks, 4, 17);
  ASSERT_EQ(plan.entries.size(), 2u);
  EXPECT_EQ(plan.entries[0].seq->id, 1u);
  EXPECT_EQ(plan.entries[0].count, 1);
  EXPECT_EQ(plan.entries[1].count, 16);  // 16 of the 200, block aligned
}

TEST_F(Scheduler, PrefixCacheServesFullBlocksButNeverTheLastToken) {
  BlockManager blocks(64, 16, true);
  submit(48);
  auto plan = schedule_step(waiting_, running_, blocks, 4, 100);
  run(plan, blocks);
  submit(48);  // the same prompt
  plan = schedule_step(waiting_, running_, blocks, 4, 100);
  EXPECT_EQ(plan.cached_tokens, 32);  // 3 full blocks, but the last token must be computed
  EXPECT_EQ(running_.back()->computed, 32);
  EXPECT_EQ(plan.entries.back().count, 16);
}

TEST_F(Scheduler, PreemptsTheYoungestWhenBlocksRunOut) {
  BlockManager blocks(6, 16, false);  // 96 tokens of KV
  submit(48);  // 3 full blocks; its first sampled token (position 48) needs a fourth
  submit(40);  // 3 blocks, the last one with room
  auto plan = schedule_step(waiting_, running_, blocks, 4, 100);
  ASSERT_EQ(plan.entries.size(), 2u);
  run(plan, blocks);
  Sequence* first = running_[0].get();
  plan = schedule_step(waiting_, running_, blocks, 4, 100);
  EXPECT_EQ(plan.preempted, 1);
  ASSERT_EQ(running_.size(), 1u);
  EXPECT_EQ(running_[0].get(), first);
  ASSERT_EQ(waiting_.size(), 1u);
  EXPECT_EQ(waiting_.front()->computed, 0);  // recomputed on readmission
  EXPECT_TRUE(waiting_.front()->table.empty());
  EXPECT_EQ(blocks.num_used(), 4);
}

}  // namespace
}  // namespace invar::engine
