// The mixture-of-experts steps of a sparse layer on NVIDIA GPUs (Qwen3-MoE, Mixtral), around
// the grouped expert GEMM (grouped_gemm.h). All on the device, no host sync: graph-capturable.
//
//   router logits -> moe_route (softmax, top-k) -> moe_group (picks sorted by expert)
//   -> gather rows -> grouped GEMM gate/up -> SiLU-mul -> grouped GEMM down -> moe_combine
//
// Invariance (R1, R2, R4): the router logit of (token, expert) is one dot product with a
// reduction tree fixed by the hidden size; routing is per token; the grouped GEMM computes each
// row of an expert's group with one chain over K whatever the group's size or place; the sort
// puts a group's picks in token order (a scan, no atomics), and moe_combine adds a token's
// experts in increasing expert id, one f32 sum per element rounded once to bf16. So no bit of
// a token's output depends on the other tokens of the step.
//   T = tokens, E = experts, k = experts per token, H = hidden, R = T * k picks (grouped rows)
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "core/status.h"

namespace invar::kernels::cuda {

// logits[t, e] = sum_j x[t, j] * w[e, j] in f32 (a router kept out of bf16 rounding: nearly
// tied experts are then picked as an f32 softmax sees them).
Status moe_router_logits(const __nv_bfloat16* x, int64_t ldx,  // [T, H]
                         const __nv_bfloat16* w,               // [E, H]
                         int64_t tokens, int experts, int64_t hidden,
                         float* logits,  // [T, E]
                         cudaStream_t stream);

// Per token: softmax over the E logits (max subtracted; the max and the sum of exps in a tree
// fixed by E), the k largest probabilities (ties to the lowest id), divided by their sum when
// `normalize`; written in increasing expert id. k <= 32 and E <= 1024. The bf16 form routes
// fast mode's cuBLAS router logits.
Status moe_route(const float* logits,  // [T, E]
                 int64_t tokens, int experts, int top_k, bool normalize,
                 int32_t* expert_ids,  // [T, k]
                 float* weights,       // [T, k]
                 cudaStream_t stream);
Status moe_route(const __nv_bfloat16* logits,  // [T, E]
                 int64_t tokens, int experts, int top_k, bool normalize,
                 int32_t* expert_ids, float* weights, cudaStream_t stream);

// The picks grouped by expert: group e is rows starts[e] .. starts[e + 1] of the grouped
// activations, its picks in increasing token order. row_of_pick[t * k + j] is the grouped row
// of token t's j-th pick; token_of_row[r] the token of grouped row r. `counts` is scratch [E].
Status moe_group(const int32_t* expert_ids,  // [T, k]
                 int64_t tokens, int top_k, int experts,
                 int32_t* counts,        // [E] scratch
                 int32_t* starts,        // [E + 1]
                 int32_t* row_of_pick,   // [R]
                 int32_t* token_of_row,  // [R]
                 cudaStream_t stream);

// out[t, :] = bf16(sum over j in increasing expert id of weights[t, j] * y[row_of_pick[t, j], :]),
// the sum in f32.
Status moe_combine(const __nv_bfloat16* y, int64_t ldy,  // [R, H] the experts' outputs
                   const int32_t* row_of_pick,           // [T, k]
                   const float* weights,                 // [T, k]
                   int64_t tokens, int top_k, int64_t hidden,
                   __nv_bfloat16* out, int64_t ldo,  // [T, H]
                   cudaStream_t stream);

}  // namespace invar::kernels::cuda
