// MoeMlp (moe_mlp.h says what it computes in each mode).
#include "model/cuda/moe_mlp.h"

#include <algorithm>

#include "kernels/cuda/grouped_gemm.h"
#include "kernels/cuda/moe.h"
#include "kernels/cuda/ops.h"
#include "model/activation_probe.h"

namespace invar::model::cuda {

namespace kc = kernels::cuda;
using bf16 = __nv_bfloat16;

Status MoeMlp::reserve(int tokens, int device) {
  const size_t t = size_t(std::max(tokens, 1)), e = size_t(c_.moe.num_experts);
  const size_t k = size_t(c_.moe.experts_per_token), r = t * k;
  const size_t h = size_t(c_.hidden_size), i = size_t(c_.moe.expert_intermediate_size);
  INVAR_RETURN_IF_ERROR(logits_.reserve(t * e * 4, "router logits"));
  INVAR_RETURN_IF_ERROR(ids_.reserve(r * 4, "expert picks"));
  INVAR_RETURN_IF_ERROR(weights_.reserve(r * 4, "expert weights"));
  INVAR_RETURN_IF_ERROR(counts_.reserve(e * 4, "expert group sizes"));
  INVAR_RETURN_IF_ERROR(starts_.reserve((e + 1) * 4, "expert group starts"));
  INVAR_RETURN_IF_ERROR(row_of_pick_.reserve(r * 4, "grouped rows"));
  INVAR_RETURN_IF_ERROR(token_of_row_.reserve(r * 4, "grouped rows' tokens"));
  INVAR_RETURN_IF_ERROR(x_.reserve(r * h * 2, "grouped activations"));
  INVAR_RETURN_IF_ERROR(gate_up_.reserve(r * 2 * i * 2, "experts' gate/up"));
  INVAR_RETURN_IF_ERROR(act_.reserve(r * i * 2, "experts' SiLU-mul"));
  INVAR_RETURN_IF_ERROR(y_.reserve(r * h * 2, "experts' outputs"));
  INVAR_RETURN_IF_ERROR(
      workspace_.reserve(kc::grouped_gemm_workspace_bytes(int(e)), "grouped GEMM workspace"));
  if (ctas_ > 0) return Status();
  INVAR_ASSIGN_OR_RETURN(ctas_, kc::grouped_gemm_ctas(device));
  return Status();
}

void MoeMlp::add_to_key(Fnv1a64& key) const {
  for (const kc::DeviceBuffer* d : {&logits_, &ids_, &weights_, &counts_, &starts_, &row_of_pick_,
                                    &token_of_row_, &x_, &gate_up_, &act_, &y_, &workspace_})
    key.add(d->as());
}

Status MoeMlp::run(const DeviceLayer& w, const bf16* h, int tokens, bf16* out,
                   kernels::KernelMode mode, kc::CudaGemm& gemm, cudaStream_t stream,
                   const Probe& probe) {
  const int experts = c_.moe.num_experts, top_k = c_.moe.experts_per_token;
  const int64_t hidden = c_.hidden_size, rows = int64_t(tokens) * top_k;
  if (mode == kernels::KernelMode::fast) {
    // The usual router: a cuBLAS GEMM with bf16 logits, its kernel (split-K or not) chosen
    // from the token count, so a token's logits, and with them its expert weights, follow the
    // batch.
    bf16* logits = logits_.as<bf16>();
    INVAR_RETURN_IF_ERROR(gemm.run({.x = h, .ldx = hidden, .w = w.router.as(), .ldw = hidden,
                                    .y = logits, .ldy = experts, .m = tokens, .n = experts,
                                    .k = hidden},
                                   mode, stream));
    probe(ProbeOp::router, logits, false, tokens, experts);
    INVAR_RETURN_IF_ERROR(kc::moe_route(logits, tokens, experts, top_k, c_.moe.normalize_top_k,
                                        ids_.as<int32_t>(), weights_.as<float>(), stream));
  } else {
    float* logits = logits_.as<float>();
    INVAR_RETURN_IF_ERROR(kc::moe_router_logits(h, hidden, w.router.as<bf16>(), tokens, experts,
                                                hidden, logits, stream));
    probe(ProbeOp::router, logits, true, tokens, experts);
    INVAR_RETURN_IF_ERROR(kc::moe_route(logits, tokens, experts, top_k, c_.moe.normalize_top_k,
                                        ids_.as<int32_t>(), weights_.as<float>(), stream));
  }
  INVAR_RETURN_IF_ERROR(kc::moe_group(ids_.as<int32_t>(), tokens, top_k, experts,
                                      counts_.as<int32_t>(), starts_.as<int32_t>(),
                                      row_of_pick_.as<int32_t>(), token_of_row_.as<int32_t>(),
                                      stream));
  INVAR_RETURN_IF_ERROR(kc::gather_rows(h, hidden, token_of_row_.as<int32_t>(), rows, hidden,
                                        x_.as<bf16>(), hidden, stream));
  if (mode == kernels::KernelMode::fast) {
    INVAR_RETURN_IF_ERROR(experts_fast(w, gemm, stream));
  } else {
    INVAR_RETURN_IF_ERROR(experts_invariant(w, int(rows), stream));
  }
  INVAR_RETURN_IF_ERROR(kc::moe_combine(y_.as<bf16>(), hidden, row_of_pick_.as<int32_t>(),
                                        weights_.as<float>(), tokens, top_k, hidden, out, hidden,
                                        stream));
  probe(ProbeOp::experts, out, false, tokens, hidden);
  return Status();
}

Status MoeMlp::experts_invariant(const DeviceLayer& w, int rows, cudaStream_t stream) {
  const int experts = c_.moe.num_experts;
  const int64_t hidden = c_.hidden_size, inter = c_.moe.expert_intermediate_size;
  bf16* gate_up = gate_up_.as<bf16>();
  bf16* act = act_.as<bf16>();
  INVAR_RETURN_IF_ERROR(kc::grouped_gemm({.groups = experts,
                                          .starts = starts_.as<int32_t>(),
                                          .x = x_.as(),
                                          .ldx = hidden,
                                          .w = w.experts_gate_up.as(),
                                          .y = gate_up,
                                          .ldy = 2 * inter,
                                          .n = 2 * inter,
                                          .k = hidden,
                                          .workspace = workspace_.as()},
                                         ctas_, stream));
  INVAR_RETURN_IF_ERROR(kc::silu_mul_paired(gate_up, 2 * inter, rows, inter, act, inter, stream));
  return kc::grouped_gemm({.groups = experts,
                           .starts = starts_.as<int32_t>(),
                           .x = act,
                           .ldx = inter,
                           .w = w.experts_down.as(),
                           .y = y_.as(),
                           .ldy = hidden,
                           .n = hidden,
                           .k = inter,
                           .workspace = workspace_.as()},
                          ctas_, stream);
}

Status MoeMlp::experts_fast(const DeviceLayer& w, kc::CudaGemm& gemm, cudaStream_t stream) {
  const int experts = c_.moe.num_experts;
  const int64_t hidden = c_.hidden_size, inter = c_.moe.expert_intermediate_size;
  host_starts_.resize(size_t(experts) + 1);
  INVAR_RETURN_IF_ERROR(kc::cuda_status(
      cudaMemcpyAsync(host_starts_.data(), starts_.as(), host_starts_.size() * 4,
                      cudaMemcpyDeviceToHost, stream),
      "MoE: group sizes download"));
  INVAR_RETURN_IF_ERROR(kc::cuda_status(cudaStreamSynchronize(stream), "MoE: group sizes"));
  const auto* gate_up_w = w.experts_gate_up.as<bf16>();
  const auto* down_w = w.experts_down.as<bf16>();
  for (int e = 0; e < experts; ++e) {
    const int64_t first = host_starts_[size_t(e)], m = host_starts_[size_t(e) + 1] - first;
    if (m == 0) continue;
    bf16* act = act_.as<bf16>() + first * inter;
    INVAR_RETURN_IF_ERROR(gemm.run_gate_up({.x = x_.as<bf16>() + first * hidden,
                                            .ldx = hidden,
                                            .w = gate_up_w + e * 2 * inter * hidden,
                                            .ldw = hidden,
                                            .h = act,
                                            .ldh = inter,
                                            .scratch = gate_up_.as<bf16>() + first * 2 * inter,
                                            .m = m,
                                            .inter = inter,
                                            .k = hidden},
                                           kernels::KernelMode::fast, stream));
    INVAR_RETURN_IF_ERROR(gemm.run({.x = act,
                                    .ldx = inter,
                                    .w = down_w + e * hidden * inter,
                                    .ldw = inter,
                                    .y = y_.as<bf16>() + first * hidden,
                                    .ldy = hidden,
                                    .m = m,
                                    .n = hidden,
                                    .k = inter},
                                   kernels::KernelMode::fast, stream));
  }
  return Status();
}

}  // namespace invar::model::cuda
