// argmax: out[r] = the lowest j with x[r, j] == max_j x[r, j] (ties to the lowest token id).
// One CTA per row (R4). Each thread scans j = tid, tid + 256, ... keeping (value, index); the
// merge order is total on (value descending, index ascending), so any tree gives the exact
// answer. NaN never compares greater and is skipped; a row of NaNs gives 0, as on the CPU.
// logit_summary adds the row's maximum and log sum_j exp(x_j) (what a logprob subtracts):
// the sum runs over the same per-thread stride, then a warp tree and the warps in index
// order, all fixed by the block size alone, so a row's normalizer never depends on the
// batch (R4).
//   R = rows, V = columns (vocab)
#include <climits>

#include "kernels/cuda/device.h"
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

// The row's (max, argmax) in every thread of the block.
template <typename T>
__device__ void row_argmax(const T* row, int64_t cols, float& bv, int& bj) {
  __shared__ float sv[kBlock / 32];
  __shared__ int sj[kBlock / 32];
  bv = -INFINITY;
  bj = INT_MAX;
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
  bv = sv[0];
  bj = sj[0];
  for (int w = 1; w < kBlock / 32; ++w) take(bv, bj, sv[w], sj[w]);
}

template <typename T>
__global__ void __launch_bounds__(kBlock)
    argmax_kernel(const T* x, int64_t ldx, int64_t cols, int32_t* out) {
  float bv;
  int bj;
  row_argmax(x + blockIdx.x * ldx, cols, bv, bj);
  if (threadIdx.x == 0) out[blockIdx.x] = bj == INT_MAX ? 0 : bj;
}

template <typename T>
__global__ void __launch_bounds__(kBlock)
    logit_summary_kernel(const T* x, int64_t ldx, int64_t cols, int32_t* argmax_out,
                         float* max_out, float* log_z_out) {
  __shared__ float ssum[kBlock / 32];
  const T* row = x + blockIdx.x * ldx;
  float m;
  int j_max;
  row_argmax(row, cols, m, j_max);
  // exp(x - m) <= 1 for every finite entry; a row without a finite maximum (all -inf or NaN)
  // gets log_z = m, so that its logprobs come out as NaN or -inf rather than garbage.
  float sum = 0.0f;
  if (isfinite(m)) {
    for (int64_t j = threadIdx.x; j < cols; j += kBlock) {
      const float v = to_f32(row[j]);
      if (!isnan(v)) sum += expf(v - m);
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  if ((threadIdx.x & 31) == 0) ssum[threadIdx.x >> 5] = sum;
  __syncthreads();
  if (threadIdx.x == 0) {
    float total = 0.0f;
    for (int w = 0; w < kBlock / 32; ++w) total += ssum[w];
    argmax_out[blockIdx.x] = j_max == INT_MAX ? 0 : j_max;
    max_out[blockIdx.x] = m;
    log_z_out[blockIdx.x] = isfinite(m) ? m + logf(total) : m;
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

Status logit_summary(const bf16* x, int64_t ldx, int64_t rows, int64_t cols, int32_t* argmax_out,
                     float* max_out, float* log_z_out, cudaStream_t stream) {
  if (rows <= 0) return {};
  if (cols <= 0 || cols > INT_MAX - 1) {
    return Status::error("logit_summary: the row length must be in [1, 2^31 - 2]");
  }
  if (rows > INT_MAX) return Status::error("logit_summary: more than 2^31 - 1 rows");
  logit_summary_kernel<bf16><<<unsigned(rows), kBlock, 0, stream>>>(x, ldx, cols, argmax_out,
                                                                    max_out, log_z_out);
  return cuda_status(cudaGetLastError(), "logit_summary: kernel launch");
}

Status argmax(const bf16* x, int64_t ldx, int64_t rows, int64_t cols, int32_t* out,
              cudaStream_t stream) {
  return launch(x, ldx, rows, cols, out, stream);
}

Status argmax(const float* x, int64_t ldx, int64_t rows, int64_t cols, int32_t* out,
              cudaStream_t stream) {
  return launch(x, ldx, rows, cols, out, stream);
}

}  // namespace invar::kernels::cuda
