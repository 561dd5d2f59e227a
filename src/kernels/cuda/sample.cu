// sample_rows: the sampler's row operations on the GPU (temperature, min-p, top-k, top-p and
// the draw), one CTA per row of bf16 logits, with the engine's semantics (engine/sampler.h):
//   w_j = exp((x_j - max) / T);  keep w_j >= min_p;  then the top_k first in the total order
//   (x descending, id ascending);  then the shortest prefix of that order holding top_p of the
//   kept mass;  then walk the kept ids in id order until the running mass passes u * total.
//   R = rows, V = columns (vocab), B = threads per row
//
// Each filter keeps a prefix of the total order, so the kept set is always
//   { j : key_j > K } + { j : key_j == K, j <= J }
// for a threshold key K (16-bit, from the bf16 bits) and a last tied id J. The kernel finds
// (K, J) with integer histograms (min-p and top-k: a count) and a bisection on K (top-p: a
// mass), then draws. Every sum is either of integers or of doubles in an order fixed by B and
// V alone (thread-strided or thread-chunked partial sums, then cub's block scan or reduction),
// so a row's token depends only on the row and its parameters, never on the batch (R4, R6).
// The draw's uniform comes from the host (Philox keyed by (seed, position)).
// A row with an allowed-token bitmask (structured output) gives every disallowed id the key of a
// NaN: never kept, never the maximum. The host sampler sets those logits to -inf on a copy; a
// -inf has weight 0 there, so both draw from the same tokens with the same weights. The logits
// themselves are only read: the summaries (log_z) and any row downloaded keep the raw bits.
#include <climits>
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <cuda/functional>

#include "kernels/cuda/device.h"
#include "kernels/cuda/ops.h"

