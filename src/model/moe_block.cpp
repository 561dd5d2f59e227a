// MoeBlock (moe_block.h says what it computes and why it is batch-invariant).
#include "model/moe_block.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu/ops.h"

namespace invar::model {

namespace cpu = kernels::cpu;

MoeBlock::MoeBlock(const ModelConfig& config, ThreadPool& pool, kernels::KernelMode mode)
    : config_(config), pool_(pool), mode_(mode) {}

void MoeBlock::linear(const float* x, const kernels::WeightRef& w, int64_t m, float* y) {
  if (mode_ == kernels::KernelMode::fast) return cpu::gemm_split_k(x, w, nullptr, m, y, pool_);
  cpu::gemm(x, w, nullptr, m, y, pool_);
}

// A counting sort of the picks by expert; tokens ascend within a group.
void MoeBlock::group_by_expert(int tokens) {
  const int experts = config_.moe.num_experts, top_k = config_.moe.experts_per_token;
  group_start_.assign(size_t(experts) + 1, 0);
  for (int32_t e : route_ids_) ++group_start_[size_t(e) + 1];
  for (int e = 0; e < experts; ++e) group_start_[size_t(e) + 1] += group_start_[size_t(e)];
  group_tokens_.resize(route_ids_.size());
  group_weights_.resize(route_ids_.size());
  std::vector<int64_t> next(group_start_.begin(), group_start_.end() - 1);
  for (int t = 0; t < tokens; ++t) {
    for (int j = 0; j < top_k; ++j) {
      const size_t pick = size_t(t) * size_t(top_k) + size_t(j);
      const int64_t at = next[size_t(route_ids_[pick])]++;
      group_tokens_[size_t(at)] = t;
      group_weights_[size_t(at)] = route_weights_[pick];
    }
  }
}

void MoeBlock::forward(const LayerWeights& w, int layer, const float* x, int tokens, float* out,
                       ActivationProbe* probe) {
  const int64_t hidden = config_.hidden_size, inter = config_.moe.expert_intermediate_size;
  const int experts = config_.moe.num_experts, top_k = config_.moe.experts_per_token;

  router_logits_.resize(size_t(tokens) * size_t(experts));
  linear(x, w.router.ref(), tokens, router_logits_.data());
  if (probe) probe->after_op(layer, ProbeOp::router, router_logits_.data(), tokens, experts);
  route_ids_.resize(size_t(tokens) * size_t(top_k));
  route_weights_.resize(route_ids_.size());
  cpu::moe_route(router_logits_.data(), tokens, experts, top_k, config_.moe.normalize_top_k,
                 route_ids_.data(), route_weights_.data(), pool_);
  group_by_expert(tokens);

  std::fill_n(out, int64_t(tokens) * hidden, 0.0f);
  for (int e = 0; e < experts; ++e) {  // expert id order: each token's sum order (R1)
    const int64_t first = group_start_[size_t(e)], n = group_start_[size_t(e) + 1] - first;
    if (n == 0) continue;
    const ExpertWeights& ew = w.experts[size_t(e)];
    group_x_.resize(size_t(n) * size_t(hidden));
    for (int64_t r = 0; r < n; ++r)
      std::copy_n(x + int64_t(group_tokens_[size_t(first + r)]) * hidden, hidden,
                  group_x_.data() + r * hidden);
    group_gate_.resize(size_t(n) * size_t(inter));
    group_up_.resize(group_gate_.size());
    group_y_.resize(group_x_.size());
    linear(group_x_.data(), ew.w_gate.ref(), n, group_gate_.data());
    linear(group_x_.data(), ew.w_up.ref(), n, group_up_.data());
    cpu::silu_mul(group_gate_.data(), group_up_.data(), n * inter, group_gate_.data(), pool_);
    linear(group_gate_.data(), ew.w_down.ref(), n, group_y_.data());
    cpu::moe_accumulate(group_y_.data(), group_tokens_.data() + first,
                        group_weights_.data() + first, n, hidden, out, pool_);
  }
  if (config_.moe.shared_intermediate_size > 0) add_shared_expert(w, x, tokens, out);
}

// out[t] += sigmoid(shared_gate . x[t]) * SwiGLU_shared(x[t]): every row alone through the
// GEMM's fixed per-row order, then one f32 multiply and add per element, after the routed sum.
void MoeBlock::add_shared_expert(const LayerWeights& w, const float* x, int tokens, float* out) {
  const int64_t hidden = config_.hidden_size, inter = config_.moe.shared_intermediate_size;
  group_gate_.resize(size_t(tokens) * size_t(inter));
  group_up_.resize(group_gate_.size());
  group_y_.resize(size_t(tokens) * size_t(hidden));
  shared_logit_.resize(size_t(tokens));
  linear(x, w.shared.w_gate.ref(), tokens, group_gate_.data());
  linear(x, w.shared.w_up.ref(), tokens, group_up_.data());
  cpu::silu_mul(group_gate_.data(), group_up_.data(), int64_t(tokens) * inter, group_gate_.data(),
                pool_);
  linear(group_gate_.data(), w.shared.w_down.ref(), tokens, group_y_.data());
  linear(x, w.shared_gate.ref(), tokens, shared_logit_.data());
  for (int t = 0; t < tokens; ++t) {
    const float g = 1.0f / (1.0f + std::exp(-shared_logit_[size_t(t)]));
    float* o = out + int64_t(t) * hidden;
    const float* y = group_y_.data() + int64_t(t) * hidden;
    for (int64_t i = 0; i < hidden; ++i) o[i] += g * y[i];
  }
}

}  // namespace invar::model
