// Architecture hyper-parameters, read from GGUF metadata or a Hugging Face config.json.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "kernels/types.h"

namespace invar::model {

enum class Arch : uint8_t {
  llama,
  qwen2,
  qwen3,
  mistral,
  phi3,
  gemma2,
  gemma3,
  qwen3_moe,
  mixtral,
  qwen2_moe
};

// The MLP's gate activation: silu (SwiGLU) or the tanh approximation of gelu (Gemma's
// gelu_pytorch_tanh, GeGLU).
enum class Activation : uint8_t { silu, gelu_tanh };

struct RopeScaling {
  enum class Kind : uint8_t { none, linear, llama3, longrope, yarn };
  Kind kind = Kind::none;
  float factor = 1.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int original_max_position = 8192;
  // longrope (Phi-3, also called "su"): inv_freq[i] /= short_factor[i] at positions below
  // original_max_position, /= long_factor[i] from there on (chosen per token by its absolute
  // position, so batch-invariant); cos and sin are multiplied by attention_factor.
  std::vector<float> short_factor, long_factor;
  // longrope and yarn: cos and sin are multiplied by it (the parsers derive it when the config
  // does not give it).
  float attention_factor = 1.0f;
  // yarn: frequencies that turn fewer than beta_slow times over original_max_position are
  // interpolated (divided by factor), those that turn more than beta_fast times are kept, and a
  // linear ramp over the dims between blends the two; truncate rounds the ramp's ends outward.
  float beta_fast = 32.0f;
  float beta_slow = 1.0f;
  bool truncate = true;
  // yarn, as read: when attention_factor is not given and both are, it is the ratio
  // (0.1 mscale ln(factor) + 1) / (0.1 mscale_all_dim ln(factor) + 1) (DeepSeek's form).
  float mscale = 0.0f, mscale_all_dim = 0.0f;
};

// Mixture of experts (Qwen3-MoE, Mixtral, Qwen2-MoE): the MLP of a sparse layer is `num_experts`
// SwiGLU experts of `expert_intermediate_size`, of which a router picks `experts_per_token` per
// token; Qwen2-MoE adds a shared expert that every token uses.
struct MoeConfig {
  int num_experts = 0;  // 0: a dense model
  int experts_per_token = 0;
  int expert_intermediate_size = 0;
  // The top-k router probabilities are divided by their sum (Mixtral always; Qwen3-MoE's
  // `norm_topk_prob`); otherwise they weight the experts as they are.
  bool normalize_top_k = false;
  // Layer l is sparse when (l + 1) % sparse_step == 0 and l is not in dense_layers (Qwen3-MoE's
  // `decoder_sparse_step` and `mlp_only_layers`); the others keep a dense MLP of
  // ModelConfig::intermediate_size.
  int sparse_step = 1;
  std::vector<int> dense_layers;
  // > 0: a shared SwiGLU expert of this intermediate size, its output scaled by
  // sigmoid(shared_expert_gate . x) and added after the routed experts' sum (Qwen2-MoE's
  // `shared_expert_intermediate_size`).
  int shared_intermediate_size = 0;
};

// Hugging Face "fp8" quantization (`quantization_config`, as Qwen3-*-FP8 checkpoints ship it):
// matrices stored as F8_E4M3 with one scale per block of block_rows x block_cols elements, the
// tensor `<name>_scale_inv` [ceil(rows / block_rows), ceil(cols / block_cols)]; the loader
// multiplies them out in f32 (weight = fp8 value * scale). Activations stay f32.
struct Fp8Quantization {
  int block_rows = 0;  // 0: no fp8 weights
  int block_cols = 0;
  bool enabled() const { return block_rows > 0; }
};

struct ModelConfig {
  Arch arch = Arch::llama;
  int vocab_size = 0;
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int rotary_dim = 0;  // leading dims of each head that rope rotates (partial rotary); 0: head_dim
  int max_position = 0;
  float rms_eps = 1e-6f;
  float rope_theta = 10000.0f;
  RopeScaling rope_scaling;
  kernels::RopeStyle rope_style = kernels::RopeStyle::half;
  bool attention_bias = false;  // q/k/v projections carry a bias (Qwen2)
  bool qk_norm = false;         // RMSNorm on each q and k head before rope (Qwen3)
  bool tie_embeddings = false;  // lm_head shares the embedding table
  // > 0: a token attends only to the last sliding_window positions, itself included (Mistral's
  // `sliding_window`); 0: full causal attention.
  int sliding_window = 0;
  // Per-frequency divisors from a GGUF `rope_freqs.weight` tensor (how llama.cpp stores Llama 3
  // rope scaling): inv_freq[i] /= rope_freq_factors[i]. Empty otherwise.
  std::vector<float> rope_freq_factors;
  MoeConfig moe;
  Fp8Quantization fp8;

