#include "model/weights.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <thread>

#include "model/weight_loader.h"
#include "model/weight_slots.h"

namespace invar::model {

HostBytes HostBytes::view(std::shared_ptr<const void> owner, const uint8_t* data, size_t size) {
  HostBytes b;
  b.owner_ = std::move(owner);
  b.view_ = data;
  b.size_ = size;
  return b;
}

uint8_t* HostBytes::data() {
  assert(!view_ && "a mapped view is read-only");
  return owned_.data();
}

bool operator==(const HostBytes& a, const HostBytes& b) {
  return a.size() == b.size() && (a.size() == 0 || std::memcmp(a.data(), b.data(), a.size()) == 0);
}

int64_t HostTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

kernels::WeightRef HostTensor::ref() const {
  assert(shape.size() == 2 || shape.size() == 1);
  kernels::WeightRef r;
  r.data = bytes.data();
  r.dtype = dtype;
  r.rows = shape.size() == 2 ? shape[0] : 1;
  r.cols = shape.empty() ? 0 : shape.back();
  return r;
}

HostTensor HostTensor::zeros(DType dtype, std::vector<int64_t> shape) {
  HostTensor t;
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.bytes = HostBytes(dtype_row_bytes(dtype, t.numel()));
  return t;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

Status for_each_weight_slot(const ModelConfig& c, ModelWeights& w,
                            const std::function<Status(const WeightSlot&)>& fn) {
  const int64_t h = c.hidden_size, inter = c.intermediate_size, v = c.vocab_size;
  const int64_t q = int64_t(c.num_heads) * c.head_dim, kv = int64_t(c.num_kv_heads) * c.head_dim;
  using R = WeightRole;
  INVAR_RETURN_IF_ERROR(fn({R::embedding, -1, {v, h}, true, &w.embedding}));
  for (int l = 0; l < c.num_layers; ++l) {
    // Grown one layer at a time, not resized up front: a file's num_layers is not trusted with
    // an allocation before its tensors are found (a visit of loaded weights grows nothing).
    if (w.layers.size() <= size_t(l)) w.layers.emplace_back();
    LayerWeights& L = w.layers[size_t(l)];
    INVAR_RETURN_IF_ERROR(fn({R::attn_norm, l, {h}, false, &L.attn_norm}));
    INVAR_RETURN_IF_ERROR(fn({R::wq, l, {q, h}, true, &L.wq}));
    INVAR_RETURN_IF_ERROR(fn({R::wk, l, {kv, h}, true, &L.wk}));
    INVAR_RETURN_IF_ERROR(fn({R::wv, l, {kv, h}, true, &L.wv}));
    INVAR_RETURN_IF_ERROR(fn({R::wo, l, {h, q}, true, &L.wo}));
    if (c.post_norms)
      INVAR_RETURN_IF_ERROR(fn({R::post_attn_norm, l, {h}, false, &L.post_attn_norm}));
    if (c.attention_bias) {
      INVAR_RETURN_IF_ERROR(fn({R::bq, l, {q}, false, &L.bq}));
      INVAR_RETURN_IF_ERROR(fn({R::bk, l, {kv}, false, &L.bk}));
      INVAR_RETURN_IF_ERROR(fn({R::bv, l, {kv}, false, &L.bv}));
    }
    if (c.qk_norm) {
      INVAR_RETURN_IF_ERROR(fn({R::q_norm, l, {c.head_dim}, false, &L.q_norm}));
      INVAR_RETURN_IF_ERROR(fn({R::k_norm, l, {c.head_dim}, false, &L.k_norm}));
    }
    INVAR_RETURN_IF_ERROR(
        fn({c.post_norms ? R::pre_ffn_norm : R::ffn_norm, l, {h}, false, &L.ffn_norm}));
    if (is_moe_layer(c, l)) {
      const int64_t e_inter = c.moe.expert_intermediate_size;
      INVAR_RETURN_IF_ERROR(fn({R::router, l, {c.moe.num_experts, h}, true, &L.router}));
      for (int e = 0; e < c.moe.num_experts; ++e) {
        if (L.experts.size() <= size_t(e)) L.experts.emplace_back();  // grown as layers are
        ExpertWeights& x = L.experts[size_t(e)];
        INVAR_RETURN_IF_ERROR(fn({R::expert_gate, l, {e_inter, h}, true, &x.w_gate, e}));
        INVAR_RETURN_IF_ERROR(fn({R::expert_up, l, {e_inter, h}, true, &x.w_up, e}));
        INVAR_RETURN_IF_ERROR(fn({R::expert_down, l, {h, e_inter}, true, &x.w_down, e}));
      }
      if (const int64_t si = c.moe.shared_intermediate_size; si > 0) {
        INVAR_RETURN_IF_ERROR(fn({R::shared_gate, l, {si, h}, true, &L.shared.w_gate}));
        INVAR_RETURN_IF_ERROR(fn({R::shared_up, l, {si, h}, true, &L.shared.w_up}));
        INVAR_RETURN_IF_ERROR(fn({R::shared_down, l, {h, si}, true, &L.shared.w_down}));
        INVAR_RETURN_IF_ERROR(fn({R::shared_expert_gate, l, {1, h}, true, &L.shared_gate}));
      }
      continue;
    }
    INVAR_RETURN_IF_ERROR(fn({R::w_gate, l, {inter, h}, true, &L.w_gate}));
    INVAR_RETURN_IF_ERROR(fn({R::w_up, l, {inter, h}, true, &L.w_up}));
    INVAR_RETURN_IF_ERROR(fn({R::w_down, l, {h, inter}, true, &L.w_down}));
    if (c.post_norms)
      INVAR_RETURN_IF_ERROR(fn({R::post_ffn_norm, l, {h}, false, &L.post_ffn_norm}));
  }
  INVAR_RETURN_IF_ERROR(fn({R::final_norm, -1, {h}, false, &w.final_norm}));
  if (!c.tie_embeddings) INVAR_RETURN_IF_ERROR(fn({R::lm_head, -1, {v, h}, true, &w.lm_head}));
  return {};
}

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// A tensor's id depends on its role, layer and expert only, so enabling biases does not change
// the values of the other tensors (and dense models keep the ids they had before experts).
uint64_t slot_id(const WeightSlot& s) {
  return uint64_t(s.layer + 1) * 64 + uint64_t(s.role) + (uint64_t(s.expert + 1) << 32);
}

// Uniform in [-1, 1), exactly a multiple of 2^-23: integer bits, no library distributions.
float uniform_pm1(uint64_t key, uint64_t index) {
  const uint64_t h = splitmix64(key ^ splitmix64(index));
  return float(int32_t(h >> 40) - (1 << 23)) * (1.0f / 8388608.0f);
}

// Runs fn(begin, end) over [0, n) on a few threads. Callers make each element's result a pure
// function of its index, so the split does not change any value.
template <typename Fn>
void for_ranges(int64_t n, int64_t per_element_cost, const Fn& fn) {
  // Small enough that an MoE expert's matrix (~1.5 M weights) still spreads over the cores.
  // At least one element: a block row of a large FP8 matrix costs more than a whole chunk.
  const int64_t kChunk =
      std::max<int64_t>(1, (int64_t(1) << 17) / std::max<int64_t>(1, per_element_cost));
  const int64_t threads = std::min<int64_t>(std::max(1u, std::thread::hardware_concurrency()),
                                            (n + kChunk - 1) / kChunk);
  if (threads <= 1) {
    fn(int64_t(0), n);
    return;
  }
  std::vector<std::thread> pool;
  const int64_t per = (n + threads - 1) / threads;
  for (int64_t k = 1; k < threads; ++k) {
    pool.emplace_back(fn, std::min(n, k * per), std::min(n, (k + 1) * per));
  }
  fn(int64_t(0), std::min(n, per));
  for (auto& th : pool) th.join();
}

// Element i of a tensor is a pure function of (key, i).
void fill_random(HostTensor& t, uint64_t key, float center, float scale) {
  for_ranges(t.numel(), 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float v = center + uniform_pm1(key, uint64_t(i)) * scale;
      if (t.dtype == DType::f32)
        reinterpret_cast<float*>(t.bytes.data())[i] = v;
      else
        reinterpret_cast<uint16_t*>(t.bytes.data())[i] = f32_to_bf16(v);
    }
  });
}

