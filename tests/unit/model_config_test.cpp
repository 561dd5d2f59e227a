// ModelConfig: Hugging Face config.json and GGUF metadata parsing, validation, rope tables.
#include <gtest/gtest.h>

#include <cmath>

#include "model/config.h"
#include "model/config_parse.h"
#include "test_paths.h"
#include "unit/gguf_writer.h"

namespace invar::model {
namespace {

void expect_error(const Status& st, std::vector<std::string> parts) {
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.message().find('\n'), std::string::npos) << st.message();
  for (const auto& p : parts) {
    EXPECT_NE(st.message().find(p), std::string::npos)
        << "missing '" << p << "' in: " << st.message();
  }
}

Status parse_status(const std::string& json) {
  auto r = parse_hf_config(json, "cfg.json");
  return r.ok() ? Status() : r.status();
}

TEST(ModelConfig, TinyLlamaFromHf) {
  auto r = read_hf_config(invar::testing::test_data("tiny-llama"));
  ASSERT_TRUE(r.ok()) << r.status().message();
  const ModelConfig& c = *r;
  EXPECT_EQ(c.arch, Arch::llama);
  EXPECT_EQ(arch_name(c.arch), "llama");
  EXPECT_EQ(c.vocab_size, 256);
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.intermediate_size, 128);
  EXPECT_EQ(c.num_layers, 2);
  EXPECT_EQ(c.num_heads, 4);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.max_position, 512);
  EXPECT_FLOAT_EQ(c.rms_eps, 1e-5f);
  EXPECT_FLOAT_EQ(c.rope_theta, 500000.0f);
  EXPECT_EQ(c.rope_style, kernels::RopeStyle::half);
  EXPECT_FALSE(c.tie_embeddings);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_EQ(c.rope_scaling.kind, RopeScaling::Kind::llama3);
  EXPECT_FLOAT_EQ(c.rope_scaling.factor, 8.0f);
  EXPECT_EQ(c.rope_scaling.original_max_position, 64);

  // Hugging Face's _compute_llama3_parameters in float64 (numpy), rounded to f32: index 0 is a
  // high frequency (kept), 1 medium (blended), 2.. low (divided by the factor).
  const std::vector<float> want = {1.0f,
                                   0.07940300554037094f,
                                   0.004700753837823868f,
                                   0.0009115830762311816f,
                                   0.00017677669529803097f,
                                   3.428102354519069e-05f,
                                   6.647869668086059e-06f,
                                   1.289173155782919e-06f};
  auto inv = rope_inv_freq(c);
  ASSERT_EQ(inv.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_FLOAT_EQ(inv[i], want[i]) << i;
}

TEST(ModelConfig, TinyQwen3FromHf) {
  auto r = read_hf_config(invar::testing::test_data("tiny-qwen3/config.json"));
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->arch, Arch::qwen3);
  EXPECT_EQ(r->head_dim, 32);  // explicit head_dim, not hidden / heads
  EXPECT_TRUE(r->qk_norm);
  EXPECT_TRUE(r->tie_embeddings);
  EXPECT_FALSE(r->attention_bias);
  EXPECT_EQ(r->rope_scaling.kind, RopeScaling::Kind::none);
  auto inv = rope_inv_freq(*r);
  ASSERT_EQ(inv.size(), 16u);
  for (int i = 0; i < 16; ++i) {
    EXPECT_FLOAT_EQ(inv[size_t(i)], float(std::pow(1e6, -double(2 * i) / 32.0))) << i;
  }
}

const char* kQwen2 = R"({"architectures":["Qwen2ForCausalLM"],"vocab_size":100,"hidden_size":32,
  "intermediate_size":64,"num_hidden_layers":1,"num_attention_heads":4,"num_key_value_heads":2,
  "rope_theta":10000.0,"rms_norm_eps":1e-6,"max_position_embeddings":128,
  "tie_word_embeddings":true,"use_sliding_window":false})";

