// The one fixed summation tree of tensor parallelism: out[i] = the pairwise sum of parts[0..n)[i],
// adjacent pairs first: n = 8 gives ((p0 + p1) + (p2 + p3)) + ((p4 + p5) + (p6 + p7)).
// For n a power of two, the tree over n leaves is the tree over the n/m subtrees of m adjacent
// leaves each, so a rank can sum its own m slices and a collective finish the same tree across
// ranks (docs/tensor-parallel.md).
#pragma once

#include <cassert>
#include <cstdint>

namespace invar {

inline constexpr int kMaxTreeLeaves = 64;

constexpr bool is_power_of_two(int64_t n) {
  return n > 0 && (n & (n - 1)) == 0;
}

// out may alias parts[0]. n: a power of two, at most kMaxTreeLeaves. Elements [begin, end).
inline void tree_sum(const float* const* parts, int n, int64_t begin, int64_t end, float* out) {
  assert(is_power_of_two(n) && n <= kMaxTreeLeaves);
  float v[kMaxTreeLeaves] = {};
  for (int64_t i = begin; i < end; ++i) {
    for (int j = 0; j < n; ++j) v[j] = parts[j][i];
    for (int w = n; w > 1; w /= 2)
      for (int j = 0; j < w / 2; ++j) v[j] = v[2 * j] + v[2 * j + 1];
    out[i] = v[0];
  }
}

}  // namespace invar
