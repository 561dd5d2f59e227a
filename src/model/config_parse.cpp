#include "model/config_parse.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <tuple>
#include <utility>

#include "core/json_depth.h"

namespace invar::model {
namespace {

using json = nlohmann::json;

// Typed access to a config.json object; errors name the file and the key.
class HfKeys {
 public:
  HfKeys(const json& j, const std::string& where) : j_(j), where_(where) {}

  bool has(const char* key) const { return j_.contains(key) && !j_[key].is_null(); }

  Result<int> get_int(const char* key) const {
    if (!has(key)) {
      return Status::errorf("{}: key '{}' is missing (expected an integer)", where_, key);
    }
    return int_of(j_[key], key);
  }
  Result<int> get_int(const char* key, int fallback) const {
    return has(key) ? int_of(j_[key], key) : Result<int>(fallback);
  }
  Result<float> get_float(const char* key, float fallback) const {
    if (!has(key)) return fallback;
    const json& v = j_[key];
    if (!v.is_number()) {
      return Status::errorf("{}: key '{}' is {} (expected a number)", where_, key, v.dump());
    }
    return float(v.get<double>());
  }
  Result<bool> get_bool(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    const json& v = j_[key];
    if (!v.is_boolean()) {
      return Status::errorf("{}: key '{}' is {} (expected true or false)", where_, key, v.dump());
    }
    return v.get<bool>();
  }

 private:
  Result<int> int_of(const json& v, const char* key) const {
    if (!v.is_number_integer() || v.get<int64_t>() < std::numeric_limits<int>::min() ||
        v.get<int64_t>() > std::numeric_limits<int>::max()) {
      return Status::errorf("{}: key '{}' is {} (expected an integer)", where_, key, v.dump());
    }
    return int(v.get<int64_t>());
  }

