// rope: rotates the first rot_dim dims of every head of x in place by angle = pos * inv_freq[i].
//
// Pair i (i < rot_dim / 2) is (2i, 2i + 1) in the interleaved style and (i, i + rot_dim / 2) in
// the half ("neox") style; dims past rot_dim pass through. As on the CPU (cpu/rope.cpp): the
// angle is the f32 product, cos and sin are computed in double and rounded to f32, then scaled
// by attention_factor; the rotation is in f32 and rounded once to bf16. One CTA per token: the
// token's cos/sin go to shared memory once, then every (head, pair) is rotated. No reduction.
//   T = tokens, D = head dim
#include <string>

#include "kernels/cuda/device.h"
#include "kernels/cuda/ops.h"

namespace invar::kernels::cuda {
namespace {

using bf16 = __nv_bfloat16;
constexpr int kMaxHalf = 256;  // rot_dim <= 512

__global__ void rope_kernel(bf16* x, int64_t ld, const int32_t* positions, int heads, int head_dim,
                            int half, bool interleaved, const float* inv_freq, float factor) {
  __shared__ float cs[kMaxHalf], sn[kMaxHalf];
  const int64_t t = blockIdx.x;
  const float pos = float(positions[t]);
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    const double angle = double(__fmul_rn(pos, inv_freq[i]));
    cs[i] = __fmul_rn(float(cos(angle)), factor);
    sn[i] = __fmul_rn(float(sin(angle)), factor);
  }
  __syncthreads();
  bf16* row = x + t * ld;
  for (int idx = threadIdx.x; idx < heads * half; idx += blockDim.x) {
    const int h = idx / half, i = idx % half;
    bf16* a = row + int64_t(h) * head_dim + (interleaved ? 2 * i : i);
    bf16* b = interleaved ? a + 1 : a + half;
    const float x0 = __bfloat162float(*a), x1 = __bfloat162float(*b);
    *a = __float2bfloat16_rn(__fsub_rn(__fmul_rn(x0, cs[i]), __fmul_rn(x1, sn[i])));
    *b = __float2bfloat16_rn(__fadd_rn(__fmul_rn(x1, cs[i]), __fmul_rn(x0, sn[i])));
  }
}

}  // namespace

Status rope(bf16* x, int64_t ld, const int32_t* positions, int64_t tokens, int heads, int head_dim,
            const RopeParams& params, cudaStream_t stream) {
  const int half = params.rot_dim / 2;
  if (tokens <= 0 || heads <= 0 || half <= 0) return {};
  if (params.rot_dim % 2 || params.rot_dim > head_dim || half > kMaxHalf) {
    return Status::error("rope: rot_dim must be even, at most head_dim and at most " +
                         std::to_string(2 * kMaxHalf));
  }
  if (tokens > (int64_t(1) << 31) - 1) return Status::error("rope: more than 2^31 - 1 tokens");
  rope_kernel<<<unsigned(tokens), 128, 0, stream>>>(x, ld, positions, heads, head_dim, half,
                                                    params.style == RopeStyle::interleaved,
                                                    params.inv_freq, params.attention_factor);
  return cuda_status(cudaGetLastError(), "rope: kernel launch");
}

}  // namespace invar::kernels::cuda
