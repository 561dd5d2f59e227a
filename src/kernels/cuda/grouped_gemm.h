// The grouped GEMM of mixture-of-experts layers: for every expert g, y_g = x_g W_g^T over the
// rows of its group, all groups in one launch whose sizes are read on the device (moe_group's
// starts), so no host sync is needed and the launch is graph-capturable.
//   G = groups (experts), R = grouped rows, N = output features, K = input features
//
// Invariance (R1, R2): every output element is one chain of mma.sync m16n8k16 steps over
// k = 0, 16, 32, ... into one f32 register, then one rounding to bf16, in the CTA tile and warp
// tile of the portable dense GEMM (sm80/gemm_sm80.cu: 128 x 128 x 32, warps 64 x 64 x 32, no
// split of K). Which tile a row lands in and how many rows its group has only change the
// grid's walk, not the row's chain: a token's expert output has the same bits whatever other
// tokens picked its expert, and equals the portable GEMM's over the same rows (moe_test.cu).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "core/status.h"

namespace invar::kernels::cuda {

struct GroupedGemmProblem {
  int groups = 0;
  const int32_t* starts = nullptr;  // [G + 1] device: group g is rows starts[g] .. starts[g + 1]
  const void* x = nullptr;          // [R, K] bf16
  int64_t ldx = 0;
  const void* w = nullptr;  // [G, N, K] bf16, the groups' weights one after the other
  void* y = nullptr;        // [R, N] bf16
  int64_t ldy = 0;
  int64_t n = 0, k = 0;
  void* workspace = nullptr;  // grouped_gemm_workspace_bytes(groups) of device memory
};

// Device scratch for the per-group problem sizes and pointers the kernel reads.
size_t grouped_gemm_workspace_bytes(int groups);

// The persistent grid of the grouped GEMM on `device` (SMs x resident CTAs): computed once by
// the caller, outside any graph capture. Never changes bits.
Result<int> grouped_gemm_ctas(int device);

// Enqueues every group's GEMM on `stream`. K, N and the row strides must be multiples of 8.
Status grouped_gemm(const GroupedGemmProblem& p, int ctas, cudaStream_t stream);

}  // namespace invar::kernels::cuda