  const json& j_;
  const std::string& where_;
};

// `rope_scaling` (transformers 4) or `rope_parameters` (transformers 5).
Status parse_hf_rope_scaling(const json& r, const std::string& where, RopeScaling* out) {
  const std::string w = where + " rope_scaling";
  if (!r.is_object()) return Status::errorf("{}: expected an object, got {}", w, r.dump());
  HfKeys k(r, w);
  std::string type = "default";
  for (const char* key : {"rope_type", "type"}) {
    if (k.has(key)) {
      if (!r[key].is_string()) {
        return Status::errorf("{}: key '{}' is {} (expected a string)", w, key, r[key].dump());
      }
      type = r[key].get<std::string>();
      break;
    }
  }
  if (type == "default") {
    out->kind = RopeScaling::Kind::none;
  } else if (type == "linear") {
    out->kind = RopeScaling::Kind::linear;
    INVAR_ASSIGN_OR_RETURN(out->factor, k.get_float("factor", 1.0f));
  } else if (type == "llama3") {
    out->kind = RopeScaling::Kind::llama3;
    INVAR_ASSIGN_OR_RETURN(out->factor, k.get_float("factor", 8.0f));
    INVAR_ASSIGN_OR_RETURN(out->low_freq_factor, k.get_float("low_freq_factor", 1.0f));
    INVAR_ASSIGN_OR_RETURN(out->high_freq_factor, k.get_float("high_freq_factor", 4.0f));
    INVAR_ASSIGN_OR_RETURN(out->original_max_position,
                           k.get_int("original_max_position_embeddings"));
  } else if (type == "longrope" || type == "su") {
    out->kind = RopeScaling::Kind::longrope;
    for (auto [key, dst] : {std::pair{"short_factor", &out->short_factor},
                            std::pair{"long_factor", &out->long_factor}}) {
      if (!k.has(key) || !r[key].is_array()) {
        return Status::errorf("{}: key '{}' is missing (expected a list of numbers)", w, key);
      }
      dst->clear();
      for (const json& v : r[key]) {
        if (!v.is_number()) {
          return Status::errorf("{}: key '{}' holds {} (expected numbers)", w, key, v.dump());
        }
        dst->push_back(float(v.get<double>()));
      }
    }
    // factor and attention_factor: optional; parse_hf_config fills in the defaults, which
    // need max_position_embeddings (factor 0 = not given, attention_factor 0 = derive it).
    INVAR_ASSIGN_OR_RETURN(out->factor, k.get_float("factor", 0.0f));
    INVAR_ASSIGN_OR_RETURN(out->attention_factor, k.get_float("attention_factor", 0.0f));
    INVAR_ASSIGN_OR_RETURN(out->original_max_position,
                           k.get_int("original_max_position_embeddings", 0));
  } else if (type == "yarn") {
    out->kind = RopeScaling::Kind::yarn;
    // factor, original_max_position_embeddings and attention_factor: 0 = not given (finish_yarn
    // fills them in from the top level, as transformers does).
    INVAR_ASSIGN_OR_RETURN(out->factor, k.get_float("factor", 0.0f));
    INVAR_ASSIGN_OR_RETURN(out->original_max_position,
                           k.get_int("original_max_position_embeddings", 0));
    INVAR_ASSIGN_OR_RETURN(out->attention_factor, k.get_float("attention_factor", 0.0f));
    INVAR_ASSIGN_OR_RETURN(out->mscale, k.get_float("mscale", 0.0f));
    INVAR_ASSIGN_OR_RETURN(out->mscale_all_dim, k.get_float("mscale_all_dim", 0.0f));
    // transformers: `beta_fast or 32`, `beta_slow or 1` (a 0 also takes the default).
    INVAR_ASSIGN_OR_RETURN(out->beta_fast, k.get_float("beta_fast", 32.0f));
    INVAR_ASSIGN_OR_RETURN(out->beta_slow, k.get_float("beta_slow", 1.0f));
    if (out->beta_fast == 0.0f) out->beta_fast = 32.0f;
    if (out->beta_slow == 0.0f) out->beta_slow = 1.0f;
    INVAR_ASSIGN_OR_RETURN(out->truncate, k.get_bool("truncate", true));
  } else {
    return Status::errorf(
        "{}: rope type '{}' is not supported (supported: default, linear, "
        "llama3, longrope, yarn)",
        w, type);
  }
  return {};
}

// transformers' yarn defaults: original_max_position_embeddings from the top level, the rope
// dict or else max_position_embeddings; factor = max_position / original when not given;
// attention_factor = 0.1 ln(factor) + 1 (or the mscale / mscale_all_dim ratio of that form when
// both are given), 1 for factor <= 1.
Status finish_yarn(const HfKeys& k, int max_position, RopeScaling* s) {
  // transformers lets a top-level value win over the rope dict's (standardize_rope_params).
  if (k.has("original_max_position_embeddings")) {
    INVAR_ASSIGN_OR_RETURN(s->original_max_position, k.get_int("original_max_position_embeddings"));
  } else if (s->original_max_position <= 0) {
    s->original_max_position = max_position;
  }
  if (s->factor <= 0.0f) s->factor = float(double(max_position) / s->original_max_position);
  if (s->attention_factor <= 0.0f) {
    auto mscale = [&](double m) {
      return s->factor <= 1.0f ? 1.0 : 0.1 * m * std::log(double(s->factor)) + 1.0;
    };
    s->attention_factor = s->mscale > 0.0f && s->mscale_all_dim > 0.0f
                              ? float(mscale(s->mscale) / mscale(s->mscale_all_dim))
                              : float(mscale(1.0));
  }
  return {};
}

// transformers' longrope defaults: original_max_position_embeddings from the top level when the
// rope dict lacks it, factor = max_position / original, attention_factor =
// sqrt(1 + ln(factor) / ln(original)) when factor > 1, else 1.
Status finish_longrope(const HfKeys& k, int max_position, const std::string& where,
                       RopeScaling* s) {
  if (s->original_max_position <= 0) {
    INVAR_ASSIGN_OR_RETURN(s->original_max_position,
                           k.get_int("original_max_position_embeddings", 0));
  }
  if (s->original_max_position <= 0) {
    return Status::errorf(
        "{}: longrope scaling needs 'original_max_position_embeddings' (top level or in "
        "rope_scaling)",
        where);
  }
  if (s->factor <= 0.0f) s->factor = float(double(max_position) / s->original_max_position);
  if (s->attention_factor <= 0.0f) {
    s->attention_factor =
        s->factor <= 1.0f ? 1.0f
                          : float(std::sqrt(1.0 + std::log(double(s->factor)) /
                                                      std::log(double(s->original_max_position))));
  }
  return {};
}

// Qwen3-MoE's, Qwen2-MoE's and Mixtral's expert keys (MoeConfig).
Status parse_hf_moe(const json& j, const HfKeys& k, Arch arch, int intermediate_size,
                    const std::string& where, MoeConfig* out) {
  if (arch == Arch::mixtral) {
    INVAR_ASSIGN_OR_RETURN(out->num_experts, k.get_int("num_local_experts", 8));
    INVAR_ASSIGN_OR_RETURN(out->experts_per_token, k.get_int("num_experts_per_tok", 2));
    out->expert_intermediate_size = intermediate_size;  // every layer is sparse
    out->normalize_top_k = true;
    return {};
  }
  INVAR_ASSIGN_OR_RETURN(out->num_experts, k.get_int("num_experts"));
  INVAR_ASSIGN_OR_RETURN(out->experts_per_token, k.get_int("num_experts_per_tok"));
  INVAR_ASSIGN_OR_RETURN(out->expert_intermediate_size, k.get_int("moe_intermediate_size"));
  INVAR_ASSIGN_OR_RETURN(out->normalize_top_k, k.get_bool("norm_topk_prob", false));
  INVAR_ASSIGN_OR_RETURN(out->sparse_step, k.get_int("decoder_sparse_step", 1));
  if (k.has("mlp_only_layers")) {
    const json& v = j["mlp_only_layers"];
    if (!v.is_array()) {
      return Status::errorf("{}: key 'mlp_only_layers' is {} (expected a list of layer indices)",
                            where, v.dump());
    }
    for (const json& e : v) {
      if (!e.is_number_integer() || e.get<int64_t>() < 0 || e.get<int64_t>() > (1 << 20)) {
        return Status::errorf("{}: key 'mlp_only_layers' holds {} (expected layer indices)", where,
                              e.dump());
      }
      out->dense_layers.push_back(int(e.get<int64_t>()));
    }
  }
  if (arch == Arch::qwen2_moe) {
    INVAR_ASSIGN_OR_RETURN(out->shared_intermediate_size,
                           k.get_int("shared_expert_intermediate_size", 5632));
  } else if (k.has("shared_expert_intermediate_size")) {
    return Status::errorf(
        "{}: shared experts ('shared_expert_intermediate_size') are not supported for {}", where,
        arch_name(arch));
  }
  return {};
}

// `quantization_config`: only "fp8" with 128x128-style block scales (Fp8Quantization).
Status parse_hf_quantization(const json& q, const std::string& where, Fp8Quantization* out) {
  const std::string w = where + " quantization_config";
  if (!q.is_object()) return Status::errorf("{}: expected an object, got {}", w, q.dump());
  const std::string method = q.contains("quant_method") && q["quant_method"].is_string()
                                 ? q["quant_method"].get<std::string>()
                                 : "";
  if (method != "fp8") {
    return Status::errorf(
        "{}: quant_method {} is not supported (supported: \"fp8\" with weight_block_size)", w,
        q.contains("quant_method") ? q["quant_method"].dump() : "(missing)");
  }
  if (q.contains("fmt") && q["fmt"] != "e4m3") {
    return Status::errorf("{}: fmt {} is not supported (expected \"e4m3\")", w, q["fmt"].dump());
  }
  const json* b = q.contains("weight_block_size") ? &q["weight_block_size"] : nullptr;
  if (!b || !b->is_array() || b->size() != 2 || !(*b)[0].is_number_integer() ||
      !(*b)[1].is_number_integer() || (*b)[0].get<int64_t>() <= 0 || (*b)[1].get<int64_t>() <= 0 ||
      (*b)[0].get<int64_t>() > (1 << 20) || (*b)[1].get<int64_t>() > (1 << 20)) {
    return Status::errorf(
        "{}: weight_block_size is {} (expected two positive integers, e.g. [128, 128]; "
        "per-tensor fp8 scales are not supported)",
        w, b ? b->dump() : "missing");
  }
  out->block_rows = int((*b)[0].get<int64_t>());
  out->block_cols = int((*b)[1].get<int64_t>());
  return {};
}

Status reject_if_true(const HfKeys& k, const char* key, const std::string& where, const char* why) {
  INVAR_ASSIGN_OR_RETURN(bool v, k.get_bool(key, false));
  if (v) return Status::errorf("{}: '{}: true' is not supported ({})", where, key, why);
  return {};
}

// Gemma 3's two ropes. transformers 5 writes rope_parameters = {"sliding_attention": {...},
// "full_attention": {...}}; the released configs write rope_theta (global, default 1e6),
// rope_local_base_freq (local, default 1e4) and a rope_scaling that applies to the full layers
// only.
Status parse_gemma3_rope(const HfKeys& k, const json* rope_params, const std::string& where,
                         ModelConfig* c) {
  const bool per_layer_type =
      rope_params && rope_params->is_object() &&
      (rope_params->contains("full_attention") || rope_params->contains("sliding_attention"));
  c->rope_theta = 1000000.0f;
  c->local_rope_theta = 10000.0f;
  if (per_layer_type) {
    for (auto [key, theta, scaling] :
         {std::tuple{"full_attention", &c->rope_theta, &c->rope_scaling},
          std::tuple{"sliding_attention", &c->local_rope_theta, &c->local_rope_scaling}}) {
      if (!rope_params->contains(key) || (*rope_params)[key].is_null()) continue;
      const json& r = (*rope_params)[key];
      INVAR_RETURN_IF_ERROR(parse_hf_rope_scaling(r, where + " " + key, scaling));
      INVAR_ASSIGN_OR_RETURN(*theta, HfKeys(r, where).get_float("rope_theta", *theta));
    }
  } else {
    INVAR_ASSIGN_OR_RETURN(c->rope_theta, k.get_float("rope_theta", c->rope_theta));
    INVAR_ASSIGN_OR_RETURN(c->local_rope_theta,
                           k.get_float("rope_local_base_freq", c->local_rope_theta));
    if (rope_params)
      INVAR_RETURN_IF_ERROR(parse_hf_rope_scaling(*rope_params, where, &c->rope_scaling));
  }
  const RopeScaling::Kind local = c->local_rope_scaling.kind;
  if (local != RopeScaling::Kind::none && local != RopeScaling::Kind::linear)
    return Status::errorf(
        "{}: rope scaling on the sliding layers must be none or linear (the local table has "
        "no per-position or attention-factor handling)",
        where);
  return {};
}

// The Gemma 2 / 3 fields: gelu-tanh MLP, the scaled embedding, query_pre_attn_scalar, soft-caps,
// the post-attention / post-feedforward norms and which layers slide (layer_types, or every
// sliding_window_pattern-th layer full: Gemma 2 alternates, Gemma 3 defaults to 6).
Status parse_gemma_fields(const json& j, const HfKeys& k, const std::string& where,
                          ModelConfig* c) {
  const bool gemma2 = c->arch == Arch::gemma2;
  const char* act_key = k.has("hidden_activation") ? "hidden_activation" : "hidden_act";
  if (k.has(act_key) && j[act_key] != "gelu_pytorch_tanh")
    return Status::errorf("{}: {} {} is not supported (expected \"gelu_pytorch_tanh\")", where,
                          act_key, j[act_key].dump());
  c->activation = Activation::gelu_tanh;
  c->post_norms = true;
  INVAR_RETURN_IF_ERROR(
      reject_if_true(k, "use_bidirectional_attention", where, "bidirectional attention"));

  // transformers multiplies the embeddings by sqrt(hidden_size) rounded to the weights' dtype,
  // the one the model runs in: the config's torch_dtype (transformers 5: dtype).
  const double scale = std::sqrt(double(c->hidden_size));
  std::string dtype = "float32";
  for (const char* key : {"dtype", "torch_dtype"})
    if (k.has(key) && j[key].is_string()) {
      dtype = j[key].get<std::string>();
      break;
    }
  c->embedding_scale = dtype == "bfloat16"  ? bf16_to_f32(f32_to_bf16(float(scale)))
                       : dtype == "float16" ? f16_to_f32(f32_to_f16(float(scale)))
                                            : float(scale);

  INVAR_ASSIGN_OR_RETURN(float pre_attn, k.get_float("query_pre_attn_scalar", 256.0f));
  if (!(pre_attn > 0.0f))
    return Status::errorf("{}: query_pre_attn_scalar is {} (expected a positive number)", where,
                          pre_attn);
  c->attention_scale = float(1.0 / std::sqrt(double(pre_attn)));
  // Absent keys take transformers' defaults; null turns the cap off. Gemma 3's attention
  // ignores attn_logit_softcapping (transformers passes it no softcap), so it does too.
  auto cap = [&](const char* key, float fallback) -> Result<float> {
    if (!j.contains(key)) return fallback;
    return k.get_float(key, 0.0f);
  };
  if (gemma2) {
    INVAR_ASSIGN_OR_RETURN(c->attn_softcap, cap("attn_logit_softcapping", 50.0f));
  }
  INVAR_ASSIGN_OR_RETURN(c->final_softcap, cap("final_logit_softcapping", gemma2 ? 30.0f : 0.0f));

  // The sliding window: absent means transformers' default 4096, null no window at all.
  if (!j.contains("sliding_window")) {
    c->sliding_window = 4096;
  } else if (!j["sliding_window"].is_null()) {
    INVAR_ASSIGN_OR_RETURN(c->sliding_window, k.get_int("sliding_window"));
    if (c->sliding_window <= 0)
      return Status::errorf("{}: key 'sliding_window' is {} (expected a positive integer or null)",
                            where, c->sliding_window);
  }
  c->sliding_layers.assign(size_t(std::max(0, c->num_layers)), 0);
  if (k.has("layer_types")) {
    const json& types = j["layer_types"];
    if (!types.is_array() || types.size() != c->sliding_layers.size())
      return Status::errorf("{}: key 'layer_types' is {} (expected {} layer type names)", where,
                            types.dump(), c->num_layers);
    for (size_t l = 0; l < types.size(); ++l) {
      if (types[l] != "sliding_attention" && types[l] != "full_attention")
        return Status::errorf(
            "{}: layer_types[{}] is {} (expected \"sliding_attention\" or \"full_attention\")",
            where, l, types[l].dump());
      c->sliding_layers[l] = types[l] == "sliding_attention";
    }
  } else {
    INVAR_ASSIGN_OR_RETURN(int pattern, k.get_int("sliding_window_pattern", gemma2 ? 2 : 6));
    if (pattern <= 0)
      return Status::errorf("{}: sliding_window_pattern is {} (expected a positive integer)", where,
                            pattern);
    for (size_t l = 0; l < c->sliding_layers.size(); ++l)
      c->sliding_layers[l] = (l + 1) % size_t(pattern) != 0;
  }
  return {};
}

// The Gemma fields of a llama.cpp GGUF file. Its converter stores every norm weight as 1 + w
// already, so nothing is folded at load. What the file does not say, llama.cpp's loader fixes
// and so does this: sqrt(hidden) embedding scale in f32; sliding layers every 2nd (Gemma 2) or
// all but every 6th (Gemma 3, unless `attention.sliding_window_pattern` says otherwise); Gemma
// 3's local rope base 10000; the attention scale 1 / sqrt(hidden / heads) for the 27B models
// (46 or 62 layers), 1 / sqrt(head_dim) for the others, unless `attention.scale` is given.
Status gemma_from_gguf(const GgufFile& f, const std::string& p, ModelConfig* c) {
  const bool gemma2 = c->arch == Arch::gemma2;
  auto optional_float = [&](const std::string& key, float fallback) -> Result<float> {
    if (!f.has(p + key)) return fallback;
    INVAR_ASSIGN_OR_RETURN(double v, f.get_float(p + key));
    return float(v);
  };
  auto optional_int = [&](const std::string& key, int fallback) -> Result<int> {
    if (!f.has(p + key)) return fallback;
    INVAR_ASSIGN_OR_RETURN(int64_t v, f.get_int(p + key));
    if (v <= 0 || v > std::numeric_limits<int>::max())
      return Status::errorf("{}: metadata key '{}' is {} (expected a positive integer)", f.path(),
                            p + key, v);
    return int(v);
  };
  c->activation = Activation::gelu_tanh;
  c->post_norms = true;
  c->embedding_scale = float(std::sqrt(double(c->hidden_size)));
  const bool is_27b = c->num_layers == (gemma2 ? 46 : 62);
  const double pre_attn = is_27b ? double(c->hidden_size / c->num_heads) : double(c->head_dim);
  INVAR_ASSIGN_OR_RETURN(c->attention_scale,
                         optional_float("attention.scale", float(1.0 / std::sqrt(pre_attn))));
  if (gemma2) {
    INVAR_ASSIGN_OR_RETURN(c->attn_softcap, optional_float("attn_logit_softcapping", 50.0f));
  }
  INVAR_ASSIGN_OR_RETURN(c->final_softcap,
                         optional_float("final_logit_softcapping", gemma2 ? 30.0f : 0.0f));
  INVAR_ASSIGN_OR_RETURN(c->sliding_window, optional_int("attention.sliding_window", 4096));
  INVAR_ASSIGN_OR_RETURN(int pattern,
                         optional_int("attention.sliding_window_pattern", gemma2 ? 2 : 6));
  c->sliding_layers.assign(size_t(c->num_layers), 0);
  for (size_t l = 0; l < c->sliding_layers.size(); ++l)
    c->sliding_layers[l] = (l + 1) % size_t(pattern) != 0;
  if (!gemma2) c->local_rope_theta = 10000.0f;
  return {};
}

// Phi-3's longrope in a llama.cpp GGUF file: the tensors rope_factors_short.weight and
// rope_factors_long.weight ([rotary dims / 2] each), rope.scaling.original_context_length and
// rope.scaling.attn_factor (derived as for config.json when absent); the optional
// attention.sliding_window (0: none). The long factors apply per token from the original
// context on (llama.cpp picks one table per context size; the two agree below it).
Status phi3_from_gguf(const GgufFile& f, const std::string& p, ModelConfig* c) {
  const std::string& where = f.path();
  if (f.has(p + "attention.sliding_window")) {
    INVAR_ASSIGN_OR_RETURN(int64_t w, f.get_int(p + "attention.sliding_window"));
    if (w < 0 || w > std::numeric_limits<int>::max())
      return Status::errorf("{}: {}attention.sliding_window is {} (expected >= 0)", where, p, w);
    c->sliding_window = int(w);
  }
  const GgufTensorInfo* shorts = f.find_tensor("rope_factors_short.weight");
  const GgufTensorInfo* longs = f.find_tensor("rope_factors_long.weight");
  if (!shorts && !longs) return {};
  const int64_t half = rope_dims(*c) / 2;
  RopeScaling& s = c->rope_scaling;
  for (auto [t, name, dst] : {std::tuple{shorts, "rope_factors_short.weight", &s.short_factor},
                              std::tuple{longs, "rope_factors_long.weight", &s.long_factor}}) {
    if (!t || t->shape != std::vector<int64_t>{half})
      return Status::errorf("{}: tensor '{}' is missing or not [{}] (longrope needs both tables)",
                            where, name, half);
    dst->resize(size_t(half));
    INVAR_RETURN_IF_ERROR(f.read_tensor(*t, DType::f32, dst->data()));
  }
  s.kind = RopeScaling::Kind::longrope;
  INVAR_ASSIGN_OR_RETURN(int64_t orig, f.get_int(p + "rope.scaling.original_context_length"));
  if (orig <= 0 || orig > std::numeric_limits<int>::max())
    return Status::errorf("{}: {}rope.scaling.original_context_length is {} (expected > 0)", where,
                          p, orig);
  s.original_max_position = int(orig);
  s.factor = float(double(c->max_position) / double(orig));
  s.attention_factor =
      s.factor <= 1.0f
          ? 1.0f
          : float(std::sqrt(1.0 + std::log(double(s.factor)) / std::log(double(orig))));
  if (f.has(p + "rope.scaling.attn_factor")) {
    INVAR_ASSIGN_OR_RETURN(double a, f.get_float(p + "rope.scaling.attn_factor"));
    s.attention_factor = float(a);
  }
  return {};
}

// The experts of a GGUF MoE file (llama.cpp's keys): `expert_count`, `expert_used_count`,
// `expert_feed_forward_length` (Mixtral, written as arch llama: every expert has
// feed_forward_length), `expert_shared_feed_forward_length` (qwen2moe's shared expert) and
// `expert_weights_norm` (absent: Mixtral and qwen3moe renormalise, qwen2moe does not, as
// llama.cpp's graphs for them do). A layer without a router tensor `blk.N.ffn_gate_inp` keeps a
// dense MLP (Qwen3-MoE's mlp_only_layers, which llama.cpp's converter cannot write).
Status moe_from_gguf(const GgufFile& f, const std::string& p, ModelConfig* c) {
  const std::string& where = f.path();
  int64_t experts = 0;
  if (f.has(p + "expert_count")) {
    INVAR_ASSIGN_OR_RETURN(experts, f.get_int(p + "expert_count"));
  }
  if (experts <= 0) {
    if (c->arch == Arch::qwen3_moe || c->arch == Arch::qwen2_moe)
      return Status::errorf("{}: {}expert_count is missing or 0 (a {} file needs experts)", where,
                            p, arch_name(c->arch));
    return {};
  }
  if (c->arch == Arch::llama) {
    c->arch = Arch::mixtral;  // llama.cpp writes Mixtral as llama with experts
  } else if (c->arch != Arch::qwen3_moe && c->arch != Arch::qwen2_moe) {
    return Status::errorf("{}: {}expert_count is {}: mixture-of-experts {} files are not supported",
                          where, p, experts, arch_name(c->arch));
  }
  auto positive = [&](const std::string& key, int64_t limit) -> Result<int> {
    INVAR_ASSIGN_OR_RETURN(int64_t v, f.get_int(p + key));
    if (v <= 0 || v > limit)
      return Status::errorf("{}: metadata key '{}' is {} (expected 1 to {})", where, p + key, v,
                            limit);
    return int(v);
  };
  MoeConfig& m = c->moe;
  INVAR_ASSIGN_OR_RETURN(m.num_experts, positive("expert_count", 1 << 16));
  INVAR_ASSIGN_OR_RETURN(m.experts_per_token, positive("expert_used_count", m.num_experts));
  m.expert_intermediate_size = c->intermediate_size;
  if (f.has(p + "expert_feed_forward_length")) {
    INVAR_ASSIGN_OR_RETURN(m.expert_intermediate_size,
                           positive("expert_feed_forward_length", std::numeric_limits<int>::max()));
  } else if (c->arch != Arch::mixtral) {
    return Status::errorf("{}: metadata key '{}expert_feed_forward_length' is missing", where, p);
  }
  if (c->arch == Arch::qwen2_moe) {
    INVAR_ASSIGN_OR_RETURN(m.shared_intermediate_size,
                           positive("expert_shared_feed_forward_length",
                                    std::numeric_limits<int>::max()));
  }
  m.normalize_top_k = c->arch != Arch::qwen2_moe;
  if (f.has(p + "expert_weights_norm")) {
    auto it = f.metadata().find(p + "expert_weights_norm");
    const bool* b = std::get_if<bool>(&it->second.v);
    if (!b)
      return Status::errorf("{}: metadata key '{}expert_weights_norm' is not a bool", where, p);
    m.normalize_top_k = *b;
  }
  m.sparse_step = 1;
  if (size_t(c->num_layers) > f.tensors().size())  // before a list of that many layers
    return Status::errorf("{}: {}block_count is {} but the file holds {} tensors", where, p,
                          c->num_layers, f.tensors().size());
  int sparse = 0;
  for (int l = 0; l < c->num_layers; ++l) {
    if (f.find_tensor("blk." + std::to_string(l) + ".ffn_gate_inp.weight") == nullptr)
      m.dense_layers.push_back(l);
    else
      ++sparse;
  }
  if (sparse == 0)
    return Status::errorf(
        "{}: {}expert_count is {} but no layer has a router tensor "
        "'blk.N.ffn_gate_inp.weight'",
        where, p, experts);
  return {};
}

}  // namespace

Result<ModelConfig> parse_hf_config(std::string_view json_text, const std::string& where) {
  if (!json_depth_within(json_text))
    return Status::errorf("{}: nests arrays and objects more than {} levels deep", where,
                          kMaxJsonDepth);
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    return Status::errorf("{}: invalid JSON: {}", where, e.what());
  }
  if (!j.is_object()) return Status::errorf("{}: expected a JSON object", where);
  HfKeys k(j, where);

