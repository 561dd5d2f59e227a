// The device tree of tree_sum.h. One thread per element: each element's adds are the same
// whatever the grid.
#include <algorithm>

#include "core/tree_sum.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/tree_sum.h"

namespace invar::kernels::cuda {
namespace {

using bf16 = __nv_bfloat16;

template <typename T>
struct Leaves {
  const T* p[kMaxDeviceTreeLeaves];
};

__device__ inline float widen(float v) {
  return v;
}
__device__ inline float widen(bf16 v) {
  return __bfloat162float(v);
}

template <typename T>
__global__ void tree_sum_kernel(Leaves<T> leaves, int count, int64_t n, float* out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    float v[kMaxDeviceTreeLeaves];
#pragma unroll
    for (int j = 0; j < kMaxDeviceTreeLeaves; ++j)
      if (j < count) v[j] = widen(leaves.p[j][i]);
#pragma unroll
    for (int w = kMaxDeviceTreeLeaves; w > 1; w /= 2)
      if (w <= count)
#pragma unroll
        for (int j = 0; j < w / 2; ++j) v[j] = __fadd_rn(v[2 * j], v[2 * j + 1]);
    out[i] = v[0];
  }
}

__global__ void round_to_bf16_kernel(const float* x, int64_t n, bf16* y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = __float2bfloat16_rn(x[i]);
}

constexpr int kThreads = 256;

unsigned blocks_for(int64_t n) {
  return unsigned(std::min<int64_t>((n + kThreads - 1) / kThreads, 4096));
}

template <typename T>
Status launch_tree_sum(const T* const* parts, int count, int64_t n, float* out,
                       cudaStream_t stream) {
  if (!is_power_of_two(count) || count > kMaxDeviceTreeLeaves)
    return Status::errorf("tree_sum: {} leaves; a power of two up to {}", count,
                          kMaxDeviceTreeLeaves);
  if (n <= 0) return Status();
  Leaves<T> leaves{};
  for (int j = 0; j < count; ++j) leaves.p[j] = parts[j];
  tree_sum_kernel<T><<<blocks_for(n), kThreads, 0, stream>>>(leaves, count, n, out);
  return cuda_status(cudaGetLastError(), "tree_sum: kernel launch");
}

}  // namespace

Status tree_sum(const bf16* const* parts, int count, int64_t n, float* out, cudaStream_t stream) {
  return launch_tree_sum(parts, count, n, out, stream);
}

Status tree_sum(const float* const* parts, int count, int64_t n, float* out, cudaStream_t stream) {
  return launch_tree_sum(parts, count, n, out, stream);
}

Status round_to_bf16(const float* x, int64_t n, bf16* y, cudaStream_t stream) {
  if (n <= 0) return Status();
  round_to_bf16_kernel<<<blocks_for(n), kThreads, 0, stream>>>(x, n, y);
  return cuda_status(cudaGetLastError(), "round_to_bf16: kernel launch");
}

}  // namespace invar::kernels::cuda