TEST(ModelConfig, Qwen2HasBiasesAndDefaults) {
  auto r = parse_hf_config(kQwen2, "cfg.json");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->arch, Arch::qwen2);
  EXPECT_TRUE(r->attention_bias);
  EXPECT_EQ(r->head_dim, 8);
  // Optional keys fall back to the transformers defaults.
  auto m = parse_hf_config(R"({"architectures":["LlamaForCausalLM"],"vocab_size":10,
      "hidden_size":8,"intermediate_size":16,"num_hidden_layers":1,"num_attention_heads":2})",
                           "cfg.json");
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_EQ(m->num_kv_heads, 2);
  EXPECT_EQ(m->max_position, 2048);
  EXPECT_FLOAT_EQ(m->rope_theta, 10000.0f);
  EXPECT_FALSE(m->tie_embeddings);
}

TEST(ModelConfig, MistralSlidingWindow) {
  auto r = read_hf_config(invar::testing::test_data("tiny-mistral"));
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->arch, Arch::mistral);
  EXPECT_EQ(arch_name(r->arch), "mistral");
  EXPECT_EQ(r->sliding_window, 8);
  EXPECT_EQ(r->head_dim, 16);
  EXPECT_FALSE(r->tie_embeddings);
  const std::string base = R"({"architectures":["MistralForCausalLM"],"vocab_size":10,
      "hidden_size":8,"intermediate_size":16,"num_hidden_layers":1,"num_attention_heads":2)";
  // null: full attention; absent: transformers' default window (4096).
  auto null_window = parse_hf_config(base + R"(,"sliding_window":null})", "cfg.json");
  ASSERT_TRUE(null_window.ok()) << null_window.status().message();
  EXPECT_EQ(null_window->sliding_window, 0);
  auto absent = parse_hf_config(base + "}", "cfg.json");
  ASSERT_TRUE(absent.ok()) << absent.status().message();
  EXPECT_EQ(absent->sliding_window, 4096);
  EXPECT_EQ(absent->max_position, 131072);
  expect_error(parse_hf_config(base + R"(,"sliding_window":0})", "cfg.json").status(),
               {"cfg.json", "'sliding_window' is 0"});
  expect_error(parse_hf_config(base + R"(,"sliding_window":"x"})", "cfg.json").status(),
               {"'sliding_window'", "expected an integer"});
  // Llama keeps rejecting a window it would ignore.
  expect_error(parse_hf_config(R"({"architectures":["LlamaForCausalLM"],"vocab_size":10,
      "hidden_size":8,"intermediate_size":16,"num_hidden_layers":1,"num_attention_heads":2,
      "use_sliding_window":true})",
                               "cfg.json")
                   .status(),
               {"use_sliding_window"});
}