  // Gemma 2 / Gemma 3 (the defaults leave the Llama family unchanged).
  Activation activation = Activation::silu;
  // sliding_layers[l] != 0: layer l uses sliding_window, 0: full attention. Empty: every layer
  // uses sliding_window (Mistral). Gemma alternates (layer_types).
  std::vector<uint8_t> sliding_layers;
  // Gemma 3: the sliding layers rotate with their own base (rope_local_base_freq) and scaling;
  // 0: they share rope_theta and rope_scaling.
  float local_rope_theta = 0.0f;
  RopeScaling local_rope_scaling;
  // Norms after the attention and after the MLP, before each residual add (Gemma's
  // post_attention_layernorm and post_feedforward_layernorm).
  bool post_norms = false;
  float embedding_scale = 0.0f;  // > 0: embeddings times it (Gemma: sqrt(hidden), rounded)
  float attention_scale = 0.0f;  // > 0: replaces 1 / sqrt(head_dim) (query_pre_attn_scalar^-0.5)
  // > 0: tanh soft-capping, s = cap * tanh(s / cap), of the scaled attention scores before the
  // softmax and of the final logits (Gemma 2).
  float attn_softcap = 0.0f;
  float final_softcap = 0.0f;

  // Checks the relations the forward pass relies on (heads divide, sizes positive).
  Status validate(const std::string& where) const;
};

std::string arch_name(Arch a);

// Whether layer `layer`'s MLP is a mixture of experts (MoeConfig says which).
bool is_moe_layer(const ModelConfig& c, int layer);

// The dims rope rotates: rotary_dim, or head_dim when unset.
inline int rope_dims(const ModelConfig& c) {
  return c.rotary_dim > 0 ? c.rotary_dim : c.head_dim;
}

// inv_freq[i] = 1 / theta^(2i / rot_dim), adjusted by the config's rope scaling (longrope: the
// short factors).
std::vector<float> rope_inv_freq(const ModelConfig& c);

// The sliding layers' table when they have their own rope (local_rope_theta > 0); else empty.
std::vector<float> rope_inv_freq_local(const ModelConfig& c);

// The cos/sin multiplier of a scaling: attention_factor for longrope and yarn, 1 otherwise.
float rope_attention_factor(const RopeScaling& s);

// The forward-pass features a config asks for beyond the Llama family's (Gemma's post norms,
// GeGLU, scaled embedding, attention scale and soft-caps, per-layer windows and ropes; yarn),
// as phrases for an error message; empty for Llama, Qwen, Mistral and Phi-3 configs. A backend
// that implements none of them refuses a config for which this is not empty.
std::vector<std::string> extended_features(const ModelConfig& c);

// Whether layer l is a sliding layer by type (Gemma's layer_types; every layer when the config
// has no per-layer types). Gemma 3 picks its local rope by this, even with no window at all.
inline bool layer_is_sliding(const ModelConfig& c, int l) {
  return c.sliding_layers.empty() || c.sliding_layers[size_t(l)] != 0;
}

// Layer l's sliding window: config.sliding_window where the layer slides, else 0 (full).
inline int layer_window(const ModelConfig& c, int l) {
  return layer_is_sliding(c, l) ? c.sliding_window : 0;
}

// longrope only: the table of positions >= original_max_position (the long factors); empty for
// every other scaling.
std::vector<float> rope_inv_freq_long(const ModelConfig& c);

}  // namespace invar::model
