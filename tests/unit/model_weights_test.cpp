// load_model and random_weights: the tiny Hugging Face checkpoints (checked against the sums
// their generator wrote), GGUF models built here, shape and name errors, the default SmolLM2
// file when present, and the seeded generator's determinism.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/block_quant.h"
#include "model/gguf.h"
#include "model/safetensors.h"
#include "model/weight_slots.h"
#include "model/weights.h"
#include "test_paths.h"
#include "unit/gguf_writer.h"

namespace invar::model {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

void expect_error(const Status& st, std::vector<std::string> parts) {
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.message().find('\n'), std::string::npos) << st.message();
  for (const auto& p : parts) {
    EXPECT_NE(st.message().find(p), std::string::npos)
        << "missing '" << p << "' in: " << st.message();
  }
}

std::string temp_dir(const std::string& name) {
  fs::path p = fs::path(::testing::TempDir()) / ("invar_w_" + name);
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

// Every loaded tensor, by its Hugging Face name.
std::map<std::string, const HostTensor*> by_hf_name(const ModelConfig& c, ModelWeights& w) {
  std::map<std::string, const HostTensor*> out;
  Status st = for_each_weight_slot(c, w, [&](const WeightSlot& s) -> Status {
    out[hf_tensor_name(c, s)] = s.tensor;
    return {};
  });
  EXPECT_TRUE(st.ok());
  return out;
}

// Compares a loaded HF model with tensor_checks.json (written by make-tiny-models.py). Norm
// weights are expected as stored plus `norm_offset` (Gemma's 1 + w, added in f32 at load).
void check_against_generator(const std::string& dir, LoadedModel& m, float norm_offset = 0.0f) {
  std::ifstream in(invar::testing::test_data(dir + "/tensor_checks.json"));
  json checks = json::parse(in);
  auto tensors = by_hf_name(m.config, m.weights);
  EXPECT_EQ(tensors.size(), checks.size());
  for (const auto& [name, want] : checks.items()) {
    SCOPED_TRACE(name);
    ASSERT_EQ(tensors.count(name), 1u);
    const HostTensor& t = *tensors[name];
    EXPECT_EQ(t.shape, want["shape"].get<std::vector<int64_t>>());
    const bool matrix = t.shape.size() == 2;
    EXPECT_EQ(t.dtype, matrix ? t.dtype : DType::f32);
    const float offset = name.find("norm.weight") != std::string::npos ? norm_offset : 0.0f;
    double sum = 0;
    for (int64_t i = 0; i < t.numel(); ++i) sum += double(t.f32()[i]);
    // 1 + w is rounded to f32: up to half an ulp of 1 (6e-8) per element.
    EXPECT_NEAR(sum, want["sum"].get<double>() + double(offset) * double(t.numel()),
                (offset != 0.0f ? 1e-7 : 1e-9) * double(t.numel()));
    auto first = want["first"].get<std::vector<double>>();
    for (size_t i = 0; i < first.size(); ++i) EXPECT_EQ(t.f32()[i], offset + float(first[i]));
  }
}

// Gemma: the four norms of a layer (input, post_attention, pre_feedforward, post_feedforward)
// and Gemma 3's q/k norms come from their own names, and every norm weight w is loaded as
// 1 + w; the matrices are as stored.
TEST(LoadModel, TinyGemmaMapsItsNormsAndAddsOne) {
  for (const char* name : {"tiny-gemma2", "tiny-gemma3"}) {
    SCOPED_TRACE(name);
    auto r = load_model(invar::testing::test_data(name), {});
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_FALSE(r->weights.layers[0].post_attn_norm.empty());
    EXPECT_FALSE(r->weights.layers[0].post_ffn_norm.empty());
    check_against_generator(name, *r, 1.0f);
  }
}

// Phi-3's fused qkv_proj and gate_up_proj are split by rows at load: the parts' first values
// are the fused tensor's first values at each part's first row, and the parts' sums add up to
// the fused tensor's sum (tensor_checks.json of make-tiny-models.py).
TEST(LoadModel, TinyPhi3SplitsFusedProjections) {
  auto m = load_model(invar::testing::test_data("tiny-phi3"), {});
  ASSERT_TRUE(m.ok()) << m.status().message();
  std::ifstream in(invar::testing::test_data("tiny-phi3/tensor_checks.json"));
  const json checks = json::parse(in);
  auto sum = [](const HostTensor& t) {
    double s = 0;
    for (int64_t i = 0; i < t.numel(); ++i) s += double(t.f32()[i]);
    return s;
  };
  for (int l = 0; l < m->config.num_layers; ++l) {
    SCOPED_TRACE(l);
    const LayerWeights& L = m->weights.layers[size_t(l)];
    const std::string p = "model.layers." + std::to_string(l) + ".";
    const json& qkv = checks[p + "self_attn.qkv_proj.weight"];
    const json& gate_up = checks[p + "mlp.gate_up_proj.weight"];
    EXPECT_EQ(L.wq.shape, (std::vector<int64_t>{64, 64}));
    EXPECT_EQ(L.wk.shape, (std::vector<int64_t>{32, 64}));
    EXPECT_EQ(L.wv.shape, (std::vector<int64_t>{32, 64}));
    EXPECT_EQ(L.w_gate.shape, (std::vector<int64_t>{128, 64}));
    EXPECT_EQ(L.w_up.shape, (std::vector<int64_t>{128, 64}));
    EXPECT_EQ(L.wq.f32()[0], float(qkv["first"][0].get<double>()));
    EXPECT_EQ(L.w_gate.f32()[1], float(gate_up["first"][1].get<double>()));
    EXPECT_NEAR(sum(L.wq) + sum(L.wk) + sum(L.wv), qkv["sum"].get<double>(), 1e-9 * 128 * 64);
    EXPECT_NEAR(sum(L.w_gate) + sum(L.w_up), gate_up["sum"].get<double>(), 1e-9 * 256 * 64);
  }
  // A fused tensor of the wrong shape is named in the error, with the shape the config needs.
  const std::string dir = temp_dir("phi3_kv_heads");
  fs::copy_file(invar::testing::test_data("tiny-phi3/config.json"), dir + "/config.json");
  std::ifstream cfg(dir + "/config.json");
  json c = json::parse(cfg);
  c["num_key_value_heads"] = 4;  // q, k, v: 64 rows each
  std::ofstream(dir + "/config.json", std::ios::trunc) << c.dump();
  fs::copy_file(invar::testing::test_data("tiny-phi3/model.safetensors"),
                dir + "/model.safetensors");
  expect_error(load_model(dir, {}).status(),
               {"model.layers.0.self_attn.qkv_proj.weight", "shape [128, 64]", "[192, 64]"});
}

TEST(LoadModel, TinyLlamaSingleAndSharded) {
  auto single = load_model(invar::testing::test_data("tiny-llama"), {});
  ASSERT_TRUE(single.ok()) << single.status().message();
  EXPECT_EQ(single->config.arch, Arch::llama);
  EXPECT_FALSE(single->config.tie_embeddings);
  EXPECT_EQ(single->weights.layers.size(), 2u);
  EXPECT_FALSE(single->weights.lm_head.empty());
  EXPECT_EQ(&single->weights.output(), &single->weights.lm_head);
  EXPECT_EQ(single->weights.layers[1].wk.shape, (std::vector<int64_t>{32, 64}));
  EXPECT_EQ(single->weights.layers[1].wo.ref().rows, 64);
  EXPECT_EQ(single->weights.layers[1].wo.ref().cols, 64);
  EXPECT_TRUE(single->weights.layers[0].bq.empty());
  check_against_generator("tiny-llama", *single);

  auto sharded = load_model(invar::testing::test_data("tiny-llama-sharded"), {});
  ASSERT_TRUE(sharded.ok()) << sharded.status().message();
  auto a = by_hf_name(single->config, single->weights);
  auto b = by_hf_name(sharded->config, sharded->weights);
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, t] : a) EXPECT_EQ(t->bytes, b[name]->bytes) << name;

  // A single safetensors file path works too (config.json beside it).
  auto file = load_model(invar::testing::test_data("tiny-llama/model.safetensors"), {});
  ASSERT_TRUE(file.ok()) << file.status().message();
  EXPECT_EQ(file->weights.embedding.bytes, single->weights.embedding.bytes);
}

