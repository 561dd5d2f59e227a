// Plain double-precision references for the CPU ops: the obvious loops, no blocking, no SIMD.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/types.h"

namespace invar::ops_test {

// y[m, n] = sum_k x[m, k] * w[n, k] + bias[n]; also returns sum_k |x[m, k] * w[n, k]| in `mag`
// (the scale of the rounding error a float dot product may make).
void ref_gemm(const float* x, const float* w, const float* bias, int64_t m, int64_t n, int64_t k,
              std::vector<double>& y, std::vector<double>& mag);

void ref_rmsnorm(const float* x, const float* weight, int64_t rows, int64_t dim, double eps,
                 std::vector<double>& out);

void ref_rope(const float* x, const int32_t* positions, int64_t tokens, int heads, int head_dim,
              const kernels::RopeParams& params, std::vector<double>& out);

// Softmax attention per (token, head) over the logical KV rows of its sequence, read from the
// paged cache (f32 or f16) through the plan's block tables.
void ref_attention(const float* q, const kernels::KvLayerRef& cache,
                   const kernels::AttentionPlan& plan, int q_heads, double scale,
                   std::vector<double>& out);

void ref_silu_mul(const float* gate, const float* up, int64_t n, std::vector<double>& out);
void ref_gelu_tanh_mul(const float* gate, const float* up, int64_t n, std::vector<double>& out);
void ref_softcap(const float* x, int64_t n, double cap, std::vector<double>& out);

}  // namespace invar::ops_test
