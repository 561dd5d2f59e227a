// Shared pieces of the CUDA benchmarks (one translation unit each): fail-fast checks and seeded
// random bf16 data (random, never zeros: METHOD.md).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/status.h"

#define CHECK_CUDA(expr)                                                                         \
  do {                                                                                           \
    cudaError_t e_ = (expr);                                                                     \
    if (e_ != cudaSuccess) {                                                                     \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #expr, cudaGetErrorString(e_)); \
      std::exit(1);                                                                              \
    }                                                                                            \
  } while (0)

namespace {  // each benchmark is one translation unit

void check(const invar::Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "%s: %s\n", what, s.message().c_str());
    std::exit(1);
  }
}

// 64 random bits from a hash of (seed, i) (splitmix64's finalizer).
__device__ inline uint64_t random_bits(uint64_t seed, int64_t i) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + uint64_t(i) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// p[i] = bf16 of a uniform value in [-1, 1) from a hash of (seed, i).
__global__ void fill_random_bf16(uint16_t* p, int64_t count, uint64_t seed) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count;
       i += int64_t(gridDim.x) * blockDim.x) {
    float u = float(uint32_t(random_bits(seed, i) >> 40)) * (1.0f / 8388608.0f) - 1.0f;
    uint32_t b;
    memcpy(&b, &u, 4);
    p[i] = uint16_t((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
  }
}

// A comma-separated list of integers ("1,2,4") from the command line.
inline std::vector<int64_t> parse_list(const char* s) {
  std::vector<int64_t> v;
  for (const char* p = s; *p;) {
    v.push_back(std::strtoll(p, const_cast<char**>(&p), 10));
    if (*p == ',') ++p;
  }
  return v;
}

}  // namespace
