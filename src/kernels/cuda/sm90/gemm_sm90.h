// Hopper (sm_90a) tile configs of the invariant GEMM, one translation unit each
// (gemm_sm90_<tile>.cu), so a config compiles on its own. Called by kernels/cuda/gemm.cu.
//   M = rows of x, N = rows of W, K = reduced dimension
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace invar::kernels::cuda::sm90 {

// For the *_gate_up functions, n = 2I rows of W paired gate/up (kGateUpBlock, gemm.h) and y is
// h = silu(gate) * up, [M, I].
struct GemmArgs {
  const void* x;  // [M, K] bf16, row stride ldx
  int64_t ldx;
  const void* w;  // [N, K] bf16, row stride ldw
  int64_t ldw;
  void* y;        // [M, N] bf16, row stride ldy
  int64_t ldy;
  int m, n, k;
  int device;
  int sm_count;           // grid size of persistent configs only; never changes bits
  void* workspace;        // device scratch for the kernel's tile scheduler
  size_t workspace_bytes;
  // `batch` GEMMs in one launch, the i-th at x + i * batch_x, w + i * batch_w, y + i * batch_y
  // (elements): one more tile coordinate, so each gets its bits alone. Not for *_gate_up.
  int batch = 1;
  int64_t batch_x = 0, batch_w = 0, batch_y = 0;
};

// Each returns nullptr once the kernel is enqueued, or a message saying what was refused.
const char* gemm_m64n32(const GemmArgs& a, cudaStream_t stream);
const char* gemm_m64n64(const GemmArgs& a, cudaStream_t stream);
const char* gemm_m64n128(const GemmArgs& a, cudaStream_t stream);
const char* gemm_m128n96(const GemmArgs& a, cudaStream_t stream);
const char* gemm_m128n128(const GemmArgs& a, cudaStream_t stream);
const char* gemm_m128n192(const GemmArgs& a, cudaStream_t stream);
const char* gemm_m128n256(const GemmArgs& a, cudaStream_t stream);
const char* gemm_m16n64_swap(const GemmArgs& a, cudaStream_t stream);
const char* gemm_m32n64_swap(const GemmArgs& a, cudaStream_t stream);
const char* gemm_m64n64_swap(const GemmArgs& a, cudaStream_t stream);
const char* gemm_m64n192_swap(const GemmArgs& a, cudaStream_t stream);
const char* gemm_m96n192_swap(const GemmArgs& a, cudaStream_t stream);
const char* gemm_m96n128_swap(const GemmArgs& a, cudaStream_t stream);

// The configs chosen past decode where the SiLU-and-multiply epilogue pays (gate_up_epilogue.cuh;
// kernels/cuda/gemm.cu says where it does not).
const char* gemm_m64n128_gate_up(const GemmArgs& a, cudaStream_t stream);
const char* gemm_m128n128_gate_up(const GemmArgs& a, cudaStream_t stream);
const char* gemm_m128n192_gate_up(const GemmArgs& a, cudaStream_t stream);
const char* gemm_m128n256_gate_up(const GemmArgs& a, cudaStream_t stream);
const char* gemm_m96n192_swap_gate_up(const GemmArgs& a, cudaStream_t stream);
const char* gemm_m96n128_swap_gate_up(const GemmArgs& a, cudaStream_t stream);

}  // namespace invar::kernels::cuda::sm90
