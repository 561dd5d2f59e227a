// Mixture-of-experts models on the CPU: Qwen3-MoE and Mixtral config.json keys, the weight slots
// of sparse and dense layers under the Hub tensor names, the real shapes of Qwen3-30B-A3B and
// Mixtral-8x7B (and the FP8 Qwen3-4B config; counted, not allocated), and seeded random weights
// of a scaled-down MoE through the forward pass.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "engine/fingerprint.h"
#include "engine/model_bundle.h"
#include "model/config_parse.h"
#include "model/transformer.h"
#include "model/weight_slots.h"
#include "test_paths.h"

namespace invar::model {
namespace {

const std::string kQwen3MoeBase = R"({"architectures":["Qwen3MoeForCausalLM"],"vocab_size":32,
  "hidden_size":16,"intermediate_size":24,"num_hidden_layers":4,"num_attention_heads":2,
  "num_key_value_heads":1,"head_dim":8,"moe_intermediate_size":8,"num_experts_per_tok":2)";

TEST(MoeConfig, Qwen3MoeKeys) {
  auto c = parse_hf_config(kQwen3MoeBase + R"(,"num_experts":6,"norm_topk_prob":true,
      "decoder_sparse_step":2,"mlp_only_layers":[3]})",
                           "cfg.json");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->arch, Arch::qwen3_moe);
  EXPECT_TRUE(c->qk_norm);
  EXPECT_EQ(c->moe.num_experts, 6);
  EXPECT_EQ(c->moe.experts_per_token, 2);
  EXPECT_EQ(c->moe.expert_intermediate_size, 8);
  EXPECT_TRUE(c->moe.normalize_top_k);
  // transformers' rule: sparse when (l + 1) % step == 0 and l not in mlp_only_layers.
  EXPECT_FALSE(is_moe_layer(*c, 0));
  EXPECT_TRUE(is_moe_layer(*c, 1));
  EXPECT_FALSE(is_moe_layer(*c, 2));
  EXPECT_FALSE(is_moe_layer(*c, 3));
  auto plain = parse_hf_config(kQwen3MoeBase + R"(,"num_experts":6})", "cfg.json");
  ASSERT_TRUE(plain.ok()) << plain.status().message();
  EXPECT_FALSE(plain->moe.normalize_top_k);  // Qwen3MoeConfig's default
  for (int l = 0; l < 4; ++l) EXPECT_TRUE(is_moe_layer(*plain, l));
}

TEST(MoeConfig, MixtralKeysAndDefaults) {
  auto c = parse_hf_config(R"({"architectures":["MixtralForCausalLM"],"vocab_size":32,
      "hidden_size":16,"intermediate_size":24,"num_hidden_layers":2,"num_attention_heads":2})",
                           "cfg.json");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->arch, Arch::mixtral);
  EXPECT_EQ(c->moe.num_experts, 8);  // MixtralConfig's defaults
  EXPECT_EQ(c->moe.experts_per_token, 2);
  EXPECT_EQ(c->moe.expert_intermediate_size, 24);
  EXPECT_TRUE(c->moe.normalize_top_k);
  EXPECT_EQ(c->sliding_window, 0);  // absent: none (unlike Mistral's 4096)
  EXPECT_TRUE(is_moe_layer(*c, 0) && is_moe_layer(*c, 1));
}

TEST(MoeConfig, ErrorsNameTheKey) {
  auto missing = parse_hf_config(kQwen3MoeBase + "}", "cfg.json");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("num_experts"), std::string::npos);
  auto too_many = parse_hf_config(kQwen3MoeBase + R"(,"num_experts":1})", "cfg.json");
  ASSERT_FALSE(too_many.ok());
  EXPECT_NE(too_many.status().message().find("num_experts_per_tok is 2"), std::string::npos)
      << too_many.status().message();
  auto bad_list =
      parse_hf_config(kQwen3MoeBase + R"(,"num_experts":4,"mlp_only_layers":[-1]})", "cfg.json");
  ASSERT_FALSE(bad_list.ok());
  EXPECT_NE(bad_list.status().message().find("mlp_only_layers"), std::string::npos);
  auto shared = parse_hf_config(
      kQwen3MoeBase + R"(,"num_experts":4,"shared_expert_intermediate_size":8})", "cfg.json");
  ASSERT_FALSE(shared.ok());
  EXPECT_NE(shared.status().message().find("shared experts"), std::string::npos);
}

