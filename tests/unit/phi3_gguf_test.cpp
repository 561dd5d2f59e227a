// Phi-3 from a GGUF file as llama.cpp's converter writes it: fused attn_qkv [Hq*D + 2*Hkv*D, H]
// and ffn_up [2*I, H] (gate rows, then up rows), partial rotary (rope.dimension_count), longrope
// from the rope_factors_short / rope_factors_long tensors. A GGUF made from tiny-phi3's loaded
// weights must give the Hugging Face checkpoint's config and logits bit for bit, over 40
// positions (past original_max_position_embeddings 32, so both factor tables are used).
#include <gtest/gtest.h>

#include <cstring>

#include "model/transformer.h"
#include "model/weight_slots.h"
#include "test_paths.h"
#include "unit/gguf_writer.h"
#include "unit/prefill_logits.h"

namespace invar::model {
namespace {

std::vector<float> values(const HostTensor& t) {
  return std::vector<float>(t.f32(), t.f32() + t.numel());
}

std::vector<float> rows_of(std::initializer_list<const HostTensor*> parts) {
  std::vector<float> out;
  for (const HostTensor* t : parts) {
    const std::vector<float> v = values(*t);
    out.insert(out.end(), v.begin(), v.end());
  }
  return out;
}

std::vector<float> all_logits(const LoadedModel& m, const std::vector<int32_t>& ids) {
  return invar::testing::prefill_logits(m, ids);
}

TEST(Phi3Gguf, FusedTensorsAndLongropeGiveTheHfCheckpointsBits) {
  auto hf = load_model(invar::testing::test_data("tiny-phi3"), {});
  ASSERT_TRUE(hf.ok()) << hf.status().message();
  const ModelConfig& c = hf->config;
  testing::GgufWriter w;
  w.str("general.architecture", "phi3");
  w.u32("phi3.block_count", uint32_t(c.num_layers));
  w.u32("phi3.embedding_length", uint32_t(c.hidden_size));
  w.u32("phi3.feed_forward_length", uint32_t(c.intermediate_size));
  w.u32("phi3.attention.head_count", uint32_t(c.num_heads));
  w.u32("phi3.attention.head_count_kv", uint32_t(c.num_kv_heads));
  w.f32("phi3.attention.layer_norm_rms_epsilon", c.rms_eps);
  w.u32("phi3.context_length", uint32_t(c.max_position));
  w.u32("phi3.vocab_size", uint32_t(c.vocab_size));
  w.u32("phi3.rope.dimension_count", uint32_t(rope_dims(c)));
  w.f32("phi3.rope.freq_base", c.rope_theta);
  w.u32("phi3.rope.scaling.original_context_length",
        uint32_t(c.rope_scaling.original_max_position));
  w.f32("phi3.rope.scaling.attn_factor", c.rope_scaling.attention_factor);
  const int64_t half = rope_dims(c) / 2;
  w.tensor("rope_factors_short.weight", {half}, 0, testing::as_bytes(c.rope_scaling.short_factor));
  w.tensor("rope_factors_long.weight", {half}, 0, testing::as_bytes(c.rope_scaling.long_factor));

  const ModelWeights& m = hf->weights;
  const int64_t h = c.hidden_size, inter = c.intermediate_size;
  const int64_t qkv_rows = int64_t(c.num_heads + 2 * c.num_kv_heads) * c.head_dim;
  w.tensor("token_embd.weight", {c.vocab_size, h}, 0, testing::as_bytes(values(m.embedding)));
  for (int l = 0; l < c.num_layers; ++l) {
    const LayerWeights& L = m.layers[size_t(l)];
    const std::string b = "blk." + std::to_string(l) + ".";
    w.tensor(b + "attn_norm.weight", {h}, 0, testing::as_bytes(values(L.attn_norm)));
    w.tensor(b + "attn_qkv.weight", {qkv_rows, h}, 0,
             testing::as_bytes(rows_of({&L.wq, &L.wk, &L.wv})));
    w.tensor(b + "attn_output.weight", L.wo.shape, 0, testing::as_bytes(values(L.wo)));
    w.tensor(b + "ffn_norm.weight", {h}, 0, testing::as_bytes(values(L.ffn_norm)));
    w.tensor(b + "ffn_up.weight", {2 * inter, h}, 0,
             testing::as_bytes(rows_of({&L.w_gate, &L.w_up})));
    w.tensor(b + "ffn_down.weight", L.w_down.shape, 0, testing::as_bytes(values(L.w_down)));
  }
  w.tensor("output_norm.weight", {h}, 0, testing::as_bytes(values(m.final_norm)));
  w.tensor("output.weight", m.lm_head.shape, 0, testing::as_bytes(values(m.lm_head)));
  const std::string path = ::testing::TempDir() + "invar_tiny_phi3.gguf";
  testing::write_bytes(path, w.build());

  auto gg = load_model(path, {});
  ASSERT_TRUE(gg.ok()) << gg.status().message();
  const ModelConfig& g = gg->config;
  EXPECT_EQ(g.arch, Arch::phi3);
  EXPECT_EQ(g.rotary_dim, c.rotary_dim);
  EXPECT_EQ(g.rope_scaling.kind, RopeScaling::Kind::longrope);
  EXPECT_EQ(g.rope_scaling.short_factor, c.rope_scaling.short_factor);
  EXPECT_EQ(g.rope_scaling.long_factor, c.rope_scaling.long_factor);
  EXPECT_EQ(g.rope_scaling.original_max_position, c.rope_scaling.original_max_position);
  EXPECT_EQ(g.rope_scaling.attention_factor, c.rope_scaling.attention_factor);
  EXPECT_EQ(g.sliding_window, 0);

  std::vector<int32_t> ids;
  for (int i = 0; i < 40; ++i) ids.push_back(int32_t((i * 37 + 5) % c.vocab_size));
  const std::vector<float> x = all_logits(*hf, ids), y = all_logits(*gg, ids);
  ASSERT_EQ(x.size(), y.size());
  EXPECT_EQ(0, std::memcmp(x.data(), y.data(), x.size() * sizeof(float)));
}

}  // namespace
}  // namespace invar::model
