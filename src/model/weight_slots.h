// The list of weight tensors a config needs, with their expected shapes: one walk shared by
// the file loaders (name mapping + shape checks) and random_weights.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/status.h"
#include "model/config.h"
#include "model/weights.h"

namespace invar::model {

enum class WeightRole : uint8_t {
  embedding,
  final_norm,
  lm_head,  // model-level
  attn_norm,
  wq,
  wk,
  wv,
  wo,
  bq,
  bk,
  bv,
  q_norm,
  k_norm,
  ffn_norm,
  w_gate,
  w_up,
  w_down,
  // Gemma: norms on both sides of each block. Its pre-MLP norm is `pre_ffn_norm` (same slot
  // as ffn_norm, another file name); post_attn_norm and post_ffn_norm only with post_norms.
  post_attn_norm,
  pre_ffn_norm,
  post_ffn_norm,
  router,  // mixture-of-experts layers
  expert_gate,
  expert_up,
  expert_down,
  shared_gate,  // Qwen2-MoE's shared expert and its sigmoid gate
  shared_up,
  shared_down,
  shared_expert_gate,
};

// RMSNorm weights (f32 vectors, centered on 1 once loaded).
inline bool is_norm_role(WeightRole r) {
  switch (r) {
    case WeightRole::attn_norm:
    case WeightRole::ffn_norm:
    case WeightRole::final_norm:
    case WeightRole::q_norm:
    case WeightRole::k_norm:
    case WeightRole::post_attn_norm:
    case WeightRole::pre_ffn_norm:
    case WeightRole::post_ffn_norm:
      return true;
    default:
      return false;
  }
}

struct WeightSlot {
  WeightRole role;
  int layer;                   // -1 for model-level tensors
  std::vector<int64_t> shape;  // expected, outermost first
  bool matrix;                 // stored in the weight dtype; vectors (norms, biases) are f32
  HostTensor* tensor;          // where it goes
  int expert = -1;             // expert_* roles: the expert's index
};

// Calls fn for every tensor `config` needs, in a fixed order, and stops at the first error.
// lm_head is skipped when tied; biases, q/k norms and post norms only when the config has them;
// a sparse layer (is_moe_layer) has router and expert_* slots instead of w_gate/w_up/w_down.
Status for_each_weight_slot(const ModelConfig& config, ModelWeights& weights,
                            const std::function<Status(const WeightSlot&)>& fn);

// "[a, b]"
std::string shape_string(const std::vector<int64_t>& shape);

// The tensor name of a slot in each file format (a GGUF expert slot names its layer's stacked
// `*_exps` tensor; the loader picks the expert's rows).
std::string gguf_tensor_name(const ModelConfig& config, const WeightSlot& slot);
std::string hf_tensor_name(const ModelConfig& config, const WeightSlot& slot);

}  // namespace invar::model