TEST(ModelConfig, Phi3PartialRotaryAndLongrope) {
  auto r = read_hf_config(invar::testing::test_data("tiny-phi3"));
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->arch, Arch::phi3);
  EXPECT_EQ(r->head_dim, 16);
  EXPECT_EQ(r->rotary_dim, 8);
  EXPECT_EQ(rope_dims(*r), 8);
  EXPECT_EQ(r->sliding_window, 0);  // null
  const RopeScaling& s = r->rope_scaling;
  EXPECT_EQ(s.kind, RopeScaling::Kind::longrope);
  EXPECT_EQ(s.original_max_position, 32);
  EXPECT_FLOAT_EQ(s.factor, 4.0f);  // max_position_embeddings 128 / 32
  EXPECT_FLOAT_EQ(s.attention_factor, float(std::sqrt(1.0 + std::log(4.0) / std::log(32.0))));
  const std::vector<double> shorts = {1.0, 1.25, 1.5, 2.0}, longs = {1.0, 2.0, 4.0, 8.0};
  auto inv = rope_inv_freq(*r), inv_long = rope_inv_freq_long(*r);
  ASSERT_EQ(inv.size(), 4u);
  ASSERT_EQ(inv_long.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    const double base = std::pow(10000.0, -double(2 * i) / 8.0);  // over the rotary dims
    EXPECT_FLOAT_EQ(inv[i], float(base / shorts[i])) << i;
    EXPECT_FLOAT_EQ(inv_long[i], float(base / longs[i])) << i;
  }
  EXPECT_TRUE(rope_inv_freq_long(ModelConfig{}).empty());
  const std::string base = R"({"architectures":["Phi3ForCausalLM"],"vocab_size":10,
      "hidden_size":16,"intermediate_size":16,"num_hidden_layers":1,"num_attention_heads":2,
      "max_position_embeddings":64)";
  expect_error(parse_hf_config(base + R"(,"rope_scaling":{"type":"su","short_factor":[1,1],
      "long_factor":[1,1,1,1]}})",
                               "cfg.json")
                   .status(),
               {"original_max_position_embeddings"});
  expect_error(parse_hf_config(base + R"(,"original_max_position_embeddings":16,
      "rope_scaling":{"type":"su","short_factor":[1,1],"long_factor":[1,1,1,1]}})",
                               "cfg.json")
                   .status(),
               {"longrope needs", "4 entries"});
  expect_error(parse_hf_config(base + R"(,"partial_rotary_factor":1.5})", "cfg.json").status(),
               {"partial_rotary_factor is 1.5"});
  auto su = parse_hf_config(base + R"(,"original_max_position_embeddings":16,
      "rope_scaling":{"type":"su","short_factor":[1,1,1,1],"long_factor":[1,1,1,1]}})",
                            "cfg.json");
  ASSERT_TRUE(su.ok()) << su.status().message();
  EXPECT_EQ(su->rotary_dim, 0);      // full rotary
  EXPECT_EQ(su->sliding_window, 0);  // Phi3Config's default: none
}

TEST(ModelConfig, RopeParametersAndLinearScaling) {
  // transformers 5 writes rope_theta inside rope_parameters.
  std::string j = R"({"architectures":["LlamaForCausalLM"],"vocab_size":10,"hidden_size":8,
      "intermediate_size":16,"num_hidden_layers":1,"num_attention_heads":2,
      "rope_parameters":{"rope_type":"linear","factor":4.0,"rope_theta":100.0}})";
  auto r = parse_hf_config(j, "cfg.json");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_FLOAT_EQ(r->rope_theta, 100.0f);
  EXPECT_EQ(r->rope_scaling.kind, RopeScaling::Kind::linear);
  auto inv = rope_inv_freq(*r);
  ASSERT_EQ(inv.size(), 2u);
  EXPECT_FLOAT_EQ(inv[0], 0.25f);
  EXPECT_FLOAT_EQ(inv[1], 0.1f / 4.0f);
}

TEST(ModelConfig, HfErrorsNameTheKey) {
  std::string base = kQwen2;
  auto without = [&](const std::string& key) {
    std::string s = base;
    size_t at = s.find("\"" + key + "\"");
    size_t end = s.find(',', at);
    return s.erase(at, end - at + 1);
  };
  expect_error(parse_status(without("hidden_size")), {"cfg.json", "'hidden_size' is missing"});
  expect_error(parse_status(without("vocab_size")), {"'vocab_size' is missing"});
  expect_error(parse_status(without("architectures")), {"'architectures' is missing"});
  std::string s = base;
  s.replace(s.find("Qwen2ForCausalLM"), 16, "GPT2LMHeadModel");
  expect_error(parse_status(s), {"'GPT2LMHeadModel' is not supported"});
  s = base;
  s.replace(s.find("\"hidden_size\":32"), 16, "\"hidden_size\":\"x\"");
  expect_error(parse_status(s), {"'hidden_size'", "expected an integer"});
  s = base;
  s.replace(s.find("\"num_key_value_heads\":2"), 23, "\"num_key_value_heads\":3");
  expect_error(parse_status(s), {"num_heads 4 is not a multiple of num_kv_heads 3"});
  s = base;
  s.replace(s.find("\"use_sliding_window\":false"), 26, "\"use_sliding_window\":true");
  expect_error(parse_status(s), {"use_sliding_window"});
  expect_error(parse_status("{"), {"cfg.json", "invalid JSON"});
  expect_error(parse_status(R"({"architectures":["LlamaForCausalLM"],"vocab_size":10,
      "hidden_size":8,"intermediate_size":16,"num_hidden_layers":1,"num_attention_heads":2,
      "rope_scaling":{"rope_type":"dynamic","factor":4.0}})"),
               {"rope type 'dynamic' is not supported"});
  expect_error(parse_status(R"({"architectures":["LlamaForCausalLM"],"vocab_size":10,
      "hidden_size":8,"intermediate_size":16,"num_hidden_layers":1,"num_attention_heads":2,
      "attention_bias":true})"),
               {"'attention_bias: true' is not supported"});
  auto missing = read_hf_config("/nonexistent/dir");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("/nonexistent/dir"), std::string::npos);
}

