// The whole forward pass against Hugging Face transformers: logits of tiny seeded random
// models (scripts/make-tiny-models.py) must match the logits transformers computed for the
// same ids (scripts/golden-logits.py, committed) to a relative error < 1e-4 with an f32 KV
// cache, < 1e-3 with the engine's default f16 one. A model whose golden files are not yet
// committed is skipped, saying so. INVAR_TEST_DATA_DIR pointed at the output of
// scripts/numpy-reference-logits.py runs the same checks against that numpy reference.
#include <fmt/format.h>
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
  const std::string dir = invar::testing::test_data(golden_name.empty() ? name : golden_name);
  std::ifstream ids_file(dir + "/golden_ids.json");
  if (!ids_file || !std::ifstream(dir + "/golden_logits.f32")) {
    GTEST_SKIP() << dir << "/golden_ids.json or golden_logits.f32 is missing: run "
                 << "scripts/golden-logits.py (torch + transformers) and commit its output";
  }
  auto loaded = model::load_model(invar::testing::test_data(name), {});
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
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
  ::testing::Test::RecordProperty("max_abs_error", fmt::format("{:.3g}", max_err));
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

// Mistral: sliding window 8, so most of the 24 positions see only part of their history; in
// chunks of 5 the window reaches back into earlier chunks.
TEST(HfGolden, TinyMistralMatchesTransformers) {
  expect_matches_golden("tiny-mistral", 1 << 20);
}
TEST(HfGolden, TinyMistralChunkedMatchesTransformers) {
  expect_matches_golden("tiny-mistral", 5);
}
TEST(HfGolden, TinyMistralF16KvCacheMatchesTransformers) {
  expect_matches_golden("tiny-mistral", 3, "", DType::f16, 1e-3);
}

// Phi-3: fused qkv_proj / gate_up_proj split at load, partial rotary (8 of 16 dims), longrope
// (the 24 golden positions are below original_max_position_embeddings 32: short factors and the
// attention factor).
TEST(HfGolden, TinyPhi3MatchesTransformers) {
  expect_matches_golden("tiny-phi3", 1 << 20);
}
TEST(HfGolden, TinyPhi3ChunkedMatchesTransformers) {
  expect_matches_golden("tiny-phi3", 5);
}
TEST(HfGolden, TinyPhi3F16KvCacheMatchesTransformers) {
  expect_matches_golden("tiny-phi3", 7, "", DType::f16, 1e-3);
}

// Gemma 2: 1 + w norms on both sides of each block, GeGLU, embedding times sqrt(48), attention
// scale 24^-0.5 with soft-cap 5, final soft-cap 30, window 8 on layer 0 only, head_dim 32 with
// hidden 48.
TEST(HfGolden, TinyGemma2MatchesTransformers) {
  expect_matches_golden("tiny-gemma2", 1 << 20);
}
TEST(HfGolden, TinyGemma2ChunkedMatchesTransformers) {
  expect_matches_golden("tiny-gemma2", 5);
}
TEST(HfGolden, TinyGemma2F16KvCacheMatchesTransformers) {
  expect_matches_golden("tiny-gemma2", 3, "", DType::f16, 1e-3);
}

// Gemma 3: Gemma 2's structure with q/k norms, no attention soft-cap, sliding layers 0 and 2
// with rope base 1e4, the full layer 1 with base 1e6 and linear scaling 2.
TEST(HfGolden, TinyGemma3MatchesTransformers) {
  expect_matches_golden("tiny-gemma3", 1 << 20);
}
TEST(HfGolden, TinyGemma3ChunkedMatchesTransformers) {
  expect_matches_golden("tiny-gemma3", 5);
}
TEST(HfGolden, TinyGemma3F16KvCacheMatchesTransformers) {
  expect_matches_golden("tiny-gemma3", 7, "", DType::f16, 1e-3);
}

// YaRN on Qwen3: blended frequencies and cos/sin times 0.1 ln 4 + 1.
TEST(HfGolden, TinyQwen3YarnMatchesTransformers) {
  expect_matches_golden("tiny-qwen3-yarn", 1 << 20);
}
TEST(HfGolden, TinyQwen3YarnChunkedMatchesTransformers) {
  expect_matches_golden("tiny-qwen3-yarn", 5);
}

// Mixture of experts, loaded from the Hub tensor names: Qwen3-MoE (8 experts, top-2,
// norm_topk_prob; layer 1 dense through mlp_only_layers) and Mixtral (8 experts, top-2). The
// golden ids route to all 8 experts of each; chunked, each step's expert groups differ.
TEST(HfGolden, TinyQwen3MoeMatchesTransformers) {
  expect_matches_golden("tiny-qwen3-moe", 1 << 20);
}
TEST(HfGolden, TinyQwen3MoeChunkedMatchesTransformers) {
  expect_matches_golden("tiny-qwen3-moe", 5);
}
TEST(HfGolden, TinyQwen3MoeF16KvCacheMatchesTransformers) {
  expect_matches_golden("tiny-qwen3-moe", 3, "", DType::f16, 1e-3);
}
TEST(HfGolden, TinyMixtralMatchesTransformers) {
  expect_matches_golden("tiny-mixtral", 1 << 20);
}
TEST(HfGolden, TinyMixtralChunkedMatchesTransformers) {
  expect_matches_golden("tiny-mixtral", 5);
}
TEST(HfGolden, TinyMixtralF16KvCacheMatchesTransformers) {
  expect_matches_golden("tiny-mixtral", 7, "", DType::f16, 1e-3);
}

// Qwen2-MoE: q/k/v biases, 8 experts (top-2, weights not renormalised) plus the shared expert
// scaled by sigmoid(shared_expert_gate . x), added after the routed sum; layer 1 dense.
TEST(HfGolden, TinyQwen2MoeMatchesTransformers) {
  expect_matches_golden("tiny-qwen2-moe", 1 << 20);
}
TEST(HfGolden, TinyQwen2MoeChunkedMatchesTransformers) {
  expect_matches_golden("tiny-qwen2-moe", 5);
}
TEST(HfGolden, TinyQwen2MoeF16KvCacheMatchesTransformers) {
  expect_matches_golden("tiny-qwen2-moe", 3, "", DType::f16, 1e-3);
}

// FP8: tiny-qwen3's matrices stored as F8_E4M3 in 32x32 blocks with weight_scale_inv,
// dequantized at load (transformers' goldens: FineGrainedFP8Config(dequantize=True)).
TEST(HfGolden, TinyQwen3Fp8MatchesTransformers) {
  expect_matches_golden("tiny-qwen3-fp8", 1 << 20);
}
TEST(HfGolden, TinyQwen3Fp8ChunkedMatchesTransformers) {
  expect_matches_golden("tiny-qwen3-fp8", 5);
}
TEST(HfGolden, TinyQwen3Fp8F16KvCacheMatchesTransformers) {
  expect_matches_golden("tiny-qwen3-fp8", 3, "", DType::f16, 1e-3);
}

}  // namespace
}  // namespace invar
