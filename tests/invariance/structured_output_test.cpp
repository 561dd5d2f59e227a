// Structured output through the engine on INVAR_TEST_DEVICE: on the CPU the host sampler masks
// a copy of the row; on CUDA the grammar's bitmask goes with the step and sample_rows draws under
// it on the GPU (engine/draw_path.h), the row staying there unless alternatives are asked for.
// 1. Four constrained requests (a choice, a JSON schema, a regex, any JSON object; greedy and
//    seeded at T 0.8 or 1, with and without alternatives) submitted together among plain
//    requests each give the bits they give alone: every row's draw sees its own mask, whatever
//    else the step holds (several masks a step, rows reordered for download).
// 2. Each reported logprob is the raw one: scoring prompt + output (prompt_logprobs) gives the
//    same bits, though the scorer's rows were never masked.
// 3. Control: the same requests without their grammars generate other tokens, so the masks act.
#include <gtest/gtest.h>

#include <algorithm>
#include <regex>
#include <string>
#include <vector>

#include "engine/grammar.h"
#include "engine_harness.h"

namespace invar::engine {
namespace {

class StructuredOutput : public EngineTest {
 protected:
  std::vector<int32_t> chat(const std::string& user) const {
    return bundle_->tokenizer.encode(
        "<|im_start|>user\n" + user + "<|im_end|>\n<|im_start|>assistant\n", false, true);
  }

  // The four constrained requests; `grammars` false: the same without their constraints.
  std::vector<RequestParams> requests(GrammarCompiler& compiler, bool grammars) const {
    using Kind = GrammarSpec::Kind;
    struct Case {
      std::string user;
      GrammarSpec spec;
      float temperature;
      int top_logprobs;
    };
    const std::vector<Case> cases = {
        {"What is the capital of France?",
         {Kind::choice, {}, {"Paris", "London", "Rome"}, {}, {}},
         0.0f,
         0},
        {"Describe a person as JSON.",
         {Kind::json_schema,
          R"({"type": "object", "properties": {"name": {"type": "string", "maxLength": 16},
              "age": {"type": "integer"}}, "required": ["name", "age"]})",
          {},
          {},
          {}},
         0.8f,
         0},
        {"Give me a code.", {Kind::regex, "[0-9]{3}-[a-z]{2,8}", {}, {}, {}}, 1.0f, 2},
        {"List three colors as JSON.", {Kind::json_object, {}, {}, {}, {}}, 0.0f, 1},
    };
    std::vector<RequestParams> out;
    for (size_t i = 0; i < cases.size(); ++i) {
      RequestParams p;
      p.prompt = chat(cases[i].user);
      p.max_tokens = 40;
      p.top_logprobs = cases[i].top_logprobs;
      p.sampling.temperature = cases[i].temperature;
      p.sampling.seed = 101 + i;
      p.has_seed = true;
      if (grammars) {
        auto g = compiler.compile(cases[i].spec);
        EXPECT_TRUE(g.ok()) << g.status().message();
        if (g.ok()) p.grammar = *g;
      }
      out.push_back(std::move(p));
    }
    return out;
  }

  // Each request alone, on its own engine.
  std::vector<RequestOutcome> alone(const std::vector<RequestParams>& ps) {
    std::vector<RequestOutcome> out;
    for (const RequestParams& p : ps) out.push_back(run_alone(p));
    return out;
  }

  // All of them at once among `background` plain requests, in small steps.
  std::vector<RequestOutcome> together(const std::vector<RequestParams>& ps, int background) {
    auto e = make_engine(busy_options());
    if (!e) return {};
    RequestCollector c;
    std::mt19937 rng(5);
    size_t slot = 0;
    for (int i = 0; i < background; ++i) {
      if (i % 4 == 1 && slot < ps.size()) {
        EXPECT_TRUE(e->submit(ps[slot], c.callback(slot)).ok());
        ++slot;
      }
      RequestParams bg;
      const int len = std::uniform_int_distribution<int>(1, 50)(rng);
      for (int t = 0; t < len; ++t)
        bg.prompt.push_back(
            std::uniform_int_distribution<int>(0, bundle_->model.config.vocab_size - 1)(rng));
      bg.max_tokens = std::uniform_int_distribution<int>(1, 30)(rng);
      bg.sampling.temperature = rng() % 2 ? 0.0f : 1.0f;
      EXPECT_TRUE(e->submit(bg, c.callback(ps.size() + size_t(i))).ok());
    }
    for (; slot < ps.size(); ++slot) EXPECT_TRUE(e->submit(ps[slot], c.callback(slot)).ok());
    auto all = c.wait();
    return std::vector<RequestOutcome>(all.begin(), all.begin() + long(ps.size()));
  }
};

TEST_F(StructuredOutput, SameBitsAloneAndTogetherRawLogprobsAndTheMasksAct) {
  GrammarCompiler compiler(bundle_->tokenizer, bundle_->model.config.vocab_size);
  const std::vector<RequestParams> ps = requests(compiler, true);
  const std::vector<RequestOutcome> solo = alone(ps);
  ASSERT_EQ(solo.size(), 4u);
  for (size_t i = 0; i < solo.size(); ++i) {
    EXPECT_TRUE(solo[i].error.empty()) << "request " << i << ": " << solo[i].error;
    EXPECT_FALSE(solo[i].ids.empty()) << "request " << i;
  }
  const std::vector<std::string> choices = {"Paris", "London", "Rome"};
  EXPECT_NE(std::find(choices.begin(), choices.end(), solo[0].text), choices.end()) << solo[0].text;
  if (solo[2].finish == FinishReason::stop) {
    EXPECT_TRUE(std::regex_match(solo[2].text, std::regex("[0-9]{3}-[a-z]{2,8}"))) << solo[2].text;
  }

  const std::vector<RequestOutcome> loaded = together(ps, 24);
  ASSERT_EQ(loaded.size(), solo.size());
  for (size_t i = 0; i < solo.size(); ++i)
    EXPECT_TRUE(loaded[i].same_output(solo[i]))
        << "request " << i << " alone: " << solo[i].text << " | together: " << loaded[i].text;

  // The raw logprobs: each output token scored after prompt + output.
  for (size_t i = 0; i < solo.size(); ++i) {
    RequestParams score;
    score.prompt = ps[i].prompt;
    score.prompt.insert(score.prompt.end(), solo[i].ids.begin(), solo[i].ids.end());
    score.max_tokens = 0;
    score.prompt_logprobs = 0;
    const RequestOutcome scored = run_alone(score);
    ASSERT_EQ(scored.prompt_logprobs.size(), score.prompt.size() - 1) << "request " << i;
    const size_t stride = size_t(1 + std::max(0, ps[i].top_logprobs));
    int differ = 0;
    for (size_t j = 0; j < solo[i].ids.size(); ++j) {
      const PromptLogprob& s = scored.prompt_logprobs[ps[i].prompt.size() - 1 + j];
      differ += s.id != solo[i].ids[j] ||
                !RequestOutcome::same_bits(s.logprob, solo[i].logprobs[j * stride]);
    }
    EXPECT_EQ(differ, 0) << "request " << i << ": " << differ << " of " << solo[i].ids.size()
                         << " logprobs are not the raw ones";
  }

  // Control: without the grammars the same requests (same seeds) generate other tokens.
  const std::vector<RequestOutcome> free = alone(requests(compiler, false));
  for (size_t i = 0; i < solo.size(); ++i)
    EXPECT_NE(free[i].ids, solo[i].ids) << "request " << i << ": the grammar changed nothing";
}

}  // namespace
}  // namespace invar::engine
