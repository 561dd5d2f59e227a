// Mixture-of-experts GGUF files as llama.cpp lays them out: qwen3moe (expert_count,
// expert_used_count, expert_feed_forward_length, expert_weights_norm), qwen2moe (q/k/v biases,
// the shared expert `ffn_{gate,up,down}_shexp` and its gate `ffn_gate_inp_shexp` [H],
// expert_shared_feed_forward_length) and Mixtral (arch llama with expert keys, q/k rows permuted), each sparse layer with the router `ffn_gate_inp` and the
// experts stacked per projection (`ffn_{gate,up,down}_exps`, [E, ...]).
// - Written here from tiny-qwen3-moe's and tiny-mixtral's loaded weights in F32, F16 and BF16:
//   the GGUF model's logits equal, bit for bit, those of the safetensors model with its matrices
//   rounded the same way (the router and the shared-expert gate kept F32, as llama.cpp keeps
//   them; Mixtral's q/k rows in llama.cpp's order).
// - The committed model-q8_0.gguf files, written by the `gguf` Python package
//   (scripts/make-moe-gguf.py): same config, every tensor the safetensors one to within Q8_0's
//   rounding (experts in order, q/k rows as llama.cpp permutes them), and the packed experts
//   read in place give the bits of the same file converted to f32 at load. (Logits of tiny
//   random MoE models are not compared across quantization: near-tied routers flip experts.)
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "model/transformer.h"
#include "model/weight_slots.h"
#include "test_paths.h"
#include "unit/gguf_writer.h"
#include "unit/prefill_logits.h"

namespace invar::model {
namespace {

constexpr uint32_t kF32 = 0, kF16 = 1, kBf16 = 30;  // ggml type ids

std::vector<float> values(const HostTensor& t) {
  return std::vector<float>(t.f32(), t.f32() + t.numel());
}

// llama.cpp's q/k row order for llama-arch files: each head's rows (first half, second half)
// become interleaved pairs (the interleaved rope reads them so).
std::vector<float> permute_rows(const std::vector<float>& w, int heads, int64_t cols) {
  const int64_t rows = int64_t(w.size()) / cols, d = rows / heads;
  std::vector<float> out(w.size());
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t i = 0; i < d / 2; ++i)
      for (int64_t j = 0; j < 2; ++j)
        std::memcpy(&out[size_t((h * d + 2 * i + j) * cols)],
                    &w[size_t((h * d + j * d / 2 + i) * cols)], size_t(cols) * sizeof(float));
  return out;
}

std::vector<uint8_t> encode(const std::vector<float>& v, uint32_t type) {
  if (type == kF32) return testing::as_bytes(v);
  std::vector<uint16_t> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) h[i] = type == kF16 ? f32_to_f16(v[i]) : f32_to_bf16(v[i]);
  return testing::as_bytes(h);
}

float round_to(float x, uint32_t type) {
  if (type == kF16) return f16_to_f32(f32_to_f16(x));
  if (type == kBf16) return bf16_to_f32(f32_to_bf16(x));
  return x;
}

// Norms, biases, the router and the shared-expert gate stay F32 in llama.cpp's files.
bool kept_f32(const WeightSlot& s) {
  return !s.matrix || s.role == WeightRole::router || s.role == WeightRole::shared_expert_gate;
}

