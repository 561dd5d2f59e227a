// RL scoring, bitwise (vLLM's prompt_logprobs): a completion sampled at temperature 0.8 with a
// seed, then its prompt + completion scored with prompt_logprobs (max_tokens 0), alone and among
// other requests (chunked prefill, at most 12 logits rows a step, preemption), gives back for
// every token exactly the logprob bits and alternatives it was sampled with, and the prompt's
// own logprobs as the sampling request reported them. The scorer computes each token's logprob
// from a prefill row, the sampler from a decode row: only a batch-invariant forward pass makes
// them equal, and the fast kernels' negative control must see them differ (R8).
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "engine_harness.h"

namespace invar::engine {
namespace {

constexpr int kTop = 3;

class PromptLogprobs : public EngineTest {
 protected:
  RequestParams sampled() const {
    RequestParams p;
    // About 140 tokens: with its 40-token completion the sequence spans three 64-position KV
    // tiles, which the CUDA control needs (see NegativeControlFastKernelsDiffer).
    p.prompt = bundle_->tokenizer.encode(
        "For forty years the light on the northern cape had turned without fail. Ships passing "
        "in the winter storms counted its flashes, three short and one long, and knew where the "
        "rocks lay beneath the grey water. The village below the cliff had grown from six "
        "cottages to a small town with a school, a bakery and a harbour wall of new stone, but "
        "the tower itself had not changed: the same iron railing, the same brass lamp, the same "
        "narrow window facing the sea. Every evening at dusk he wound the clockwork, trimmed "
        "the wick and wrote the weather in a leather book that nobody else ever read. The old "
        "lighthouse keeper climbed the stairs every night, and on the last night of the year he "
        "found",
        false, false);
    p.max_tokens = 40;
    p.ignore_eos = true;
    p.top_logprobs = kTop;
    p.prompt_logprobs = kTop;
    p.sampling.temperature = 0.8f;
    p.sampling.seed = 2027;
    p.has_seed = true;
    return p;
  }

  // The prompt and the completion it got, scored: nothing generated.
  static RequestParams scoring(const RequestParams& sampled, const RequestOutcome& out) {
    RequestParams p;
    p.prompt = sampled.prompt;
    p.prompt.insert(p.prompt.end(), out.ids.begin(), out.ids.end());
    p.max_tokens = 0;
    p.prompt_logprobs = kTop;
    return p;
  }

