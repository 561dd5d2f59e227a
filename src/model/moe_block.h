// The mixture-of-experts MLP of a sparse layer (Qwen3-MoE, Mixtral, Qwen2-MoE), on the CPU
// kernels.
//
// Router GEMM (f32 logits) -> moe_route (softmax, top-k, ties to the lowest expert id) -> for
// each expert in id order: gather the rows of the tokens that picked it, run its SwiGLU MLP over
// that group with the GEMM of the dense layers, and add weight * output into each token's row.
// Qwen2-MoE: then the shared expert over all rows, times sigmoid(shared_expert_gate . x), is
// added last to each token's sum (transformers' order: routed sum + gated shared output).
// Invariance (R1, R2): the GEMM reduces each row in an order fixed by K whatever the number of
// rows, so a token's expert output has the same bits however many other tokens share its
// expert; and each token's sum runs over its experts in id order, whatever order the tokens
// came in. In `fast` mode the GEMM's reduction depends on the group size: the negative control.
//   T = tokens, H = hidden, E = experts, k = experts per token, I_e = expert intermediate size,
//   n = rows of one expert's group
#pragma once

#include <cstdint>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/types.h"
#include "model/activation_probe.h"
#include "model/config.h"
#include "model/weights.h"

namespace invar::model {

class MoeBlock {
 public:
  // Keeps references to config and pool; they must outlive the block.
  MoeBlock(const ModelConfig& config, ThreadPool& pool,
           kernels::KernelMode mode = kernels::KernelMode::invariant);

  // out = the expert mixture of x by the weights of layer `layer`, which must be sparse
  // (is_moe_layer). `probe`, if set, sees the router logits (ProbeOp::router) before they are
  // routed.
  void forward(const LayerWeights& weights, int layer,
               const float* x,  // [T, H]: the normed hidden states
               int tokens,
               float* out,  // [T, H]; must not alias x
               ActivationProbe* probe = nullptr);

  // Of the last forward: the router logits and each token's picks, in increasing expert id.
  const std::vector<float>& router_logits() const { return router_logits_; }   // [T, E]
  const std::vector<int32_t>& expert_ids() const { return route_ids_; }        // [T, k]
  const std::vector<float>& expert_weights() const { return route_weights_; }  // [T, k]

 private:
  void linear(const float* x, const kernels::WeightRef& w, int64_t m, float* y);
  void group_by_expert(int tokens);
  void add_shared_expert(const LayerWeights& w, const float* x, int tokens, float* out);

  const ModelConfig& config_;
  ThreadPool& pool_;
  kernels::KernelMode mode_;
  std::vector<float> router_logits_, route_weights_;
  std::vector<int32_t> route_ids_;
  // The picks sorted by expert: group e is rows group_start_[e] .. group_start_[e + 1].
  std::vector<int64_t> group_start_;
  std::vector<int32_t> group_tokens_;
  std::vector<float> group_weights_;
  std::vector<float> group_x_, group_gate_, group_up_, group_y_;  // one group's activations
  std::vector<float> shared_logit_;                               // [T]
};

}  // namespace invar::model
