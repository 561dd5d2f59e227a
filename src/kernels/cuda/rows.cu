// Row plumbing of the CUDA forward pass: a bias added to GEMM outputs and the gather of the rows
// whose logits are wanted. Element-wise: each output element is one rounded operation of its
// own inputs, so the bits never depend on the batch.
//   T = tokens (rows), N = features, L = gathered rows
#include <algorithm>

#include "kernels/cuda/device.h"
#include "kernels/cuda/ops.h"

namespace invar::kernels::cuda {
namespace {

using bf16 = __nv_bfloat16;

__global__ void add_bias_kernel(bf16* y, int64_t ldy, const float* bias, int64_t n) {
  const int64_t t = blockIdx.y;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[t * ldy + i] = __float2bfloat16_rn(__fadd_rn(__bfloat162float(y[t * ldy + i]), bias[i]));
}

__global__ void gather_rows_kernel(const bf16* x, int64_t ldx, const int32_t* rows, int64_t width,
                                   bf16* out, int64_t ldo) {
  const int64_t r = blockIdx.y;
  const bf16* src = x + int64_t(rows[r]) * ldx;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < width;
       i += int64_t(gridDim.x) * blockDim.x)
    out[r * ldo + i] = src[i];
}

constexpr int64_t kMaxGridY = 65535;

}  // namespace

Status add_bias(bf16* y, int64_t ldy, const float* bias, int64_t tokens, int64_t n,
                cudaStream_t stream) {
  for (int64_t t0 = 0; t0 < tokens; t0 += kMaxGridY) {
    const int64_t rows = std::min(kMaxGridY, tokens - t0);
    const int blocks_x = int(std::min<int64_t>((n + 255) / 256, 64));
    add_bias_kernel<<<dim3(blocks_x, unsigned(rows)), 256, 0, stream>>>(y + t0 * ldy, ldy, bias, n);
  }
  return cuda_status(cudaGetLastError(), "add_bias: kernel launch");
}

Status gather_rows(const bf16* x, int64_t ldx, const int32_t* rows, int64_t count, int64_t width,
                   bf16* out, int64_t ldo, cudaStream_t stream) {
  for (int64_t r0 = 0; r0 < count; r0 += kMaxGridY) {
    const int64_t n = std::min(kMaxGridY, count - r0);
    const int blocks_x = int(std::min<int64_t>((width + 255) / 256, 16));
    gather_rows_kernel<<<dim3(blocks_x, unsigned(n)), 256, 0, stream>>>(x, ldx, rows + r0, width,
                                                                       out + r0 * ldo, ldo);
  }
  return cuda_status(cudaGetLastError(), "gather_rows: kernel launch");
}

}  // namespace invar::kernels::cuda