TEST(ModelConfig, ValidateRejectsBadRelations) {
  ModelConfig c;
  c.vocab_size = 10, c.hidden_size = 8, c.intermediate_size = 16, c.num_layers = 1;
  c.num_heads = 2, c.num_kv_heads = 1, c.head_dim = 4, c.max_position = 16;
  EXPECT_TRUE(c.validate("x").ok());
  ModelConfig d = c;
  d.head_dim = 3;
  expect_error(d.validate("x"), {"head_dim 3 is odd"});
  d = c;
  d.num_layers = 0;
  expect_error(d.validate("x"), {"num_layers is 0"});
  d = c;
  d.rope_scaling.kind = RopeScaling::Kind::llama3;
  d.rope_scaling.low_freq_factor = 4.0f;
  expect_error(d.validate("x"), {"llama3"});
  d = c;
  d.rope_freq_factors = {1.0f};
  expect_error(d.validate("x"), {"rope_freqs has 1 factors"});
}

testing::GgufWriter gguf_llama_meta(const std::string& arch) {
  testing::GgufWriter w;
  const std::string p = arch + ".";
  w.str("general.architecture", arch);
  w.u32(p + "block_count", 2).u32(p + "embedding_length", 64).u32(p + "feed_forward_length", 128);
  w.u32(p + "attention.head_count", 4).u32(p + "attention.head_count_kv", 2);
  w.f32(p + "rope.freq_base", 100000.0f).f32(p + "attention.layer_norm_rms_epsilon", 1e-5f);
  w.u32(p + "context_length", 8192);
  return w;
}

Result<ModelConfig> gguf_config(testing::GgufWriter& w, const std::string& name) {
  std::string path = ::testing::TempDir() + "invar_cfg_" + name + ".gguf";
  testing::write_bytes(path, w.build());
  INVAR_ASSIGN_OR_RETURN(GgufFile f, GgufFile::open(path));
  return config_from_gguf(f);
}

TEST(ModelConfig, FromGgufMetadata) {
  auto w = gguf_llama_meta("llama");
  w.str_array("tokenizer.ggml.tokens", std::vector<std::string>(300, "t"));
  auto r = gguf_config(w, "llama");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->arch, Arch::llama);
  EXPECT_EQ(r->num_layers, 2);
  EXPECT_EQ(r->hidden_size, 64);
  EXPECT_EQ(r->intermediate_size, 128);
  EXPECT_EQ(r->num_heads, 4);
  EXPECT_EQ(r->num_kv_heads, 2);
  EXPECT_EQ(r->head_dim, 16);
  EXPECT_EQ(r->vocab_size, 300);  // from the token list
  EXPECT_EQ(r->max_position, 8192);
  EXPECT_FLOAT_EQ(r->rope_theta, 100000.0f);
  EXPECT_FLOAT_EQ(r->rms_eps, 1e-5f);
  EXPECT_EQ(r->rope_style, kernels::RopeStyle::interleaved);
  EXPECT_TRUE(r->tie_embeddings);  // no output.weight

  auto q = gguf_llama_meta("qwen3");
  q.u32("qwen3.attention.key_length", 32).u32("qwen3.vocab_size", 256);
  q.u32("qwen3.rope.dimension_count", 32);
  q.tensor("output.weight", {256, 64}, 0, std::vector<uint8_t>(256 * 64 * 4));
  auto rq = gguf_config(q, "qwen3");
  ASSERT_TRUE(rq.ok()) << rq.status().message();
  EXPECT_EQ(rq->arch, Arch::qwen3);
  EXPECT_EQ(rq->head_dim, 32);
  EXPECT_EQ(rq->vocab_size, 256);
  EXPECT_TRUE(rq->qk_norm);
  EXPECT_FALSE(rq->tie_embeddings);
  EXPECT_EQ(rq->rope_style, kernels::RopeStyle::half);

  auto q2 = gguf_llama_meta("qwen2");
  q2.u32("qwen2.vocab_size", 10);
  auto r2 = gguf_config(q2, "qwen2");
  ASSERT_TRUE(r2.ok()) << r2.status().message();
  EXPECT_TRUE(r2->attention_bias);
  EXPECT_EQ(r2->rope_style, kernels::RopeStyle::half);
}

