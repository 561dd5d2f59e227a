// The whole forward pass against Hugging Face transformers: logits of tiny seeded random
// Llama and Qwen3 models (scripts/make-tiny-models.py) must match the logits transformers
// computed for the same ids (scripts/golden-logits.py, committed) to a relative error < 1e-4
// with an f32 KV cache, < 1e-3 with the engine's default f16 one.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "model/transformer.h"
#include "test_paths.h"

namespace invar {
namespace {

std::vector<float> read_f32(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<float> out(bytes.size() / sizeof(float));
  std::memcpy(out.data(), bytes.data(), out.size() * sizeof(float));
  return out;
}

// Relative error of the whole logits matrix: max |a - b| / max |b|.
// The golden files of `golden_name` serve the model in `name` (a sharded copy shares them).
void expect_matches_golden(const std::string& name, int chunk, const std::string& golden_name = "",
                           DType kv_dtype = DType::f32, double tolerance = 1e-4) {
  auto loaded = model::load_model(invar::testing::test_data(name), {});
  const std::string dir = invar::testing::test_data(golden_name.empty() ? name : golden_name);
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  std::ifstream ids_file(dir + "/golden_ids.json");
  ASSERT_TRUE(ids_file) << dir << "/golden_ids.json missing: run scripts/golden-logits.py";
  std::vector<int32_t> ids = nlohmann::json::parse(ids_file).get<std::vector<int32_t>>();
  std::vector<float> golden = read_f32(dir + "/golden_logits.f32");
  const int vocab = loaded->config.vocab_size;
  ASSERT_EQ(golden.size(), ids.size() * size_t(vocab));

  ThreadPool pool(2);
  model::Transformer transformer(loaded->config, loaded->weights, pool);
  constexpr int kBlock = 16;
  const int max_blocks = int(ids.size() + kBlock - 1) / kBlock;
  model::KvCache cache(loaded->config, max_blocks, kBlock, kv_dtype);
  std::vector<int32_t> table;
  for (int b = 0; b < max_blocks; ++b) table.push_back(max_blocks - 1 - b);  // scrambled pages

  std::vector<float> logits, all;
  for (int start = 0; start < int(ids.size()); start += chunk) {
    int n = std::min<int>(chunk, int(ids.size()) - start);
    model::BatchPlanBuilder builder(kBlock, max_blocks);
    builder.add_sequence(std::span<const int32_t>(ids).subspan(start, n), start, table, model::LogitRows::all);
    Status st = transformer.forward(builder.build(), cache, logits);
    ASSERT_TRUE(st.ok()) << st.message();
    all.insert(all.end(), logits.begin(), logits.end());
  }
  double max_err = 0, max_ref = 0;
  for (size_t i = 0; i < golden.size(); ++i) {
    max_err = std::max(max_err, std::abs(double(all[i]) - golden[i]));
    max_ref = std::max(max_ref, std::abs(double(golden[i])));
  }
  EXPECT_GT(max_ref, 0.0);
  EXPECT_LT(max_err / max_ref, tolerance)
      << name << ": max abs error " << max_err << " of " << max_ref;
}

TEST(HfGolden, TinyLlamaMatchesTransformers) { expect_matches_golden("tiny-llama", 1 << 20); }
TEST(HfGolden, TinyLlamaChunkedMatchesTransformers) { expect_matches_golden("tiny-llama", 5); }
TEST(HfGolden, TinyLlamaShardedMatchesTransformers) {
  expect_matches_golden("tiny-llama-sharded", 1 << 20, "tiny-llama");
}
TEST(HfGolden, TinyQwen3MatchesTransformers) { expect_matches_golden("tiny-qwen3", 1 << 20); }

// With the engine's default f16 KV cache (K and V rounded to f16 when stored, relative error
// <= 2^-11 each), the logits stay within 1e-3 of transformers' f32 ones.
TEST(HfGolden, TinyLlamaF16KvCacheMatchesTransformers) {
  expect_matches_golden("tiny-llama", 5, "", DType::f16, 1e-3);
}
TEST(HfGolden, TinyQwen3F16KvCacheMatchesTransformers) {
  expect_matches_golden("tiny-qwen3", 1 << 20, "", DType::f16, 1e-3);
}

}  // namespace
}  // namespace invar
