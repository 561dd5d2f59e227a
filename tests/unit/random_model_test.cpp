// engine::random_model: any config's shapes with seeded random weights and, without a
// tokenizer.json beside the config, a byte tokenizer; what `--random-weights` gives generate
// and serve.
#include <gtest/gtest.h>

#include <future>

#include "engine/engine.h"
#include "engine/fingerprint.h"
#include "engine/model_bundle.h"
#include "test_paths.h"

namespace invar {
namespace {

TEST(RandomModel, SameSeedSameWeightsAndAByteTokenizer) {
  auto a = engine::random_model(testing::test_data("tiny-llama"), 5, {});
  auto b = engine::random_model(testing::test_data("tiny-llama/config.json"), 5, {});
  auto c = engine::random_model(testing::test_data("tiny-llama"), 6, {});
  ASSERT_TRUE(a.ok()) << a.status().message();
  ASSERT_TRUE(b.ok() && c.ok());
  EXPECT_EQ(engine::weights_hash(a->model.weights), engine::weights_hash(b->model.weights));
  EXPECT_NE(engine::weights_hash(a->model.weights), engine::weights_hash(c->model.weights));
  EXPECT_EQ(a->tokenizer.vocab_size(), 256);
  EXPECT_EQ(a->tokenizer.encode("hi!", false, false), (std::vector<int32_t>{'h', 'i', '!'}));
  EXPECT_EQ(a->tokenizer.decode({'o', 'k'}), "ok");
}

TEST(RandomModel, GeneratesThroughTheEngine) {
  auto bundle = engine::random_model(testing::test_data("tiny-qwen3"), 1, {});
  ASSERT_TRUE(bundle.ok()) << bundle.status().message();
  engine::EngineOptions o;
  o.threads = 2;
  o.max_context = 64;
  engine::Engine eng(*bundle, o);
  engine::RequestParams p;
  p.prompt = bundle->tokenizer.encode("abc", false, false);
  p.max_tokens = 5;
  p.ignore_eos = true;
  std::promise<engine::RequestEvent> done;
  int tokens = 0;
  auto id = eng.submit(p, [&](const engine::RequestEvent& ev) {
    tokens += int(ev.tokens.size());
    if (ev.finished()) done.set_value(ev);
  });
  ASSERT_TRUE(id.ok()) << id.status().message();
  const auto last = done.get_future().get();
  EXPECT_EQ(last.finish, engine::FinishReason::length);
  EXPECT_EQ(last.completion_tokens, 5);
}

TEST(RandomModel, MissingConfigIsAClearError) {
  auto r = engine::random_model(testing::test_data("no-such-model"), 1, {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("no-such-model"), std::string::npos) << r.status().message();
}

}  // namespace
}  // namespace invar
