// Every CPU op against a double-precision reference (op_reference.cpp), on every SIMD target the
// kernels dispatch to on this machine, with awkward sizes (1, 7, 17, 769, 5125, primes) and a
// tolerance per weight dtype.
//
// Tolerances are rounding-error bounds, not guesses: an f32 dot product over K accumulated in
// 8 lanes makes at most about (K/8 + 4) roundings of relative size 2^-24 on sum |x_k w_k|, so a
// result inside that bound is right and a dropped or doubled term (about |x w| / K) is not.
// bf16 weights are checked twice: against the exactly decoded weights with the f32 bound, and
// against the original f32 weights with the bf16 rounding bound (2^-9 relative per weight).
#include "kernels/cpu/ops.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#include "op_harness.h"
#include "op_reference.h"

namespace invar::ops_test {
namespace {

namespace cpu = kernels::cpu;
using kernels::WeightRef;

constexpr double kEps32 = 1.0 / (1 << 24);

double dot_bound(int64_t k) {
  return (double(k) / 8 + 6) * 2 * kEps32;
}

class OpTest : public ::testing::TestWithParam<Target> {
 protected:
  void SetUp() override { hwy::SetSupportedTargetsForTest(GetParam().bits | HWY_SCALAR); }
  void TearDown() override { hwy::SetSupportedTargetsForTest(0); }
  ThreadPool pool_{2};
};

struct GemmShape {
  int64_t m, n, k;
};

TEST_P(OpTest, GemmF32) {
  const GemmShape shapes[] = {{1, 1, 1},    {1, 7, 17},    {7, 17, 7},    {17, 7, 769},
                              {1, 769, 17}, {5, 13, 5125}, {65, 23, 576}, {3, 769, 769},
                              {2, 5, 8},    {9, 31, 1031}};
  uint32_t seed = 1;
  for (const auto& s : shapes) {
    SCOPED_TRACE(::testing::Message() << "M=" << s.m << " N=" << s.n << " K=" << s.k);
    const auto x = random_floats(size_t(s.m * s.k), seed++);
    const auto w = random_floats(size_t(s.n * s.k), seed++);
    const auto bias = random_floats(size_t(s.n), seed++);
    for (bool with_bias : {false, true}) {
      const float* b = with_bias ? bias.data() : nullptr;
      std::vector<float> y(size_t(s.m * s.n), -1.0f);
      cpu::gemm(x.data(), WeightRef{w.data(), DType::f32, s.n, s.k}, b, s.m, y.data(), pool_);
      std::vector<double> ref, mag;
      ref_gemm(x.data(), w.data(), b, s.m, s.n, s.k, ref, mag);
      EXPECT_TRUE(
          near_reference(y, ref, [&](size_t i) { return dot_bound(s.k) * mag[i] + 1e-30; }));
    }
  }
}

TEST_P(OpTest, GemmBf16AndF16) {
  // M = 1 and 3 read 16-bit weights in registers; M = 17 and 65 widen a weight block first.
  const GemmShape shapes[] = {{1, 7, 17}, {3, 769, 17}, {17, 13, 5125}, {65, 29, 769}, {1, 5, 1}};
  uint32_t seed = 100;
  for (const auto& s : shapes) {
    SCOPED_TRACE(::testing::Message() << "M=" << s.m << " N=" << s.n << " K=" << s.k);
    const auto x = random_floats(size_t(s.m * s.k), seed++);
    const auto w = random_floats(size_t(s.n * s.k), seed++);
    const auto bias = random_floats(size_t(s.n), seed++);
    const auto w16 = to_bf16(w);
    const auto w_decoded = from_bf16(w16);
    std::vector<float> y(static_cast<size_t>(s.m * s.n));
    cpu::gemm(x.data(), WeightRef{w16.data(), DType::bf16, s.n, s.k}, bias.data(), s.m, y.data(),
              pool_);
    std::vector<double> ref, mag;
    ref_gemm(x.data(), w_decoded.data(), bias.data(), s.m, s.n, s.k, ref, mag);
    EXPECT_TRUE(near_reference(y, ref, [&](size_t i) { return dot_bound(s.k) * mag[i] + 1e-30; }))
        << "bf16 vs decoded weights";
    std::vector<double> ref32, mag32;
    ref_gemm(x.data(), w.data(), bias.data(), s.m, s.n, s.k, ref32, mag32);
    EXPECT_TRUE(near_reference(y, ref32, [&](size_t i) {
      return (1.0 / 512 + dot_bound(s.k)) * mag32[i] + 1e-30;
    })) << "bf16 vs original f32 weights";

    // f16: exact decode of the rounded weights, f32 bound.
    std::vector<uint16_t> wh(w.size());
    std::vector<float> wh_decoded(w.size());
    for (size_t i = 0; i < w.size(); ++i) {
      wh[i] = f32_to_f16(w[i]);
      wh_decoded[i] = f16_to_f32(wh[i]);
    }
    cpu::gemm(x.data(), WeightRef{wh.data(), DType::f16, s.n, s.k}, nullptr, s.m, y.data(), pool_);
    ref_gemm(x.data(), wh_decoded.data(), nullptr, s.m, s.n, s.k, ref, mag);
    EXPECT_TRUE(near_reference(y, ref, [&](size_t i) { return dot_bound(s.k) * mag[i] + 1e-30; }))
        << "f16 weights";
  }
}

TEST_P(OpTest, RmsNorm) {
  uint32_t seed = 200;
  for (int64_t dim : {1, 7, 17, 769, 5125}) {
    for (int64_t rows : {1, 3, 17}) {
      SCOPED_TRACE(::testing::Message() << "rows=" << rows << " dim=" << dim);
      auto x = random_floats(size_t(rows * dim), seed++, -3.0f, 3.0f);
      const auto w = random_floats(size_t(dim), seed++, 0.5f, 1.5f);
      std::vector<double> ref;
      ref_rmsnorm(x.data(), w.data(), rows, dim, 1e-5, ref);
      const double tol = dot_bound(dim) + 8 * kEps32;
      std::vector<float> out(x.size());
      cpu::rmsnorm(x.data(), w.data(), rows, dim, 1e-5f, out.data(), pool_);
      EXPECT_TRUE(
          near_reference(out, ref, [&](size_t i) { return tol * std::fabs(ref[i]) + 1e-30; }));
      // In place (out aliases x), as the q/k norms are called.
      cpu::rmsnorm(x.data(), w.data(), rows, dim, 1e-5f, x.data(), pool_);
      EXPECT_TRUE(bits_equal(x, out));
    }
  }
}

TEST_P(OpTest, Rope) {
  const int32_t positions[] = {0, 1, 2, 17, 769, 4095, 131071};
  const int64_t tokens = std::size(positions);
  struct Case {
    kernels::RopeStyle style;
    int head_dim, rot_dim;
    float factor;
  };
  const Case cases[] = {{kernels::RopeStyle::half, 64, 64, 1.0f},
                        {kernels::RopeStyle::interleaved, 64, 64, 1.0f},
                        {kernels::RopeStyle::half, 18, 12, 1.25f},
                        {kernels::RopeStyle::interleaved, 17, 8, 0.75f},
                        {kernels::RopeStyle::half, 7, 2, 1.0f}};
  uint32_t seed = 300;
  for (const auto& c : cases) {
    SCOPED_TRACE(::testing::Message()
                 << "style=" << int(c.style) << " D=" << c.head_dim << " rot=" << c.rot_dim);
    const int heads = 3;
    std::vector<float> inv_freq(static_cast<size_t>(c.rot_dim / 2));
    for (size_t i = 0; i < inv_freq.size(); ++i) {
      inv_freq[i] = float(std::pow(10000.0, -2.0 * double(i) / c.rot_dim));
    }
    kernels::RopeParams p{c.style, c.rot_dim, inv_freq.data(), c.factor};
    auto x = random_floats(size_t(tokens * heads * c.head_dim), seed++);
    // The op's angle is the f32 product position * inv_freq (as the model defines it); the
    // reference takes that angle and does the rest in double.
    std::vector<double> ref;
    {
      std::vector<double> tmp;
      ref.assign(x.begin(), x.end());
      for (int64_t t = 0; t < tokens; ++t) {
        std::vector<float> one_freq(inv_freq.size());
        for (size_t i = 0; i < inv_freq.size(); ++i) {
          // angle = float(pos) * inv_freq in f32; feed it as position 1 with that frequency.
          one_freq[i] = float(positions[t]) * inv_freq[i];
        }
        kernels::RopeParams p1 = p;
        p1.inv_freq = one_freq.data();
        const int32_t one = 1;
        ref_rope(x.data() + t * heads * c.head_dim, &one, 1, heads, c.head_dim, p1, tmp);
        std::copy(tmp.begin(), tmp.end(), ref.begin() + t * heads * c.head_dim);
      }
    }
    cpu::rope(x.data(), positions, tokens, heads, c.head_dim, p, pool_);
    EXPECT_TRUE(near_reference(x, ref, [&](size_t) { return 4 * kEps32 * 2 * c.factor + 1e-30; }));
  }
}

TEST_P(OpTest, Attention) {
  for (int head_dim : {64, 17, 8, 1}) {
    for (auto [q_heads, kv_heads] : {std::pair{6, 2}, std::pair{5, 1}, std::pair{2, 2}}) {
      SCOPED_TRACE(::testing::Message()
                   << "D=" << head_dim << " Hq=" << q_heads << " Hkv=" << kv_heads);
      const int bs = 16;
      // (kv_len, q_len): a first token, a long prefill, a chunk, decode past a tile edge.
      const std::vector<std::pair<int, int>> seqs = {{1, 1}, {70, 70}, {150, 3}, {129, 1}};
      PagedCache cache(64, bs, kv_heads, head_dim);
      std::vector<int32_t> q_indptr{0}, kv_lens, tables;
      const int max_blocks = 10;
      int next_block = 63;  // hand blocks out backwards: physical order != logical order
      uint32_t seed = 400;
      for (auto [kv_len, q_len] : seqs) {
        q_indptr.push_back(q_indptr.back() + q_len);
        kv_lens.push_back(kv_len);
        for (int b = 0; b < max_blocks; ++b) tables.push_back(b * bs < kv_len ? next_block-- : -1);
        const int32_t* table = tables.data() + tables.size() - max_blocks;
        for (int p = 0; p < kv_len; ++p) {
          const int64_t slot = int64_t(table[p / bs]) * bs + p % bs;
          for (int h = 0; h < kv_heads; ++h) {
            const auto kr = random_floats(size_t(head_dim), seed++, -2.0f, 2.0f);
            const auto vr = random_floats(size_t(head_dim), seed++);
            std::copy(kr.begin(), kr.end(), cache.k.begin() + cache.row(slot, h));
            std::copy(vr.begin(), vr.end(), cache.v.begin() + cache.row(slot, h));
          }
        }
      }
      kernels::AttentionPlan plan{int(seqs.size()), q_indptr.data(), kv_lens.data(),
                                  tables.data(),    max_blocks,      bs};
      const int64_t tokens = q_indptr.back();
      const auto q = random_floats(size_t(tokens * q_heads * head_dim), seed++, -2.0f, 2.0f);
      const float scale = 1.0f / std::sqrt(float(head_dim));
      // Full causal, and sliding windows: inside one tile, across a tile edge, wider than any
      // sequence. f32 and f16 caches, each against the reference over its stored values. A
      // soft-cap of 0.5 (the scores here reach ~2) with and without a window.
      for (auto [window, cap] : {std::pair{0, 0.0f},
                                 {1, 0.0f},
                                 {5, 0.0f},
                                 {70, 0.0f},
                                 {1000, 0.0f},
                                 {0, 0.5f},
                                 {5, 0.5f}})
        for (DType kv : {DType::f32, DType::f16}) {
          plan.sliding_window = window;
          plan.logit_softcap = cap;
          SCOPED_TRACE(::testing::Message() << "window " << window << " softcap " << cap);
          const kernels::KvLayerRef layer = cache.ref(kv);
          std::vector<float> out(q.size(), -7.0f);
          cpu::attention(q.data(), layer, plan, q_heads, scale, out.data(), pool_);
          std::vector<double> ref;
          ref_attention(q.data(), layer, plan, q_heads, scale, ref);
          // Outputs are convex combinations of |v| <= 1; scores are O(1).
          EXPECT_TRUE(near_reference(out, ref, [&](size_t) { return 2e-6 + 1e-30; }))
              << dtype_name(kv) << " cache";
        }
    }
  }
}

TEST_P(OpTest, SiluMul) {
  uint32_t seed = 500;
  for (int64_t n : {1, 7, 17, 769, 5125}) {
    SCOPED_TRACE(::testing::Message() << "n=" << n);
    auto gate = random_floats(size_t(n), seed++, -20.0f, 20.0f);
    const auto up = random_floats(size_t(n), seed++, -2.0f, 2.0f);
    const float specials[] = {0.0f, -0.0f, 100.0f, -100.0f, 88.0f, -88.0f, 1e-30f, -1e-30f};
    for (size_t i = 0; i < std::size(specials) && i < size_t(n); ++i)
      gate[i * 3 % size_t(n)] = specials[i];
    std::vector<float> out(static_cast<size_t>(n));
    cpu::silu_mul(gate.data(), up.data(), n, out.data(), pool_);
    std::vector<double> ref;
    ref_silu_mul(gate.data(), up.data(), n, ref);
    EXPECT_TRUE(near_reference(out, ref,
                               [&](size_t i) { return 16 * kEps32 * std::fabs(ref[i]) + 1e-40; }));
  }
}

TEST_P(OpTest, GeluTanhMul) {
  uint32_t seed = 510;
  for (int64_t n : {1, 7, 17, 769, 5125}) {
    SCOPED_TRACE(::testing::Message() << "n=" << n);
    auto gate = random_floats(size_t(n), seed++, -12.0f, 12.0f);
    const auto up = random_floats(size_t(n), seed++, -2.0f, 2.0f);
    const float specials[] = {0.0f, -0.0f, 100.0f, -100.0f, 1e-30f, -1e-30f, 3.0f, -3.0f};
    for (size_t i = 0; i < std::size(specials) && i < size_t(n); ++i)
      gate[i * 3 % size_t(n)] = specials[i];
    std::vector<float> out(static_cast<size_t>(n));
    cpu::gelu_tanh_mul(gate.data(), up.data(), n, out.data(), pool_);
    std::vector<double> ref;
    ref_gelu_tanh_mul(gate.data(), up.data(), n, ref);
    // Near g = -3 the result is a small difference of near-equal terms: tolerance scaled by
    // |g * up| rather than by the result.
    EXPECT_TRUE(near_reference(out, ref, [&](size_t i) {
      return 16 * kEps32 * std::fabs(double(gate[i]) * up[i]) + 1e-40;
    }));
  }
}

TEST_P(OpTest, Softcap) {
  uint32_t seed = 520;
  for (int64_t n : {1, 7, 17, 769, 5125}) {
    SCOPED_TRACE(::testing::Message() << "n=" << n);
    auto x = random_floats(size_t(n), seed++, -200.0f, 200.0f);
    const float specials[] = {0.0f, -0.0f, 1e-30f, 3e4f, -3e4f};
    for (size_t i = 0; i < std::size(specials) && i < size_t(n); ++i)
      x[i * 5 % size_t(n)] = specials[i];
    std::vector<double> ref;
    ref_softcap(x.data(), n, 30.0, ref);
    cpu::softcap(x.data(), n, 30.0f, pool_);
    EXPECT_TRUE(
        near_reference(x, ref, [&](size_t i) { return 8 * kEps32 * std::fabs(ref[i]) + 1e-40; }));
  }
}

INSTANTIATE_TEST_SUITE_P(Targets, OpTest, ::testing::ValuesIn(kernel_targets()),
                         [](const auto& info) { return info.param.name; });

// Ops without floating-point rounding: exact results, one target is enough.

TEST(OpExact, Embedding) {
  ThreadPool pool(2);
  for (int64_t h : {1, 7, 769}) {
    const int64_t vocab = 17;
    const auto table = random_floats(size_t(vocab * h), 600);
    const auto t16 = to_bf16(table);
    std::vector<uint16_t> th(table.size());
    for (size_t i = 0; i < table.size(); ++i) th[i] = f32_to_f16(table[i]);
    const std::vector<int32_t> ids = {3, 0, 16, 3, 7};
    std::vector<float> out(ids.size() * size_t(h));
    for (DType dt : {DType::f32, DType::bf16, DType::f16}) {
      const void* data = dt == DType::f32    ? static_cast<const void*>(table.data())
                         : dt == DType::bf16 ? static_cast<const void*>(t16.data())
                                             : static_cast<const void*>(th.data());
      cpu::embedding(WeightRef{data, dt, vocab, h}, ids.data(), int64_t(ids.size()), out.data(),
                     pool);
      for (size_t t = 0; t < ids.size(); ++t) {
        for (int64_t i = 0; i < h; ++i) {
          const size_t src = size_t(ids[t] * h + i);
          const float want = dt == DType::f32    ? table[src]
                             : dt == DType::bf16 ? bf16_to_f32(t16[src])
                                                 : f16_to_f32(th[src]);
          ASSERT_EQ(f32_to_bits(out[t * size_t(h) + size_t(i)]), f32_to_bits(want))
              << dtype_name(dt) << " token " << t << " dim " << i;
        }
      }
    }
  }
}

TEST(OpExact, KvStore) {
  ThreadPool pool(2);
  const int hkv = 2, d = 17, bs = 4;
  PagedCache cache(5, bs, hkv, d);
  const int64_t tokens = 4;
  const auto k = random_floats(size_t(tokens * hkv * d), 700);
  const auto v = random_floats(size_t(tokens * hkv * d), 701);
  const std::vector<int64_t> slots = {13, 2, -1, 19};  // -1: padding, not written
  cpu::kv_store(k.data(), v.data(), slots.data(), tokens, cache.ref(), pool);
  for (int64_t t = 0; t < tokens; ++t) {
    if (slots[size_t(t)] < 0) continue;
    for (int h = 0; h < hkv; ++h) {
      EXPECT_TRUE(bits_equal(cache.k.data() + cache.row(slots[size_t(t)], h),
                             k.data() + (t * hkv + h) * d, d));
      EXPECT_TRUE(bits_equal(cache.v.data() + cache.row(slots[size_t(t)], h),
                             v.data() + (t * hkv + h) * d, d));
    }
  }
  size_t written = 0;
  for (float f : cache.k) written += !std::isnan(f);
  EXPECT_EQ(written, size_t(3 * hkv * d));

  // An f16 cache holds each value rounded to nearest even.
  PagedCache half(5, bs, hkv, d);
  const kernels::KvLayerRef layer = half.ref16();
  cpu::kv_store(k.data(), v.data(), slots.data(), tokens, layer, pool);
  for (int64_t t = 0; t < tokens; ++t) {
    if (slots[size_t(t)] < 0) continue;
    for (int64_t i = 0; i < hkv * d; ++i) {
      const size_t at = half.row(slots[size_t(t)], 0) + size_t(i);
      ASSERT_EQ(half.k16[at], f32_to_f16(k[size_t(t * hkv * d + i)]));
      ASSERT_EQ(half.v16[at], f32_to_f16(v[size_t(t * hkv * d + i)]));
    }
  }
}

TEST(OpExact, Add) {
  ThreadPool pool(2);
  for (int64_t n : {1, 7, 17, 769, 5125, 200003}) {
    auto acc = random_floats(size_t(n), 800);
    const auto x = random_floats(size_t(n), 801);
    std::vector<float> want(acc.size());
    for (size_t i = 0; i < acc.size(); ++i) want[i] = acc[i] + x[i];
    cpu::add(acc.data(), x.data(), n, pool);
    EXPECT_TRUE(bits_equal(acc, want)) << "n=" << n;
  }
}

// logit_summary: argmax as cpu::argmax, the maximum, and log_z against a long-double sum;
// a row's summary is the same bits alone and among other rows.
TEST(OpExact, LogitSummaryMatchesReference) {
  ThreadPool pool(2);
  for (int64_t cols : {1, 7, 769, 49152}) {
    const int64_t rows = 5;
    auto x = random_floats(size_t(rows * cols), 901, -8.0f, 8.0f);
    if (cols > 1) x[size_t(2 * cols + 1)] = std::nanf("");  // skipped
    std::vector<int32_t> am(rows), am_ref(rows);
    std::vector<float> mx(rows);
    std::vector<double> lz(rows);
    cpu::logit_summary(x.data(), rows, cols, am.data(), mx.data(), lz.data(), pool);
    cpu::argmax(x.data(), rows, cols, am_ref.data(), pool);
    for (int64_t r = 0; r < rows; ++r) {
      const float* row = x.data() + r * cols;
      EXPECT_EQ(am[size_t(r)], am_ref[size_t(r)]);
      EXPECT_EQ(mx[size_t(r)], row[am[size_t(r)]]);
      long double sum = 0;
      for (int64_t j = 0; j < cols; ++j)
        if (!std::isnan(row[j])) sum += std::exp((long double)row[j]);
      EXPECT_NEAR(lz[size_t(r)], double(std::log(sum)), 1e-12 * std::max(1.0, std::fabs(lz[size_t(r)])));
      int32_t a1;
      float m1;
      double z1;
      cpu::logit_summary(row, 1, cols, &a1, &m1, &z1, pool);
      EXPECT_EQ(std::memcmp(&z1, &lz[size_t(r)], sizeof z1), 0) << "row " << r;
    }
  }
}

TEST(OpExact, ArgmaxTiesGoToLowestIndex) {
  ThreadPool pool(2);
  const float inf = std::numeric_limits<float>::infinity();
  for (int64_t cols : {1, 7, 17, 769, 5125, 49152}) {
    const int64_t rows = 6;
    auto x = random_floats(size_t(rows * cols), 900, -5.0f, 5.0f);
    std::vector<int32_t> want(rows);
    for (int64_t r = 0; r < rows; ++r) {
      float* row = x.data() + r * cols;
      switch (r) {
        case 1:  // a tie: the maximum appears at several indices
          for (int64_t j = cols / 3; j < cols; j += std::max<int64_t>(1, cols / 4)) row[j] = 9.0f;
          break;
        case 2:
          std::fill(row, row + cols, -inf);
          break;
        case 3:
          row[cols - 1] = inf;
          break;
        case 4:
          std::fill(row, row + cols, 0.0f);
          break;
        case 5:
          row[cols / 2] = std::nanf("");
          break;  // NaN never wins
        default:
          break;
      }
      int32_t best = 0;
      for (int64_t j = 1; j < cols; ++j) {
        if (row[j] > row[best] || (std::isnan(row[best]) && !std::isnan(row[j]))) best = int32_t(j);
      }
      want[size_t(r)] = best;
    }
    std::vector<int32_t> got(rows, -1);
    cpu::argmax(x.data(), rows, cols, got.data(), pool);
    EXPECT_EQ(got, want) << "cols=" << cols;
  }
}

}  // namespace
}  // namespace invar::ops_test
