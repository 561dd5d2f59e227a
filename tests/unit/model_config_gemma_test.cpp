// ModelConfig for Gemma 2 / Gemma 3 (config.json keys, transformers' defaults, layer types, the
// two ropes) and YaRN rope scaling (the inv_freq table and attention factor of transformers'
// _compute_yarn_parameters, worked out by hand below).
#include <gtest/gtest.h>

#include <cmath>

#include "model/config.h"
#include "model/config_parse.h"
#include "test_paths.h"

namespace invar::model {
namespace {

void expect_error(const Result<ModelConfig>& r, std::vector<std::string> parts) {
  ASSERT_FALSE(r.ok());
  for (const auto& p : parts)
    EXPECT_NE(r.status().message().find(p), std::string::npos)
        << "missing '" << p << "' in: " << r.status().message();
}

bool has_feature(const ModelConfig& c, const std::string& phrase) {
  for (const std::string& f : extended_features(c))
    if (f == phrase) return true;
  return false;
}

TEST(GemmaConfig, TinyGemma2FromHf) {
  auto r = read_hf_config(invar::testing::test_data("tiny-gemma2"));
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->arch, Arch::gemma2);
  EXPECT_EQ(arch_name(r->arch), "gemma2");
  EXPECT_EQ(r->hidden_size, 48);
  EXPECT_EQ(r->head_dim, 32);  // from the config, not hidden / heads
  EXPECT_EQ(r->activation, Activation::gelu_tanh);
  EXPECT_TRUE(r->post_norms);
  EXPECT_FALSE(r->qk_norm);
  EXPECT_TRUE(r->tie_embeddings);
  EXPECT_EQ(r->embedding_scale, float(std::sqrt(48.0)));        // f32: the config's dtype
  EXPECT_EQ(r->attention_scale, float(1.0 / std::sqrt(24.0)));  // query_pre_attn_scalar 24
  EXPECT_EQ(r->attn_softcap, 5.0f);
  EXPECT_EQ(r->final_softcap, 30.0f);
  EXPECT_EQ(r->sliding_window, 8);
  EXPECT_EQ(r->sliding_layers, (std::vector<uint8_t>{1, 0}));
  EXPECT_EQ(layer_window(*r, 0), 8);
  EXPECT_EQ(layer_window(*r, 1), 0);
  EXPECT_EQ(r->local_rope_theta, 0.0f);  // one rope for every layer
  EXPECT_TRUE(has_feature(*r, "attention soft-capping"));
  EXPECT_TRUE(has_feature(*r, "final logit soft-capping"));
  EXPECT_TRUE(has_feature(*r, "a gelu-tanh MLP"));
}

// transformers' Gemma2Config defaults: alternating layers starting with a sliding one, window
// 4096, caps 50 and 30, query_pre_attn_scalar 256, tied embeddings; null turns a cap off.
TEST(GemmaConfig, Gemma2Defaults) {
  const std::string base = R"({"architectures":["Gemma2ForCausalLM"],"vocab_size":10,
      "hidden_size":3584,"intermediate_size":16,"num_hidden_layers":3,"num_attention_heads":2,
      "head_dim":256)";
  auto r = parse_hf_config(base + "}", "cfg.json");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->sliding_layers, (std::vector<uint8_t>{1, 0, 1}));
  EXPECT_EQ(r->sliding_window, 4096);
  EXPECT_EQ(r->attn_softcap, 50.0f);
  EXPECT_EQ(r->final_softcap, 30.0f);
  EXPECT_EQ(r->attention_scale, 1.0f / 16.0f);
  EXPECT_EQ(r->max_position, 8192);
  EXPECT_TRUE(r->tie_embeddings);
  EXPECT_EQ(r->embedding_scale, float(std::sqrt(3584.0)));
  // A bfloat16 model runs with the scale rounded to bf16, as transformers computes it.
  auto bf = parse_hf_config(base + R"(,"torch_dtype":"bfloat16"})", "cfg.json");
  ASSERT_TRUE(bf.ok()) << bf.status().message();
  EXPECT_EQ(bf->embedding_scale, 59.75f);  // sqrt(3584) = 59.866 has 8 significant bits here
  auto off = parse_hf_config(
      base + R"(,"attn_logit_softcapping":null,"final_logit_softcapping":null})", "cfg.json");
  ASSERT_TRUE(off.ok()) << off.status().message();
  EXPECT_EQ(off->attn_softcap, 0.0f);
  EXPECT_EQ(off->final_softcap, 0.0f);
  expect_error(parse_hf_config(base + R"(,"hidden_activation":"gelu"})", "cfg.json"),
               {"cfg.json", "hidden_activation", "gelu_pytorch_tanh"});
  expect_error(parse_hf_config(base + R"(,"layer_types":["full_attention"]})", "cfg.json"),
               {"layer_types", "3 layer type names"});
  expect_error(parse_hf_config(base + R"(,"layer_types":["a","full_attention","full_attention"]})",
                               "cfg.json"),
               {"layer_types[0]"});
  expect_error(parse_hf_config(base + R"(,"use_bidirectional_attention":true})", "cfg.json"),
               {"use_bidirectional_attention"});
}