// A GGUF of `m` with its matrices in `type` (norms and the router F32), named as llama.cpp's
// converter names them.
std::string write_gguf(const LoadedModel& m, uint32_t type, const std::string& file) {
  const ModelConfig& c = m.config;
  const bool mixtral = c.arch == Arch::mixtral, qwen2 = c.arch == Arch::qwen2_moe;
  const std::string a = mixtral ? "llama" : qwen2 ? "qwen2moe" : "qwen3moe";
  testing::GgufWriter w;
  w.str("general.architecture", a);
  w.u32(a + ".block_count", uint32_t(c.num_layers));
  w.u32(a + ".context_length", uint32_t(c.max_position));
  w.u32(a + ".embedding_length", uint32_t(c.hidden_size));
  w.u32(a + ".feed_forward_length", uint32_t(c.intermediate_size));
  w.u32(a + ".attention.head_count", uint32_t(c.num_heads));
  w.u32(a + ".attention.head_count_kv", uint32_t(c.num_kv_heads));
  w.u32(a + ".attention.key_length", uint32_t(c.head_dim));
  w.f32(a + ".rope.freq_base", c.rope_theta);
  w.f32(a + ".attention.layer_norm_rms_epsilon", c.rms_eps);
  w.u32(a + ".vocab_size", uint32_t(c.vocab_size));
  w.u32(a + ".expert_count", uint32_t(c.moe.num_experts));
  w.u32(a + ".expert_used_count", uint32_t(c.moe.experts_per_token));
  if (!mixtral) w.u32(a + ".expert_feed_forward_length", uint32_t(c.moe.expert_intermediate_size));
  if (qwen2) {  // expert_weights_norm left out: qwen2moe's default, false, is tiny-qwen2-moe's
    w.u32(a + ".expert_shared_feed_forward_length", uint32_t(c.moe.shared_intermediate_size));
  } else if (!mixtral) {
    w.kv(a + ".expert_weights_norm", testing::kGBool,
         testing::Bytes().put<uint8_t>(c.moe.normalize_top_k ? 1 : 0));
  }
  // Stacked experts are written once per layer, at expert 0's visit.
  ModelWeights weights = m.weights;  // for_each_weight_slot visits a mutable model
  Status st = for_each_weight_slot(c, weights, [&](const WeightSlot& s) -> Status {
    if (s.expert > 0) return {};
    const std::string name = gguf_tensor_name(c, s);
    const uint32_t t = kept_f32(s) ? kF32 : type;
    if (s.expert == 0) {
      std::vector<float> stacked;
      std::vector<int64_t> shape = {c.moe.num_experts};
      shape.insert(shape.end(), s.shape.begin(), s.shape.end());
      const LayerWeights& L = m.weights.layers[size_t(s.layer)];
      for (const ExpertWeights& e : L.experts) {
        const HostTensor& x = s.role == WeightRole::expert_gate ? e.w_gate
                              : s.role == WeightRole::expert_up ? e.w_up
                                                                : e.w_down;
        const std::vector<float> v = values(x);
        stacked.insert(stacked.end(), v.begin(), v.end());
      }
      w.tensor(name, shape, t, encode(stacked, t));
      return {};
    }
    std::vector<float> v = values(*s.tensor);
    if (mixtral && (s.role == WeightRole::wq || s.role == WeightRole::wk))
      v = permute_rows(v, s.role == WeightRole::wq ? c.num_heads : c.num_kv_heads, s.shape[1]);
    // llama.cpp reads the shared-expert gate as a vector [H].
    const std::vector<int64_t> shape =
        s.role == WeightRole::shared_expert_gate ? std::vector<int64_t>{s.shape[1]} : s.shape;
    w.tensor(name, shape, t, encode(v, t));
    return {};
  });
  EXPECT_TRUE(st.ok()) << st.message();
  const std::string path = ::testing::TempDir() + file;
  testing::write_bytes(path, w.build());
  return path;
}

// The safetensors model as a GGUF of `type` holds it: matrices but the router rounded to
// `type`; for Mixtral (a llama-arch file) the q/k rows in llama.cpp's order, read with the
// interleaved rope (the same attention, summed over the head dims in another order).
LoadedModel as_gguf_holds_it(const LoadedModel& m, uint32_t type) {
  LoadedModel r = m;
  const bool permuted = m.config.arch == Arch::mixtral;
  if (permuted) r.config.rope_style = kernels::RopeStyle::interleaved;
  Status st = for_each_weight_slot(r.config, r.weights, [&](const WeightSlot& s) -> Status {
    if (kept_f32(s)) return {};
    std::vector<float> v = values(*s.tensor);
    for (float& x : v) x = round_to(x, type);
    if (permuted && (s.role == WeightRole::wq || s.role == WeightRole::wk))
      v = permute_rows(v, s.role == WeightRole::wq ? r.config.num_heads : r.config.num_kv_heads,
                       s.shape[1]);
    *s.tensor = HostTensor::zeros(DType::f32, s.shape);
    std::memcpy(s.tensor->f32(), v.data(), v.size() * sizeof(float));
    return {};
  });
  EXPECT_TRUE(st.ok());
  return r;
}

// Every tensor of `q` (loaded as f32) is that of `ref` to within Q8_0's rounding: half a step of
// its block of 32, amax / 127 (the f16 scale adds a relative 2^-11); vectors and the router are
// kept F32 and equal.
void expect_q8_0_of(const LoadedModel& q, const LoadedModel& ref) {
  std::vector<const HostTensor*> a, b;
  ModelWeights qw = q.weights, rw = ref.weights;
  auto collect = [](std::vector<const HostTensor*>* out) {
    return [out](const WeightSlot& s) -> Status {
      out->push_back(s.tensor);
      return {};
    };
  };
  ASSERT_TRUE(for_each_weight_slot(q.config, qw, collect(&a)).ok());
  ASSERT_TRUE(for_each_weight_slot(ref.config, rw, collect(&b)).ok());
  ASSERT_EQ(a.size(), b.size());
  int exact = 0, quantized = 0;
  for (size_t t = 0; t < a.size(); ++t) {
    const std::vector<float> x = values(*a[t]), y = values(*b[t]);
    ASSERT_EQ(x.size(), y.size());
    if (x == y) {
      ++exact;
      continue;
    }
    ++quantized;
    for (size_t i0 = 0; i0 < y.size(); i0 += 32) {
      float amax = 0;
      for (size_t i = i0; i < i0 + 32; ++i) amax = std::max(amax, std::fabs(y[i]));
      const float bound = amax / 254 * 1.01f + amax * 1e-3f;
      for (size_t i = i0; i < i0 + 32; ++i)
        ASSERT_LE(std::fabs(x[i] - y[i]), bound) << "tensor " << t << " element " << i;
    }
  }
  EXPECT_GT(quantized, 0);
  EXPECT_GT(exact, 0);  // norms and routers
}

