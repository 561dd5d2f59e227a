// CPU implementations of every op (f32 activations, f32 accumulation).
// Invariance (R1-R4): every output element is reduced in an order fixed by model shapes; the
// thread pool splits rows and columns, never a reduction axis.
//   T = tokens, H = hidden size, N = output features, K = input features, V = vocab,
//   Hq = query heads, Hkv = kv heads, D = head dim, I = intermediate size
#pragma once

#include <cstdint>

#include "core/thread_pool.h"
#include "kernels/types.h"

namespace invar::kernels::cpu {

// out[t, :] = table[ids[t], :]
void embedding(const WeightRef& table,  // [V, H]
               const int32_t* ids,      // [T]
               int64_t tokens, float* out,  // [T, H]
               ThreadPool& pool);

// out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * weight. out may alias x.
void rmsnorm(const float* x,       // [rows, dim]
             const float* weight,  // [dim]
             int64_t rows, int64_t dim, float eps, float* out, ThreadPool& pool);

// y = x W^T (+ bias): y[m, n] = sum_k x[m, k] * w[n, k], k reduced in one fixed order for all M.
// Packed weights give the bits of the f32 gemm over their decoded values.
void gemm(const float* x,        // [M, K]
          const WeightRef& w,    // [N, K]
          const float* bias,     // [N] or nullptr
          int64_t m, float* y,   // [M, N]
          ThreadPool& pool);

// out[r, :] = packed rows decoded to f32 by the SIMD decoder the gemm uses (bit for bit
// core's decode_to_f32; tests check that on every target).
void decode_rows(DType t,                                  // packed
                 const uint8_t* src,                       // [rows, dtype_row_bytes(t, cols)]
                 int64_t rows, int64_t cols, float* out);  // [rows, cols]

// The `fast` mode's GEMM: the reduction over K depends on M (split-K for small batches). Only
// the negative control of the invariance tests uses it (gemm_split_k.cpp says why).
void gemm_split_k(const float* x,      // [M, K]
                  const WeightRef& w,  // [N, K]
                  const float* bias,   // [N] or nullptr
                  int64_t m, float* y,  // [M, N]
                  ThreadPool& pool);

// Rotates q and k in place at the given absolute positions.
void rope(float* x,                // [T, heads, D]
          const int32_t* positions,  // [T]
          int64_t tokens, int heads, int head_dim, const RopeParams& params, ThreadPool& pool);

// Writes this step's K and V rows into their cache slots (slot = block * block_size + offset),
// rounded to the cache's dtype (f32 or f16).
void kv_store(const float* k,  // [T, Hkv, D]
              const float* v,  // [T, Hkv, D]
              const int64_t* slots,  // [T]
              int64_t tokens, const KvLayerRef& cache, ThreadPool& pool);

// Causal GQA attention over the paged cache for a varlen batch. Each (token, head) is computed
// by one routine that walks KV positions 0..pos in fixed tiles from absolute position 0 (R3),
// so the result does not depend on how the sequence was batched or chunked. An f16 cache is
// widened exactly to f32 as it is read. With plan.sliding_window = W > 0 a token sees only
// positions pos - W + 1..pos: the walk starts at the tile holding pos - W + 1 (tiles stay
// aligned to position 0) and the positions below it in that tile contribute exact zeros.
// plan.logit_softcap = c > 0 caps each scaled score s to c * tanh(s / c) before the softmax.
void attention(const float* q,  // [T, Hq, D]
               const KvLayerRef& cache, const AttentionPlan& plan, int q_heads, float scale,
               float* out,  // [T, Hq, D]
               ThreadPool& pool);

// out[t, i] = silu(gate[t, i]) * up[t, i]
void silu_mul(const float* gate, const float* up,  // [T, I] each
              int64_t n, float* out, ThreadPool& pool);

// out[t, i] = gelu_tanh(gate[t, i]) * up[t, i], gelu_tanh(g) = 0.5 g (1 + tanh(sqrt(2/pi)
// (g + 0.044715 g^3))) (PyTorch's tanh approximation; Gemma's GeGLU)
void gelu_tanh_mul(const float* gate, const float* up,  // [T, I] each
                   int64_t n, float* out, ThreadPool& pool);

// x[i] = cap * tanh(x[i] / cap), in place (soft-capping of Gemma 2's final logits)
void softcap(float* x, int64_t n, float cap, ThreadPool& pool);
// Mixture-of-experts routing (kernels/cpu/moe.cpp): per token, softmax over the E router logits
// in f32, the k most probable experts (ties to the lowest id), their probabilities as weights,
// divided by their sum when `normalize`. Each token's k picks are written in increasing expert id.
void moe_route(const float* logits,  // [T, E]
               int64_t tokens, int experts, int top_k, bool normalize,
               int32_t* expert_ids,  // [T, k]
               float* weights,       // [T, k]
               ThreadPool& pool);

// One expert's share of a mixture-of-experts layer: acc[tokens[r], :] += weights[r] * y[r, :].
// The tokens of one call are distinct; calls in expert id order fix each token's sum order.
void moe_accumulate(const float* y,                         // [n, H]: the expert's output rows
                    const int32_t* tokens,                  // [n]: the token each row belongs to
                    const float* weights,                   // [n]
                    int64_t rows, int64_t dim, float* acc,  // [T, H]
                    ThreadPool& pool);

// acc[i] += x[i]
void add(float* acc, const float* x, int64_t n, ThreadPool& pool);

// out[r] = argmax_j x[r, j]; ties go to the lowest index.
void argmax(const float* x,  // [rows, V]
            int64_t rows, int64_t cols, int32_t* out, ThreadPool& pool);

// Per row: argmax as above, its maximum, and log_z = log sum_j exp(x[r, j]), summed in f64 in
// index order (NaN entries skipped; a row without a finite maximum gets log_z = its maximum).
void logit_summary(const float* x,  // [rows, V]
                   int64_t rows, int64_t cols, int32_t* argmax_out, float* max_out,
                   double* log_z_out, ThreadPool& pool);

}  // namespace invar::kernels::cpu
