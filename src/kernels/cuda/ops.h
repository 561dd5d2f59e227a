// Row and element ops of the CUDA backend (bf16 activations and weights, f32 arithmetic):
// RMSNorm (plain and with the residual add fused), RoPE, embedding, SiLU-and-multiply, argmax
// and the logit-row summary (argmax, max, log-sum-exp), and the sampler's row operations.
// Launchers take raw device pointers, shapes and row strides (in elements) and enqueue on
// `stream`: no allocation, no synchronisation, graph-capturable.
//   T = tokens (rows), H = hidden size, D = head dim, I = intermediate size, V = vocab
//
// Invariance (R4): a row is reduced by one warp group with a tree fixed by the row length alone;
// how many rows there are only changes the grid. RMSNorm's `fast` mode picks the block size
// from the row count (the usual habit), which changes the tree: the negative control.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "core/status.h"
#include "kernels/types.h"

namespace invar::kernels::cuda {

// out[r, :] = bf16(weight * (x[r, :] / sqrt(mean(x[r, :]^2) + eps))). out may alias x (bf16).
Status rmsnorm(const __nv_bfloat16* x, int64_t ldx,   // [T, H]
               const __nv_bfloat16* weight,           // [H]
               int64_t rows, int64_t dim, float eps,  // T, H
               __nv_bfloat16* out, int64_t ldo,       // [T, H]
               KernelMode mode, cudaStream_t stream);
Status rmsnorm(const float* x, int64_t ldx,           // [T, H]
               const __nv_bfloat16* weight,           // [H]
               int64_t rows, int64_t dim, float eps,  // T, H
               __nv_bfloat16* out, int64_t ldo,       // [T, H]
               KernelMode mode, cudaStream_t stream);

// residual[r, :] += x[r, :] in f32, then out[r, :] = rmsnorm(residual[r, :]) as above.
Status rmsnorm_add(float* residual, int64_t ldr,          // [T, H] f32, updated
                   const __nv_bfloat16* x, int64_t ldx,   // [T, H]
                   const __nv_bfloat16* weight,           // [H]
                   int64_t rows, int64_t dim, float eps,  // T, H
                   __nv_bfloat16* out, int64_t ldo,       // [T, H]
                   KernelMode mode, cudaStream_t stream);

// Per-head RMSNorm in place (Qwen3's q/k norm): head h of token t is the row
// x + t * ld + h * head_dim of length head_dim, normalized with `weight` [head_dim]. The same
// recipe as rmsnorm for a row of head_dim elements.
Status rmsnorm_heads(__nv_bfloat16* x, int64_t ld,                     // [T, heads, D]
                     const __nv_bfloat16* weight,                      // [D]
                     int64_t tokens, int heads, int64_t head_dim, float eps,  // T, heads, D
                     KernelMode mode, cudaStream_t stream);

// y[t, i] = bf16(y[t, i] + bias[i]) in f32 (q/k/v biases of Qwen2).
Status add_bias(__nv_bfloat16* y, int64_t ldy,  // [T, N]
                const float* bias,              // [N]
                int64_t tokens, int64_t n, cudaStream_t stream);

// out[r, :] = x[rows[r], :width] for r < count (rows: a device array).
Status gather_rows(const __nv_bfloat16* x, int64_t ldx,  // [T, >= width]
                   const int32_t* rows, int64_t count,   // [L]
                   int64_t width,                        // columns copied
                   __nv_bfloat16* out, int64_t ldo,      // [L, width]
                   cudaStream_t stream);

// Rotates the first rot_dim dims of each head of x in place at the tokens' absolute positions
// (styles: kernels/types.h). params.inv_freq is a device array [rot_dim / 2]. Token t's heads
// start at x + t * ld, head h at + h * head_dim.
Status rope(__nv_bfloat16* x, int64_t ld,             // [T, heads, D]
            const int32_t* positions,                 // [T]
            int64_t tokens, int heads, int head_dim,  // T, heads, D
            const RopeParams& params, cudaStream_t stream);

// out[t, :] = table[ids[t], :] (exact widening to f32, or a copy); an id outside [0, V) writes
// zeros.
Status embedding(const __nv_bfloat16* table, int64_t vocab, int64_t hidden,  // [V, H]
                 const int32_t* ids, int64_t tokens,                         // [T]
                 float* out, int64_t ldo, cudaStream_t stream);              // [T, H]
Status embedding(const __nv_bfloat16* table, int64_t vocab, int64_t hidden,  // [V, H]
                 const int32_t* ids, int64_t tokens,                         // [T]
                 __nv_bfloat16* out, int64_t ldo, cudaStream_t stream);      // [T, H]

// out[t, i] = bf16(silu(gate[t, i]) * up[t, i]), silu(g) = g / (1 + e^-g), in f32.
Status silu_mul(const __nv_bfloat16* gate, int64_t ldg,  // [T, I]
                const __nv_bfloat16* up, int64_t ldu,    // [T, I]
                int64_t tokens, int64_t inter,           // T, I
                __nv_bfloat16* out, int64_t ldo,         // [T, I]
                cudaStream_t stream);

// The same over one gate/up GEMM output whose columns pair gate and up in blocks of
// kGateUpBlock (gemm.h: pair_gate_up_rows): what CudaGemm::run_gate_up does after a GEMM
// without the fused epilogue.
Status silu_mul_paired(const __nv_bfloat16* gate_up, int64_t ld,  // [T, 2I], paired columns
                       int64_t tokens, int64_t inter,             // T, I
                       __nv_bfloat16* out, int64_t ldo,           // [T, I]
                       cudaStream_t stream);

// out[r] = the lowest j with x[r, j] == max_j x[r, j]; NaNs are skipped (a row of NaNs gives 0).
Status argmax(const __nv_bfloat16* x, int64_t ldx,  // [rows, V]
              int64_t rows, int64_t cols, int32_t* out, cudaStream_t stream);
Status argmax(const float* x, int64_t ldx,  // [rows, V]
              int64_t rows, int64_t cols, int32_t* out, cudaStream_t stream);

// Per row of logits: argmax as above, the maximum, and log_z = log sum_j exp(x[r, j]) (f32,
// NaN entries skipped), so that a greedy request needs no logits row on the host and a logprob
// is x - log_z. A row without a finite maximum gets log_z = its maximum.
using kernels::SampleRowParams;

// token_out[r] = the token drawn from row r of bf16 logits with params[r] (device memory), and
// logit_out[r] its raw logit. One CTA per row with reductions fixed by the row length alone
// (R4). A row whose params[r].mask = m >= 0 draws (or picks greedily) only among the tokens
// allowed by masks[m] (a packed bitmask of token_mask_words(V) words); x is never written.
Status sample_rows(const __nv_bfloat16* x, int64_t ldx,  // [rows, V]
                   int64_t rows, int64_t cols, const SampleRowParams* params,
                   const uint32_t* masks,  // [M, token_mask_words(V)]; null when no row has one
                   int32_t* token_out, float* logit_out, cudaStream_t stream);

Status logit_summary(const __nv_bfloat16* x, int64_t ldx,  // [rows, V]
                     int64_t rows, int64_t cols, int32_t* argmax_out, float* max_out,
                     float* log_z_out, cudaStream_t stream);

}  // namespace invar::kernels::cuda
