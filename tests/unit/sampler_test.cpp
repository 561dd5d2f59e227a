#include "engine/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "engine/philox.h"

namespace invar::engine {
namespace {

TEST(Philox, KnownAnswer) {
  // Random123's published known-answer vectors for philox4x32-10.
  auto zero = philox4x32({0, 0, 0, 0}, {0, 0});
  EXPECT_EQ(zero[0], 0x6627e8d5u);
  EXPECT_EQ(zero[1], 0xe169c58du);
  EXPECT_EQ(zero[2], 0xbc57ac4cu);
  EXPECT_EQ(zero[3], 0x9b00dbd8u);
  auto pi = philox4x32({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
                       {0xa4093822u, 0x299f31d0u});
  EXPECT_EQ(pi[0], 0xd16cfe09u);
  EXPECT_EQ(pi[1], 0x94fdccebu);
  EXPECT_EQ(pi[2], 0x5001e420u);
  EXPECT_EQ(pi[3], 0x24126ea1u);
}

TEST(Sampler, GreedyTiesGoToLowestId) {
  std::vector<float> logits{0.5f, 2.0f, -1.0f, 2.0f, 1.0f};
  Sampler s;
  EXPECT_EQ(s.sample(logits.data(), 5, {}, 0), 1);
}

TEST(Sampler, SeededDrawDependsOnlyOnSeedPositionAndRow) {
  std::vector<float> logits(100);
  for (int i = 0; i < 100; ++i) logits[i] = std::sin(float(i));
  SamplingParams p{0.8f, 0, 1.0f, 0.0f, 42};
  Sampler a, b;
  for (uint64_t pos = 0; pos < 50; ++pos) {
    EXPECT_EQ(a.sample(logits.data(), 100, p, pos), b.sample(logits.data(), 100, p, pos));
  }
  // Different positions draw different tokens at least sometimes.
  std::map<int, int> seen;
  for (uint64_t pos = 0; pos < 200; ++pos) seen[a.sample(logits.data(), 100, p, pos)]++;
  EXPECT_GT(seen.size(), 5u);
}

TEST(Sampler, TopKOneIsGreedyAndTopPKeepsTheHead) {
  std::vector<float> logits{0.0f, 10.0f, 9.0f, -5.0f};
  Sampler s;
  SamplingParams k1{1.0f, 1, 1.0f, 0.0f, 3};
  SamplingParams p_small{1.0f, 0, 0.1f, 0.0f, 3};
  for (uint64_t pos = 0; pos < 20; ++pos) {
    EXPECT_EQ(s.sample(logits.data(), 4, k1, pos), 1);
    EXPECT_EQ(s.sample(logits.data(), 4, p_small, pos), 1);
  }
  SamplingParams min_p{1.0f, 0, 1.0f, 0.5f, 3};  // keeps 1 (p=.73) only: 2 has p=.27 < .5*.73
  for (uint64_t pos = 0; pos < 20; ++pos) EXPECT_EQ(s.sample(logits.data(), 4, min_p, pos), 1);
}

TEST(Sampler, FrequenciesFollowTheDistribution) {
  std::vector<float> logits{std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  Sampler s;
  SamplingParams p{1.0f, 0, 1.0f, 0.0f, 7};
  std::vector<int> counts(3);
  const int n = 20000;
  for (int pos = 0; pos < n; ++pos) counts[s.sample(logits.data(), 3, p, uint64_t(pos))]++;
  EXPECT_NEAR(counts[0] / double(n), 0.5, 0.02);
  EXPECT_NEAR(counts[1] / double(n), 0.3, 0.02);
  EXPECT_NEAR(counts[2] / double(n), 0.2, 0.02);
}

TEST(Sampler, LogSoftmax) {
  std::vector<float> logits{1.0f, 2.0f, 3.0f};
  double z = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
  auto info = logprobs_of(logits.data(), 3, 2, 2);
  EXPECT_NEAR(info.token_logprob, 3.0 - std::log(z), 1e-6);
  ASSERT_EQ(info.top.size(), 2u);
  EXPECT_EQ(info.top[0].first, 2);
  EXPECT_EQ(info.top[1].first, 1);
  EXPECT_NEAR(info.top[1].second, 2.0 - std::log(z), 1e-6);
}

}  // namespace
}  // namespace invar::engine