// Qwen2MoeConfig: q/k/v biases (qkv_bias, default true), norm_topk_prob default false, a shared
// expert of shared_expert_intermediate_size (default 5632).
TEST(MoeConfig, Qwen2MoeKeysAndDefaults) {
  const std::string base = R"({"architectures":["Qwen2MoeForCausalLM"],"vocab_size":32,
    "hidden_size":16,"intermediate_size":24,"num_hidden_layers":2,"num_attention_heads":2,
    "moe_intermediate_size":8,"num_experts_per_tok":2,"num_experts":4)";
  auto c = parse_hf_config(base + R"(,"shared_expert_intermediate_size":12})", "cfg.json");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->arch, Arch::qwen2_moe);
  EXPECT_TRUE(c->attention_bias);
  EXPECT_FALSE(c->qk_norm);
  EXPECT_FALSE(c->moe.normalize_top_k);
  EXPECT_EQ(c->moe.shared_intermediate_size, 12);
  EXPECT_EQ(c->moe.expert_intermediate_size, 8);
  auto d = parse_hf_config(base + R"(,"qkv_bias":false,"norm_topk_prob":true})", "cfg.json");
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_FALSE(d->attention_bias);
  EXPECT_TRUE(d->moe.normalize_top_k);
  EXPECT_EQ(d->moe.shared_intermediate_size, 5632);
}

// Names of every slot, in walk order.
std::vector<std::string> slot_names(const ModelConfig& c) {
  ModelWeights w;
  std::vector<std::string> out;
  EXPECT_TRUE(for_each_weight_slot(c, w, [&](const WeightSlot& s) -> Status {
                out.push_back(hf_tensor_name(c, s));
                return {};
              }).ok());
  return out;
}

TEST(MoeWeights, HubNamesOfSparseAndDenseLayers) {
  auto q = read_hf_config(testing::test_data("tiny-qwen3-moe"));
  ASSERT_TRUE(q.ok()) << q.status().message();
  const auto qn = slot_names(*q);
  auto has = [](const std::vector<std::string>& v, const std::string& s) {
    return std::find(v.begin(), v.end(), s) != v.end();
  };
  EXPECT_TRUE(has(qn, "model.layers.0.mlp.gate.weight"));
  EXPECT_TRUE(has(qn, "model.layers.0.mlp.experts.7.down_proj.weight"));
  EXPECT_TRUE(has(qn, "model.layers.1.mlp.gate_proj.weight"));  // mlp_only_layers: [1]
  EXPECT_FALSE(has(qn, "model.layers.1.mlp.gate.weight"));
  EXPECT_FALSE(has(qn, "model.layers.0.mlp.gate_proj.weight"));
  auto m = read_hf_config(testing::test_data("tiny-mixtral"));
  ASSERT_TRUE(m.ok()) << m.status().message();
  const auto mn = slot_names(*m);
  for (const char* n : {"model.layers.1.block_sparse_moe.gate.weight",
                        "model.layers.1.block_sparse_moe.experts.0.w1.weight",
                        "model.layers.1.block_sparse_moe.experts.0.w3.weight",
                        "model.layers.1.block_sparse_moe.experts.5.w2.weight"})
    EXPECT_TRUE(has(mn, n)) << n;
  auto s = read_hf_config(testing::test_data("tiny-qwen2-moe"));
  ASSERT_TRUE(s.ok()) << s.status().message();
  const auto sn = slot_names(*s);
  for (const char* n : {"model.layers.0.self_attn.q_proj.bias", "model.layers.2.mlp.gate.weight",
                        "model.layers.2.mlp.shared_expert.gate_proj.weight",
                        "model.layers.2.mlp.shared_expert.up_proj.weight",
                        "model.layers.2.mlp.shared_expert.down_proj.weight",
                        "model.layers.2.mlp.shared_expert_gate.weight"})
    EXPECT_TRUE(has(sn, n)) << n;
  EXPECT_FALSE(has(sn, "model.layers.1.mlp.shared_expert_gate.weight"));  // dense layer
}