TEST(LoadModel, TinyQwen3TiedWithQkNorm) {
  auto r = load_model(invar::testing::test_data("tiny-qwen3"), {});
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_TRUE(r->config.tie_embeddings);
  EXPECT_TRUE(r->weights.lm_head.empty());
  EXPECT_EQ(&r->weights.output(), &r->weights.embedding);
  EXPECT_EQ(r->weights.layers[0].q_norm.shape, (std::vector<int64_t>{32}));
  EXPECT_EQ(r->weights.layers[0].wq.shape, (std::vector<int64_t>{128, 64}));
  EXPECT_EQ(r->weights.layers[0].wo.shape, (std::vector<int64_t>{64, 128}));
  check_against_generator("tiny-qwen3", *r);
}

// The progress a loader reports (the CLI's bar): rising, ending at every weight element of the
// config, for files and for random weights alike.
TEST(LoadModel, ProgressRisesToEveryWeightElement) {
  std::vector<std::pair<int64_t, int64_t>> calls;
  LoadOptions opt;
  opt.progress = [&](int64_t done, int64_t total) { calls.emplace_back(done, total); };
  auto m = load_model(invar::testing::test_data("tiny-qwen3"), opt);
  ASSERT_TRUE(m.ok()) << m.status().message();
  const int64_t total = weight_elements(m->config);
  int64_t held = 0;  // what the loaded tensors hold, counted independently
  EXPECT_TRUE(for_each_weight_slot(m->config, m->weights, [&](const WeightSlot& s) -> Status {
                held += s.tensor->numel();
                return {};
              }).ok());
  EXPECT_EQ(total, held);
  ASSERT_FALSE(calls.empty());
  for (size_t i = 0; i < calls.size(); ++i) {
    EXPECT_EQ(calls[i].second, total);
    if (i > 0) {
      EXPECT_GT(calls[i].first, calls[i - 1].first);
    }
  }
  EXPECT_EQ(calls.back().first, total);

  calls.clear();
  EXPECT_FALSE(random_weights(m->config, 7, DType::f32, opt.progress).layers.empty());
  ASSERT_FALSE(calls.empty());
  EXPECT_EQ(calls.back(), std::make_pair(total, total));
}

