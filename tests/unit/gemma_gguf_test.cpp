// Gemma 2 / Gemma 3 from GGUF files as llama.cpp's converter writes them (norm weights stored
// as 1 + w, post_attention_norm / ffn_norm / post_ffw_norm names, the keys of
// config_from_gguf): a GGUF made from a tiny Hugging Face checkpoint's loaded weights must give
// the same config fields and the same logits, bit for bit. And the attention scale llama.cpp
// infers when the file gives none.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <tuple>

#include "model/config_parse.h"
#include "model/gguf.h"
#include "model/transformer.h"
#include "model/weight_slots.h"
#include "test_paths.h"
#include "unit/gguf_writer.h"
#include "unit/prefill_logits.h"

namespace invar::model {
namespace {

// The metadata llama.cpp's converter writes for `c`, plus attention.scale (the tiny models'
// query_pre_attn_scalar is not llama.cpp's default).
testing::GgufWriter gemma_meta(const ModelConfig& c) {
  testing::GgufWriter w;
  const std::string a = c.arch == Arch::gemma2 ? "gemma2" : "gemma3", p = a + ".";
  w.str("general.architecture", a);
  w.u32(p + "block_count", uint32_t(c.num_layers));
  w.u32(p + "embedding_length", uint32_t(c.hidden_size));
  w.u32(p + "feed_forward_length", uint32_t(c.intermediate_size));
  w.u32(p + "attention.head_count", uint32_t(c.num_heads));
  w.u32(p + "attention.head_count_kv", uint32_t(c.num_kv_heads));
  w.u32(p + "attention.key_length", uint32_t(c.head_dim));
  w.u32(p + "attention.value_length", uint32_t(c.head_dim));
  w.f32(p + "attention.layer_norm_rms_epsilon", c.rms_eps);
  w.u32(p + "context_length", uint32_t(c.max_position));
  w.u32(p + "vocab_size", uint32_t(c.vocab_size));
  w.u32(p + "attention.sliding_window", uint32_t(c.sliding_window));
  w.f32(p + "attention.scale", c.attention_scale);
  w.f32(p + "rope.freq_base", c.rope_theta);
  if (c.arch == Arch::gemma2) {
    w.f32(p + "attn_logit_softcapping", c.attn_softcap);
    w.f32(p + "final_logit_softcapping", c.final_softcap);
  } else {
    w.u32(p + "attention.sliding_window_pattern", 2);  // tiny-gemma3: sliding, full, sliding
    w.str(p + "rope.scaling.type", "linear");
    w.f32(p + "rope.scaling.factor", c.rope_scaling.factor);
  }
  return w;
}

std::vector<float> all_logits(const LoadedModel& m, const std::vector<int32_t>& ids) {
  return invar::testing::prefill_logits(m, ids, {3, 1, 0, 2});
}

class GemmaGguf : public ::testing::TestWithParam<const char*> {};

TEST_P(GemmaGguf, SameConfigAndLogitsAsTheHfCheckpoint) {
  auto hf = load_model(invar::testing::test_data(GetParam()), {});
  ASSERT_TRUE(hf.ok()) << hf.status().message();
  testing::GgufWriter w = gemma_meta(hf->config);
  // The loaded (1 + w) f32 tensors under their GGUF names, as the converter stores them.
  ASSERT_TRUE(for_each_weight_slot(hf->config, hf->weights, [&](const WeightSlot& s) -> Status {
                const float* v = s.tensor->f32();
                w.tensor(gguf_tensor_name(hf->config, s), s.shape, 0,
                         testing::as_bytes(std::vector<float>(v, v + s.tensor->numel())));
                return {};
              }).ok());
  const std::string path = ::testing::TempDir() + "invar_" + GetParam() + ".gguf";
  testing::write_bytes(path, w.build());
  auto gg = load_model(path, {});
  ASSERT_TRUE(gg.ok()) << gg.status().message();

  const ModelConfig &a = hf->config, &b = gg->config;
  EXPECT_EQ(b.arch, a.arch);
  EXPECT_EQ(b.qk_norm, a.qk_norm);
  EXPECT_EQ(b.tie_embeddings, a.tie_embeddings);
  EXPECT_EQ(b.sliding_layers, a.sliding_layers);
  EXPECT_EQ(b.sliding_window, a.sliding_window);
  EXPECT_EQ(b.local_rope_theta, a.local_rope_theta);
  EXPECT_EQ(b.attn_softcap, a.attn_softcap);
  EXPECT_EQ(b.final_softcap, a.final_softcap);
  EXPECT_EQ(b.embedding_scale, a.embedding_scale);
  EXPECT_EQ(b.rope_style, a.rope_style);
  EXPECT_EQ(extended_features(b), extended_features(a));

  const std::vector<int32_t> ids = {1, 17, 42, 255, 0, 128, 7, 7, 99, 200, 3, 64, 31, 250, 5};
  const std::vector<float> x = all_logits(*hf, ids), y = all_logits(*gg, ids);
  ASSERT_EQ(x.size(), y.size());
  EXPECT_EQ(0, std::memcmp(x.data(), y.data(), x.size() * sizeof(float)));
}

INSTANTIATE_TEST_SUITE_P(Models, GemmaGguf, ::testing::Values("tiny-gemma2", "tiny-gemma3"),
                         [](const auto& info) {
                           return std::string(info.param) == "tiny-gemma2" ? "gemma2" : "gemma3";
                         });

// Without attention.scale, llama.cpp's rule: 1 / sqrt(hidden / heads) for the 27B models (46
// layers for Gemma 2, 62 for Gemma 3), 1 / sqrt(head_dim) otherwise; the softcaps default to
// transformers' Gemma 2 values and Gemma 3 slides on all but every 6th layer.
TEST(GemmaGgufDefaults, AttentionScaleAndLayers) {
  for (auto [arch, layers, is_27b] :
       {std::tuple{"gemma2", 46, true}, std::tuple{"gemma2", 42, false},
        std::tuple{"gemma3", 62, true}, std::tuple{"gemma3", 26, false}}) {
    SCOPED_TRACE(::testing::Message() << arch << " " << layers << " layers");
    testing::GgufWriter w;
    const std::string p = std::string(arch) + ".";
    w.str("general.architecture", arch);
    w.u32(p + "block_count", uint32_t(layers)).u32(p + "embedding_length", 4608);
    w.u32(p + "feed_forward_length", 64).u32(p + "attention.head_count", 32);
    w.u32(p + "attention.head_count_kv", 16).u32(p + "attention.key_length", 128);
    w.u32(p + "attention.value_length", 128).u32(p + "context_length", 8192);
    w.f32(p + "attention.layer_norm_rms_epsilon", 1e-6f).u32(p + "vocab_size", 10);
    w.u32(p + "attention.sliding_window", 4096);
    const std::string path = ::testing::TempDir() + "invar_gemma_meta.gguf";
    testing::write_bytes(path, w.build());
    auto f = GgufFile::open(path);
    ASSERT_TRUE(f.ok()) << f.status().message();
    auto c = config_from_gguf(*f);
    ASSERT_TRUE(c.ok()) << c.status().message();
    // 4608 / 32 = 144 (Gemma 2 27B's query_pre_attn_scalar); else head_dim, here 128.
    const double pre_attn = is_27b ? 144.0 : 128.0;
    EXPECT_EQ(c->attention_scale, float(1.0 / std::sqrt(pre_attn)));
    EXPECT_EQ(c->embedding_scale, float(std::sqrt(4608.0)));
    const bool gemma2 = std::string(arch) == "gemma2";
    EXPECT_EQ(c->attn_softcap, gemma2 ? 50.0f : 0.0f);
    EXPECT_EQ(c->final_softcap, gemma2 ? 30.0f : 0.0f);
    EXPECT_EQ(c->sliding_layers[0], 1);
    EXPECT_EQ(c->sliding_layers[1], gemma2 ? 0 : 1);
    EXPECT_EQ(c->sliding_layers[5], 0);
    EXPECT_EQ(c->sliding_layers[6], 1);
    EXPECT_EQ(c->local_rope_theta, gemma2 ? 0.0f : 10000.0f);
    EXPECT_EQ(c->rope_theta, gemma2 ? 10000.0f : 1000000.0f);
  }
}

}  // namespace
}  // namespace invar::model
