// rmsnorm: out[r, :] = bf16(w * (x[r, :] * inv)), inv = 1 / sqrt(sum(x^2) / H + eps); with the
// residual add fused: residual[r, :] += x[r, :] first, and the sum is over the updated residual.
//
// Invariant recipe (R4): a row belongs to one group of W warps, W set by H alone (1, 4 or 8).
// Thread i of the group takes 8-element chunks i, i + 32W, ... in order, each element a
// fused multiply-add into one f32 accumulator; then the warp's xor tree (16, 8, 4, 2, 1) and
// the W warp sums added in warp order. Vector or scalar loads read the same elements in the
// same order, so alignment never changes bits. A CTA holds 8 / W rows; the row count only
// changes the grid.
// `fast` (negative control): vLLM's habit, threads per row = min(H, rows < 256 ? 1024 : 256),
// element-strided: the reduction tree changes with the row count.
//   R = rows, H = dim
#include <algorithm>

#include "kernels/cuda/device.h"
#include "kernels/cuda/grid.h"
#include "kernels/cuda/ops.h"

namespace invar::kernels::cuda {
namespace {

using bf16 = __nv_bfloat16;
constexpr int kBlock = 256;

__device__ __forceinline__ float load_f32(const float* p) {
  return *p;
}
__device__ __forceinline__ float load_f32(const bf16* p) {
  return __bfloat162float(*p);
}

// 8 consecutive elements of a row as f32 (n < 8: a tail, the rest unread and zero).
template <typename T>
__device__ __forceinline__ void load8(const T* p, int n, bool vec, float (&v)[8]) {
  if (vec && n == 8) {
    if constexpr (sizeof(T) == 2) {
      const uint4 u = *reinterpret_cast<const uint4*>(p);
      const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float2 f = __bfloat1622float2(h[i]);
        v[2 * i] = f.x;
        v[2 * i + 1] = f.y;
      }
    } else {
      const float4 a = *reinterpret_cast<const float4*>(p);
      const float4 b = *reinterpret_cast<const float4*>(p + 4);
      v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w;
      v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
    }
  } else {
#pragma unroll
    for (int i = 0; i < 8; ++i) v[i] = i < n ? load_f32(p + i) : 0.0f;
  }
}

// Sum over the row's group of `warps` warps: xor tree in each warp, then warps in order.
// `red` has one slot per warp of the CTA; every thread of the group gets the same value.
__device__ __forceinline__ float group_sum(float v, int warps, float* red) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = __fadd_rn(v, __shfl_xor_sync(0xffffffffu, v, o));
  if (warps == 1) return v;
  const int warp = threadIdx.x >> 5;
  const int first = warp - warp % warps;
  if ((threadIdx.x & 31) == 0) red[warp] = v;
  __syncthreads();
  float s = red[first];
  for (int w = 1; w < warps; ++w) s = __fadd_rn(s, red[first + w]);
  return s;
}

__device__ __forceinline__ float inv_rms(float sum, int64_t dim, float eps) {
  return __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(__fdiv_rn(sum, float(dim)), eps)));
}

// The tails are unrolled loops with a predicate: a loop bounded by n indexes v at run time,
// which puts v (and every chunk array of the kernel) in local memory; that stack frame held
// rmsnorm_add at 0.5-0.7x of fast mode (bench/results/ops-attention-bench-h200-*-fef0e19.txt).
__device__ __forceinline__ void store8(float* p, int n, bool vec, const float (&v)[8]) {
  if (vec && n == 8) {
    *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
    *reinterpret_cast<float4*>(p + 4) = make_float4(v[4], v[5], v[6], v[7]);
  } else {
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      if (i < n) p[i] = v[i];
    }
  }
}
__device__ __forceinline__ void store8(bf16* p, int n, bool vec, const float (&v)[8]) {
  if (vec && n == 8) {
    uint4 u;
    __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&u);
#pragma unroll
    for (int i = 0; i < 4; ++i) h[i] = __floats2bfloat162_rn(v[2 * i], v[2 * i + 1]);
    *reinterpret_cast<uint4*>(p) = u;
  } else {
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      if (i < n) p[i] = __float2bfloat16_rn(v[i]);
    }
  }
}

