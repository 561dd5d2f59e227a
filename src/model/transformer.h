// The decoder-only transformer forward pass (Llama, Qwen2, Qwen3, Mistral, Phi-3, Gemma 2/3, and
// the mixture-of-experts Qwen3-MoE and Mixtral) over a varlen batch with a paged KV cache, on the
// CPU kernels. Gemma's differences are config switches (ModelConfig): scaled embedding, post
// norms, GeGLU, soft-caps, per-layer windows and ropes; a sparse layer's MLP is MoeBlock.
//   T = tokens in the step, H = hidden, Hq/Hkv = query/kv heads, D = head dim,
//   I = intermediate size, V = vocab, L = rows of logits requested,
//   E = experts, k = experts per token, I_e = expert intermediate size
#pragma once

#include <vector>

#include "core/communicator.h"
#include "core/status.h"
#include "core/thread_pool.h"
#include "model/activation_probe.h"
#include "model/batch.h"
#include "model/kv_cache.h"
#include "model/moe_block.h"
#include "model/tensor_parallel.h"
#include "model/weights.h"

namespace invar::model {

// One rank of a tensor-parallel group (docs/tensor-parallel.md): the transformer's config and
// weights are shard->config and shard->weights; o_proj and down_proj run over shard's K slices
// and are all-reduced through comm; the logits are gathered from every rank's vocab rows.
struct TpRank {
  const RankShard* shard = nullptr;
  Communicator* comm = nullptr;
};

class Transformer {
 public:
  // Keeps references to config, weights and pool; they must outlive the transformer.
  // `mode` fast swaps in batch-dependent kernels: only for negative controls.
  Transformer(const ModelConfig& config, const ModelWeights& weights, ThreadPool& pool,
              kernels::KernelMode mode = kernels::KernelMode::invariant, TpRank tp = {});

  // Runs one step: writes the batch's K/V into `cache` and the logits of plan.logit_rows to
  // `logits` ([L, V], row-major). Each logit row depends only on its own sequence (the
  // invariance contract), not on the other sequences in the plan.
  Status forward(const BatchPlan& plan, KvCache& cache, std::vector<float>& logits);

  const ModelConfig& config() const { return config_; }

  // Hands every op's output to `probe` (nullptr: none, the default). The probe must outlive
  // the forward calls it sees.
  void set_probe(ActivationProbe* probe) { probe_ = probe; }

 private:
  void attention_block(int layer, const BatchPlan& plan, KvCache& cache, int tokens);
  void mlp_block(int layer, int tokens);
  void apply_rope(int layer, float* x, const BatchPlan& plan, int tokens, int heads);
  Status check_plan(const BatchPlan& plan, const KvCache& cache) const;
  void linear(const float* x, const kernels::WeightRef& w, const float* bias, int64_t m, float* y);
  // y[m, H] = x[m, K] w^T for o_proj/down_proj: the plain GEMM, or with tensor parallelism the
  // rank's K slices summed in the fixed tree and all-reduced (transformer_tp.cpp).
  void row_parallel(const float* x, const kernels::WeightRef& w,
                    const std::vector<HostTensor>& slices, int64_t m, float* y);
  // logits[m, V] from the final-normed rows: each rank's vocab rows, gathered in rank order.
  void vocab_parallel_logits(const float* x, int64_t m, std::vector<float>& logits);
  void probe(int layer, ProbeOp op, float* data, int64_t rows, int64_t width) {
    if (probe_) probe_->after_op(layer, op, data, rows, width);
  }

  const ModelConfig& config_;
  const ModelWeights& weights_;
  ThreadPool& pool_;
  kernels::KernelMode mode_;
  ActivationProbe* probe_ = nullptr;
  TpRank tp_;
  std::vector<float> inv_freq_;
  std::vector<float> inv_freq_long_;   // longrope: positions >= original_max_position; else empty
  std::vector<float> inv_freq_local_;  // Gemma 3's sliding layers (local_rope_theta); else empty
  // Scratch activations, grown to the largest step seen.
  std::vector<float> x_, h_, q_, k_, v_, attn_, gate_, up_, rows_;
  std::vector<float> slice_x_, partials_, gathered_;  // tensor parallelism only
  MoeBlock moe_;                                      // the sparse layers' MLP (Qwen3-MoE, Mixtral)
};

}  // namespace invar::model