// The matrices an FP8 checkpoint stores as F8_E4M3 (Qwen3-*-FP8: the attention and MLP
// projections, experts included; the embedding, lm_head and router stay in 16 bits).
bool is_fp8_role(WeightRole r) {
  switch (r) {
    case WeightRole::wq:
    case WeightRole::wk:
    case WeightRole::wv:
    case WeightRole::wo:
    case WeightRole::w_gate:
    case WeightRole::w_up:
    case WeightRole::w_down:
    case WeightRole::expert_gate:
    case WeightRole::expert_up:
    case WeightRole::expert_down:
    case WeightRole::shared_gate:
    case WeightRole::shared_up:
    case WeightRole::shared_down:
      return true;
    default:
      return false;
  }
}

// Quantizes an f32 [rows, cols] matrix as FP8 checkpoints are made, one scale per block:
// scale = amax / 448, code = e4m3(w / scale); and stores code * scale in f32, what the loader's
// dequantization of such a checkpoint gives (Fp8Quantization), and the codes and scales in
// t.fp8, as the loader keeps a checkpoint's. Blocks are independent, so threads over block
// rows do not change bits.
void round_to_fp8_blocks(HostTensor& t, int block_rows, int block_cols) {
  const int64_t rows = t.shape[0], cols = t.shape[1];
  const int64_t grid_rows = (rows + block_rows - 1) / block_rows;
  const int64_t grid_cols = (cols + block_cols - 1) / block_cols;
  auto blocks = std::make_shared<Fp8Blocks>();
  blocks->block_rows = block_rows;
  blocks->block_cols = block_cols;
  blocks->codes.resize(size_t(rows * cols));
  blocks->scales.resize(size_t(grid_rows * grid_cols));
  float* w = t.f32();
  for_ranges(grid_rows, int64_t(block_rows) * cols, [&](int64_t begin, int64_t end) {
    for (int64_t gr = begin; gr < end; ++gr) {
      const int64_t r0 = gr * block_rows, r1 = std::min(rows, r0 + block_rows);
      for (int64_t c0 = 0; c0 < cols; c0 += block_cols) {
        const int64_t c1 = std::min(cols, c0 + block_cols);
        float amax = 0.0f;
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t c = c0; c < c1; ++c) amax = std::max(amax, std::fabs(w[r * cols + c]));
        const float scale = amax > 0.0f ? amax / 448.0f : 1.0f;
        blocks->scales[size_t(gr * grid_cols + c0 / block_cols)] = scale;
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t c = c0; c < c1; ++c) {
            float& x = w[r * cols + c];
            const uint8_t code = f32_to_fp8_e4m3(x / scale);
            blocks->codes[size_t(r * cols + c)] = code;
            x = fp8_e4m3_to_f32(code) * scale;
          }
      }
    }
  });
  t.fp8 = std::move(blocks);
}

}  // namespace

