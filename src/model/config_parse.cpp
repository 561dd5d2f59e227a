#include "model/config_parse.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
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
  } else {
    return Status::errorf(
        "{}: rope type '{}' is not supported (supported: default, linear, "
        "llama3, longrope)",
        w, type);
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

// Qwen3-MoE's and Mixtral's expert keys (MoeConfig).
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
  if (k.has("shared_expert_intermediate_size")) {
    return Status::errorf(
        "{}: shared experts ('shared_expert_intermediate_size') are not supported", where);
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
  } else if (arch_key == "Qwen3MoeForCausalLM") {
    c.arch = Arch::qwen3_moe;
    c.qk_norm = true;
    default_max_position = 32768;
  } else if (arch_key == "MixtralForCausalLM") {
    c.arch = Arch::mixtral;
    default_max_position = 131072;
  } else {
    return Status::errorf(
        "{}: architecture '{}' is not supported (supported: LlamaForCausalLM, "
        "MistralForCausalLM, MixtralForCausalLM, Phi3ForCausalLM, Qwen2ForCausalLM, "
        "Qwen3ForCausalLM, Qwen3MoeForCausalLM)",
        where, arch_key);
  }

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
  INVAR_ASSIGN_OR_RETURN(c.tie_embeddings, k.get_bool("tie_word_embeddings", false));
  c.rope_style = kernels::RopeStyle::half;

  const json* rope_params = nullptr;
  if (k.has("rope_scaling"))
    rope_params = &j["rope_scaling"];
  else if (k.has("rope_parameters"))
    rope_params = &j["rope_parameters"];
  if (k.has("rope_theta")) {
    INVAR_ASSIGN_OR_RETURN(c.rope_theta, k.get_float("rope_theta", 10000.0f));
  } else if (rope_params && rope_params->is_object()) {
    INVAR_ASSIGN_OR_RETURN(c.rope_theta,
                           HfKeys(*rope_params, where).get_float("rope_theta", 10000.0f));
  }
  if (rope_params)
    INVAR_RETURN_IF_ERROR(parse_hf_rope_scaling(*rope_params, where, &c.rope_scaling));
  if (c.rope_scaling.kind == RopeScaling::Kind::longrope)
    INVAR_RETURN_IF_ERROR(finish_longrope(k, c.max_position, where, &c.rope_scaling));
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

  if (k.has("hidden_act") && j["hidden_act"] != "silu") {
    return Status::errorf("{}: hidden_act {} is not supported (expected \"silu\")", where,
                          j["hidden_act"].dump());
  }
  if (c.arch != Arch::qwen2) {
    // Llama and Qwen3 put this bias on o_proj too, which the forward pass does not carry.
    INVAR_RETURN_IF_ERROR(
        reject_if_true(k, "attention_bias", where, "biases on q/k/v/o projections"));
  }
  INVAR_RETURN_IF_ERROR(reject_if_true(k, "mlp_bias", where, "biases on MLP projections"));
  if (k.has("quantization_config"))
    INVAR_RETURN_IF_ERROR(parse_hf_quantization(j["quantization_config"], where, &c.fp8));
  if (c.arch == Arch::qwen3_moe || c.arch == Arch::mixtral)
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
  } else {
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
  } else {
    return Status::errorf(
        "{}: general.architecture '{}' is not supported (supported: llama, "
        "qwen2, qwen3)",
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

  if (f.has(p + "expert_count")) {
    INVAR_ASSIGN_OR_RETURN(int64_t experts, f.get_int(p + "expert_count"));
    if (experts > 0) {
      return Status::errorf("{}: mixture-of-experts models ({} = {}) are not supported", where,
                            p + "expert_count", experts);
    }
  }
  INVAR_ASSIGN_OR_RETURN(c.num_layers, get_int("block_count"));
  INVAR_ASSIGN_OR_RETURN(c.hidden_size, get_int("embedding_length"));
  INVAR_ASSIGN_OR_RETURN(c.intermediate_size, get_int("feed_forward_length"));
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
    if (rot != c.head_dim) {
      return Status::errorf(
          "{}: {}rope.dimension_count {} differs from head_dim {} (partial "
          "rotary embeddings are not supported)",
          where, p, rot, c.head_dim);
    }
  }
  c.rope_theta = 10000.0f;
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
  } else if (scaling != "none") {
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
  INVAR_RETURN_IF_ERROR(c.validate(where));
  return c;
}

}  // namespace invar::model