TEST(LoadModel, Bf16MatricesF32Vectors) {
  auto f = load_model(invar::testing::test_data("tiny-qwen3"), {});
  LoadOptions opt;
  opt.weight_dtype = DType::bf16;
  auto h = load_model(invar::testing::test_data("tiny-qwen3"), opt);
  ASSERT_TRUE(h.ok()) << h.status().message();
  const LayerWeights& lf = f->weights.layers[1];
  const LayerWeights& lh = h->weights.layers[1];
  EXPECT_EQ(lh.w_up.dtype, DType::bf16);
  EXPECT_EQ(lh.w_up.ref().dtype, DType::bf16);
  EXPECT_EQ(lh.w_up.bytes.size(), size_t(lh.w_up.numel()) * 2);
  EXPECT_EQ(lh.ffn_norm.dtype, DType::f32);
  EXPECT_EQ(lh.q_norm.dtype, DType::f32);
  EXPECT_EQ(lh.ffn_norm.bytes, lf.ffn_norm.bytes);
  const uint16_t* bits = reinterpret_cast<const uint16_t*>(lh.w_up.bytes.data());
  for (int64_t i = 0; i < lh.w_up.numel(); ++i) ASSERT_EQ(bits[i], f32_to_bf16(lf.w_up.f32()[i]));
  LoadOptions bad;
  bad.weight_dtype = DType::f16;
  expect_error(load_model(invar::testing::test_data("tiny-qwen3"), bad).status(), {"f16"});
}

// A copy of a tiny model directory with its config.json edited.
std::string edited_copy(const std::string& src, const std::string& name,
                        const std::function<void(json&)>& edit) {
  const std::string dir = temp_dir(name);
  fs::copy(invar::testing::test_data(src + "/model.safetensors"), dir);
  std::ifstream in(invar::testing::test_data(src + "/config.json"));
  json c = json::parse(in);
  edit(c);
  std::ofstream(dir + "/config.json") << c.dump(2);
  return dir;
}

