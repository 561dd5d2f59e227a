// Shared pieces of the CPU op tests: seeded random data, bf16 rounding, the tolerance check
// against the double-precision references, the bitwise comparison used by every invariance
// test, and a loop over the SIMD targets the kernels were compiled for.
#pragma once

#include <gtest/gtest.h>
#include <hwy/targets.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/thread_pool.h"
#include "kernels/types.h"

namespace invar::ops_test {

inline std::vector<float> random_floats(size_t n, uint32_t seed, float lo = -1.0f,
                                        float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

inline std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = f32_to_bf16(v[i]);
  return out;
}

inline std::vector<float> from_bf16(const std::vector<uint16_t>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = bf16_to_f32(v[i]);
  return out;
}

// Bitwise equality of two float arrays (memcmp); the message names the first differing element.
inline ::testing::AssertionResult bits_equal(const float* a, const float* b, size_t n) {
  if (std::memcmp(a, b, n * sizeof(float)) == 0) return ::testing::AssertionSuccess();
  for (size_t i = 0; i < n; ++i) {
    if (f32_to_bits(a[i]) != f32_to_bits(b[i])) {
      char msg[160];
      std::snprintf(
          msg, sizeof(msg), "bits differ at element %zu of %zu: %.9g (0x%08x) vs %.9g (0x%08x)", i,
          n, double(a[i]), unsigned(f32_to_bits(a[i])), double(b[i]), unsigned(f32_to_bits(b[i])));
      return ::testing::AssertionFailure() << msg;
    }
  }
  return ::testing::AssertionFailure() << "memcmp differs";  // unreachable
}

inline ::testing::AssertionResult bits_equal(const std::vector<float>& a,
                                             const std::vector<float>& b) {
  if (a.size() != b.size()) return ::testing::AssertionFailure() << "sizes differ";
  return bits_equal(a.data(), b.data(), a.size());
}

// |got - ref| <= tol(i) for every i; reports the worst element.
inline ::testing::AssertionResult near_reference(const std::vector<float>& got,
                                                 const std::vector<double>& ref,
                                                 const std::function<double(size_t)>& tol) {
  if (got.size() != ref.size()) return ::testing::AssertionFailure() << "sizes differ";
  size_t bad = 0, worst = 0;
  double worst_ratio = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(double(got[i]) - ref[i]);
    const double t = tol(i);
    if (!(err <= t)) {  // catches NaN
      ++bad;
      const double r = std::isnan(err) ? 1e300 : err / t;
      if (r > worst_ratio) worst_ratio = r, worst = i;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << bad << " of " << got.size() << " elements out of tolerance; worst at " << worst
         << ": got " << got[worst] << ", reference " << ref[worst] << ", tolerance " << tol(worst);
}

// The SIMD targets the kernels dispatch to on this machine (best first), by name.
struct Target {
  int64_t bits;
  std::string name;
};

inline std::vector<Target> kernel_targets() {
  std::vector<Target> out;
  const int64_t supported = hwy::SupportedTargets();
  for (int64_t t : {int64_t(HWY_AVX3), int64_t(HWY_AVX2), int64_t(HWY_NEON), int64_t(HWY_SCALAR)}) {
    if (t != 0 && (supported & t)) out.push_back({t, hwy::TargetName(t)});
  }
  return out;
}

// Runs fn with the kernels' dynamic dispatch pinned to `target`, then restores the default.
inline void with_target(int64_t target, const std::function<void()>& fn) {
  hwy::SetSupportedTargetsForTest(target | HWY_SCALAR);
  fn();
  hwy::SetSupportedTargetsForTest(0);
}

// A paged KV cache with a shuffled block assignment, for the attention tests. Filled in f32;
// ref16() gives an f16 copy (rounded to nearest even; NaN stays NaN).
struct PagedCache {
  int block_size = 0, kv_heads = 0, head_dim = 0, num_blocks = 0;
  std::vector<float> k, v;  // [num_blocks, block_size, Hkv, D]
  std::vector<uint16_t> k16, v16;

  PagedCache(int num_blocks_, int block_size_, int kv_heads_, int head_dim_)
      : block_size(block_size_), kv_heads(kv_heads_), head_dim(head_dim_), num_blocks(num_blocks_) {
    const size_t n = size_t(num_blocks) * block_size * kv_heads * head_dim;
    k.assign(n, std::nanf(""));  // unwritten slots are NaN: reading one poisons the output
    v.assign(n, std::nanf(""));
  }
  kernels::KvLayerRef ref() {
    return {k.data(), v.data(), num_blocks, block_size, kv_heads, head_dim, DType::f32};
  }
  kernels::KvLayerRef ref16() {
    k16.resize(k.size());
    v16.resize(v.size());
    for (size_t i = 0; i < k.size(); ++i) k16[i] = f32_to_f16(k[i]), v16[i] = f32_to_f16(v[i]);
    return {k16.data(), v16.data(), num_blocks, block_size, kv_heads, head_dim, DType::f16};
  }
  kernels::KvLayerRef ref(DType dtype) { return dtype == DType::f16 ? ref16() : ref(); }
  size_t row(int64_t slot, int h) const { return (size_t(slot) * kv_heads + size_t(h)) * head_dim; }
};

}  // namespace invar::ops_test