  // How many tokens of `scored` differ from `sampled` in any bit: the prompt's tokens against
  // the sampling request's own prompt logprobs, the completion's against the logprobs and
  // alternatives they were drawn with. `what` says which run, for messages.
  static int mismatches(const RequestParams& p, const RequestOutcome& sampled,
                        const RequestOutcome& scored, const std::string& what) {
    const size_t prompt = p.prompt.size(), generated = sampled.ids.size();
    EXPECT_EQ(sampled.prompt_logprobs.size(), prompt - 1) << what;
    EXPECT_EQ(scored.prompt_logprobs.size(), prompt + generated - 1) << what;
    EXPECT_TRUE(scored.ids.empty()) << what << ": max_tokens 0 generates nothing";
    EXPECT_EQ(scored.finish, FinishReason::length) << what;
    if (scored.prompt_logprobs.size() != prompt + generated - 1) return -1;
    int differ = 0;
    for (size_t i = 0; i + 1 < prompt; ++i)
      differ += !RequestOutcome::same_bits(sampled.prompt_logprobs[i], scored.prompt_logprobs[i]);
    for (size_t j = 0; j < generated; ++j) {
      const PromptLogprob& s = scored.prompt_logprobs[prompt - 1 + j];
      bool same = s.id == sampled.ids[j] &&
                  RequestOutcome::same_bits(s.logprob, sampled.logprobs[j * (1 + kTop)]) &&
                  s.top.size() == sampled.top[j].size();
      for (size_t k = 0; same && k < s.top.size(); ++k)
        same = RequestOutcome::same_bits(s.top[k], sampled.top[j][k]);
      differ += !same;
    }
    return differ;
  }
};

TEST_F(PromptLogprobs, ScoringGivesBackTheSampledBitsAloneAndUnderLoad) {
  const RequestParams p = sampled();
  const RequestOutcome out = run_alone(p);
  ASSERT_EQ(out.ids.size(), 40u);
  ASSERT_EQ(out.prompt_logprobs.size(), p.prompt.size() - 1);
  const RequestParams score = scoring(p, out);

  EXPECT_EQ(mismatches(p, out, run_alone(score), "scored alone"), 0);
  // Other requests in flight: the scoring prefill is cut into chunks of at most 12 rows (the
  // step's logits rows) at positions the load decides, next to decodes and other prefills.
  EngineStats stats;
  int run = 0;
  for (const auto& o : run_loaded(score, 5, 20, busy_options(), &stats))
    EXPECT_EQ(mismatches(p, out, o, "scored under load, copy " + std::to_string(run++)), 0);
  // The sampling request under load reports the same prompt logprobs and tokens too.
  for (const auto& o : run_loaded(p, 4, 16, busy_options())) EXPECT_TRUE(o.same_output(out));

  // Ranks and alternatives agree with the logprobs: the rank counts the tokens at least as
  // likely (the token itself included), the alternatives are the best ones, most likely first.
  for (const PromptLogprob& s : run_alone(score).prompt_logprobs) {
    ASSERT_EQ(s.top.size(), size_t(kTop));
    int at_least = 0, above = 0;
    for (size_t k = 0; k < s.top.size(); ++k) {
      at_least += s.top[k].logprob >= s.logprob;
      above += s.top[k].logprob > s.logprob;
      if (k > 0) {
        EXPECT_LE(s.top[k].logprob, s.top[k - 1].logprob);
      }
    }
    EXPECT_GE(s.rank, above + 1) << "token " << s.id;
    if (at_least < kTop) {
      EXPECT_LE(s.rank, at_least) << "token " << s.id;
    }
  }
}

// R8: the fast kernels sum a decode row in another order than a scoring prefill row, so the
// same comparison must fail. On the CPU the split-K GEMM does (M <= 8); on CUDA, where cuBLAS
// computes SmolLM2's small shapes alike at M = 1 and at dozens of rows, the fast attention
// does: it splits a decode's KV over the SMs once it spans more than one 64-position tile, and
// a prefill's never (hence the prompt's length).
TEST_F(PromptLogprobs, NegativeControlFastKernelsDiffer) {
  EngineOptions fast;
  fast.kernels = kernels::KernelMode::fast;
  const RequestParams p = sampled();
  const RequestOutcome out = run_alone(p, fast);
  ASSERT_EQ(out.ids.size(), 40u);
  const int differ = mismatches(p, out, run_alone(scoring(p, out), fast), "fast, alone");
  EXPECT_GT(differ, 0) << "scoring cannot tell a batch-dependent GEMM from an invariant one";
  std::printf("fast kernels: %d of %zu scored tokens differ from their sampling\n", differ,
              p.prompt.size() - 1 + out.ids.size());
  // The prompt's own logprobs come from prefill rows both times: those may agree; the
  // completion's come from decode rows when sampled, so they are where the control bites.
  fast.max_running = 12;
  fast.step_token_budget = 40;
  int loaded = 0;
  for (const auto& o : run_loaded(scoring(p, out), 3, 12, fast))
    loaded += mismatches(p, out, o, "fast, loaded") > 0;
  EXPECT_GT(loaded, 0);
}

TEST_F(PromptLogprobs, PreemptionAndRecomputeKeepTheBits) {
  const RequestParams p = sampled();
  const RequestOutcome out = run_alone(p);
  EngineOptions tight = busy_options();
  tight.max_context = 256;
  tight.kv_blocks = 20;  // 320 tokens of KV for 12 running sequences: preemption is certain
  EngineStats stats;
  for (const auto& o : run_loaded(scoring(p, out), 4, 16, tight, &stats))
    EXPECT_EQ(mismatches(p, out, o, "scored with preemption"), 0);
  EXPECT_GT(stats.preemptions, 0u);
}

// A scoring request needs every prompt row: it takes nothing from the prefix cache, even when
// its whole prompt is there, and still gets the same bits.
TEST_F(PromptLogprobs, SkipsThePrefixCache) {
  const RequestParams p = sampled();
  auto engine = make_engine({});
  ASSERT_TRUE(engine);
  RequestCollector first;
  ASSERT_TRUE(engine->submit(p, first.callback(0)).ok());
  const RequestOutcome out = first.wait()[0];
  RequestParams plain = p;  // the same prompt without prompt logprobs: served from the cache
  plain.prompt_logprobs = -1;
  RequestCollector second;
  ASSERT_TRUE(engine->submit(plain, second.callback(0)).ok());
  EXPECT_GT(second.wait()[0].cached_prompt_tokens, 0);
  RequestCollector third;
  ASSERT_TRUE(engine->submit(p, third.callback(0)).ok());
  const RequestOutcome again = third.wait()[0];
  EXPECT_EQ(again.cached_prompt_tokens, 0);
  EXPECT_TRUE(again.same_output(out));
}

}  // namespace
}  // namespace invar::engine
