#include "model/config.h"

#include <algorithm>
#include <cmath>

namespace invar::model {

std::string arch_name(Arch a) {
  switch (a) {
    case Arch::llama:
      return "llama";
    case Arch::qwen2:
      return "qwen2";
    case Arch::qwen3:
      return "qwen3";
    case Arch::mistral:
      return "mistral";
    case Arch::phi3:
      return "phi3";
    case Arch::gemma2:
      return "gemma2";
    case Arch::gemma3:
      return "gemma3";
    case Arch::qwen3_moe:
      return "qwen3_moe";
    case Arch::mixtral:
      return "mixtral";
    case Arch::qwen2_moe:
      return "qwen2_moe";
  }
  return "unknown";
}

namespace {

Status validate_scaling(const RopeScaling& s, int rot_dims, const std::string& where) {
  if (s.kind != RopeScaling::Kind::none && (!(s.factor > 0.0f) || !std::isfinite(s.factor))) {
    return Status::errorf("{}: rope scaling factor is {} (expected a positive number)", where,
                          s.factor);
  }
  if (s.kind == RopeScaling::Kind::llama3) {
    if (!(s.high_freq_factor > s.low_freq_factor) || !(s.low_freq_factor > 0.0f) ||
        s.original_max_position <= 0) {
      return Status::errorf(
          "{}: llama3 rope scaling needs high_freq_factor > low_freq_factor > "
          "0 and original_max_position_embeddings > 0 (got {}, {}, {})",
          where, s.high_freq_factor, s.low_freq_factor, s.original_max_position);
    }
  }
  if (s.kind == RopeScaling::Kind::longrope) {
    const size_t half = size_t(rot_dims / 2);
    if (s.short_factor.size() != half || s.long_factor.size() != half ||
        s.original_max_position <= 0) {
      return Status::errorf(
          "{}: longrope needs short_factor and long_factor of rotary dims / 2 = {} entries and "
          "original_max_position_embeddings > 0 (got {}, {}, {})",
          where, half, s.short_factor.size(), s.long_factor.size(), s.original_max_position);
    }
    for (const auto* v : {&s.short_factor, &s.long_factor})
      for (float f : *v)
        if (!(f > 0.0f) || !std::isfinite(f))
          return Status::errorf("{}: longrope factor {} (expected positive factors)", where, f);
  }
  if (s.kind == RopeScaling::Kind::yarn) {
    if (s.original_max_position <= 0 || !(s.beta_fast > 0.0f) || !(s.beta_slow > 0.0f) ||
        !std::isfinite(s.beta_fast) || !std::isfinite(s.beta_slow))
      return Status::errorf(
          "{}: yarn rope scaling needs original_max_position_embeddings, beta_fast and "
          "beta_slow > 0 (got {}, {}, {})",
          where, s.original_max_position, s.beta_fast, s.beta_slow);
  }
  if (s.kind == RopeScaling::Kind::longrope || s.kind == RopeScaling::Kind::yarn) {
    if (!(s.attention_factor > 0.0f) || !std::isfinite(s.attention_factor))
      return Status::errorf("{}: rope attention_factor is {} (expected a positive number)", where,
                            s.attention_factor);
  }
  return {};
}

}  // namespace

bool is_moe_layer(const ModelConfig& c, int layer) {
  const MoeConfig& m = c.moe;
  if (m.num_experts <= 0 || (layer + 1) % m.sparse_step != 0) return false;
  for (int d : m.dense_layers)
    if (d == layer) return false;
  return true;
}

Status ModelConfig::validate(const std::string& where) const {
  auto positive = [&](const char* name, int v) -> Status {
    if (v <= 0) return Status::errorf("{}: {} is {} (expected a positive value)", where, name, v);
    return {};
  };
  INVAR_RETURN_IF_ERROR(positive("vocab_size", vocab_size));
  INVAR_RETURN_IF_ERROR(positive("hidden_size", hidden_size));
  INVAR_RETURN_IF_ERROR(positive("intermediate_size", intermediate_size));
  INVAR_RETURN_IF_ERROR(positive("num_layers", num_layers));
  INVAR_RETURN_IF_ERROR(positive("num_heads", num_heads));
  INVAR_RETURN_IF_ERROR(positive("num_kv_heads", num_kv_heads));
  INVAR_RETURN_IF_ERROR(positive("head_dim", head_dim));
  INVAR_RETURN_IF_ERROR(positive("max_position", max_position));
  if (sliding_window < 0) {
    return Status::errorf("{}: sliding_window is {} (expected a positive size, or none)", where,
                          sliding_window);
  }
  if (moe.num_experts < 0) {
    return Status::errorf("{}: num_experts is {} (expected 0 for a dense model, or more)", where,
                          moe.num_experts);
  }
  if (moe.num_experts > 0) {
    if (moe.experts_per_token <= 0 || moe.experts_per_token > moe.num_experts) {
      return Status::errorf("{}: num_experts_per_tok is {} (expected 1 to num_experts {})", where,
                            moe.experts_per_token, moe.num_experts);
    }
    INVAR_RETURN_IF_ERROR(positive("expert intermediate size", moe.expert_intermediate_size));
    INVAR_RETURN_IF_ERROR(positive("decoder_sparse_step", moe.sparse_step));
  }
  if (num_heads % num_kv_heads != 0) {
    return Status::errorf("{}: num_heads {} is not a multiple of num_kv_heads {}", where, num_heads,
                          num_kv_heads);
  }
  if (head_dim % 2 != 0) {
    return Status::errorf("{}: head_dim {} is odd (rope rotates pairs)", where, head_dim);
  }
  if (rotary_dim < 0 || rotary_dim > head_dim || rotary_dim % 2 != 0) {
    return Status::errorf("{}: rotary dims {} (expected an even number <= head_dim {})", where,
                          rotary_dim, head_dim);
  }
  if (!(rms_eps > 0.0f) || !std::isfinite(rms_eps)) {
    return Status::errorf("{}: rms_eps is {} (expected a small positive number)", where, rms_eps);
  }
  if (!(rope_theta > 0.0f) || !std::isfinite(rope_theta)) {
    return Status::errorf("{}: rope_theta is {} (expected a positive number)", where, rope_theta);
  }
  INVAR_RETURN_IF_ERROR(validate_scaling(rope_scaling, rope_dims(*this), where));
  if (local_rope_theta != 0.0f) {
    if (!(local_rope_theta > 0.0f) || !std::isfinite(local_rope_theta))
      return Status::errorf("{}: local rope theta is {} (expected a positive number)", where,
                            local_rope_theta);
    INVAR_RETURN_IF_ERROR(
        validate_scaling(local_rope_scaling, rope_dims(*this), where + " (local layers)"));
  }
  if (!sliding_layers.empty() && sliding_layers.size() != size_t(num_layers))
    return Status::errorf("{}: {} layer types for {} layers", where, sliding_layers.size(),
                          num_layers);
  for (float v : {embedding_scale, attention_scale, attn_softcap, final_softcap})
    if (!(v >= 0.0f) || !std::isfinite(v))
      return Status::errorf(
          "{}: embedding scale, attention scale or soft-cap {} (expected a positive number)", where,
          v);
  if (!rope_freq_factors.empty()) {
    if (rope_freq_factors.size() != size_t(head_dim / 2)) {
      return Status::errorf("{}: rope_freqs has {} factors (expected head_dim / 2 = {})", where,
                            rope_freq_factors.size(), head_dim / 2);
    }
    for (float f : rope_freq_factors) {
      if (!(f > 0.0f) || !std::isfinite(f)) {
        return Status::errorf("{}: rope_freqs holds {} (expected positive factors)", where, f);
      }
    }
  }
  return {};
}

// Matches Hugging Face's rope initializers (default, linear, llama3, longrope, yarn); computed in
// double and rounded once, so the table depends only on the config (R5).
namespace {

constexpr double kPi = 3.14159265358979323846;

// yarn's ramp over frequency i: 0 keeps it (extrapolation), 1 divides it by factor
// (interpolation). The ends are the dims where a frequency turns beta_fast and beta_slow times
// over the original context (transformers' find_correction_range and linear_ramp_factor).
double yarn_ramp(const RopeScaling& s, double theta, int rot_dim, int i) {
  auto correction_dim = [&](double rotations) {
    return double(rot_dim) * std::log(double(s.original_max_position) / (rotations * 2.0 * kPi)) /
           (2.0 * std::log(theta));
  };
  double low = correction_dim(double(s.beta_fast)), high = correction_dim(double(s.beta_slow));
  if (s.truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, double(rot_dim - 1));
  if (low == high) high += 0.001;  // as transformers: no division by zero
  return std::clamp((double(i) - low) / (high - low), 0.0, 1.0);
}

std::vector<float> inv_freq_table(const ModelConfig& c, float theta, const RopeScaling& s,
                                  bool long_factors) {
  const int rot_dim = rope_dims(c);
  const int half = rot_dim / 2;
  std::vector<float> out(static_cast<size_t>(half));
  for (int i = 0; i < half; ++i) {
    double inv = 1.0 / std::pow(double(theta), double(2 * i) / double(rot_dim));
    switch (s.kind) {
      case RopeScaling::Kind::none:
        break;
      case RopeScaling::Kind::linear:
        inv /= double(s.factor);
        break;
      case RopeScaling::Kind::longrope:
        inv /= double((long_factors ? s.long_factor : s.short_factor)[size_t(i)]);
        break;
      case RopeScaling::Kind::llama3: {
        const double old_ctx = double(s.original_max_position);
        const double low_wavelen = old_ctx / double(s.low_freq_factor);
        const double high_wavelen = old_ctx / double(s.high_freq_factor);
        const double wavelen = 2.0 * kPi / inv;
        if (wavelen > low_wavelen) {
          inv /= double(s.factor);  // low frequencies: fully interpolated
        } else if (wavelen >= high_wavelen) {
          // medium: blend between interpolated and original
          const double smooth = (old_ctx / wavelen - double(s.low_freq_factor)) /
                                (double(s.high_freq_factor) - double(s.low_freq_factor));
          inv = (1.0 - smooth) * inv / double(s.factor) + smooth * inv;
        }
        break;
      }
      case RopeScaling::Kind::yarn: {
        const double ramp = yarn_ramp(s, double(theta), rot_dim, i);
        inv = inv / double(s.factor) * ramp + inv * (1.0 - ramp);
        break;
      }
    }
    if (size_t(i) < c.rope_freq_factors.size()) inv /= double(c.rope_freq_factors[size_t(i)]);
    out[size_t(i)] = float(inv);
  }
  return out;
}

}  // namespace

std::vector<float> rope_inv_freq(const ModelConfig& c) {
  return inv_freq_table(c, c.rope_theta, c.rope_scaling, false);
}

std::vector<float> rope_inv_freq_long(const ModelConfig& c) {
  if (c.rope_scaling.kind != RopeScaling::Kind::longrope) return {};
  return inv_freq_table(c, c.rope_theta, c.rope_scaling, true);
}

std::vector<float> rope_inv_freq_local(const ModelConfig& c) {
  if (c.local_rope_theta <= 0.0f) return {};
  return inv_freq_table(c, c.local_rope_theta, c.local_rope_scaling, false);
}

std::vector<std::string> extended_features(const ModelConfig& c) {
  std::vector<std::string> out;
  if (c.post_norms) out.push_back("post-attention and post-feedforward norms");
  if (c.activation == Activation::gelu_tanh) out.push_back("a gelu-tanh MLP");
  if (c.embedding_scale > 0.0f) out.push_back("a scaled embedding");
  if (c.attention_scale > 0.0f) out.push_back("query_pre_attn_scalar");
  if (c.attn_softcap > 0.0f) out.push_back("attention soft-capping");
  if (c.final_softcap > 0.0f) out.push_back("final logit soft-capping");
  if (!c.sliding_layers.empty()) out.push_back("per-layer sliding windows");
  if (c.local_rope_theta > 0.0f) out.push_back("a separate rope for sliding layers");
  if (c.rope_scaling.kind == RopeScaling::Kind::yarn) out.push_back("yarn rope scaling");
  return out;
}

float rope_attention_factor(const RopeScaling& s) {
  const bool scaled = s.kind == RopeScaling::Kind::longrope || s.kind == RopeScaling::Kind::yarn;
  return scaled ? s.attention_factor : 1.0f;
}

}  // namespace invar::model