// Invariant kernel: blockDim = kBlock, 8 / warps rows per CTA. With ADD, x is the residual
// (f32, updated) and `delta` is added first. vec: x (and delta) rows allow 16-byte chunk
// loads; vec_wo: weight and out do.
// heads > 1: row r is head r % heads of token r / heads, at + (r / heads) * ld + (r % heads) * dim
// of x, delta and out alike (per-head norms); heads == 1: rows are plain rows.
template <typename T, bool ADD>
__global__ void __launch_bounds__(kBlock)
    rmsnorm_rows_kernel(T* x, int64_t ldx, const bf16* delta, int64_t ldd, const bf16* weight,
                        int64_t rows, int64_t dim, float eps, bf16* out, int64_t ldo, int warps,
                        bool vec, bool vec_wo, int heads) {
  __shared__ float red[kBlock / 32];
  const int group = threadIdx.x / (32 * warps);
  const int gt = threadIdx.x % (32 * warps);  // thread in the row's group
  const int64_t row = blockIdx.x * int64_t(kBlock / (32 * warps)) + group;
  const bool live = row < rows;  // dead rows still take part in the group's barrier
  const int64_t chunks = (dim + 7) / 8;
  const int64_t tok = (live ? row : 0) / heads, head = (live ? row : 0) % heads;
  T* xr = x + tok * ldx + head * dim;
  const bf16* dr = ADD ? delta + tok * ldd + head * dim : nullptr;
  float acc = 0.0f;
  for (int64_t c = gt; live && c < chunks; c += 32 * warps) {
    const int n = dim - c * 8 < 8 ? int(dim - c * 8) : 8;
    float v[8];
    load8(xr + c * 8, n, vec, v);
    if constexpr (ADD) {
      float d[8];
      load8(dr + c * 8, n, vec, d);
#pragma unroll
      for (int i = 0; i < 8; ++i) v[i] = __fadd_rn(v[i], d[i]);
      store8(xr + c * 8, n, vec, v);
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) acc = __fmaf_rn(v[i], v[i], acc);
  }
  const float inv = inv_rms(group_sum(acc, warps, red), dim, eps);
  if (!live) return;
  bf16* orow = out + tok * ldo + head * dim;
  // Second pass: this thread rereads the chunks it wrote (no barrier needed).
  for (int64_t c = gt; c < chunks; c += 32 * warps) {
    const int n = dim - c * 8 < 8 ? int(dim - c * 8) : 8;
    float v[8], w[8];
    load8(xr + c * 8, n, vec, v);
    load8(weight + c * 8, n, vec_wo, w);
#pragma unroll
    for (int i = 0; i < 8; ++i) v[i] = __fmul_rn(w[i], __fmul_rn(v[i], inv));
    store8(orow + c * 8, n, vec_wo, v);
  }
}

// Fast-mode kernel: one row per CTA of blockDim threads, element-strided.
template <typename T, bool ADD>
__global__ void rmsnorm_fast_kernel(T* x, int64_t ldx, const bf16* delta, int64_t ldd,
                                    const bf16* weight, int64_t dim, float eps, bf16* out,
                                    int64_t ldo, int heads) {
  __shared__ float red[32];
  const int64_t tok = blockIdx.x / heads, head = blockIdx.x % heads;
  T* xr = x + tok * ldx + head * dim;
  float acc = 0.0f;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    float v = load_f32(xr + i);
    if constexpr (ADD) {
      v = __fadd_rn(v, __bfloat162float(delta[tok * ldd + head * dim + i]));
      xr[i] = v;
    }
    acc = __fmaf_rn(v, v, acc);
  }
  const float inv = inv_rms(group_sum(acc, int(blockDim.x) / 32, red), dim, eps);
  bf16* orow = out + tok * ldo + head * dim;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    const float w = __bfloat162float(weight[i]);
    orow[i] = __float2bfloat16_rn(__fmul_rn(w, __fmul_rn(load_f32(xr + i), inv)));
  }
}