namespace invar::kernels::cuda {
namespace {

using bf16 = __nv_bfloat16;
constexpr int kBlock = 512;
constexpr int kNoKey = -1;  // the key of a NaN: never kept

// bf16 bits -> a key whose unsigned order is the order of the values (NaN: kNoKey).
__device__ __forceinline__ int key_of(uint16_t h) {
  if ((h & 0x7fffu) > 0x7f80u) return kNoKey;
  if (h == 0x8000u) h = 0;  // -0 == +0, as the CPU compares them
  return (h & 0x8000u) ? int(uint16_t(~h)) : int(h | 0x8000u);
}
__device__ __forceinline__ float value_of_key(int key) {
  const uint16_t h = (key & 0x8000) ? uint16_t(key & 0x7fff) : uint16_t(~key);
  return __bfloat162float(__ushort_as_bfloat16(h));
}

struct Row {
  const uint16_t* bits;
  const uint32_t* allowed;  // [ceil(V / 32)] bit j: token j may be drawn; null: every token
  int cols;
  float max_value;
  float inv_t;
  __device__ int key(int j) const {
    if (allowed && !((allowed[j >> 5] >> (j & 31)) & 1u)) return kNoKey;
    return key_of(bits[j]);
  }
  // The engine's weight: exp((x - max) * (1 / T)) in f32.
  __device__ float weight_of_key(int key) const {
    return expf((value_of_key(key) - max_value) * inv_t);
  }
};

using IntReduce = cub::BlockReduce<int, kBlock>;
using DoubleReduce = cub::BlockReduce<double, kBlock>;
using IntScan = cub::BlockScan<int, kBlock>;
using DoubleScan = cub::BlockScan<double, kBlock>;

union Shared {
  typename IntReduce::TempStorage int_reduce;
  typename DoubleReduce::TempStorage double_reduce;
  typename IntScan::TempStorage int_scan;
  typename DoubleScan::TempStorage double_scan;
};

// Whether key/id is in the set { key > k } + { key == k, id <= j_last }.
__device__ __forceinline__ bool in_set(int key, int j, int k, int j_last) {
  return key > k || (key == k && j <= j_last);
}

// A value broadcast from thread 0 (or any one writer) to the block.
template <typename T>
__device__ T broadcast(T v, T* slot, bool writer) {
  __syncthreads();
  if (writer) *slot = v;
  __syncthreads();
  return *slot;
}

// The id of the r-th (1-based) element with key == k and id <= j_limit, in id order. Threads own
// contiguous chunks of ids: count, scan the counts, and the owner of the r-th walks its chunk.
__device__ int nth_tie(const Row& row, int k, int j_limit, int r, Shared& sh, int* slot) {
  const int chunk = (row.cols + kBlock - 1) / kBlock;
  const int begin = min(row.cols, int(threadIdx.x) * chunk);
  const int end = min(row.cols, begin + chunk);
  int count = 0;
  for (int j = begin; j < end; ++j) count += (row.key(j) == k && j <= j_limit);
  int before = 0;
  __syncthreads();
  IntScan(sh.int_scan).ExclusiveSum(count, before);
  int found = INT_MAX;
  if (before < r && r <= before + count) {
    int seen = before;
    for (int j = begin; j < end; ++j) {
      if (row.key(j) == k && j <= j_limit && ++seen == r) {
        found = j;
        break;
      }
    }
  }
  __syncthreads();
  const int j = IntReduce(sh.int_reduce).Reduce(found, ::cuda::minimum<>{});
  return broadcast(j, slot, threadIdx.x == 0);
}

// The key of the n-th (1-based) element in descending key order, and how many have a greater
// key. Two 8-bit radix passes over the 16-bit keys with integer histograms.
__device__ void select_key(const Row& row, int n, int* hist, int& k_out, int& greater_out) {
  int prefix = 0, greater = 0;
  for (int pass = 0; pass < 2; ++pass) {
    const int shift = pass == 0 ? 8 : 0;
    for (int b = threadIdx.x; b < 256; b += kBlock) hist[b] = 0;
    __syncthreads();
    for (int j = threadIdx.x; j < row.cols; j += kBlock) {
      const int key = row.key(j);
      if (key == kNoKey) continue;
      if (pass == 1 && (key >> 8) != (prefix >> 8)) continue;
      atomicAdd(&hist[(key >> shift) & 0xff], 1);  // integer counts: exact in any order
    }
    __syncthreads();
    // Bins from the top until the n-th element falls in one (every thread reads the same).
    int acc = greater, bin = 255;
    for (; bin > 0; --bin) {
      if (acc + hist[bin] >= n) break;
      acc += hist[bin];
    }
    greater = acc;
    prefix |= bin << shift;
    __syncthreads();
  }
  k_out = prefix;
  greater_out = greater;
}

// Mass of { key >= k } within the set { key > k1 } + { key == k1, id <= j1 }, summed in a fixed
// order (thread-strided partial sums, then the block reduction).
__device__ double mass_at_least(const Row& row, int k, int k1, int j1, Shared& sh, double* slot) {
  double part = 0.0;
  for (int j = threadIdx.x; j < row.cols; j += kBlock) {
    const int key = row.key(j);
    if (key >= k && in_set(key, j, k1, j1)) part += double(row.weight_of_key(key));
  }
  __syncthreads();
  const double total = DoubleReduce(sh.double_reduce).Sum(part);
  return broadcast(total, slot, threadIdx.x == 0);
}

__global__ void __launch_bounds__(kBlock)
    sample_rows_kernel(const bf16* x, int64_t ldx, int cols, const SampleRowParams* params,
                       const uint32_t* masks, int64_t mask_words, int32_t* token_out,
                       float* logit_out) {
  __shared__ Shared sh;
  __shared__ int hist[256];
  __shared__ int islot;
  __shared__ double dslot;
  const SampleRowParams p = params[blockIdx.x];
  const uint32_t* allowed = p.mask >= 0 ? masks + int64_t(p.mask) * mask_words : nullptr;
  Row row{reinterpret_cast<const uint16_t*>(x + blockIdx.x * ldx), allowed, cols, 0.0f, 0.0f};

  // The maximum key (and with it the greedy answer: its lowest id).
  int kmax = kNoKey;
  for (int j = threadIdx.x; j < cols; j += kBlock) kmax = max(kmax, row.key(j));
  __syncthreads();
  kmax = broadcast(IntReduce(sh.int_reduce).Reduce(kmax, ::cuda::maximum<>{}), &islot, threadIdx.x == 0);
  int token;
  if (kmax == kNoKey) {
    token = 0;  // a row of NaNs (or nothing allowed): as the CPU sampler, id 0
  } else if (!(p.inv_temperature > 0.0f) || p.top_k == 1) {
    token = nth_tie(row, kmax, cols - 1, 1, sh, &islot);
  } else {
    row.max_value = value_of_key(kmax);
    row.inv_t = p.inv_temperature;

    // min-p keeps an upper set of keys (the weight rises with the key): count it.
    int kept = 0;
    for (int j = threadIdx.x; j < cols; j += kBlock) {
      const int key = row.key(j);
      kept += key != kNoKey && row.weight_of_key(key) >= p.min_p;
    }
    __syncthreads();
    kept = broadcast(IntReduce(sh.int_reduce).Sum(kept), &islot, threadIdx.x == 0);
    // top-k: the first min(k, kept) of the order. (K1, J1) bound that prefix.
    const int n1 = max(1, p.top_k > 0 ? min(p.top_k, kept) : kept);  // the maximum always stays
    int k1, greater1;
    select_key(row, n1, hist, k1, greater1);
    const int j1 = nth_tie(row, k1, cols - 1, n1 - greater1, sh, &islot);

    int k2 = k1, j2 = j1;
    if (p.top_p < 1.0f) {
      // top-p: the largest key K2 whose upper set still holds top_p of the mass, found by
      // bisection; then as many ties at K2 (in id order) as the mass needs.
      const double target = double(p.top_p) * mass_at_least(row, k1, k1, j1, sh, &dslot);
      int lo = k1, hi = kmax;  // mass(>= lo) >= target always
      while (lo < hi) {
        const int mid = lo + (hi - lo + 1) / 2;
        if (mass_at_least(row, mid, k1, j1, sh, &dslot) >= target) lo = mid;
        else hi = mid - 1;
      }
      k2 = lo;
      double cum = k2 < kmax ? mass_at_least(row, k2 + 1, k1, j1, sh, &dslot) : 0.0;
      const double w2 = double(row.weight_of_key(k2));
      // Ties at K2 available to the set: all of them, or up to J1 when K2 is K1.
      const int limit = k2 == k1 ? j1 : cols - 1;
      int ties = 0;
      for (int j = threadIdx.x; j < cols; j += kBlock) ties += row.key(j) == k2 && j <= limit;
      __syncthreads();
      ties = broadcast(IntReduce(sh.int_reduce).Sum(ties), &islot, threadIdx.x == 0);
      int take = 0;
      while (take < ties && (take == 0 || cum < target)) {
        cum += w2;
        ++take;
      }
      j2 = nth_tie(row, k2, limit, take, sh, &islot);
    }

    // The draw: ids in order, each thread a contiguous chunk; the thread whose chunk holds the
    // point u * total of the running mass walks it.
    const int chunk = (cols + kBlock - 1) / kBlock;
    const int begin = min(cols, int(threadIdx.x) * chunk);
    const int end = min(cols, begin + chunk);
    double part = 0.0;
    int last = -1;
    for (int j = begin; j < end; ++j) {
      const int key = row.key(j);
      if (in_set(key, j, k2, j2)) {
        part += double(row.weight_of_key(key));
        last = j;
      }
    }
    double before = 0.0, total = 0.0;
    __syncthreads();
    DoubleScan(sh.double_scan).ExclusiveSum(part, before, total);
    const double u = double(p.u) * total;  // < total: u < 1
    // The owner: the last thread with kept mass whose exclusive prefix is <= u (robust to the
    // scan's rounding: some thread always qualifies, the one holding the maximum included).
    int owner = part > 0.0 && before <= u ? int(threadIdx.x) : -1;
    __syncthreads();
    owner = broadcast(IntReduce(sh.int_reduce).Reduce(owner, ::cuda::maximum<>{}), &islot, threadIdx.x == 0);
    __syncthreads();
    if (int(threadIdx.x) == owner) {
      int found = last;  // rounding at the chunk's end: its last kept id
      double cum = before;
      for (int j = begin; j < end; ++j) {
        const int key = row.key(j);
        if (!in_set(key, j, k2, j2)) continue;
        cum += double(row.weight_of_key(key));
        if (u < cum) {
          found = j;
          break;
        }
      }
      islot = found;
    }
    __syncthreads();
    token = islot;
  }
  if (threadIdx.x == 0) {
    token_out[blockIdx.x] = token;
    logit_out[blockIdx.x] = kmax == kNoKey ? __int_as_float(0x7fc00000)
                                           : __bfloat162float(x[blockIdx.x * ldx + token]);
  }
}

}  // namespace

Status sample_rows(const bf16* x, int64_t ldx, int64_t rows, int64_t cols,
                   const SampleRowParams* params, const uint32_t* masks, int32_t* token_out,
                   float* logit_out, cudaStream_t stream) {
  if (rows <= 0) return {};
  if (cols <= 0 || cols > INT_MAX / 2) {
    return Status::error("sample_rows: the row length must be in [1, 2^30]");
  }
  if (rows > INT_MAX) return Status::error("sample_rows: more than 2^31 - 1 rows");
  sample_rows_kernel<<<unsigned(rows), kBlock, 0, stream>>>(
      x, ldx, int(cols), params, masks, kernels::token_mask_words(cols), token_out, logit_out);
  return cuda_status(cudaGetLastError(), "sample_rows: kernel launch");
}

}  // namespace invar::kernels::cuda
