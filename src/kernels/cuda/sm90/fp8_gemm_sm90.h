// Hopper (sm_90a) tile configs of the invariant FP8 GEMM, one translation unit each
// (fp8_gemm_sm90_<tile>.cu). Called by kernels/cuda/fp8_gemm.cu; the recipe is in fp8_gemm.h.
//   M = rows of x, N = rows of W, K = reduced dimension, KB = K / 128, NB = N / 128,
//   Mp = M rounded up to 4
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace invar::kernels::cuda::sm90 {

struct Fp8GemmArgs {
  const uint8_t* x;  // [M, K] E4M3, row stride ldx
  int64_t ldx;
  const float* x_scales;  // [KB, Mp]
  const uint8_t* w;       // [N, K] E4M3, row stride ldw
  int64_t ldw;
  const float* w_scales;  // [KB, NB]
  void* y;                // [M, N] bf16, row stride ldy
  int64_t ldy;
  int m, n, k;
  int scale_rows;  // Mp
  int device;
  int sm_count;     // grid size of the persistent configs only; never changes bits
  int max_swizzle;  // the persistent scheduler's tile order (1, 2, 4, 8); never changes bits
  void* workspace;  // device scratch for the tile scheduler
  size_t workspace_bytes;
};

// Each returns nullptr once the kernel is enqueued, or a message saying what was refused.
const char* fp8_gemm_m32n128_swap(const Fp8GemmArgs& a, cudaStream_t stream);
const char* fp8_gemm_m64n128_swap(const Fp8GemmArgs& a, cudaStream_t stream);
const char* fp8_gemm_m64n128(const Fp8GemmArgs& a, cudaStream_t stream);
const char* fp8_gemm_m128n128(const Fp8GemmArgs& a, cudaStream_t stream);

}  // namespace invar::kernels::cuda::sm90