  ModelConfig c;
  std::string arch_key;
  if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty() &&
      j["architectures"][0].is_string()) {
    arch_key = j["architectures"][0].get<std::string>();
  } else {
    return Status::errorf(
        "{}: key 'architectures' is missing (expected e.g. "
        "[\"LlamaForCausalLM\"])",
        where);
  }
  int default_max_position = 2048;
  if (arch_key == "LlamaForCausalLM") {
    c.arch = Arch::llama;
  } else if (arch_key == "Qwen2ForCausalLM") {
    c.arch = Arch::qwen2;
    c.attention_bias = true;  // Qwen2 always has q/k/v biases
    default_max_position = 32768;
  } else if (arch_key == "Qwen3ForCausalLM") {
    c.arch = Arch::qwen3;
    c.qk_norm = true;
    default_max_position = 32768;
  } else if (arch_key == "MistralForCausalLM") {
    c.arch = Arch::mistral;
    default_max_position = 131072;
  } else if (arch_key == "Phi3ForCausalLM") {
    c.arch = Arch::phi3;
    default_max_position = 4096;
  } else if (arch_key == "Gemma2ForCausalLM") {
    c.arch = Arch::gemma2;
    default_max_position = 8192;
  } else if (arch_key == "Gemma3ForCausalLM") {
    c.arch = Arch::gemma3;
    c.qk_norm = true;
    default_max_position = 131072;
  } else if (arch_key == "Qwen3MoeForCausalLM") {
    c.arch = Arch::qwen3_moe;
    c.qk_norm = true;
    default_max_position = 32768;
  } else if (arch_key == "MixtralForCausalLM") {
    c.arch = Arch::mixtral;
    default_max_position = 131072;
  } else if (arch_key == "Qwen2MoeForCausalLM") {
    c.arch = Arch::qwen2_moe;
    INVAR_ASSIGN_OR_RETURN(c.attention_bias, k.get_bool("qkv_bias", true));
    default_max_position = 32768;
  } else {
    return Status::errorf(
        "{}: architecture '{}' is not supported (supported: Gemma2ForCausalLM, "
        "Gemma3ForCausalLM, LlamaForCausalLM, MistralForCausalLM, MixtralForCausalLM, "
        "Phi3ForCausalLM, Qwen2ForCausalLM, Qwen2MoeForCausalLM, Qwen3ForCausalLM, "
        "Qwen3MoeForCausalLM)",
        where, arch_key);
  }
  const bool gemma = c.arch == Arch::gemma2 || c.arch == Arch::gemma3;

  INVAR_ASSIGN_OR_RETURN(c.vocab_size, k.get_int("vocab_size"));
  INVAR_ASSIGN_OR_RETURN(c.hidden_size, k.get_int("hidden_size"));
  INVAR_ASSIGN_OR_RETURN(c.intermediate_size, k.get_int("intermediate_size"));
  INVAR_ASSIGN_OR_RETURN(c.num_layers, k.get_int("num_hidden_layers"));
  INVAR_ASSIGN_OR_RETURN(c.num_heads, k.get_int("num_attention_heads"));
  INVAR_ASSIGN_OR_RETURN(c.num_kv_heads, k.get_int("num_key_value_heads", c.num_heads));
  if (k.has("head_dim")) {
    INVAR_ASSIGN_OR_RETURN(c.head_dim, k.get_int("head_dim"));
  } else {
    if (c.num_heads <= 0 || c.hidden_size % c.num_heads != 0) {
      return Status::errorf(
          "{}: no 'head_dim' and hidden_size {} is not a multiple of "
          "num_attention_heads {}",
          where, c.hidden_size, c.num_heads);
    }
    c.head_dim = c.hidden_size / c.num_heads;
  }
  INVAR_ASSIGN_OR_RETURN(c.max_position,
                         k.get_int("max_position_embeddings", default_max_position));
  INVAR_ASSIGN_OR_RETURN(c.rms_eps, k.get_float("rms_norm_eps", 1e-6f));
  // transformers' Gemma configs tie by default, the others do not.
  INVAR_ASSIGN_OR_RETURN(c.tie_embeddings, k.get_bool("tie_word_embeddings", gemma));
  c.rope_style = kernels::RopeStyle::half;

  const json* rope_params = nullptr;
  if (k.has("rope_scaling"))
    rope_params = &j["rope_scaling"];
  else if (k.has("rope_parameters"))
    rope_params = &j["rope_parameters"];
  if (c.arch == Arch::gemma3) {
    INVAR_RETURN_IF_ERROR(parse_gemma3_rope(k, rope_params, where, &c));
  } else {
    if (k.has("rope_theta")) {
      INVAR_ASSIGN_OR_RETURN(c.rope_theta, k.get_float("rope_theta", 10000.0f));
    } else if (rope_params && rope_params->is_object()) {
      INVAR_ASSIGN_OR_RETURN(c.rope_theta,
                             HfKeys(*rope_params, where).get_float("rope_theta", 10000.0f));
    }
    if (rope_params)
      INVAR_RETURN_IF_ERROR(parse_hf_rope_scaling(*rope_params, where, &c.rope_scaling));
  }
  if (c.rope_scaling.kind == RopeScaling::Kind::longrope)
    INVAR_RETURN_IF_ERROR(finish_longrope(k, c.max_position, where, &c.rope_scaling));
  if (c.rope_scaling.kind == RopeScaling::Kind::yarn)
    INVAR_RETURN_IF_ERROR(finish_yarn(k, c.max_position, &c.rope_scaling));
  // Partial rotary (Phi-3): rope rotates int(head_dim * partial_rotary_factor) leading dims.
  float partial = 1.0f;
  if (k.has("partial_rotary_factor")) {
    INVAR_ASSIGN_OR_RETURN(partial, k.get_float("partial_rotary_factor", 1.0f));
  } else if (rope_params && rope_params->is_object()) {
    INVAR_ASSIGN_OR_RETURN(partial,
                           HfKeys(*rope_params, where).get_float("partial_rotary_factor", 1.0f));
  }
  if (!(partial > 0.0f) || partial > 1.0f) {
    return Status::errorf("{}: partial_rotary_factor is {} (expected 0 < factor <= 1)", where,
                          partial);
  }
  if (partial != 1.0f) c.rotary_dim = int(double(c.head_dim) * double(partial));

  if (gemma) {
    INVAR_RETURN_IF_ERROR(parse_gemma_fields(j, k, where, &c));
  } else if (k.has("hidden_act") && j["hidden_act"] != "silu") {
    return Status::errorf("{}: hidden_act {} is not supported (expected \"silu\")", where,
                          j["hidden_act"].dump());
  }
  if (c.arch != Arch::qwen2 && c.arch != Arch::qwen2_moe) {
    // Llama and Qwen3 put this bias on o_proj too, which the forward pass does not carry.
    INVAR_RETURN_IF_ERROR(
        reject_if_true(k, "attention_bias", where, "biases on q/k/v/o projections"));
  }
  INVAR_RETURN_IF_ERROR(reject_if_true(k, "mlp_bias", where, "biases on MLP projections"));
  if (k.has("quantization_config"))
    INVAR_RETURN_IF_ERROR(parse_hf_quantization(j["quantization_config"], where, &c.fp8));
  if (c.arch == Arch::qwen3_moe || c.arch == Arch::mixtral || c.arch == Arch::qwen2_moe)
    INVAR_RETURN_IF_ERROR(parse_hf_moe(j, k, c.arch, c.intermediate_size, where, &c.moe));
  if (c.arch == Arch::mistral || c.arch == Arch::phi3 || c.arch == Arch::mixtral) {
    // transformers' MistralConfig: an absent key means its default window, 4096 (Phi3Config,
    // MixtralConfig: none); null means full attention.
    if (!j.contains("sliding_window")) {
      c.sliding_window = c.arch == Arch::mistral ? 4096 : 0;
    } else if (!j["sliding_window"].is_null()) {
      INVAR_ASSIGN_OR_RETURN(c.sliding_window, k.get_int("sliding_window"));
      if (c.sliding_window <= 0) {
        return Status::errorf(
            "{}: key 'sliding_window' is {} (expected a positive integer or null)", where,
            c.sliding_window);
      }
    }
  } else if (!gemma) {
    INVAR_RETURN_IF_ERROR(
        reject_if_true(k, "use_sliding_window", where, "sliding-window attention"));
  }
  INVAR_RETURN_IF_ERROR(c.validate(where));
  return c;
}