TEST(GemmaConfig, TinyGemma3FromHf) {
  auto r = read_hf_config(invar::testing::test_data("tiny-gemma3"));
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->arch, Arch::gemma3);
  EXPECT_TRUE(r->qk_norm);
  EXPECT_TRUE(r->post_norms);
  EXPECT_EQ(r->attn_softcap, 0.0f);   // Gemma 3 has none
  EXPECT_EQ(r->final_softcap, 0.0f);  // null
  EXPECT_EQ(r->sliding_layers, (std::vector<uint8_t>{1, 0, 1}));
  EXPECT_EQ(r->rope_theta, 1000000.0f);
  EXPECT_EQ(r->rope_scaling.kind, RopeScaling::Kind::linear);
  EXPECT_EQ(r->rope_scaling.factor, 2.0f);
  EXPECT_EQ(r->local_rope_theta, 10000.0f);
  EXPECT_EQ(r->local_rope_scaling.kind, RopeScaling::Kind::none);
  // Full layers: base / 2 (linear); sliding layers: their own base, unscaled.
  const auto global = rope_inv_freq(*r), local = rope_inv_freq_local(*r);
  ASSERT_EQ(global.size(), 16u);
  ASSERT_EQ(local.size(), 16u);
  for (size_t i = 0; i < 16; ++i) {
    EXPECT_FLOAT_EQ(global[i], float(std::pow(1e6, -double(2 * i) / 32.0) / 2.0)) << i;
    EXPECT_FLOAT_EQ(local[i], float(std::pow(1e4, -double(2 * i) / 32.0))) << i;
  }
  EXPECT_TRUE(has_feature(*r, "a separate rope for sliding layers"));
}

// Gemma 3: every sliding_window_pattern-th layer is full (default 6); transformers 5's
// per-layer-type rope_parameters give the same two ropes as the released configs' keys.
TEST(GemmaConfig, Gemma3PatternAndRopeParameters) {
  const std::string base = R"({"architectures":["Gemma3ForCausalLM"],"vocab_size":10,
      "hidden_size":16,"intermediate_size":16,"num_hidden_layers":7,"num_attention_heads":2,
      "head_dim":8)";
  auto r = parse_hf_config(base + "}", "cfg.json");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->sliding_layers, (std::vector<uint8_t>{1, 1, 1, 1, 1, 0, 1}));
  EXPECT_EQ(r->rope_theta, 1000000.0f);      // transformers' default global base
  EXPECT_EQ(r->local_rope_theta, 10000.0f);  // and local base
  EXPECT_EQ(r->final_softcap, 0.0f);
  EXPECT_EQ(r->max_position, 131072);
  auto p3 = parse_hf_config(base + R"(,"sliding_window_pattern":3})", "cfg.json");
  ASSERT_TRUE(p3.ok()) << p3.status().message();
  EXPECT_EQ(p3->sliding_layers, (std::vector<uint8_t>{1, 1, 0, 1, 1, 0, 1}));
  auto v5 = parse_hf_config(base + R"(,"rope_parameters":{
      "full_attention":{"rope_type":"linear","factor":8.0,"rope_theta":500.0},
      "sliding_attention":{"rope_type":"default","rope_theta":50.0}}})",
                            "cfg.json");
  ASSERT_TRUE(v5.ok()) << v5.status().message();
  EXPECT_EQ(v5->rope_theta, 500.0f);
  EXPECT_EQ(v5->rope_scaling.kind, RopeScaling::Kind::linear);
  EXPECT_EQ(v5->rope_scaling.factor, 8.0f);
  EXPECT_EQ(v5->local_rope_theta, 50.0f);
  // No window at all: the sliding layers attend fully but keep their local rope.
  auto no_window = parse_hf_config(base + R"(,"sliding_window":null})", "cfg.json");
  ASSERT_TRUE(no_window.ok()) << no_window.status().message();
  EXPECT_EQ(layer_window(*no_window, 0), 0);
  EXPECT_TRUE(layer_is_sliding(*no_window, 0));
  EXPECT_FALSE(layer_is_sliding(*no_window, 5));
  expect_error(parse_hf_config(base + R"(,"rope_parameters":{
      "sliding_attention":{"rope_type":"yarn","factor":2.0}}})",
                               "cfg.json"),
               {"sliding layers"});
}