TEST(ModelConfig, GgufRopeFreqFactors) {
  auto w = gguf_llama_meta("llama");
  w.u32("llama.vocab_size", 10);
  std::vector<float> factors = {1, 1, 2, 4, 8, 8, 8, 8};
  w.tensor("rope_freqs.weight", {8}, 0, testing::as_bytes(factors));
  auto r = gguf_config(w, "ropefreqs");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->rope_freq_factors, factors);
  auto inv = rope_inv_freq(*r);
  for (int i = 0; i < 8; ++i) {
    EXPECT_FLOAT_EQ(inv[size_t(i)], float(std::pow(1e5, -i / 8.0) / factors[size_t(i)])) << i;
  }
}

TEST(ModelConfig, GgufErrorsNameTheKey) {
  testing::GgufWriter none;
  auto r = gguf_config(none, "noarch");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("'general.architecture' is missing"), std::string::npos);
  auto w = gguf_llama_meta("gpt2");
  expect_error(gguf_config(w, "gpt2").status(), {"'gpt2' is not supported"});
  testing::GgufWriter m;
  m.str("general.architecture", "llama").u32("llama.block_count", 2);
  expect_error(gguf_config(m, "partial").status(),
               {"invar_cfg_partial.gguf", "'llama.embedding_length' is missing"});
  auto v = gguf_llama_meta("llama");  // no vocab_size, no token list
  expect_error(gguf_config(v, "novocab").status(), {"tokenizer.ggml.tokens"});
  auto y = gguf_llama_meta("llama");
  y.u32("llama.vocab_size", 10).str("llama.rope.scaling.type", "yarn");
  expect_error(gguf_config(y, "yarn").status(), {"'yarn' is not supported"});
  auto p = gguf_llama_meta("llama");
  p.u32("llama.vocab_size", 10).u32("llama.rope.dimension_count", 8);
  expect_error(gguf_config(p, "partialrope").status(), {"rope.dimension_count 8", "head_dim 16"});
  // Experts: Mixtral (llama with expert keys) needs expert_used_count and router tensors;
  // another arch with experts is refused by name.
  auto e = gguf_llama_meta("llama");
  e.u32("llama.vocab_size", 10).u32("llama.expert_count", 8);
  expect_error(gguf_config(e, "moe").status(), {"'llama.expert_used_count' is missing"});
  e.u32("llama.expert_used_count", 2);
  expect_error(gguf_config(e, "moe_notensors").status(), {"block_count is 2", "0 tensors"});
  for (const char* name : {"blk.0.ffn_norm.weight", "blk.1.ffn_norm.weight"})
    e.tensor(name, {64}, 0, std::vector<uint8_t>(256, 0));
  expect_error(gguf_config(e, "moe_norouter").status(), {"blk.N.ffn_gate_inp.weight"});
  auto q = gguf_llama_meta("qwen2");
  q.u32("qwen2.vocab_size", 10).u32("qwen2.expert_count", 8);
  expect_error(gguf_config(q, "qwen2moe").status(), {"mixture-of-experts qwen2 files"});
}

}  // namespace
}  // namespace invar::model
