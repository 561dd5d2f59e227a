#include "model/transformer.h"

#include <cmath>

#include "kernels/cpu/ops.h"
#include "model/model_runner.h"

namespace invar::model {

namespace cpu = kernels::cpu;

namespace {
const std::vector<HostTensor> kNoSlices;
}  // namespace

Transformer::Transformer(const ModelConfig& config, const ModelWeights& weights, ThreadPool& pool,
                         kernels::KernelMode mode, TpRank tp)
    : config_(config),
      weights_(weights),
      pool_(pool),
      mode_(mode),
      tp_(tp),
      inv_freq_(rope_inv_freq(config)),
      inv_freq_long_(rope_inv_freq_long(config)),
      inv_freq_local_(rope_inv_freq_local(config)),
      moe_(config, pool, mode) {}

// Rope at each token's absolute position. With longrope the table is chosen per token by its
// position (short below original_max_position, long from there), so over runs of tokens that
// share a table: rope is element-wise per token, and the runs change no bit. Gemma 3's sliding
// layers use their own table (a function of the layer, never of the batch).
void Transformer::apply_rope(int layer, float* x, const BatchPlan& plan, int tokens, int heads) {
  const int64_t d = config_.head_dim;
  const int rot = int(inv_freq_.size() * 2);
  if (!inv_freq_local_.empty() && layer_is_sliding(config_, layer)) {
    kernels::RopeParams p{config_.rope_style, rot, inv_freq_local_.data(),
                          rope_attention_factor(config_.local_rope_scaling)};
    cpu::rope(x, plan.positions.data(), tokens, heads, int(d), p, pool_);
    return;
  }
  const float factor = rope_attention_factor(config_.rope_scaling);
  if (inv_freq_long_.empty()) {
    kernels::RopeParams p{config_.rope_style, rot, inv_freq_.data(), factor};
    cpu::rope(x, plan.positions.data(), tokens, heads, int(d), p, pool_);
    return;
  }
  const int32_t long_from = config_.rope_scaling.original_max_position;
  for (int b = 0; b < tokens;) {
    const bool is_long = plan.positions[size_t(b)] >= long_from;
    int e = b + 1;
    while (e < tokens && (plan.positions[size_t(e)] >= long_from) == is_long) ++e;
    kernels::RopeParams p{config_.rope_style, rot,
                          is_long ? inv_freq_long_.data() : inv_freq_.data(), factor};
    cpu::rope(x + int64_t(b) * heads * d, plan.positions.data() + b, e - b, heads, int(d), p,
              pool_);
    b = e;
  }
}

void Transformer::linear(const float* x, const kernels::WeightRef& w, const float* bias,
                         int64_t m, float* y) {
  if (mode_ == kernels::KernelMode::fast) return cpu::gemm_split_k(x, w, bias, m, y, pool_);
  cpu::gemm(x, w, bias, m, y, pool_);
}

Status Transformer::check_plan(const BatchPlan& plan, const KvCache& cache) const {
  return check_batch_plan(plan, config_, cache.num_blocks(), cache.block_size());
}

Status Transformer::forward(const BatchPlan& plan, KvCache& cache, std::vector<float>& logits) {
  INVAR_RETURN_IF_ERROR(check_plan(plan, cache));
  const int tokens = plan.num_tokens();
  const int64_t hidden = config_.hidden_size;
  if (tokens == 0) {
    logits.clear();
    return Status();
  }
  x_.resize(size_t(tokens) * hidden);
  h_.resize(x_.size());
  if (probe_) probe_->begin_step(plan);
  cpu::embedding(weights_.embedding.ref(), plan.token_ids.data(), tokens, x_.data(), pool_);
  if (config_.embedding_scale > 0.0f) {  // Gemma; one exact-order multiply per element
    for (float& v : x_) v *= config_.embedding_scale;
  }
  probe(-1, ProbeOp::embedding, x_.data(), tokens, hidden);

  for (int l = 0; l < config_.num_layers; ++l) {
    attention_block(l, plan, cache, tokens);
    mlp_block(l, tokens);
  }

  // Only the requested rows go through the final norm and the (large) output projection.
  const int64_t rows = int64_t(plan.logit_rows.size());
  rows_.resize(size_t(rows) * hidden);
  for (int64_t r = 0; r < rows; ++r)
    std::copy_n(x_.data() + int64_t(plan.logit_rows[r]) * hidden, hidden,
                rows_.data() + r * hidden);
  cpu::rmsnorm(rows_.data(), weights_.final_norm.f32(), rows, hidden, config_.rms_eps,
               rows_.data(), pool_);
  probe(config_.num_layers, ProbeOp::final_norm, rows_.data(), rows, hidden);
  logits.resize(size_t(rows) * config_.vocab_size);
  vocab_parallel_logits(rows_.data(), rows, logits);
  if (config_.final_softcap > 0.0f)
    cpu::softcap(logits.data(), int64_t(logits.size()), config_.final_softcap, pool_);
  probe(config_.num_layers, ProbeOp::logits, logits.data(), rows, config_.vocab_size);
  return Status();
}

void Transformer::attention_block(int l, const BatchPlan& plan, KvCache& cache, int tokens) {
  const LayerWeights& w = weights_.layers[l];
  const int64_t hidden = config_.hidden_size, d = config_.head_dim;
  const int hq = config_.num_heads, hkv = config_.num_kv_heads;
  q_.resize(size_t(tokens) * hq * d);
  k_.resize(size_t(tokens) * hkv * d);
  v_.resize(k_.size());
  attn_.resize(q_.size());

  cpu::rmsnorm(x_.data(), w.attn_norm.f32(), tokens, hidden, config_.rms_eps, h_.data(), pool_);
  probe(l, ProbeOp::attn_norm, h_.data(), tokens, hidden);
  auto bias = [](const HostTensor& b) { return b.empty() ? nullptr : b.f32(); };
  linear(h_.data(), w.wq.ref(), bias(w.bq), tokens, q_.data());
  probe(l, ProbeOp::q_proj, q_.data(), tokens, hq * d);
  linear(h_.data(), w.wk.ref(), bias(w.bk), tokens, k_.data());
  probe(l, ProbeOp::k_proj, k_.data(), tokens, hkv * d);
  linear(h_.data(), w.wv.ref(), bias(w.bv), tokens, v_.data());
  probe(l, ProbeOp::v_proj, v_.data(), tokens, hkv * d);
  if (config_.qk_norm) {  // per-head RMSNorm (Qwen3, Gemma 3), before rope
    cpu::rmsnorm(q_.data(), w.q_norm.f32(), int64_t(tokens) * hq, d, config_.rms_eps, q_.data(),
                 pool_);
    probe(l, ProbeOp::q_norm, q_.data(), tokens, hq * d);
    cpu::rmsnorm(k_.data(), w.k_norm.f32(), int64_t(tokens) * hkv, d, config_.rms_eps, k_.data(),
                 pool_);
    probe(l, ProbeOp::k_norm, k_.data(), tokens, hkv * d);
  }
  apply_rope(l, q_.data(), plan, tokens, hq);
  probe(l, ProbeOp::rope_q, q_.data(), tokens, hq * d);
  apply_rope(l, k_.data(), plan, tokens, hkv);
  probe(l, ProbeOp::rope_k, k_.data(), tokens, hkv * d);

  kernels::KvLayerRef layer = cache.layer(l);
  cpu::kv_store(k_.data(), v_.data(), plan.slots.data(), tokens, layer, pool_);
  kernels::AttentionPlan ap{plan.num_seqs(),          plan.q_indptr.data(),    plan.kv_lens.data(),
                            plan.block_tables.data(), plan.max_blocks_per_seq, cache.block_size(),
                            layer_window(config_, l), config_.attn_softcap};
  const float scale =
      config_.attention_scale > 0.0f ? config_.attention_scale : 1.0f / std::sqrt(float(d));
  cpu::attention(q_.data(), layer, ap, hq, scale, attn_.data(), pool_);
  probe(l, ProbeOp::attention, attn_.data(), tokens, hq * d);

  row_parallel(attn_.data(), w.wo.ref(), tp_.shard ? tp_.shard->o_slices[size_t(l)] : kNoSlices,
               tokens, h_.data());
  probe(l, ProbeOp::o_proj, h_.data(), tokens, hidden);
  if (config_.post_norms) {
    cpu::rmsnorm(h_.data(), w.post_attn_norm.f32(), tokens, hidden, config_.rms_eps, h_.data(),
                 pool_);
    probe(l, ProbeOp::post_attn_norm, h_.data(), tokens, hidden);
  }
  cpu::add(x_.data(), h_.data(), int64_t(tokens) * hidden, pool_);
  probe(l, ProbeOp::attn_residual, x_.data(), tokens, hidden);
}

void Transformer::mlp_block(int l, int tokens) {
  const LayerWeights& w = weights_.layers[l];
  const int64_t hidden = config_.hidden_size, inter = config_.intermediate_size;
  cpu::rmsnorm(x_.data(), w.ffn_norm.f32(), tokens, hidden, config_.rms_eps, h_.data(), pool_);
  probe(l, ProbeOp::ffn_norm, h_.data(), tokens, hidden);
  if (is_moe_layer(config_, l)) {
    gate_.resize(size_t(tokens) * hidden);  // the experts' mixture
    moe_.forward(w, l, h_.data(), tokens, gate_.data(), probe_);
    probe(l, ProbeOp::experts, gate_.data(), tokens, hidden);
    cpu::add(x_.data(), gate_.data(), int64_t(tokens) * hidden, pool_);
    probe(l, ProbeOp::ffn_residual, x_.data(), tokens, hidden);
    return;
  }
  gate_.resize(size_t(tokens) * inter);
  up_.resize(gate_.size());
  linear(h_.data(), w.w_gate.ref(), nullptr, tokens, gate_.data());
  probe(l, ProbeOp::gate_proj, gate_.data(), tokens, inter);
  linear(h_.data(), w.w_up.ref(), nullptr, tokens, up_.data());
  probe(l, ProbeOp::up_proj, up_.data(), tokens, inter);
  if (config_.activation == Activation::gelu_tanh) {
    cpu::gelu_tanh_mul(gate_.data(), up_.data(), int64_t(tokens) * inter, gate_.data(), pool_);
    probe(l, ProbeOp::gelu_tanh_mul, gate_.data(), tokens, inter);
  } else {
    cpu::silu_mul(gate_.data(), up_.data(), int64_t(tokens) * inter, gate_.data(), pool_);
    probe(l, ProbeOp::silu_mul, gate_.data(), tokens, inter);
  }
  row_parallel(gate_.data(), w.w_down.ref(),
               tp_.shard ? tp_.shard->down_slices[size_t(l)] : kNoSlices, tokens, h_.data());
  probe(l, ProbeOp::down_proj, h_.data(), tokens, hidden);
  if (config_.post_norms) {
    cpu::rmsnorm(h_.data(), w.post_ffn_norm.f32(), tokens, hidden, config_.rms_eps, h_.data(),
                 pool_);
    probe(l, ProbeOp::post_ffn_norm, h_.data(), tokens, hidden);
  }
  cpu::add(x_.data(), h_.data(), int64_t(tokens) * hidden, pool_);
  probe(l, ProbeOp::ffn_residual, x_.data(), tokens, hidden);
}

}  // namespace invar::model
