// silu_mul: out[t, i] = bf16(silu(gate[t, i]) * up[t, i]), silu(g) = g / (1 + e^-g), all in f32
// with correctly rounded operations (expf is the accurate one, not __expf), rounded once.
// Element-wise, a grid-stride loop per row; no reduction.
//   T = tokens, I = intermediate size
#include <algorithm>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/ops.h"

namespace invar::kernels::cuda {
namespace {

using bf16 = __nv_bfloat16;

__global__ void silu_mul_kernel(const bf16* gate, int64_t ldg, const bf16* up, int64_t ldu,
                                int64_t inter, bf16* out, int64_t ldo) {
  const int64_t t = blockIdx.y;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < inter;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float g = __bfloat162float(gate[t * ldg + i]);
    const float u = __bfloat162float(up[t * ldu + i]);
    const float s = __fdiv_rn(g, __fadd_rn(1.0f, expf(-g)));
    out[t * ldo + i] = __float2bfloat16_rn(__fmul_rn(s, u));
  }
}

}  // namespace

Status silu_mul(const bf16* gate, int64_t ldg, const bf16* up, int64_t ldu, int64_t tokens,
                int64_t inter, bf16* out, int64_t ldo, cudaStream_t stream) {
  if (tokens <= 0 || inter <= 0) return {};
  if (tokens > 65535) {  // grid.y limit: split the rows
    for (int64_t t0 = 0; t0 < tokens; t0 += 65535) {
      INVAR_RETURN_IF_ERROR(silu_mul(gate + t0 * ldg, ldg, up + t0 * ldu, ldu,
                                     std::min<int64_t>(65535, tokens - t0), inter, out + t0 * ldo,
                                     ldo, stream));
    }
    return {};
  }
  const int blocks_x = int(std::min<int64_t>((inter + 255) / 256, 64));
  silu_mul_kernel<<<dim3(blocks_x, unsigned(tokens)), 256, 0, stream>>>(gate, ldg, up, ldu, inter,
                                                                        out, ldo);
  return cuda_status(cudaGetLastError(), "silu_mul: kernel launch");
}

}  // namespace invar::kernels::cuda