TEST(LoadModel, HfErrors) {
  std::string d = edited_copy("tiny-llama", "nokey", [](json& c) { c.erase("num_hidden_layers"); });
  expect_error(load_model(d, {}).status(), {d + "/config.json", "'num_hidden_layers' is missing"});
  d = edited_copy("tiny-llama", "shape", [](json& c) { c["intermediate_size"] = 96; });
  expect_error(load_model(d, {}).status(), {d, "tensor 'model.layers.0.mlp.gate_proj.weight'",
                                            "shape [128, 64]", "expected [96, 64]"});
  d = edited_copy("tiny-qwen3", "untied", [](json& c) { c["tie_word_embeddings"] = false; });
  expect_error(load_model(d, {}).status(), {d, "'lm_head.weight' is missing"});
  d = edited_copy("tiny-llama", "morelayers", [](json& c) { c["num_hidden_layers"] = 3; });
  expect_error(load_model(d, {}).status(), {"'model.layers.2.input_layernorm.weight' is missing"});
  // A Qwen3 config on Llama weights: q_norm is missing.
  d = edited_copy("tiny-llama", "arch", [](json& c) { c["architectures"] = {"Qwen3ForCausalLM"}; });
  expect_error(load_model(d, {}).status(), {"'model.layers.0.self_attn.q_norm.weight' is missing"});
  expect_error(load_model("/nonexistent/model.gguf", {}).status(),
               {"/nonexistent/model.gguf", "no such file"});
  d = temp_dir("noconfig");
  expect_error(load_model(d, {}).status(), {"config.json"});
}

// tiny-qwen3-fp8: F8_E4M3 matrices with 32x32 block scales, dequantized at load: every element
// is its stored value times its block's weight_scale_inv, in f32 (bf16 if asked); the
// embedding and norms are plain F32.
TEST(LoadModel, TinyQwen3Fp8DequantizesBlockScales) {
  const std::string dir = invar::testing::test_data("tiny-qwen3-fp8");
  auto m = load_model(dir, {});
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_EQ(m->config.fp8.block_rows, 32);
  EXPECT_EQ(m->config.fp8.block_cols, 32);
  auto set = SafetensorsSet::open_dir(dir);
  ASSERT_TRUE(set.ok());
  const std::string name = "model.layers.1.self_attn.q_proj.weight";  // [128, 64]: 4 x 2 blocks
  std::vector<float> values(128 * 64), scales(4 * 2);
  ASSERT_TRUE(set->read_tensor(name, DType::f32, values.data()).ok());
  ASSERT_TRUE(set->read_tensor(name + "_scale_inv", DType::f32, scales.data()).ok());
  const HostTensor& q = m->weights.layers[1].wq;
  ASSERT_EQ(q.dtype, DType::f32);
  for (int i = 0; i < 128; ++i)
    for (int j = 0; j < 64; ++j)
      ASSERT_EQ(q.f32()[i * 64 + j],
                values[size_t(i * 64 + j)] * scales[size_t(i / 32 * 2 + j / 32)])
          << i << ", " << j;
  EXPECT_NE(scales[0], scales[7]);
  // The file's codes and scales are kept beside the values (HostTensor::fp8).
  ASSERT_TRUE(q.fp8);
  EXPECT_EQ(q.fp8->block_rows, 32);
  EXPECT_EQ(q.fp8->scales, scales);
  for (int i = 0; i < 128 * 64; ++i)
    ASSERT_EQ(fp8_e4m3_to_f32(q.fp8->codes[size_t(i)]), values[size_t(i)]) << i;
  EXPECT_FALSE(m->weights.embedding.fp8);
  EXPECT_EQ(m->weights.embedding.dtype, DType::f32);
  LoadOptions bf16;
  bf16.weight_dtype = DType::bf16;
  auto b = load_model(dir, bf16);
  ASSERT_TRUE(b.ok()) << b.status().message();
  EXPECT_EQ(b->weights.layers[1].wq.dtype, DType::bf16);
  EXPECT_EQ(bf16_to_f32(reinterpret_cast<const uint16_t*>(b->weights.layers[1].wq.bytes.data())[5]),
            bf16_to_f32(f32_to_bf16(q.f32()[5])));
}