// Warps per row of the invariant recipe: a function of the row length only.
int warps_per_row(int64_t dim) {
  return dim <= 1024 ? 1 : dim <= 4096 ? 4 : 8;
}

template <typename T, bool ADD>
Status launch(T* x, int64_t ldx, const bf16* delta, int64_t ldd, const bf16* weight, int64_t rows,
              int64_t dim, float eps, bf16* out, int64_t ldo, KernelMode mode,
              cudaStream_t stream, int heads = 1) {
  if (rows <= 0 || dim <= 0) return {};
  if (rows > (int64_t(1) << 31) - 1) return Status::error("rmsnorm: more than 2^31 - 1 rows");
  if (mode == KernelMode::invariant) {
    const int warps = warps_per_row(dim);
    const int per_cta = kBlock / (32 * warps);
    // Vector loads when every row's chunks are 16-byte (bf16) / 32-byte (f32) aligned.
    const int64_t e = 16 / int64_t(sizeof(T));
    const bool heads_aligned = heads == 1 || dim % 8 == 0;  // head offsets keep 16-byte chunks
    bool vec = aligned16(x) && ldx % e == 0 && heads_aligned;
    if (ADD) vec = vec && aligned16(delta) && ldd % 8 == 0;
    const bool vec_wo = aligned16(weight) && aligned16(out) && ldo % 8 == 0 && heads_aligned;
    rmsnorm_rows_kernel<T, ADD><<<unsigned(ceil_div(rows, per_cta)), kBlock, 0, stream>>>(
        x, ldx, delta, ldd, weight, rows, dim, eps, out, ldo, warps, vec, vec_wo, heads);
  } else {
    const int64_t cap = rows < 256 ? 1024 : 256;
    const int threads = int((std::min(dim, cap) + 31) / 32 * 32);
    rmsnorm_fast_kernel<T, ADD><<<unsigned(rows), threads, 0, stream>>>(x, ldx, delta, ldd, weight,
                                                                         dim, eps, out, ldo, heads);
  }
  return cuda_status(cudaGetLastError(), "rmsnorm: kernel launch");
}

}  // namespace

Status rmsnorm(const bf16* x, int64_t ldx, const bf16* weight, int64_t rows, int64_t dim, float eps,
               bf16* out, int64_t ldo, KernelMode mode, cudaStream_t stream) {
  return launch<const bf16, false>(x, ldx, nullptr, 0, weight, rows, dim, eps, out, ldo, mode,
                                   stream);
}

Status rmsnorm(const float* x, int64_t ldx, const bf16* weight, int64_t rows, int64_t dim,
               float eps, bf16* out, int64_t ldo, KernelMode mode, cudaStream_t stream) {
  return launch<const float, false>(x, ldx, nullptr, 0, weight, rows, dim, eps, out, ldo, mode,
                                    stream);
}

Status rmsnorm_add(float* residual, int64_t ldr, const bf16* x, int64_t ldx, const bf16* weight,
                   int64_t rows, int64_t dim, float eps, bf16* out, int64_t ldo, KernelMode mode,
                   cudaStream_t stream) {
  return launch<float, true>(residual, ldr, x, ldx, weight, rows, dim, eps, out, ldo, mode, stream);
}

Status rmsnorm_heads(bf16* x, int64_t ld, const bf16* weight, int64_t tokens, int heads,
                     int64_t head_dim, float eps, KernelMode mode, cudaStream_t stream) {
  if (heads <= 0) return {};
  return launch<const bf16, false>(x, ld, nullptr, 0, weight, tokens * heads, head_dim, eps, x, ld,
                                   mode, stream, heads);
}

}  // namespace invar::kernels::cuda
