// What a request may do to the draw without touching the model's numbers (vLLM's semantics):
// min_tokens masks the stop tokens out of the draw and logit_bias shifts logits, on a copy of
// the row, so every reported logprob keeps the bits of the raw row; a stop token is reported
// with its logprob; include_stop_str_in_output and skip_special_tokens shape only the text.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "engine_harness.h"

namespace invar::engine {
namespace {

class LogitControls : public EngineTest {
 protected:
  // A chat turn SmolLM2-135M-Instruct answers greedily in a few tokens, then <|im_end|>.
  RequestParams chat_turn() const {
    RequestParams p;
    p.prompt = bundle_->tokenizer.encode(
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
        false, true);
    p.max_tokens = 32;
    p.top_logprobs = 2;
    return p;
  }
  bool is_stop(int32_t id) const {
    const auto& stops = bundle_->tokenizer.stop_ids();
    return std::find(stops.begin(), stops.end(), id) != stops.end();
  }
};

TEST_F(LogitControls, StopTokenIsReportedWithItsLogprobButNotAsText) {
  RequestOutcome out = run_alone(chat_turn());
  ASSERT_EQ(out.finish, FinishReason::stop);
  ASSERT_FALSE(out.ids.empty());
  EXPECT_TRUE(is_stop(out.ids.back()));
  EXPECT_EQ(out.text, "The capital of France is Paris.");
  EXPECT_LE(out.logprobs[(out.ids.size() - 1) * 3], 0.0f);

  RequestParams shown = chat_turn();  // the stop token's text, when asked for, and not skipped
  shown.include_stop_str_in_output = true;
  shown.skip_special_tokens = false;
  EXPECT_EQ(run_alone(shown).text, out.text + "<|im_end|>");
  shown.skip_special_tokens = true;
  EXPECT_EQ(run_alone(shown).text, out.text);
}

// The min_tokens mask sets the stop tokens to -inf on a copy of the row: the tokens before
// the masked position are the same bits, and the token drawn there is the best one left, with
// the logprob bits the unmasked run reported for it as an alternative.
TEST_F(LogitControls, MinTokensMasksOnlyTheStopTokens) {
  RequestOutcome free_run = run_alone(chat_turn());
  const size_t k = free_run.ids.size();  // the last one is the stop token
  ASSERT_TRUE(is_stop(free_run.ids.back()));
  RequestParams p = chat_turn();
  p.min_tokens = int(k) + 3;
  RequestOutcome masked = run_alone(p);
  ASSERT_GE(masked.ids.size(), k + 3);
  for (size_t i = 0; i + 1 < k; ++i) {
    EXPECT_EQ(masked.ids[i], free_run.ids[i]) << i;
    for (size_t j = 0; j < 3; ++j)
      EXPECT_TRUE(
          RequestOutcome::same_bits(masked.logprobs[i * 3 + j], free_run.logprobs[i * 3 + j]))
          << "token " << i;
  }
  const auto& alternatives = free_run.top[k - 1];  // where the free run stopped
  ASSERT_EQ(alternatives.size(), 2u);
  ASSERT_EQ(alternatives[0].id, free_run.ids[k - 1]);
  ASSERT_FALSE(is_stop(alternatives[1].id));
  EXPECT_EQ(masked.ids[k - 1], alternatives[1].id);
  EXPECT_TRUE(RequestOutcome::same_bits(masked.logprobs[(k - 1) * 3], alternatives[1].logprob));
  // ... and the masked run reports the stop token's raw logprob among its alternatives.
  EXPECT_TRUE(RequestOutcome::same_bits(masked.top[k - 1][0], alternatives[0]));
  for (size_t i = 0; i < size_t(p.min_tokens); ++i) EXPECT_FALSE(is_stop(masked.ids[i])) << i;

  RequestParams bad = chat_turn();
  bad.min_tokens = bad.max_tokens + 1;
  auto engine = make_engine({});
  ASSERT_TRUE(engine);
  EXPECT_EQ(engine->submit(bad, nullptr).status().code(), StatusCode::invalid_argument);
}

// logit_bias changes what is drawn, never a reported logprob: pushing the runner-up to the top
// (or the best down) draws the runner-up, reported with the raw logprob the unbiased run gave it.
TEST_F(LogitControls, LogitBiasChangesTheDrawNotTheLogprob) {
  RequestParams p = chat_turn();
  p.max_tokens = 1;
  RequestOutcome plain = run_alone(p);
  ASSERT_EQ(plain.top[0].size(), 2u);
  const TokenLogprob best = plain.top[0][0], runner_up = plain.top[0][1];
  for (auto bias : {std::pair{runner_up.id, 100.0f}, std::pair{best.id, -100.0f}}) {
    RequestParams biased = p;
    biased.logit_bias = {bias};
    RequestOutcome out = run_alone(biased);
    ASSERT_EQ(out.ids.size(), 1u);
    EXPECT_EQ(out.ids[0], runner_up.id);
    EXPECT_TRUE(RequestOutcome::same_bits(out.logprobs[0], runner_up.logprob));
    EXPECT_TRUE(RequestOutcome::same_bits(out.top[0][0], best));  // raw order, raw bits
  }
  // Seeded sampling goes through the same adjusted copy: a +100 bias makes one token certain.
  RequestParams sampled = p;
  sampled.max_tokens = 6;
  sampled.ignore_eos = true;
  sampled.sampling.temperature = 1.0f;
  sampled.sampling.seed = 5;
  sampled.has_seed = true;
  sampled.logit_bias = {{runner_up.id, 100.0f}};
  for (int32_t id : run_alone(sampled).ids) EXPECT_EQ(id, runner_up.id);

  RequestParams bad = p;
  bad.logit_bias = {{best.id, 101.0f}};
  auto engine = make_engine({});
  ASSERT_TRUE(engine);
  EXPECT_EQ(engine->submit(bad, nullptr).status().code(), StatusCode::invalid_argument);
}

TEST_F(LogitControls, SkipSpecialTokensDecidesWhetherControlTokensAreText) {
  RequestParams p = chat_turn();
  p.max_tokens = 3;
  p.top_logprobs = -1;
  const int32_t im_start = *bundle_->tokenizer.token_id("<|im_start|>");
  p.logit_bias = {{im_start, 100.0f}};
  EXPECT_EQ(run_alone(p).text, "");
  p.skip_special_tokens = false;
  EXPECT_EQ(run_alone(p).text, "<|im_start|><|im_start|><|im_start|>");
}

TEST_F(LogitControls, IncludeStopStrInOutputKeepsTheMatch) {
  RequestParams p = chat_turn();
  p.stop_strings = {"France"};
  RequestOutcome cut = run_alone(p);
  EXPECT_EQ(cut.finish, FinishReason::stop);
  EXPECT_EQ(cut.text, "The capital of ");
  p.include_stop_str_in_output = true;
  RequestOutcome kept = run_alone(p);
  EXPECT_EQ(kept.finish, FinishReason::stop);
  EXPECT_EQ(kept.text, "The capital of France");
  // min_tokens past the match: stop strings do not match before it.
  p.min_tokens = 8;
  RequestOutcome late = run_alone(p);
  EXPECT_NE(late.text.find("France"), std::string::npos);
  EXPECT_GE(late.ids.size(), 8u);
}

}  // namespace
}  // namespace invar::engine