TEST(LoadModel, Fp8Errors) {
  std::string d =
      edited_copy("tiny-qwen3-fp8", "fp8_noquant", [](json& c) { c.erase("quantization_config"); });
  expect_error(load_model(d, {}).status(),
               {"'model.layers.0.self_attn.q_proj.weight' is F8_E4M3", "quantization_config"});
  d = edited_copy("tiny-qwen3-fp8", "fp8_block", [](json& c) {
    c["quantization_config"]["weight_block_size"] = {64, 32};
  });
  expect_error(load_model(d, {}).status(),
               {"'model.layers.0.self_attn.q_proj.weight_scale_inv': shape [4, 2]",
                "blocks of 64x32", "expected [2, 2]"});
  d = edited_copy("tiny-qwen3-fp8", "fp8_method",
                  [](json& c) { c["quantization_config"]["quant_method"] = "awq"; });
  expect_error(load_model(d, {}).status(), {"quant_method \"awq\" is not supported"});
  d = edited_copy("tiny-qwen3-fp8", "fp8_perchannel",
                  [](json& c) { c["quantization_config"].erase("weight_block_size"); });
  expect_error(load_model(d, {}).status(), {"weight_block_size is missing"});
}

// A tiny GGUF model: llama or qwen3 layout, random f32 tensors, optional tweaks.
struct GgufModelSpec {
  std::string arch = "llama";
  bool tied = true;
  std::string bad_shape_tensor;  // written with one row too many
  std::string q8_tensor;         // written as Q8_0 (d = 1, q = 1 everywhere)
  std::string nan_tensor;        // element 0 is NaN
  std::string skip_tensor;
};

std::string write_gguf_model(const std::string& name, const GgufModelSpec& spec,
                             std::map<std::string, std::vector<float>>* values = nullptr) {
  const int h = 64, inter = 128, v = 256, heads = 4, kvh = 2, d = 16;
  testing::GgufWriter w;
  const std::string p = spec.arch + ".";
  w.str("general.architecture", spec.arch);
  w.u32(p + "block_count", 2).u32(p + "embedding_length", h).u32(p + "feed_forward_length", inter);
  w.u32(p + "attention.head_count", heads).u32(p + "attention.head_count_kv", kvh);
  w.f32(p + "rope.freq_base", 10000.0f).f32(p + "attention.layer_norm_rms_epsilon", 1e-6f);
  w.u32(p + "context_length", 256).u32(p + "vocab_size", v);
  uint32_t counter = 1;
  auto add = [&](const std::string& tname, std::vector<int64_t> shape) {
    if (tname == spec.skip_tensor) return;
    if (tname == spec.bad_shape_tensor) shape[0] += 1;
    int64_t n = 1;
    for (auto s : shape) n *= s;
    if (tname == spec.q8_tensor) {
      testing::Bytes b;
      for (int64_t blk = 0; blk < n / 32; ++blk) {
        b.put<uint16_t>(0x3c00);
        for (int j = 0; j < 32; ++j) b.put<int8_t>(1);
      }
      w.tensor(tname, shape, uint32_t(GgmlType::q8_0), b.b);
      if (values) (*values)[tname] = std::vector<float>(size_t(n), 1.0f);
      return;
    }
    std::vector<float> data(static_cast<size_t>(n));
    for (auto& x : data) x = float(int(counter++ % 17) - 8) * 0.125f;
    if (tname == spec.nan_tensor) data[0] = std::nanf("");
    w.tensor(tname, shape, uint32_t(GgmlType::f32), testing::as_bytes(data));
    if (values) (*values)[tname] = data;
  };
  add("token_embd.weight", {v, h});
  for (int l = 0; l < 2; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    add(b + "attn_norm.weight", {h});
    add(b + "attn_q.weight", {heads * d, h});
    add(b + "attn_k.weight", {kvh * d, h});
    add(b + "attn_v.weight", {kvh * d, h});
    add(b + "attn_output.weight", {h, heads * d});
    if (spec.arch == "qwen3") {
      add(b + "attn_q_norm.weight", {d});
      add(b + "attn_k_norm.weight", {d});
    }
    add(b + "ffn_norm.weight", {h});
    add(b + "ffn_gate.weight", {inter, h});
    add(b + "ffn_up.weight", {inter, h});
    add(b + "ffn_down.weight", {h, inter});
  }
  add("output_norm.weight", {h});
  if (!spec.tied) add("output.weight", {v, h});
  std::string path = ::testing::TempDir() + "invar_w_" + name + ".gguf";
  testing::write_bytes(path, w.build());
  return path;
}