Result<ModelConfig> read_hf_config(const std::string& path) {
  namespace fs = std::filesystem;
  std::string file = path;
  if (fs::is_directory(path)) file = (fs::path(path) / "config.json").string();
  std::ifstream in(file, std::ios::binary);
  if (!in) return Status::errorf("{}: cannot open (expected a Hugging Face config.json)", file);
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_hf_config(ss.str(), file);
}

Result<ModelConfig> config_from_gguf(const GgufFile& f) {
  const std::string& where = f.path();
  INVAR_ASSIGN_OR_RETURN(std::string arch, f.get_string("general.architecture"));
  ModelConfig c;
  if (arch == "llama") {
    c.arch = Arch::llama;
    c.rope_style = kernels::RopeStyle::interleaved;  // q/k rows permuted by the converter
  } else if (arch == "qwen2") {
    c.arch = Arch::qwen2;
    c.attention_bias = true;
    c.rope_style = kernels::RopeStyle::half;
  } else if (arch == "qwen3") {
    c.arch = Arch::qwen3;
    c.qk_norm = true;
    c.rope_style = kernels::RopeStyle::half;
  } else if (arch == "phi3") {
    c.arch = Arch::phi3;
    c.rope_style = kernels::RopeStyle::half;
  } else if (arch == "gemma2" || arch == "gemma3") {
    c.arch = arch == "gemma2" ? Arch::gemma2 : Arch::gemma3;
    c.qk_norm = c.arch == Arch::gemma3;
    c.rope_style = kernels::RopeStyle::half;  // Gemma's q/k rows are not permuted
  } else if (arch == "qwen3moe") {
    c.arch = Arch::qwen3_moe;
    c.qk_norm = true;
    c.rope_style = kernels::RopeStyle::half;
  } else if (arch == "qwen2moe") {
    c.arch = Arch::qwen2_moe;
    c.attention_bias = true;
    c.rope_style = kernels::RopeStyle::half;
  } else {
    return Status::errorf(
        "{}: general.architecture '{}' is not supported (supported: gemma2, gemma3, llama "
        "(and Mixtral, written as llama with experts), phi3, qwen2, qwen2moe, qwen3, qwen3moe)",
        where, arch);
  }
  const std::string p = arch + ".";
  auto get_int = [&](const std::string& key) -> Result<int> {
    INVAR_ASSIGN_OR_RETURN(int64_t v, f.get_int(p + key));
    if (v <= 0 || v > std::numeric_limits<int>::max()) {
      return Status::errorf("{}: metadata key '{}' is {} (expected a positive integer)", where,
                            p + key, v);
    }
    return int(v);
  };
  auto get_float = [&](const std::string& key) -> Result<float> {
    INVAR_ASSIGN_OR_RETURN(double v, f.get_float(p + key));
    return float(v);
  };

  INVAR_ASSIGN_OR_RETURN(c.num_layers, get_int("block_count"));
  INVAR_ASSIGN_OR_RETURN(c.hidden_size, get_int("embedding_length"));
  INVAR_ASSIGN_OR_RETURN(c.intermediate_size, get_int("feed_forward_length"));
  INVAR_RETURN_IF_ERROR(moe_from_gguf(f, p, &c));
  INVAR_ASSIGN_OR_RETURN(c.num_heads, get_int("attention.head_count"));
  c.num_kv_heads = c.num_heads;
  if (f.has(p + "attention.head_count_kv")) {
    INVAR_ASSIGN_OR_RETURN(c.num_kv_heads, get_int("attention.head_count_kv"));
  }
  if (f.has(p + "attention.key_length")) {
    INVAR_ASSIGN_OR_RETURN(c.head_dim, get_int("attention.key_length"));
  } else {
    if (c.hidden_size % c.num_heads != 0) {
      return Status::errorf(
          "{}: no '{}attention.key_length' and embedding_length {} is not a "
          "multiple of head_count {}",
          where, p, c.hidden_size, c.num_heads);
    }
    c.head_dim = c.hidden_size / c.num_heads;
  }
  if (f.has(p + "attention.value_length")) {
    INVAR_ASSIGN_OR_RETURN(int v, get_int("attention.value_length"));
    if (v != c.head_dim) {
      return Status::errorf(
          "{}: {}attention.value_length {} differs from the key length {} "
          "(not supported)",
          where, p, v, c.head_dim);
    }
  }
  if (f.has(p + "rope.dimension_count")) {
    INVAR_ASSIGN_OR_RETURN(int rot, get_int("rope.dimension_count"));
    if (c.arch == Arch::phi3 && rot != c.head_dim) {
      c.rotary_dim = rot;  // Phi-3's partial rotary
    } else if (rot != c.head_dim) {
      return Status::errorf(
          "{}: {}rope.dimension_count {} differs from head_dim {} (partial "
          "rotary embeddings are not supported)",
          where, p, rot, c.head_dim);
    }
  }
  c.rope_theta = c.arch == Arch::gemma3 ? 1000000.0f : 10000.0f;
  if (f.has(p + "rope.freq_base")) {
    INVAR_ASSIGN_OR_RETURN(c.rope_theta, get_float("rope.freq_base"));
  }
  INVAR_ASSIGN_OR_RETURN(c.rms_eps, get_float("attention.layer_norm_rms_epsilon"));
  INVAR_ASSIGN_OR_RETURN(c.max_position, get_int("context_length"));

  std::string scaling = "none";
  if (f.has(p + "rope.scaling.type")) {
    INVAR_ASSIGN_OR_RETURN(scaling, f.get_string(p + "rope.scaling.type"));
  } else if (f.has(p + "rope.scale_linear")) {
    scaling = "linear";
  }
  if (scaling == "linear") {
    c.rope_scaling.kind = RopeScaling::Kind::linear;
    const std::string key =
        f.has(p + "rope.scaling.factor") ? "rope.scaling.factor" : "rope.scale_linear";
    INVAR_ASSIGN_OR_RETURN(c.rope_scaling.factor, get_float(key));
  } else if (scaling != "none" && !(c.arch == Arch::phi3 && scaling == "longrope")) {
    return Status::errorf(
        "{}: {}rope.scaling.type '{}' is not supported (supported: none, "
        "linear)",
        where, p, scaling);
  }

  if (f.has(p + "vocab_size")) {
    INVAR_ASSIGN_OR_RETURN(c.vocab_size, get_int("vocab_size"));
  } else {
    auto it = f.metadata().find("tokenizer.ggml.tokens");
    auto* arr =
        it == f.metadata().end() ? nullptr : std::get_if<std::shared_ptr<GgufArray>>(&it->second.v);
    if (arr == nullptr || (*arr)->size() > size_t(std::numeric_limits<int>::max())) {
      return Status::errorf(
          "{}: neither '{}vocab_size' nor the array 'tokenizer.ggml.tokens' "
          "gives the vocabulary size",
          where, p);
    }
    c.vocab_size = int((*arr)->size());
  }

  c.tie_embeddings = f.find_tensor("output.weight") == nullptr;
  if (const GgufTensorInfo* t = f.find_tensor("rope_freqs.weight")) {
    if (t->shape.size() != 1 || t->shape[0] != c.head_dim / 2) {
      return Status::errorf(
          "{}: tensor 'rope_freqs.weight' has {} dims, first {} (expected "
          "[{}])",
          where, t->shape.size(), t->shape.empty() ? 0 : t->shape[0], c.head_dim / 2);
    }
    c.rope_freq_factors.resize(size_t(c.head_dim / 2));
    INVAR_RETURN_IF_ERROR(f.read_tensor(*t, DType::f32, c.rope_freq_factors.data()));
  }
  if (c.arch == Arch::gemma2 || c.arch == Arch::gemma3)
    INVAR_RETURN_IF_ERROR(gemma_from_gguf(f, p, &c));
  if (c.arch == Arch::phi3) INVAR_RETURN_IF_ERROR(phi3_from_gguf(f, p, &c));
  INVAR_RETURN_IF_ERROR(c.validate(where));
  return c;
}

}  // namespace invar::model