TEST(MoeWeights, TinyCheckpointsLoadWithTheirShapes) {
  for (const char* name : {"tiny-qwen3-moe", "tiny-mixtral", "tiny-qwen2-moe"}) {
    auto m = load_model(testing::test_data(name), {});
    ASSERT_TRUE(m.ok()) << m.status().message();
    const LayerWeights& l0 = m->weights.layers[0];
    EXPECT_EQ(l0.router.shape, (std::vector<int64_t>{8, 64})) << name;
    ASSERT_EQ(l0.experts.size(), 8u) << name;
    const int64_t inter = m->config.moe.expert_intermediate_size;
    EXPECT_EQ(l0.experts[3].w_down.shape, (std::vector<int64_t>{64, inter})) << name;
    EXPECT_TRUE(l0.w_gate.empty()) << name;
  }
}

// The published totals of the two checkpoints (their safetensors index's total_size / 2 for
// bf16): the slot walk counts exactly those weights, without allocating them.
TEST(MoeWeights, RealShapesCountThePublishedWeights) {
  auto q = read_hf_config(testing::test_data("cuda/qwen3-30b-a3b"));
  ASSERT_TRUE(q.ok()) << q.status().message();
  EXPECT_EQ(q->moe.num_experts, 128);
  EXPECT_EQ(q->moe.experts_per_token, 8);
  EXPECT_EQ(weight_elements(*q), int64_t(30532122624));
  auto m = read_hf_config(testing::test_data("cuda/mixtral-8x7b"));
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_EQ(weight_elements(*m), int64_t(46702792704));
}

// Qwen3-4B-FP8's config: 128x128 fp8 blocks, and the published 4,022,468,096 weights.
TEST(MoeWeights, Qwen3Fp8ConfigReadsItsBlocks) {
  auto c = read_hf_config(testing::test_data("cuda/qwen3-4b-fp8"));
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->fp8.block_rows, 128);
  EXPECT_EQ(c->fp8.block_cols, 128);
  EXPECT_EQ(c->moe.num_experts, 0);
  EXPECT_EQ(weight_elements(*c), int64_t(4022468096));
}

// --random-weights with the Qwen3-30B-A3B config scaled down (fewer layers, experts and widths;
// same structure): seeded weights for every expert, reproducible, and a finite forward pass.
TEST(MoeWeights, RandomWeightsOfAScaledDownQwen3Moe) {
  auto c = read_hf_config(testing::test_data("cuda/qwen3-30b-a3b"));
  ASSERT_TRUE(c.ok()) << c.status().message();
  c->num_layers = 2;
  c->vocab_size = 512;
  c->hidden_size = 64;
  c->num_heads = 4;
  c->num_kv_heads = 2;
  c->head_dim = 16;
  c->moe.num_experts = 16;
  c->moe.expert_intermediate_size = 24;
  c->moe.experts_per_token = 4;
  ASSERT_TRUE(c->validate("scaled").ok());
  const ModelWeights a = random_weights(*c, 9, DType::bf16);
  const ModelWeights b = random_weights(*c, 9, DType::bf16);
  EXPECT_EQ(engine::weights_hash(a), engine::weights_hash(b));
  ASSERT_EQ(a.layers[1].experts.size(), 16u);
  EXPECT_FALSE(a.layers[1].experts[15].w_down.bytes == a.layers[1].experts[14].w_down.bytes);

  ThreadPool pool(2);
  Transformer tf(*c, a, pool);
  KvCache cache(*c, 2, 16, DType::f16);
  BatchPlanBuilder builder(16, 2);
  const std::vector<int32_t> ids = {1, 100, 511, 7, 42};
  const std::vector<int32_t> table = {1, 0};
  builder.add_sequence(ids, 0, table, LogitRows::all);
  std::vector<float> logits;
  ASSERT_TRUE(tf.forward(builder.build(), cache, logits).ok());
  ASSERT_EQ(logits.size(), ids.size() * 512);
  for (float x : logits) ASSERT_TRUE(std::isfinite(x));
}

TEST(MoeWeights, RandomModelOfTheTinyConfigGeneratesThroughTheEngine) {
  auto a = engine::random_model(testing::test_data("tiny-mixtral"), 3, {});
  auto b = engine::random_model(testing::test_data("tiny-mixtral"), 4, {});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(engine::weights_hash(a->model.weights), engine::weights_hash(b->model.weights));
  EXPECT_EQ(a->model.weights.layers[0].experts.size(), 8u);
}

}  // namespace
}  // namespace invar::model