TEST(LoadModel, GgufModels) {
  std::map<std::string, std::vector<float>> values;
  GgufModelSpec spec;
  spec.q8_tensor = "blk.1.ffn_up.weight";
  auto path = write_gguf_model("llama", spec, &values);
  auto r = load_model(path, {});
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->source, path);
  EXPECT_EQ(r->config.arch, Arch::llama);
  EXPECT_EQ(r->config.rope_style, kernels::RopeStyle::interleaved);
  EXPECT_TRUE(r->config.tie_embeddings);
  EXPECT_TRUE(r->weights.lm_head.empty());
  ModelWeights& w = r->weights;
  std::map<std::string, const HostTensor*> got;
  ASSERT_TRUE(for_each_weight_slot(r->config, w, [&](const WeightSlot& s) -> Status {
                got[gguf_tensor_name(r->config, s)] = s.tensor;
                return {};
              }).ok());
  ASSERT_EQ(got.size(), values.size());
  for (const auto& [name, want] : values) {
    SCOPED_TRACE(name);
    ASSERT_EQ(size_t(got[name]->numel()), want.size());
    std::vector<float> decoded(want.size());
    decode_to_f32(got[name]->dtype, got[name]->bytes.data(), got[name]->numel(), decoded.data());
    EXPECT_EQ(0, std::memcmp(decoded.data(), want.data(), want.size() * 4));
  }
  // By default matrices stay as stored, in place in the file's mapping (the Q8_0 one packed);
  // norms are f32 copies. --weight-dtype f32 converts every matrix.
  EXPECT_EQ(w.layers[1].w_up.dtype, DType::q8_0);
  EXPECT_TRUE(w.layers[1].w_up.bytes.is_view());
  EXPECT_EQ(w.layers[1].w_up.bytes.size(), size_t(128 * 64 / 32 * 34));
  EXPECT_EQ(w.layers[1].w_down.dtype, DType::f32);
  EXPECT_TRUE(w.layers[1].w_down.bytes.is_view());
  EXPECT_FALSE(w.layers[1].ffn_norm.bytes.is_view());
  LoadOptions f32;
  f32.weight_dtype = DType::f32;
  auto converted = load_model(path, f32);
  ASSERT_TRUE(converted.ok()) << converted.status().message();
  EXPECT_EQ(converted->weights.layers[1].w_up.dtype, DType::f32);
  EXPECT_FALSE(converted->weights.layers[1].w_up.bytes.is_view());
  EXPECT_EQ(0, std::memcmp(converted->weights.layers[1].w_up.f32(),
                           values["blk.1.ffn_up.weight"].data(), 128 * 64 * 4));

  GgufModelSpec q;
  q.arch = "qwen3";
  q.tied = false;
  auto rq = load_model(write_gguf_model("qwen3", q), {});
  ASSERT_TRUE(rq.ok()) << rq.status().message();
  EXPECT_EQ(rq->config.rope_style, kernels::RopeStyle::half);
  EXPECT_FALSE(rq->weights.lm_head.empty());
  EXPECT_EQ(rq->weights.layers[1].k_norm.shape, (std::vector<int64_t>{16}));
}

TEST(LoadModel, GgufErrors) {
  GgufModelSpec s;
  s.bad_shape_tensor = "blk.1.ffn_up.weight";
  std::string p = write_gguf_model("badshape", s);
  expect_error(load_model(p, {}).status(),
               {p, "tensor 'blk.1.ffn_up.weight'", "shape [129, 64]", "expected [128, 64]"});
  s = {};
  s.arch = "qwen3";
  s.skip_tensor = "blk.0.attn_k_norm.weight";
  p = write_gguf_model("missing", s);
  expect_error(load_model(p, {}).status(), {p, "'blk.0.attn_k_norm.weight' is missing"});
  s = {};
  s.nan_tensor = "blk.0.attn_v.weight";
  p = write_gguf_model("nan", s);
  expect_error(load_model(p, {}).status(), {p, "'blk.0.attn_v.weight'", "nan"});
  // An unsupported encoding of a needed tensor.
  testing::GgufWriter w;
  w.str("general.architecture", "llama").u32("llama.block_count", 1);
  w.u32("llama.embedding_length", 256).u32("llama.feed_forward_length", 256);
  w.u32("llama.attention.head_count", 4).u32("llama.context_length", 16).u32("llama.vocab_size", 4);
  w.f32("llama.attention.layer_norm_rms_epsilon", 1e-6f);
  w.tensor("token_embd.weight", {4, 256}, 23 /* IQ4_XS */, std::vector<uint8_t>(4 * 144));
  p = ::testing::TempDir() + "invar_w_iq4xs.gguf";
  testing::write_bytes(p, w.build());
  expect_error(load_model(p, {}).status(),
               {p, "'token_embd.weight'", "unsupported type 23 (IQ4_XS)"});
}

