// The fixed summation tree of tensor parallelism on the device (core/tree_sum.h,
// docs/tensor-parallel.md): out[i] = the pairwise tree over parts[0..count)[i], adjacent pairs
// first, in f32 with adds the compiler may not contract or reorder. A rank sums its own K slices'
// partial products with it, and a communicator the ranks' subtrees: the same tree at every rank
// count, hence the same bits. Element-wise: the grid never changes a bit.
//   N = elements, count = leaves (a power of two, at most kMaxDeviceTreeLeaves)
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "core/status.h"

namespace invar::kernels::cuda {

inline constexpr int kMaxDeviceTreeLeaves = 8;

// parts: `count` device pointers (host array) to [N] each; out: device [N] f32 (may alias a
// part of the f32 overload).
Status tree_sum(const __nv_bfloat16* const* parts, int count, int64_t n, float* out,
                cudaStream_t stream);
Status tree_sum(const float* const* parts, int count, int64_t n, float* out, cudaStream_t stream);

// y[i] = bf16(x[i]), rounded to nearest even.
Status round_to_bf16(const float* x, int64_t n, __nv_bfloat16* y, cudaStream_t stream);

}  // namespace invar::kernels::cuda
