// The mixture-of-experts row steps (moe.h says what each computes and why no bit depends on the
// batch). Each kernel's reductions have a shape fixed by E, H or k; the grid only grows with T.
#include <cub/block/block_scan.cuh>

#include <algorithm>
#include <climits>

#include "kernels/cuda/device.h"
#include "kernels/cuda/moe.h"

namespace invar::kernels::cuda {
namespace {

using bf16 = __nv_bfloat16;

constexpr int kWarp = 32;
constexpr int kRouterWarps = 8;  // experts per router block, one warp each
constexpr int kThreads = 256;
constexpr int64_t kMaxGridY = 65535;

// One warp per (token, expert): lane i sums elements 8 (i + 32 j) .. + 7 for j = 0, 1, ... in
// order, then the 32 partial sums meet in a butterfly: a tree fixed by H.
__global__ void router_logits_kernel(const bf16* x, int64_t ldx, const bf16* w, int experts,
                                     int64_t hidden, float* logits) {
  const int64_t t = blockIdx.y;
  const int lane = threadIdx.x % kWarp;
  const int e = blockIdx.x * kRouterWarps + threadIdx.x / kWarp;
  if (e >= experts) return;
  const bf16* xr = x + t * ldx;
  const bf16* wr = w + int64_t(e) * hidden;
  float acc = 0.0f;
  for (int64_t j = int64_t(lane) * 8; j < hidden; j += kWarp * 8) {
    const uint4 xv = *reinterpret_cast<const uint4*>(xr + j);
    const uint4 wv = *reinterpret_cast<const uint4*>(wr + j);
    const bf16* xs = reinterpret_cast<const bf16*>(&xv);
    const bf16* ws = reinterpret_cast<const bf16*>(&wv);
#pragma unroll
    for (int i = 0; i < 8; ++i)
      acc = __fmaf_rn(__bfloat162float(xs[i]), __bfloat162float(ws[i]), acc);
  }
#pragma unroll
  for (int off = kWarp / 2; off > 0; off /= 2) acc = __fadd_rn(acc, __shfl_xor_sync(~0u, acc, off));
  if (lane == 0) logits[t * experts + e] = acc;
}

// One warp per token; lane i holds experts i, i + 32, ... (at most 32 each). The max and the
// sum of exps meet in butterflies (a tree fixed by E); the top-k are picked one by one, each
// a warp-wide max of (probability, lowest id) over the experts not yet taken, so ties go to the
// lowest id and a NaN never wins (a row of NaNs still gets k distinct ids).
constexpr int kMaxPerLane = 32;
constexpr int kNone = INT_MAX;

// A total order on candidate picks (id kNone: no candidate): the larger probability, a NaN
// below every number, then the lower id. Being a total order, any reduction tree finds the same
// winner.
__device__ bool better(float p, int id, float other_p, int other_id) {
  if (other_id == kNone) return id != kNone;
  if (id == kNone) return false;
  const bool nan = p != p, other_nan = other_p != other_p;
  if (nan != other_nan) return other_nan;
  if (!nan && p != other_p) return p > other_p;
  return id < other_id;
}

__device__ float to_float(float v) { return v; }
__device__ float to_float(bf16 v) { return __bfloat162float(v); }

template <typename Logit>
__global__ void route_kernel(const Logit* logits, int64_t tokens, int experts, int top_k,
                             bool normalize, int32_t* ids_out, float* weights_out) {
  const int64_t t = blockIdx.x * int64_t(blockDim.x / kWarp) + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (t >= tokens) return;
  const Logit* row = logits + t * experts;
  const int per_lane = (experts + kWarp - 1) / kWarp;
  float p[kMaxPerLane];
  float max = -INFINITY;
  for (int i = 0; i < per_lane; ++i) {
    const int e = lane + i * kWarp;
    p[i] = e < experts ? to_float(row[e]) : -INFINITY;
    max = fmaxf(max, p[i]);
  }
  for (int off = kWarp / 2; off > 0; off /= 2) max = fmaxf(max, __shfl_xor_sync(~0u, max, off));
  float sum = 0.0f;
  for (int i = 0; i < per_lane; ++i) {
    p[i] = lane + i * kWarp < experts ? expf(__fsub_rn(p[i], max)) : 0.0f;
    sum = __fadd_rn(sum, p[i]);
  }
  for (int off = kWarp / 2; off > 0; off /= 2) sum = __fadd_rn(sum, __shfl_xor_sync(~0u, sum, off));
  for (int i = 0; i < per_lane; ++i) p[i] = __fdiv_rn(p[i], sum);

  uint32_t taken = 0;  // bit i: expert lane + 32 i is picked
  int32_t my_id = -1;  // lane j < k keeps pick j
  float my_weight = 0.0f, picked_sum = 0.0f;
  for (int j = 0; j < top_k; ++j) {
    int best = kNone;
    float best_p = 0.0f;
    for (int i = 0; i < per_lane; ++i) {
      const int e = lane + i * kWarp;
      if (e < experts && !(taken >> i & 1u) && better(p[i], e, best_p, best)) {
        best = e;
        best_p = p[i];
      }
    }
    for (int off = kWarp / 2; off > 0; off /= 2) {
      const int other = __shfl_xor_sync(~0u, best, off);
      const float other_p = __shfl_xor_sync(~0u, best_p, off);
      if (better(other_p, other, best_p, best)) {
        best = other;
        best_p = other_p;
      }
    }
    if (best % kWarp == lane) taken |= 1u << (best / kWarp);
    if (lane == j) {
      my_id = best;
      my_weight = best_p;
    }
    picked_sum = __fadd_rn(picked_sum, best_p);
  }
  if (normalize) my_weight = __fdiv_rn(my_weight, picked_sum);
  // Lanes 0..k-1 hold the picks; their rank by expert id is where each is written (ids are
  // distinct), the order moe_combine adds them in.
  int rank = 0;
  for (int j = 0; j < top_k; ++j) {
    const int32_t other = __shfl_sync(~0u, my_id, j);
    rank += lane < top_k && other < my_id;
  }
  if (lane < top_k) {
    ids_out[t * top_k + rank] = my_id;
    weights_out[t * top_k + rank] = my_weight;
  }
}

// Block e counts the picks of expert e (integers: the order does not matter).
__global__ void count_kernel(const int32_t* ids, int64_t picks, int32_t* counts) {
  using Reduce = cub::BlockScan<int32_t, kThreads>;
  __shared__ typename Reduce::TempStorage tmp;
  const int e = blockIdx.x;
  int32_t n = 0;
  for (int64_t p = threadIdx.x; p < picks; p += kThreads) n += ids[p] == e;
  int32_t total = 0;
  Reduce(tmp).ExclusiveSum(n, n, total);
  if (threadIdx.x == 0) counts[e] = total;
}

// Block e places the picks of expert e in pick order (= token order) after the groups of the
// lower ids: a block-wide scan of "is mine" flags over the picks, chunk by chunk.
__global__ void place_kernel(const int32_t* ids, int64_t picks, int top_k, int experts,
                             const int32_t* counts, int32_t* starts, int32_t* row_of_pick,
                             int32_t* token_of_row) {
  using Scan = cub::BlockScan<int32_t, kThreads>;
  __shared__ typename Scan::TempStorage tmp;
  __shared__ int32_t base;
  const int e = blockIdx.x;
  // The groups before e: the counts of the lower ids, summed by the block (integers).
  int32_t lower = 0;
  for (int i = threadIdx.x; i < e; i += kThreads) lower += counts[i];
  int32_t ignored = 0;
  Scan(tmp).ExclusiveSum(lower, ignored, lower);
  if (threadIdx.x == 0) {
    base = lower;
    starts[e] = lower;
    if (e == experts - 1) starts[experts] = lower + counts[e];
  }
  __syncthreads();
  int32_t next = base;
  for (int64_t p0 = 0; p0 < picks; p0 += kThreads) {
    const int64_t p = p0 + threadIdx.x;
    const int32_t mine = p < picks && ids[p] == e;
    int32_t before = 0, chunk = 0;
    Scan(tmp).ExclusiveSum(mine, before, chunk);
    if (mine) {
      const int32_t row = next + before;
      row_of_pick[p] = row;
      token_of_row[row] = int32_t(p / top_k);
    }
    next += chunk;
    __syncthreads();  // tmp is reused by the next chunk's scan
  }
}

// One block row per token; each element sums its k experts in the picks' order (expert id).
__global__ void combine_kernel(const bf16* y, int64_t ldy, const int32_t* row_of_pick,
                               const float* weights, int top_k, int64_t hidden, bf16* out,
                               int64_t ldo) {
  const int64_t t = blockIdx.y;
  const int32_t* rows = row_of_pick + t * top_k;
  const float* w = weights + t * top_k;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < hidden;
       i += int64_t(gridDim.x) * blockDim.x) {
    float acc = 0.0f;
    for (int j = 0; j < top_k; ++j)
      acc = __fmaf_rn(w[j], __bfloat162float(y[int64_t(rows[j]) * ldy + i]), acc);
    out[t * ldo + i] = __float2bfloat16_rn(acc);
  }
}

}  // namespace