TEST(LoadModel, DefaultSmolLM2) {
  const std::string path = invar::testing::default_model_path();
  if (path.empty()) GTEST_SKIP() << "default model absent (run scripts/fetch-model)";
  LoadOptions opt;
  opt.weight_dtype = DType::bf16;
  auto r = load_model(path, opt);
  ASSERT_TRUE(r.ok()) << r.status().message();
  const ModelConfig& c = r->config;
  EXPECT_EQ(c.arch, Arch::llama);
  EXPECT_EQ(c.num_layers, 30);
  EXPECT_EQ(c.hidden_size, 576);
  EXPECT_EQ(c.intermediate_size, 1536);
  EXPECT_EQ(c.num_heads, 9);
  EXPECT_EQ(c.num_kv_heads, 3);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.vocab_size, 49152);
  EXPECT_EQ(c.max_position, 8192);
  EXPECT_FLOAT_EQ(c.rope_theta, 100000.0f);
  EXPECT_FLOAT_EQ(c.rms_eps, 1e-5f);
  EXPECT_TRUE(c.tie_embeddings);
  EXPECT_EQ(c.rope_style, kernels::RopeStyle::interleaved);
  EXPECT_EQ(r->weights.layers.size(), 30u);
  EXPECT_EQ(r->weights.output().shape, (std::vector<int64_t>{49152, 576}));
  EXPECT_EQ(r->weights.embedding.dtype, DType::bf16);
  EXPECT_EQ(r->weights.final_norm.dtype, DType::f32);
  EXPECT_EQ(r->weights.layers[29].w_down.shape, (std::vector<int64_t>{576, 1536}));
  // Norm weights of a trained model are O(1), not zero or garbage.
  double sum = 0;
  for (int i = 0; i < 576; ++i) sum += std::fabs(r->weights.final_norm.f32()[i]);
  EXPECT_GT(sum / 576, 0.1);
  EXPECT_LT(sum / 576, 100.0);
}

ModelConfig small_config() {
  ModelConfig c;
  c.arch = Arch::qwen2;
  c.vocab_size = 100, c.hidden_size = 32, c.intermediate_size = 48, c.num_layers = 2;
  c.num_heads = 4, c.num_kv_heads = 2, c.head_dim = 8, c.max_position = 64;
  c.attention_bias = true;
  return c;
}

uint64_t fingerprint(ModelConfig c, ModelWeights& w) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a over every tensor's bytes, in slot order
  Status st = for_each_weight_slot(c, w, [&](const WeightSlot& s) -> Status {
    for (uint8_t b : s.tensor->bytes) h = (h ^ b) * 1099511628211ull;
    return {};
  });
  EXPECT_TRUE(st.ok());
  return h;
}

