// The mixture-of-experts row ops (kernels/cpu/moe.cpp) against a double-precision reference:
// moe_route's picks (top-k of the softmax, ties to the lowest expert id, written in increasing
// id) and weights (renormalized or not), over awkward expert counts and k; moe_accumulate's
// weighted sums in call order. Plain scalar code: no SIMD targets to iterate.
//   T = tokens, E = experts, k = experts per token
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/cpu/ops.h"

namespace invar::ops_test {
namespace {

namespace cpu = kernels::cpu;

struct Routed {
  std::vector<int32_t> ids;
  std::vector<float> weights;
};

Routed route(const std::vector<float>& logits, int tokens, int experts, int k, bool normalize) {
  ThreadPool pool(2);
  Routed r{std::vector<int32_t>(size_t(tokens) * size_t(k)),
           std::vector<float>(size_t(tokens) * size_t(k))};
  cpu::moe_route(logits.data(), tokens, experts, k, normalize, r.ids.data(), r.weights.data(),
                 pool);
  return r;
}

TEST(MoeRoute, MatchesADoubleReference) {
  std::mt19937 rng(3);
  for (int experts : {1, 2, 7, 8, 17, 128}) {
    for (int k : {1, 2, 8}) {
      if (k > experts) continue;
      for (bool normalize : {false, true}) {
        const int tokens = 37;
        std::vector<float> logits(size_t(tokens) * size_t(experts));
        for (float& x : logits) x = float(int(rng() % 20001) - 10000) / 1000.0f;
        const Routed got = route(logits, tokens, experts, k, normalize);
        for (int t = 0; t < tokens; ++t) {
          const float* row = logits.data() + int64_t(t) * experts;
          std::vector<double> p(static_cast<size_t>(experts));
          const double max = *std::max_element(row, row + experts);
          for (int e = 0; e < experts; ++e) p[size_t(e)] = std::exp(double(row[e]) - max);
          const double z = std::accumulate(p.begin(), p.end(), 0.0);
          std::vector<int> order(static_cast<size_t>(experts));
          std::iota(order.begin(), order.end(), 0);
          std::stable_sort(order.begin(), order.end(),
                           [&](int a, int b) { return p[size_t(a)] > p[size_t(b)]; });
          std::vector<int> want(order.begin(), order.begin() + k);
          double picked = 0;
          for (int e : want) picked += p[size_t(e)] / z;
          std::sort(want.begin(), want.end());
          for (int j = 0; j < k; ++j) {
            const size_t i = size_t(t) * size_t(k) + size_t(j);
            ASSERT_EQ(got.ids[i], want[size_t(j)]) << "E " << experts << " k " << k << " t " << t;
            const double w = p[size_t(want[size_t(j)])] / z / (normalize ? picked : 1.0);
            EXPECT_NEAR(got.weights[i], w, 4e-6 * std::max(w, 1e-3))
                << "E " << experts << " k " << k << " t " << t;
          }
        }
      }
    }
  }
}

TEST(MoeRoute, TiesGoToTheLowestExpertAndPicksAscend) {
  // Experts 5, 2 and 6 tie at the top, 0 and 3 tie next: top-3 takes 2, 5, 6; top-4 adds 0.
  const std::vector<float> row = {1.0f, 0.0f, 3.0f, 1.0f, -2.0f, 3.0f, 3.0f, 0.5f};
  Routed r = route(row, 1, 8, 3, true);
  EXPECT_EQ(r.ids, (std::vector<int32_t>{2, 5, 6}));
  for (float w : r.weights) EXPECT_FLOAT_EQ(w, 1.0f / 3.0f);
  r = route(row, 1, 8, 4, false);
  EXPECT_EQ(r.ids, (std::vector<int32_t>{0, 2, 5, 6}));
  EXPECT_LT(r.weights[0], r.weights[1]);
  // All equal: experts 0..k-1.
  r = route(std::vector<float>(16, 0.25f), 1, 16, 4, true);
  EXPECT_EQ(r.ids, (std::vector<int32_t>{0, 1, 2, 3}));
}

TEST(MoeRoute, ANonFiniteRowStillGetsDistinctValidExperts) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const Routed r = route({nan, nan, nan, nan, nan}, 1, 5, 2, true);
  ASSERT_EQ(r.ids.size(), 2u);
  EXPECT_NE(r.ids[0], r.ids[1]);
  for (int32_t e : r.ids) EXPECT_TRUE(e >= 0 && e < 5) << e;
}

TEST(MoeAccumulate, AddsWeightedRowsIntoTheirTokens) {
  ThreadPool pool(2);
  const int dim = 3;
  std::vector<float> acc = {1, 1, 1, 2, 2, 2, 3, 3, 3};  // 3 tokens
  const std::vector<float> y = {1, 2, 3, 4, 5, 6};       // rows for tokens 2 and 0
  const std::vector<int32_t> tokens = {2, 0};
  const std::vector<float> w = {0.5f, 0.25f};
  cpu::moe_accumulate(y.data(), tokens.data(), w.data(), 2, dim, acc.data(), pool);
  EXPECT_EQ(acc, (std::vector<float>{2, 2.25f, 2.5f, 2, 2, 2, 3.5f, 4, 4.5f}));
}

}  // namespace
}  // namespace invar::ops_test
