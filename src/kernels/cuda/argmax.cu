// argmax: out[r] = the lowest j with x[r, j] == max_j x[r, j] (ties to the lowest token id).
// One CTA per row (R4). Each thread scans j = tid, tid + 256, ... keeping (value, index); the
// merge order is total on (value descending, index ascending), so any tree gives the exact
// answer. NaN never compares greater and is skipped; a row of NaNs gives 0, as on the CPU.
//   R = rows, V = columns (vocab)
#include <climits>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/ops.h"

namespace invar::kernels::cuda {
namespace {

using bf16 = __nv_bfloat16;
constexpr int kBlock = 256;

__device__ __forceinline__ float to_f32(float v) {
  return v;
}
__device__ __forceinline__ float to_f32(bf16 v) {
  return __bfloat162float(v);
}

__device__ __forceinline__ void take(float& bv, int& bj, float v, int j) {
  if (v > bv || (v == bv && j < bj)) {
    bv = v;
    bj = j;
  }
}

template <typename T>
__global__ void __launch_bounds__(kBlock)
    argmax_kernel(const T* x, int64_t ldx, int64_t cols, int32_t* out) {
  __shared__ float sv[kBlock / 32];
  __shared__ int sj[kBlock / 32];
  const T* row = x + blockIdx.x * ldx;
  float bv = -INFINITY;
  int bj = INT_MAX;
  for (int64_t j = threadIdx.x; j < cols; j += kBlock) take(bv, bj, to_f32(row[j]), int(j));
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float v = __shfl_xor_sync(0xffffffffu, bv, o);
    const int j = __shfl_xor_sync(0xffffffffu, bj, o);
    take(bv, bj, v, j);
  }
  const int warp = threadIdx.x >> 5;
  if ((threadIdx.x & 31) == 0) {
    sv[warp] = bv;
    sj[warp] = bj;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kBlock / 32; ++w) take(bv, bj, sv[w], sj[w]);
    out[blockIdx.x] = bj == INT_MAX ? 0 : bj;
  }
}

template <typename T>
Status launch(const T* x, int64_t ldx, int64_t rows, int64_t cols, int32_t* out,
              cudaStream_t stream) {
  if (rows <= 0) return {};
  if (cols > INT_MAX - 1) return Status::error("argmax: more than 2^31 - 2 columns");
  if (rows > INT_MAX) return Status::error("argmax: more than 2^31 - 1 rows");
  if (cols <= 0) return cuda_status(cudaMemsetAsync(out, 0, size_t(rows) * 4, stream), "argmax");
  argmax_kernel<T><<<unsigned(rows), kBlock, 0, stream>>>(x, ldx, cols, out);
  return cuda_status(cudaGetLastError(), "argmax: kernel launch");
}

}  // namespace

Status argmax(const bf16* x, int64_t ldx, int64_t rows, int64_t cols, int32_t* out,
              cudaStream_t stream) {
  return launch(x, ldx, rows, cols, out, stream);
}

Status argmax(const float* x, int64_t ldx, int64_t rows, int64_t cols, int32_t* out,
              cudaStream_t stream) {
  return launch(x, ldx, rows, cols, out, stream);
}

}  // namespace invar::kernels::cuda
