// silu_mul: out[t, i] = silu_mul_value(gate[t, i], up[t, i]) (silu_mul.cuh), element-wise, a
// grid-stride loop per row; no reduction. Two layouts of the inputs: separate gate and up
// arrays, or one gate/up GEMM output whose columns pair gate and up in blocks of kGateUpBlock
// (gemm.h): column i of gate at (i / 8) * 16 + i % 8, of up 8 further.
//   T = tokens, I = intermediate size
#include <algorithm>

#include "kernels/cuda/device.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/silu_mul.cuh"

namespace invar::kernels::cuda {
namespace {

using bf16 = __nv_bfloat16;

template <bool kPaired>
__global__ void silu_mul_kernel(const bf16* gate, int64_t ldg, const bf16* up, int64_t ldu,
                                int64_t inter, bf16* out, int64_t ldo) {
  constexpr int64_t kBlock = kGateUpBlock;
  const int64_t t = blockIdx.y;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < inter;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t col = kPaired ? (i / kBlock) * (2 * kBlock) + i % kBlock : i;
    out[t * ldo + i] = silu_mul_value(__bfloat162float(gate[t * ldg + col]),
                                      __bfloat162float(up[t * ldu + col]));
  }
}

template <bool kPaired>
Status launch(const bf16* gate, int64_t ldg, const bf16* up, int64_t ldu, int64_t tokens,
              int64_t inter, bf16* out, int64_t ldo, cudaStream_t stream) {
  if (tokens <= 0 || inter <= 0) return {};
  for (int64_t t0 = 0; t0 < tokens; t0 += 65535) {  // grid.y limit: split the rows
    const int64_t rows = std::min<int64_t>(65535, tokens - t0);
    const int blocks_x = int(std::min<int64_t>((inter + 255) / 256, 64));
    silu_mul_kernel<kPaired><<<dim3(blocks_x, unsigned(rows)), 256, 0, stream>>>(
        gate + t0 * ldg, ldg, up + t0 * ldu, ldu, inter, out + t0 * ldo, ldo);
  }
  return cuda_status(cudaGetLastError(), "silu_mul: kernel launch");
}

}  // namespace

Status silu_mul(const bf16* gate, int64_t ldg, const bf16* up, int64_t ldu, int64_t tokens,
                int64_t inter, bf16* out, int64_t ldo, cudaStream_t stream) {
  return launch<false>(gate, ldg, up, ldu, tokens, inter, out, ldo, stream);
}

Status silu_mul_paired(const bf16* gate_up, int64_t ld, int64_t tokens, int64_t inter, bf16* out,
                       int64_t ldo, cudaStream_t stream) {
  if (inter % kGateUpBlock) {
    return Status::error("silu_mul_paired: the intermediate size must be a multiple of 8");
  }
  return launch<true>(gate_up, ld, gate_up + kGateUpBlock, ld, tokens, inter, out, ldo, stream);
}

}  // namespace invar::kernels::cuda
