// Name mapping and shape checks for the two file formats. GGUF and Hugging Face store a linear
// layer's weight the same way, [out, in] row-major (GGUF's ne[0] = in), so no transposes; the
// q/k row permutation of GGUF Llama files is kept and handled by RopeStyle::interleaved.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <optional>

#include "core/block_quant.h"
#include "model/config_parse.h"
#include "model/gguf.h"
#include "model/safetensors.h"
#include "model/weight_loader.h"
#include "model/weight_slots.h"

namespace invar::model {

std::string gguf_tensor_name(const ModelConfig& /*config*/, const WeightSlot& slot) {
  const std::string b = "blk." + std::to_string(slot.layer) + ".";
  switch (slot.role) {
    case WeightRole::embedding:
      return "token_embd.weight";
    case WeightRole::final_norm:
      return "output_norm.weight";
    case WeightRole::lm_head:
      return "output.weight";
    case WeightRole::attn_norm:
      return b + "attn_norm.weight";
    case WeightRole::wq:
      return b + "attn_q.weight";
    case WeightRole::wk:
      return b + "attn_k.weight";
    case WeightRole::wv:
      return b + "attn_v.weight";
    case WeightRole::wo:
      return b + "attn_output.weight";
    case WeightRole::bq:
      return b + "attn_q.bias";
    case WeightRole::bk:
      return b + "attn_k.bias";
    case WeightRole::bv:
      return b + "attn_v.bias";
    case WeightRole::q_norm:
      return b + "attn_q_norm.weight";
    case WeightRole::k_norm:
      return b + "attn_k_norm.weight";
    case WeightRole::ffn_norm:
      return b + "ffn_norm.weight";
    case WeightRole::w_gate:
      return b + "ffn_gate.weight";
    case WeightRole::w_up:
      return b + "ffn_up.weight";
    case WeightRole::w_down:
      return b + "ffn_down.weight";
    case WeightRole::post_attn_norm:
      return b + "post_attention_norm.weight";
    case WeightRole::pre_ffn_norm:
      return b + "ffn_norm.weight";
    case WeightRole::post_ffn_norm:
      return b + "post_ffw_norm.weight";
    case WeightRole::router:
      return b + "ffn_gate_inp.weight";
    case WeightRole::expert_gate:  // one expert of the stacked tensors (fused_rows)
      return b + "ffn_gate_exps.weight";
    case WeightRole::expert_up:
      return b + "ffn_up_exps.weight";
    case WeightRole::expert_down:
      return b + "ffn_down_exps.weight";
    case WeightRole::shared_gate:  // llama.cpp's qwen2moe names
      return b + "ffn_gate_shexp.weight";
    case WeightRole::shared_up:
      return b + "ffn_up_shexp.weight";
    case WeightRole::shared_down:
      return b + "ffn_down_shexp.weight";
    case WeightRole::shared_expert_gate:
      return b + "ffn_gate_inp_shexp.weight";
  }
  return "?";
}

namespace {

// The Hub names of a sparse layer's router and experts: Qwen3-MoE's (and Qwen2-MoE's) `mlp.gate`,
// `mlp.experts.E.{gate,up,down}_proj`; Mixtral's `block_sparse_moe.gate`,
// `block_sparse_moe.experts.E.{w1,w3,w2}` (w1 gate, w3 up, w2 down); Qwen2-MoE's shared expert
// `mlp.shared_expert.{gate,up,down}_proj` and `mlp.shared_expert_gate`.
std::string hf_moe_tensor_name(const ModelConfig& c, const WeightSlot& s) {
  const bool mixtral = c.arch == Arch::mixtral;
  const std::string b =
      "model.layers." + std::to_string(s.layer) + (mixtral ? ".block_sparse_moe." : ".mlp.");
  if (s.role == WeightRole::router) return b + "gate.weight";
  if (s.role == WeightRole::shared_gate) return b + "shared_expert.gate_proj.weight";
  if (s.role == WeightRole::shared_up) return b + "shared_expert.up_proj.weight";
  if (s.role == WeightRole::shared_down) return b + "shared_expert.down_proj.weight";
  if (s.role == WeightRole::shared_expert_gate) return b + "shared_expert_gate.weight";
  const std::string e = b + "experts." + std::to_string(s.expert) + ".";
  switch (s.role) {
    case WeightRole::expert_gate:
      return e + (mixtral ? "w1.weight" : "gate_proj.weight");
    case WeightRole::expert_up:
      return e + (mixtral ? "w3.weight" : "up_proj.weight");
    case WeightRole::expert_down:
      return e + (mixtral ? "w2.weight" : "down_proj.weight");
    default:
      return "?";
  }
}

}  // namespace

std::string hf_tensor_name(const ModelConfig& config, const WeightSlot& slot) {
  const std::string b = "model.layers." + std::to_string(slot.layer) + ".";
  switch (slot.role) {
    case WeightRole::embedding:
      return "model.embed_tokens.weight";
    case WeightRole::final_norm:
      return "model.norm.weight";
    case WeightRole::lm_head:
      return "lm_head.weight";
    case WeightRole::attn_norm:
      return b + "input_layernorm.weight";
    case WeightRole::wq:
      return b + "self_attn.q_proj.weight";
    case WeightRole::wk:
      return b + "self_attn.k_proj.weight";
    case WeightRole::wv:
      return b + "self_attn.v_proj.weight";
    case WeightRole::wo:
      return b + "self_attn.o_proj.weight";
    case WeightRole::bq:
      return b + "self_attn.q_proj.bias";
    case WeightRole::bk:
      return b + "self_attn.k_proj.bias";
    case WeightRole::bv:
      return b + "self_attn.v_proj.bias";
    case WeightRole::q_norm:
      return b + "self_attn.q_norm.weight";
    case WeightRole::k_norm:
      return b + "self_attn.k_norm.weight";
    case WeightRole::ffn_norm:
      return b + "post_attention_layernorm.weight";
    case WeightRole::w_gate:
      return b + "mlp.gate_proj.weight";
    case WeightRole::w_up:
      return b + "mlp.up_proj.weight";
    case WeightRole::w_down:
      return b + "mlp.down_proj.weight";
    case WeightRole::post_attn_norm:
      return b + "post_attention_layernorm.weight";
    case WeightRole::pre_ffn_norm:
      return b + "pre_feedforward_layernorm.weight";
    case WeightRole::post_ffn_norm:
      return b + "post_feedforward_layernorm.weight";
    case WeightRole::router:
    case WeightRole::expert_gate:
    case WeightRole::expert_up:
    case WeightRole::expert_down:
    case WeightRole::shared_gate:
    case WeightRole::shared_up:
    case WeightRole::shared_down:
    case WeightRole::shared_expert_gate:
      return hf_moe_tensor_name(config, slot);
  }
  return "?";
}

namespace {

// Rejects NaN and infinity: a corrupt or mis-decoded tensor must not load silently. A packed
// tensor is checked through its scales (core/block_quant.h: its values are finite exactly when
// they are).
Status check_finite(const HostTensor& t, const std::string& where, const std::string& name) {
  if (dtype_is_packed(t.dtype)) {
    const int64_t b = first_nonfinite_block(t.dtype, t.bytes.data(), t.numel());
    if (b >= 0) {
      return Status::errorf(
          "{}: tensor '{}': block {} of {} has a NaN or infinite scale (corrupt "
          "file?)",
          where, name, b, dtype_name(t.dtype));
    }
    return {};
  }
  const int64_t n = t.numel();
  const uint8_t* p = t.bytes.data();
  for (int64_t i = 0; i < n; ++i) {
    float v;
    if (t.dtype == DType::f32)
      std::memcpy(&v, p + 4 * i, 4);
    else
      v = t.dtype == DType::bf16 ? bf16_to_f32(load_le16(p + 2 * i))
                                 : f16_to_f32(load_le16(p + 2 * i));
    if (!std::isfinite(v)) {
      return Status::errorf("{}: tensor '{}': element {} is {} (corrupt file?)", where, name, i, v);
    }
  }
  return {};
}

// A slot stored as a block of rows of a fused tensor: Phi-3 keeps q/k/v in one `qkv_proj`
// [Hq*D + 2*Hkv*D, H] and gate/up in one `gate_up_proj` [2*I, H] (GGUF: `attn_qkv`, and
// `ffn_up` holding gate then up); GGUF MoE files stack each layer's experts in one tensor per
// projection, `ffn_{gate,up}_exps` [E, I_e, H] and `ffn_down_exps` [E, H, I_e]. They are split at
// load into the ordinary slots, so the forward pass never sees the fusion.
struct RowBlock {
  std::string name;                 // the fused tensor
  std::vector<int64_t> file_shape;  // its shape
  int64_t row0 = 0;                 // the slot's first row in it (seen as [rows, shape[1]])
};

std::optional<RowBlock> fused_rows(const ModelConfig& c, const WeightSlot& s, bool gguf) {
  if (gguf && s.expert >= 0) {
    std::vector<int64_t> stacked = {c.moe.num_experts};
    stacked.insert(stacked.end(), s.shape.begin(), s.shape.end());
    return RowBlock{gguf_tensor_name(c, s), stacked, int64_t(s.expert) * s.shape[0]};
  }
  if (c.arch != Arch::phi3 || s.layer < 0) return std::nullopt;
  const int64_t h = c.hidden_size, inter = c.intermediate_size;
  const int64_t q = int64_t(c.num_heads) * c.head_dim, kv = int64_t(c.num_kv_heads) * c.head_dim;
  const std::string l = std::to_string(s.layer);
  const std::string qkv =
      gguf ? "blk." + l + ".attn_qkv.weight" : "model.layers." + l + ".self_attn.qkv_proj.weight";
  const std::string gate_up =
      gguf ? "blk." + l + ".ffn_up.weight" : "model.layers." + l + ".mlp.gate_up_proj.weight";
  switch (s.role) {
    case WeightRole::wq:
      return RowBlock{qkv, {q + 2 * kv, h}, 0};
    case WeightRole::wk:
      return RowBlock{qkv, {q + 2 * kv, h}, q};
    case WeightRole::wv:
      return RowBlock{qkv, {q + 2 * kv, h}, q + kv};
    case WeightRole::w_gate:  // gate first, then up (transformers' chunk(2))
      return RowBlock{gate_up, {2 * inter, h}, 0};
    case WeightRole::w_up:
      return RowBlock{gate_up, {2 * inter, h}, inter};
    default:
      return std::nullopt;
  }
}

// Reads every slot of the config from a format: `shape_of(name)` gives a tensor's shape or
// nullopt, `load(name, slot, block)` the slot's tensor (shape checked; `block`, when not null,
// says which rows of the fused tensor `name` it is), in whatever DType the options ask. `gguf`
// picks the fused tensors' names (Phi-3) of that format.
template <typename ShapeOf, typename Load>
Result<ModelWeights> read_weights(const ModelConfig& c, const std::string& where,
                                  std::string (*name_of)(const ModelConfig&, const WeightSlot&),
                                  ShapeOf shape_of, Load load, const LoadProgress& progress,
                                  bool gguf) {
  ModelWeights w;
  const int64_t total = progress ? weight_elements(c) : 0;
  int64_t done = 0;
  INVAR_RETURN_IF_ERROR(for_each_weight_slot(c, w, [&](const WeightSlot& s) -> Status {
    const std::optional<RowBlock> block = fused_rows(c, s, gguf);
    const std::string name = block ? block->name : name_of(c, s);
    const std::vector<int64_t>& expected = block ? block->file_shape : s.shape;
    std::optional<std::vector<int64_t>> shape = shape_of(name);
    if (!shape) {
      return Status::errorf(
          "{}: tensor '{}' is missing (a {} model with this config needs it, "
          "shape {})",
          where, name, arch_name(c.arch), shape_string(expected));
    }
    if (*shape != expected) {
      return Status::errorf("{}: tensor '{}': shape {} does not match the config (expected {})",
                            where, name, shape_string(*shape), shape_string(expected));
    }
    INVAR_ASSIGN_OR_RETURN(*s.tensor, load(name, s, block ? &*block : nullptr));
    INVAR_RETURN_IF_ERROR(check_finite(*s.tensor, where, name));
    if (progress) progress(done += s.tensor->numel(), total);
    return {};
  }));
  return w;
}

// An F8_E4M3 matrix times its block scales (`<name>_scale_inv`, Fp8Quantization), multiplied in
// f32 as transformers' dequantization does, into `out` as f32 or bf16; the codes and scales
// themselves into `blocks`.
Status read_fp8_block_scaled(const SafetensorsSet& set, const Fp8Quantization& fp8,
                             const std::string& name, const std::vector<int64_t>& shape,
                             DType dtype, uint8_t* out, Fp8Blocks& blocks) {
  if (!fp8.enabled()) {
    return Status::errorf(
        "{}: tensor '{}' is F8_E4M3 but config.json has no fp8 quantization_config (its block "
        "scales are needed to read it)",
        set.where(), name);
  }
  if (shape.size() != 2) {
    return Status::errorf("{}: tensor '{}' is F8_E4M3 with shape {} (only matrices may be fp8)",
                          set.where(), name, shape_string(shape));
  }
  const int64_t rows = shape[0], cols = shape[1];
  const int64_t br = fp8.block_rows, bc = fp8.block_cols;
  const std::vector<int64_t> grid = {(rows + br - 1) / br, (cols + bc - 1) / bc};
  const std::string scale_name = name + "_scale_inv";
  const SafetensorsTensorInfo* scale = set.find_tensor(scale_name);
  if (!scale) {
    return Status::errorf("{}: tensor '{}' is missing (the block scales of fp8 '{}', shape {})",
                          set.where(), scale_name, name, shape_string(grid));
  }
  if (scale->shape != grid) {
    return Status::errorf(
        "{}: tensor '{}': shape {} does not match {} in blocks of {}x{} (expected {})", set.where(),
        scale_name, shape_string(scale->shape), shape_string(shape), br, bc, shape_string(grid));
  }
  std::vector<float> w(size_t(rows * cols)), sc(size_t(grid[0] * grid[1]));
  INVAR_RETURN_IF_ERROR(set.read_tensor(name, DType::f32, w.data()));
  INVAR_RETURN_IF_ERROR(set.read_tensor(scale_name, DType::f32, sc.data()));
  // Every E4M3 value is exact in f32, so encoding it again gives back the stored code.
  blocks.block_rows = br;
  blocks.block_cols = bc;
  blocks.codes.resize(w.size());
  for (size_t i = 0; i < w.size(); ++i) blocks.codes[i] = f32_to_fp8_e4m3(w[i]);
  blocks.scales = sc;
  for (int64_t i = 0; i < rows; ++i) {
    const float* srow = sc.data() + (i / br) * grid[1];
    float* wrow = w.data() + i * cols;
    for (int64_t j = 0; j < cols; ++j) wrow[j] *= srow[j / bc];
  }
  if (dtype == DType::f32) {
    std::memcpy(out, w.data(), w.size() * sizeof(float));
  } else {
    uint16_t* o = reinterpret_cast<uint16_t*>(out);
    for (size_t i = 0; i < w.size(); ++i) o[i] = f32_to_bf16(w[i]);
  }
  return {};
}

// The storage of a slot read by conversion: the requested matrix type, f32 for vectors.
DType converted_dtype(const WeightSlot& s, const LoadOptions& options) {
  return s.matrix ? options.weight_dtype.value_or(DType::f32) : DType::f32;
}

// Gemma's checkpoints store each RMSNorm weight as w and scale by (1 + w), computed in f32
// (transformers' Gemma2RMSNorm). Adding the 1 here, in f32, gives the same factors, so the
// forward pass keeps one norm. (GGUF converters already store 1 + w.)
void fold_norm_offset(LoadedModel& m) {
  Status st = for_each_weight_slot(m.config, m.weights, [](const WeightSlot& s) -> Status {
    if (!is_norm_role(s.role)) return {};
    float* w = s.tensor->f32();
    for (int64_t i = 0; i < s.tensor->numel(); ++i) w[i] = 1.0f + w[i];
    return {};
  });
  (void)st;  // the visitor never fails
}

}  // namespace

Result<LoadedModel> load_gguf_model(const std::string& path, const LoadOptions& options) {
  INVAR_ASSIGN_OR_RETURN(GgufFile f, GgufFile::open(path));
  LoadedModel m;
  m.source = path;
  INVAR_ASSIGN_OR_RETURN(m.config, config_from_gguf(f));
  auto shape_of = [&](const std::string& name) -> std::optional<std::vector<int64_t>> {
    const GgufTensorInfo* t = f.find_tensor(name);
    if (!t) return std::nullopt;
    // qwen2moe's shared-expert gate may be written [H] (llama.cpp reads it so) or [1, H]; the
    // bytes are the same row.
    const std::string shexp = "ffn_gate_inp_shexp.weight";
    if (t->shape.size() == 1 && name.size() > shexp.size() &&
        name.compare(name.size() - shexp.size(), shexp.size(), shexp) == 0)
      return std::vector<int64_t>{1, t->shape[0]};
    return t->shape;
  };
  auto load = [&](const std::string& name, const WeightSlot& s,
                  const RowBlock* block) -> Result<HostTensor> {
    const GgufTensorInfo& t = *f.find_tensor(name);
    HostTensor h;
    const int64_t row0 = block ? block->row0 : 0;
    if (s.matrix && !options.weight_dtype) {  // as stored, in place in the mapping
      INVAR_ASSIGN_OR_RETURN(h.dtype, f.stored_dtype(t));
      INVAR_ASSIGN_OR_RETURN(const uint8_t* data, f.tensor_data(t));
      h.shape = s.shape;
      // A fused tensor's slot is whole rows of it (packed rows hold whole blocks).
      const size_t row_bytes = dtype_row_bytes(h.dtype, s.shape[1]);
      h.bytes = HostBytes::view(f.mapping(), data + size_t(row0) * row_bytes,
                                size_t(s.shape[0]) * row_bytes);
      return h;
    }
    h = HostTensor::zeros(converted_dtype(s, options), s.shape);
    if (block)
      INVAR_RETURN_IF_ERROR(f.read_rows(t, row0, s.shape[0], h.dtype, h.bytes.data()));
    else
      INVAR_RETURN_IF_ERROR(f.read_tensor(t, h.dtype, h.bytes.data()));
    return h;
  };
  INVAR_ASSIGN_OR_RETURN(m.weights, read_weights(m.config, path, gguf_tensor_name, shape_of, load,
                                                 options.progress, true));
  return m;
}

Result<LoadedModel> load_hf_model(const std::string& dir, const std::string& single_file,
                                  const LoadOptions& options) {
  LoadedModel m;
  m.source = single_file.empty() ? dir : single_file;
  INVAR_ASSIGN_OR_RETURN(m.config, read_hf_config(dir));
  INVAR_ASSIGN_OR_RETURN(SafetensorsSet set, single_file.empty()
                                                 ? SafetensorsSet::open_dir(dir)
                                                 : SafetensorsSet::open_file(single_file));
  auto shape_of = [&](const std::string& name) -> std::optional<std::vector<int64_t>> {
    const SafetensorsTensorInfo* t = set.find_tensor(name);
    if (!t) return std::nullopt;
    return t->shape;
  };
  HostTensor fused;  // the last fused tensor read, kept for its other slots
  std::string fused_name;
  // FP8 tensors come dequantized (f32 unless --weight-dtype bf16); the others as converted.
  // `fp8`: where an FP8 tensor's codes and scales go (nullptr: dropped).
  auto read = [&](const std::string& name, const std::vector<int64_t>& shape, DType dtype,
                  uint8_t* out, std::shared_ptr<const Fp8Blocks>* fp8) -> Status {
    if (set.find_tensor(name)->dtype != "F8_E4M3") return set.read_tensor(name, dtype, out);
    auto blocks = std::make_shared<Fp8Blocks>();
    INVAR_RETURN_IF_ERROR(read_fp8_block_scaled(set, m.config.fp8, name, shape, dtype, out, *blocks));
    if (fp8) *fp8 = std::move(blocks);
    return {};
  };
  auto load = [&](const std::string& name, const WeightSlot& s,
                  const RowBlock* block) -> Result<HostTensor> {
    DType dtype = converted_dtype(s, options);
    if (s.matrix && !options.weight_dtype) {  // the stored float type (copied; FP8: f32)
      const std::string& stored = set.find_tensor(name)->dtype;
      dtype = stored == "BF16" ? DType::bf16 : stored == "F16" ? DType::f16 : DType::f32;
    }
    HostTensor h = HostTensor::zeros(dtype, s.shape);
    if (!block) {
      INVAR_RETURN_IF_ERROR(read(name, s.shape, dtype, h.bytes.data(), &h.fp8));
      return h;
    }
    // A slice of a fused tensor keeps only its values: its FP8 blocks could straddle slots.
    if (fused_name != name || fused.dtype != dtype) {
      fused = HostTensor::zeros(dtype, block->file_shape);
      INVAR_RETURN_IF_ERROR(read(name, block->file_shape, dtype, fused.bytes.data(), nullptr));
      fused_name = name;
    }
    const size_t row_bytes = dtype_row_bytes(dtype, s.shape[1]);
    std::memcpy(h.bytes.data(), fused.bytes.data() + size_t(block->row0) * row_bytes,
                size_t(s.shape[0]) * row_bytes);
    return h;
  };
  INVAR_ASSIGN_OR_RETURN(m.weights, read_weights(m.config, set.where(), hf_tensor_name, shape_of,
                                                 load, options.progress, false));
  if (m.config.arch == Arch::gemma2 || m.config.arch == Arch::gemma3) fold_norm_offset(m);
  return m;
}

}  // namespace invar::model