// tiny-qwen3-yarn: factor 4, original context 256, theta 1e4, 32 rotary dims. The correction
// range is floor(32 ln(256 / (32 * 2 pi)) / (2 ln 1e4)) = floor(0.42) = 0 to
// ceil(32 ln(256 / (2 pi)) / (2 ln 1e4)) = ceil(6.44) = 7, so frequency i is blended with
// ramp r = min(i / 7, 1): inv = base * (1 - r) + base / 4 * r. attention_factor = 0.1 ln 4 + 1.
TEST(YarnConfig, TinyQwen3YarnTable) {
  auto r = read_hf_config(invar::testing::test_data("tiny-qwen3-yarn"));
  ASSERT_TRUE(r.ok()) << r.status().message();
  const RopeScaling& s = r->rope_scaling;
  EXPECT_EQ(s.kind, RopeScaling::Kind::yarn);
  EXPECT_EQ(s.factor, 4.0f);
  EXPECT_EQ(s.original_max_position, 256);
  EXPECT_FLOAT_EQ(s.attention_factor, float(0.1 * std::log(4.0) + 1.0));
  EXPECT_EQ(rope_attention_factor(s), s.attention_factor);
  const auto inv = rope_inv_freq(*r);
  ASSERT_EQ(inv.size(), 16u);
  for (size_t i = 0; i < 16; ++i) {
    const double base = std::pow(1e4, -double(2 * i) / 32.0);
    const double ramp = std::min(double(i) / 7.0, 1.0);
    EXPECT_FLOAT_EQ(inv[i], float(base * (1.0 - ramp) + base / 4.0 * ramp)) << i;
  }
  EXPECT_TRUE(has_feature(*r, "yarn rope scaling"));
}

// transformers' defaults: factor from max_position / original, original from the top level
// (which wins over the rope dict) or else max_position_embeddings, the mscale ratio when both
// mscale keys are given, an explicit attention_factor as is.
TEST(YarnConfig, Defaults) {
  const std::string base = R"({"architectures":["Qwen2ForCausalLM"],"vocab_size":10,
      "hidden_size":16,"intermediate_size":16,"num_hidden_layers":1,"num_attention_heads":2,
      "max_position_embeddings":4096)";
  auto a = parse_hf_config(
      base + R"(,"rope_scaling":{"rope_type":"yarn","original_max_position_embeddings":1024}})",
      "cfg.json");
  ASSERT_TRUE(a.ok()) << a.status().message();
  EXPECT_EQ(a->rope_scaling.factor, 4.0f);
  EXPECT_EQ(a->rope_scaling.beta_fast, 32.0f);
  EXPECT_EQ(a->rope_scaling.beta_slow, 1.0f);
  EXPECT_TRUE(a->rope_scaling.truncate);
  auto top = parse_hf_config(base + R"(,"original_max_position_embeddings":512,
      "rope_scaling":{"type":"yarn","factor":2.0,"original_max_position_embeddings":1024}})",
                             "cfg.json");
  ASSERT_TRUE(top.ok()) << top.status().message();
  EXPECT_EQ(top->rope_scaling.original_max_position, 512);
  auto none =
      parse_hf_config(base + R"(,"rope_scaling":{"type":"yarn","factor":2.0}})", "cfg.json");
  ASSERT_TRUE(none.ok()) << none.status().message();
  EXPECT_EQ(none->rope_scaling.original_max_position, 4096);
  auto ms = parse_hf_config(base + R"(,"rope_scaling":{"type":"yarn","factor":40.0,
      "original_max_position_embeddings":4096,"mscale":1.0,"mscale_all_dim":0.5}})",
                            "cfg.json");
  ASSERT_TRUE(ms.ok()) << ms.status().message();
  EXPECT_FLOAT_EQ(ms->rope_scaling.attention_factor,
                  float((0.1 * std::log(40.0) + 1.0) / (0.05 * std::log(40.0) + 1.0)));
  auto given = parse_hf_config(base + R"(,"rope_scaling":{"type":"yarn","factor":40.0,
      "attention_factor":0.5,"truncate":false}})",
                               "cfg.json");
  ASSERT_TRUE(given.ok()) << given.status().message();
  EXPECT_EQ(given->rope_scaling.attention_factor, 0.5f);
  EXPECT_FALSE(given->rope_scaling.truncate);
  expect_error(
      parse_hf_config(base + R"(,"rope_scaling":{"type":"yarn","beta_fast":-1}})", "cfg.json"),
      {"yarn", "beta_fast"});
}

TEST(ExtendedFeatures, NoneForTheLlamaFamily) {
  for (const char* name : {"tiny-llama", "tiny-qwen3", "tiny-mistral", "tiny-phi3"}) {
    auto r = read_hf_config(invar::testing::test_data(name));
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_TRUE(extended_features(*r).empty()) << name;
  }
}

}  // namespace
}  // namespace invar::model