int64_t weight_elements(const ModelConfig& config) {
  ModelWeights scratch;  // for_each_weight_slot only sizes its layer list; nothing is allocated
  int64_t total = 0;
  Status st = for_each_weight_slot(config, scratch, [&](const WeightSlot& s) -> Status {
    int64_t n = 1;
    for (int64_t d : s.shape) n *= d;
    total += n;
    return {};
  });
  assert(st.ok());
  (void)st;
  return total;
}

ModelWeights random_weights(const ModelConfig& config, uint64_t seed, DType weight_dtype,
                            const LoadProgress& progress) {
  ModelWeights w;
  const int64_t total = progress ? weight_elements(config) : 0;
  int64_t done = 0;
  Status st = for_each_weight_slot(config, w, [&](const WeightSlot& s) -> Status {
    const bool fp8 = config.fp8.enabled() && is_fp8_role(s.role);
    // FP8 matrices are drawn and quantized in f32, then stored in the weight dtype.
    *s.tensor = HostTensor::zeros(s.matrix && !fp8 ? weight_dtype : DType::f32, s.shape);
    const uint64_t key = splitmix64(seed ^ splitmix64(slot_id(s)));
    if (is_norm_role(s.role)) {
      fill_random(*s.tensor, key, 1.0f, 0.125f);
    } else {
      // ~1/sqrt(fan_in) keeps activations O(1) through the layers; sqrt is correctly rounded.
      const float scale =
          float(1.0 / std::sqrt(double(s.matrix ? s.shape.back() : config.hidden_size)));
      fill_random(*s.tensor, key, 0.0f, scale);
    }
    if (fp8) {
      round_to_fp8_blocks(*s.tensor, config.fp8.block_rows, config.fp8.block_cols);
      if (weight_dtype == DType::bf16) {
        HostTensor b = HostTensor::zeros(DType::bf16, s.shape);
        uint16_t* o = reinterpret_cast<uint16_t*>(b.bytes.data());
        for (int64_t i = 0; i < b.numel(); ++i) o[i] = f32_to_bf16(s.tensor->f32()[i]);
        b.fp8 = s.tensor->fp8;
        *s.tensor = std::move(b);
      }
    }
    if (progress) progress(done += s.tensor->numel(), total);
    return {};
  });
  assert(st.ok());
  (void)st;
  return w;
}

Result<LoadedModel> load_model(const std::string& path, const LoadOptions& options) {
  namespace fs = std::filesystem;
  if (options.weight_dtype && *options.weight_dtype != DType::f32 &&
      *options.weight_dtype != DType::bf16) {
    return Status::errorf(
        "{}: weight dtype {} is not supported (use f32 or bf16, or none for the file's own)", path,
        dtype_name(*options.weight_dtype));
  }
  std::error_code ec;
  if (fs::is_directory(path, ec)) return load_hf_model(path, "", options);
  if (!fs::exists(path, ec)) {
    return Status::errorf(
        "{}: no such file or directory (expected a .gguf file or a Hugging "
        "Face model directory)",
        path);
  }
  if (fs::path(path).extension() == ".safetensors") {
    std::string dir = fs::path(path).parent_path().string();
    return load_hf_model(dir.empty() ? "." : dir, path, options);
  }
  return load_gguf_model(path, options);
}

}  // namespace invar::model
