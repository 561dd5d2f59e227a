// Tensor parallelism through the Engine (what `invar generate/serve --tensor-parallel-size`
// run): a greedy and a seeded sampled request with logprobs, each alone and among background
// requests, give bitwise the same tokens and logprobs at sizes 1 (with the slices), 2 and 4 on a
// random-weight tiny-qwen3 config (4 heads). The model-level tests and their control are in
// tensor_parallel_test.cpp.
#include <gtest/gtest.h>

#include "engine/engine.h"
#include "engine/request_collector.h"
#include "model/tensor_parallel.h"
#include "test_paths.h"

namespace invar::engine {
namespace {

std::vector<RequestOutcome> run(const ModelBundle& bundle, int size, int background,
                                int slices = model::kDefaultTpSlices) {
  EngineOptions o;
  o.threads = 2;
  o.max_context = 256;
  o.tensor_parallel_size = size;
  o.tp_slices = slices;
  auto e = Engine::create(bundle, o);
  EXPECT_TRUE(e.ok()) << e.status().message();
  if (!e.ok()) return {};
  RequestCollector c;
  RequestParams greedy;
  greedy.prompt = {5, 17, 200, 3, 99, 42, 7, 128, 64, 11};
  greedy.max_tokens = 12;
  greedy.ignore_eos = true;
  greedy.top_logprobs = 2;
  RequestParams sampled = greedy;
  sampled.sampling.temperature = 1.0f;
  sampled.sampling.seed = 1234;
  sampled.has_seed = true;
  EXPECT_TRUE(e.value()->submit(greedy, c.callback(0)).ok());
  EXPECT_TRUE(e.value()->submit(sampled, c.callback(1)).ok());
  for (int i = 0; i < background; ++i) {
    RequestParams bg;
    for (int t = 0; t < 3 + 5 * i; ++t) bg.prompt.push_back((t * 31 + i * 7) % 256);
    bg.max_tokens = 4 + i;
    bg.ignore_eos = true;
    EXPECT_TRUE(e.value()->submit(bg, c.callback(size_t(2 + i))).ok());
  }
  std::vector<RequestOutcome> out = c.wait();
  out.resize(2);
  return out;
}

Result<ModelBundle> tiny_bundle() {
  model::LoadOptions load;
  load.weight_dtype = DType::f32;
  return random_model(testing::test_data("tiny-qwen3"), 3, load);
}

TEST(TensorParallelEngine, TokensAndLogprobsEqualAtSizes124AloneAndUnderLoad) {
  auto bundle = tiny_bundle();
  ASSERT_TRUE(bundle.ok()) << bundle.status().message();
  const std::vector<RequestOutcome> ref = run(bundle.value(), 1, 0);
  ASSERT_EQ(ref.size(), 2u);
  ASSERT_EQ(ref[0].ids.size(), 12u) << ref[0].error;
  for (int size : {1, 2, 4})
    for (int background : {0, 5}) {
      const std::vector<RequestOutcome> got = run(bundle.value(), size, background);
      ASSERT_EQ(got.size(), 2u);
      for (size_t r = 0; r < 2; ++r)
        EXPECT_TRUE(got[r].same_output(ref[r]))
            << "size " << size << ", " << background << " background requests, request " << r;
    }
}

// The control: without the slices, size 2's logprobs are not size 1's.
TEST(TensorParallelEngine, WithoutSlicesSize2Differs) {
  auto bundle = tiny_bundle();
  ASSERT_TRUE(bundle.ok()) << bundle.status().message();
  const std::vector<RequestOutcome> one = run(bundle.value(), 1, 0, 0);
  const std::vector<RequestOutcome> two = run(bundle.value(), 2, 0, 0);
  ASSERT_EQ(one.size(), 2u);
  ASSERT_EQ(two.size(), 2u);
  EXPECT_FALSE(one[0].same_output(two[0]) && one[1].same_output(two[1]))
      << "the unsliced control found no difference: the comparison has no power";
}

}  // namespace
}  // namespace invar::engine