Status moe_router_logits(const bf16* x, int64_t ldx, const bf16* w, int64_t tokens, int experts,
                         int64_t hidden, float* logits, cudaStream_t stream) {
  if (hidden % 8 || ldx % 8)
    return Status::errorf("moe_router_logits: hidden {} and ldx {} must be multiples of 8", hidden,
                          ldx);
  const unsigned bx = unsigned((experts + kRouterWarps - 1) / kRouterWarps);
  for (int64_t t0 = 0; t0 < tokens; t0 += kMaxGridY) {
    const int64_t n = std::min(kMaxGridY, tokens - t0);
    router_logits_kernel<<<dim3(bx, unsigned(n)), kRouterWarps * kWarp, 0, stream>>>(
        x + t0 * ldx, ldx, w, experts, hidden, logits + t0 * experts);
  }
  return cuda_status(cudaGetLastError(), "moe_router_logits: kernel launch");
}

template <typename Logit>
static Status route(const Logit* logits, int64_t tokens, int experts, int top_k, bool normalize,
             int32_t* expert_ids, float* weights, cudaStream_t stream) {
  if (top_k < 1 || top_k > 32 || top_k > experts || experts > 1024)
    return Status::errorf("moe_route: {} of {} experts per token is outside 1..32 of <= 1024",
                          top_k, experts);
  if (tokens == 0) return Status();
  constexpr int kTokensPerBlock = 4;
  route_kernel<<<unsigned((tokens + kTokensPerBlock - 1) / kTokensPerBlock),
                 kTokensPerBlock * kWarp, 0, stream>>>(logits, tokens, experts, top_k, normalize,
                                                       expert_ids, weights);
  return cuda_status(cudaGetLastError(), "moe_route: kernel launch");
}