TEST(RandomWeights, SeededAndDeterministic) {
  const ModelConfig c = small_config();
  ModelWeights a = random_weights(c, 42, DType::f32);
  ModelWeights b = random_weights(c, 42, DType::f32);
  ModelWeights other = random_weights(c, 43, DType::f32);
  EXPECT_EQ(fingerprint(c, a), fingerprint(c, b));
  EXPECT_NE(fingerprint(c, a), fingerprint(c, other));
  EXPECT_EQ(a.layers[0].bq.shape, (std::vector<int64_t>{32}));
  EXPECT_TRUE(a.layers[0].q_norm.empty());
  EXPECT_TRUE(a.lm_head.empty() == c.tie_embeddings);
  // Pinned: the generator must give these bits on every machine. If this changes on purpose,
  // every committed result that used --random-weights changes with it.
  EXPECT_EQ(f32_to_bits(a.embedding.f32()[0]), 0xbe22a182u) << a.embedding.f32()[0];
  EXPECT_EQ(f32_to_bits(a.layers[1].w_down.f32()[5]), 0x3ddc5a10u) << a.layers[1].w_down.f32()[5];
  EXPECT_EQ(fingerprint(c, a), 0x6ec772f789caa1c9ull);

  // Matrices scale as 1/sqrt(fan_in); norms are near 1; neighbours differ.
  const HostTensor& down = a.layers[1].w_down;  // fan_in 48
  float maxabs = 0;
  for (int64_t i = 0; i < down.numel(); ++i) maxabs = std::max(maxabs, std::fabs(down.f32()[i]));
  EXPECT_LE(maxabs, 1.0f / std::sqrt(48.0f));
  EXPECT_GT(maxabs, 0.8f / std::sqrt(48.0f));
  for (int64_t i = 0; i < a.final_norm.numel(); ++i) {
    EXPECT_NEAR(a.final_norm.f32()[i], 1.0f, 0.125f);
  }
  EXPECT_NE(a.layers[0].wq.f32()[0], a.layers[1].wq.f32()[0]);
  EXPECT_NE(a.layers[0].wq.f32()[0], a.layers[0].wk.f32()[0]);

  // bf16 weights are the f32 ones rounded; vectors stay f32 and identical.
  ModelWeights h = random_weights(c, 42, DType::bf16);
  EXPECT_EQ(h.layers[1].w_gate.dtype, DType::bf16);
  const uint16_t* bits = reinterpret_cast<const uint16_t*>(h.layers[1].w_gate.bytes.data());
  for (int64_t i = 0; i < h.layers[1].w_gate.numel(); ++i) {
    ASSERT_EQ(bits[i], f32_to_bf16(a.layers[1].w_gate.f32()[i]));
  }
  EXPECT_EQ(h.layers[1].bk.bytes, a.layers[1].bk.bytes);

  // Adding q/k norms does not change the other tensors (ids depend on role and layer only).
  ModelConfig c2 = c;
  c2.qk_norm = true;
  ModelWeights n = random_weights(c2, 42, DType::f32);
  EXPECT_EQ(n.layers[1].w_up.bytes, a.layers[1].w_up.bytes);
  EXPECT_EQ(n.layers[0].q_norm.shape, (std::vector<int64_t>{8}));
}

TEST(RandomWeights, LargeTensorsSplitAcrossThreadsKeepTheirBits) {
  // Big enough that fill_random uses several threads; element i must not depend on that.
  ModelConfig c = small_config();
  c.vocab_size = 1 << 16;
  c.hidden_size = 64;
  c.head_dim = 16;
  ModelWeights w = random_weights(c, 7, DType::f32);
  ModelConfig tiny = c;
  tiny.vocab_size = 3;  // same tensor id, same key: rows 0..2 must match
  ModelWeights t = random_weights(tiny, 7, DType::f32);
  EXPECT_EQ(0, std::memcmp(w.embedding.f32(), t.embedding.f32(), 3 * 64 * 4));
  EXPECT_EQ(w.embedding.numel(), (int64_t(1) << 16) * 64);
}

// A 128 x 128 block row of a wide FP8 matrix costs more than a whole thread chunk of the
// generator (Qwen3-4B-FP8's down projection, 128 x 9728); that once made the chunk size zero
// and the generator divide by it.
TEST(RandomWeights, Fp8BlockRowsWiderThanAThreadChunk) {
  ModelConfig c = small_config();
  c.hidden_size = 128, c.head_dim = 32, c.intermediate_size = 1152;  // 128 * 1152 > 2^17
  c.fp8.block_rows = c.fp8.block_cols = 128;
  ModelWeights w = random_weights(c, 5, DType::f32);
  const HostTensor& down = w.layers[0].w_down;
  ASSERT_EQ(down.shape, (std::vector<int64_t>{128, 1152}));
  ASSERT_TRUE(down.fp8);
  ASSERT_EQ(down.fp8->scales.size(), 9u);  // one block row of 9 blocks
  for (int64_t i = 0; i < down.numel(); i += 997) {
    const float scale = down.fp8->scales[size_t((i % 1152) / 128)];
    ASSERT_EQ(down.f32()[i], fp8_e4m3_to_f32(down.fp8->codes[size_t(i)]) * scale) << i;
  }
}

}  // namespace
}  // namespace invar::model
