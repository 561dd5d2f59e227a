// The kernels give the same bits on AVX2 and AVX-512 machines: both run the logical 8-lane
// recipe on 256-bit vectors with fused multiply-adds (simd_targets.h). Skipped where the CPU
// lacks AVX-512.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/cpu/ops.h"
#include "op_harness.h"

namespace invar::ops_test {
namespace {

namespace cpu = kernels::cpu;

// Runs fn under AVX2 and under AVX-512 and returns both outputs.
template <class Fn>
std::pair<std::vector<float>, std::vector<float>> on_both(Fn fn) {
  std::vector<float> a, b;
  with_target(HWY_AVX2, [&] { a = fn(); });
  with_target(HWY_AVX3, [&] { b = fn(); });
  return {a, b};
}

class TargetBits : public ::testing::Test {
 protected:
  void SetUp() override {
    const int64_t s = hwy::SupportedTargets();
    if (!(s & HWY_AVX2) || !(s & HWY_AVX3)) GTEST_SKIP() << "needs a CPU with AVX2 and AVX-512";
  }
  ThreadPool pool_{2};
};

TEST_F(TargetBits, Gemm) {
  const int64_t n = 67, k = 577;
  const auto x = random_floats(size_t(70 * k), 1);
  const auto w = random_floats(size_t(n * k), 2);
  const auto w16 = to_bf16(w);
  const auto bias = random_floats(size_t(n), 3);
  for (int64_t m : {1, 5, 70}) {
    for (DType dt : {DType::f32, DType::bf16}) {
      const kernels::WeightRef ref{
          dt == DType::f32 ? static_cast<const void*>(w.data()) : w16.data(), dt, n, k};
      auto [a, b] = on_both([&] {
        std::vector<float> y(static_cast<size_t>(m * n));
        cpu::gemm(x.data(), ref, bias.data(), m, y.data(), pool_);
        return y;
      });
      EXPECT_TRUE(bits_equal(a, b)) << "M=" << m << " " << dtype_name(dt);
    }
  }
}

TEST_F(TargetBits, AttentionRmsNormSiluMul) {
  const int hq = 6, hkv = 2, d = 64, bs = 16, len = 150;
  PagedCache cache(16, bs, hkv, d);
  const auto kv = random_floats(cache.k.size(), 4);
  cache.k = kv;
  cache.v = random_floats(cache.v.size(), 5);
  std::vector<int32_t> table(16);
  for (int b = 0; b < 16; ++b) table[size_t(b)] = (b * 5 + 3) % 16;
  const std::vector<int32_t> indptr{0, len}, kv_lens{len};
  const kernels::AttentionPlan plan{1, indptr.data(), kv_lens.data(), table.data(), 16, bs};
  kernels::AttentionPlan capped = plan;
  capped.logit_softcap = 0.5f;
  const auto q = random_floats(size_t(len * hq * d), 6, -2.0f, 2.0f);
  auto [a, b] = on_both([&] {
    std::vector<float> out(q.size());
    cpu::attention(q.data(), cache.ref(), plan, hq, 0.125f, out.data(), pool_);
    return out;
  });
  EXPECT_TRUE(bits_equal(a, b)) << "attention";

  const auto w = random_floats(769, 7);
  auto [c, e] = on_both([&] {
    std::vector<float> out(q.size());
    cpu::rmsnorm(q.data(), w.data(), int64_t(q.size()) / 769, 769, 1e-5f, out.data(), pool_);
    return out;
  });
  EXPECT_TRUE(bits_equal(c, e)) << "rmsnorm";

  const auto up = random_floats(q.size(), 8);
  auto [f, g] = on_both([&] {
    std::vector<float> out(q.size());
    cpu::silu_mul(q.data(), up.data(), int64_t(q.size()), out.data(), pool_);
    return out;
  });
  EXPECT_TRUE(bits_equal(f, g)) << "silu_mul";

  auto [h, i] = on_both([&] {
    std::vector<float> out(q.size());
    cpu::gelu_tanh_mul(q.data(), up.data(), int64_t(q.size()), out.data(), pool_);
    return out;
  });
  EXPECT_TRUE(bits_equal(h, i)) << "gelu_tanh_mul";

  auto [j, k] = on_both([&] {
    std::vector<float> out(q.size());
    cpu::attention(q.data(), cache.ref(), capped, hq, 0.125f, out.data(), pool_);
    cpu::softcap(out.data(), int64_t(out.size()), 0.3f, pool_);
    return out;
  });
  EXPECT_TRUE(bits_equal(j, k)) << "soft-capped attention, softcap";
}

}  // namespace
}  // namespace invar::ops_test