Status moe_route(const float* logits, int64_t tokens, int experts, int top_k, bool normalize,
                 int32_t* expert_ids, float* weights, cudaStream_t stream) {
  return route(logits, tokens, experts, top_k, normalize, expert_ids, weights, stream);
}

Status moe_route(const bf16* logits, int64_t tokens, int experts, int top_k, bool normalize,
                 int32_t* expert_ids, float* weights, cudaStream_t stream) {
  return route(logits, tokens, experts, top_k, normalize, expert_ids, weights, stream);
}

Status moe_group(const int32_t* expert_ids, int64_t tokens, int top_k, int experts,
                 int32_t* counts, int32_t* starts, int32_t* row_of_pick, int32_t* token_of_row,
                 cudaStream_t stream) {
  const int64_t picks = tokens * top_k;
  count_kernel<<<unsigned(experts), kThreads, 0, stream>>>(expert_ids, picks, counts);
  place_kernel<<<unsigned(experts), kThreads, 0, stream>>>(expert_ids, picks, top_k, experts,
                                                           counts, starts, row_of_pick,
                                                           token_of_row);
  return cuda_status(cudaGetLastError(), "moe_group: kernel launch");
}

Status moe_combine(const bf16* y, int64_t ldy, const int32_t* row_of_pick, const float* weights,
                   int64_t tokens, int top_k, int64_t hidden, bf16* out, int64_t ldo,
                   cudaStream_t stream) {
  const unsigned bx = unsigned(std::min<int64_t>((hidden + kThreads - 1) / kThreads, 16));
  for (int64_t t0 = 0; t0 < tokens; t0 += kMaxGridY) {
    const int64_t n = std::min(kMaxGridY, tokens - t0);
    combine_kernel<<<dim3(bx, unsigned(n)), kThreads, 0, stream>>>(
        y, ldy, row_of_pick + t0 * top_k, weights + t0 * top_k, top_k, hidden, out + t0 * ldo,
        ldo);
  }
  return cuda_status(cudaGetLastError(), "moe_combine: kernel launch");
}

}  // namespace invar::kernels::cuda
