// An observer of the forward pass: after every op, Transformer hands the op's output to the
// probe, if one is set. `invar verify` uses it to hash a target sequence's activations per layer
// and op, so a bitwise mismatch of the logits can be traced to the first op whose output
// differs. Unset, it costs one pointer check per op.
//   T = tokens in the step, L = requested logit rows
#pragma once

#include <cstdint>

#include "model/batch.h"

namespace invar::model {

// The ops of the forward pass, in execution order within a layer.
enum class ProbeOp : uint8_t {
  embedding,  // layer -1
  attn_norm,
  q_proj,
  k_proj,
  v_proj,
  q_norm,  // Qwen3, Gemma 3 only
  k_norm,  // Qwen3, Gemma 3 only
  rope_q,
  rope_k,
  attention,
  o_proj,
  post_attn_norm,  // Gemma only: norm of o_proj before the residual add
  attn_residual,   // x += o_proj (its norm with Gemma)
  ffn_norm,
  gate_proj,
  up_proj,
  silu_mul,
  gelu_tanh_mul,  // Gemma's GeGLU instead of silu_mul
  down_proj,
  post_ffn_norm,  // Gemma only: norm of down_proj before the residual add
  router,         // MoE layers (instead of gate_proj..down_proj): router logits [T, E]
  experts,        // MoE layers: the chosen experts' outputs, weighted and summed [T, H]
  ffn_residual,   // x += down_proj (its norm with Gemma) or experts
  final_norm,     // layer = num_layers; rows are the logit rows
  logits,         // layer = num_layers; rows are the logit rows
};
inline constexpr int kProbeOpCount = int(ProbeOp::logits) + 1;

inline const char* probe_op_name(ProbeOp op) {
  static constexpr const char* kNames[kProbeOpCount] = {
      "embedding",     "attn_norm",     "q_proj",       "k_proj",     "v_proj",   "q_norm",
      "k_norm",        "rope_q",        "rope_k",       "attention",  "o_proj",   "post_attn_norm",
      "attn_residual", "ffn_norm",      "gate_proj",    "up_proj",    "silu_mul", "gelu_tanh_mul",
      "down_proj",     "post_ffn_norm", "router",       "experts",    "ffn_residual",
      "final_norm",    "logits"};
  return kNames[int(op)];
}

class ActivationProbe {
 public:
  virtual ~ActivationProbe() = default;
  // Called once per forward() before the first op, with the step's plan.
  virtual void begin_step(const BatchPlan& plan) = 0;
  // `data` is the op's output, [rows, width] row-major: one row per token of the step (T), or
  // one per plan.logit_rows entry (L) for final_norm and logits. The next op reads `data`
  // after this returns, so a probe may alter it: only fault injection in tests does
  // (`invar verify --inject`).
  virtual void after_op(int layer, ProbeOp op, float* data, int64_t rows, int64_t width) = 0;
};

}  // namespace invar::model