std::vector<float> all_logits(const LoadedModel& m, const std::vector<int32_t>& ids) {
  return invar::testing::prefill_logits(m, ids);
}

std::vector<int32_t> test_ids(int vocab) {
  std::vector<int32_t> ids;
  for (int i = 0; i < 30; ++i) ids.push_back(int32_t((i * 37 + 5) % vocab));
  return ids;
}

void expect_same_moe_config(const ModelConfig& g, const ModelConfig& c) {
  EXPECT_EQ(g.arch, c.arch);
  EXPECT_EQ(g.moe.num_experts, c.moe.num_experts);
  EXPECT_EQ(g.moe.experts_per_token, c.moe.experts_per_token);
  EXPECT_EQ(g.moe.expert_intermediate_size, c.moe.expert_intermediate_size);
  EXPECT_EQ(g.moe.normalize_top_k, c.moe.normalize_top_k);
  for (int l = 0; l < c.num_layers; ++l) EXPECT_EQ(is_moe_layer(g, l), is_moe_layer(c, l)) << l;
}

class MoeGguf : public ::testing::TestWithParam<const char*> {};

TEST_P(MoeGguf, FloatFilesGiveTheSafetensorsBits) {
  auto hf = load_model(invar::testing::test_data(GetParam()), {});
  ASSERT_TRUE(hf.ok()) << hf.status().message();
  const std::vector<int32_t> ids = test_ids(hf->config.vocab_size);
  for (uint32_t type : {kF32, kF16, kBf16}) {
    SCOPED_TRACE("ggml type " + std::to_string(type));
    const std::string path =
        write_gguf(*hf, type, std::string("invar_") + GetParam() + std::to_string(type) + ".gguf");
    auto gg = load_model(path, {});
    ASSERT_TRUE(gg.ok()) << gg.status().message();
    expect_same_moe_config(gg->config, hf->config);
    const std::vector<float> x = all_logits(as_gguf_holds_it(*hf, type), ids),
                             y = all_logits(*gg, ids);
    ASSERT_EQ(x.size(), y.size());
    EXPECT_EQ(0, std::memcmp(x.data(), y.data(), x.size() * sizeof(float)));
  }
}

TEST_P(MoeGguf, CommittedQ8FileFromTheGgufPackage) {
  const std::string dir = invar::testing::test_data(GetParam());
  auto hf = load_model(dir, {});
  ASSERT_TRUE(hf.ok()) << hf.status().message();
  auto packed = load_model(dir + "/model-q8_0.gguf", {});
  ASSERT_TRUE(packed.ok()) << packed.status().message();
  expect_same_moe_config(packed->config, hf->config);
  EXPECT_EQ(packed->weights.layers[0].experts[1].w_down.dtype, DType::q8_0);
  LoadOptions to_f32;
  to_f32.weight_dtype = DType::f32;
  auto converted = load_model(dir + "/model-q8_0.gguf", to_f32);
  ASSERT_TRUE(converted.ok()) << converted.status().message();

  expect_q8_0_of(*converted, as_gguf_holds_it(*hf, kF32));

  // The packed experts read in place give the bits of the weights converted at load.
  const std::vector<int32_t> ids = test_ids(hf->config.vocab_size);
  const std::vector<float> y = all_logits(*packed, ids), z = all_logits(*converted, ids);
  ASSERT_EQ(y.size(), z.size());
  EXPECT_EQ(0, std::memcmp(y.data(), z.data(), y.size() * sizeof(float)));
}

INSTANTIATE_TEST_SUITE_P(Models, MoeGguf, ::testing::Values("tiny-qwen3-moe", "tiny-mixtral", "tiny-qwen2-moe"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& ch : n)
                             if (ch == '-') ch = '_';
                           return n;
                         });

}  // namespace
}  // namespace invar::model
