#include "engine/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <random>

#include "core/thread_pool.h"
#include "engine/philox.h"
#include "kernels/cpu/ops.h"

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

// The draw walks the kept set in id order after every filter, top-p included, as the GPU's
// sample_rows does (an H200 found the host walking the nucleus most likely first). Logits
// falling with the id would hide the order, so they rise: id order and likelihood order are
// opposite, and the two walks pick different tokens for some uniforms, which the test checks
// it has seen.
TEST(Sampler, TopPDrawWalksTheNucleusInIdOrder) {
  const std::vector<float> logits{0.0f, 0.5f, 1.0f, 1.5f, 2.0f};
  const SamplingParams p{1.0f, 0, 0.8f, 0.0f, 7};
  // The nucleus by hand: weights exp(x - 2), most likely first until 0.8 of the mass.
  std::vector<double> w;
  for (float x : logits) w.push_back(double(std::exp((x - 2.0f) * 1.0f)));
  double mass = 0;
  for (double v : w) mass += v;
  std::vector<int> nucleus;  // most likely first
  double cum = 0;
  for (int id = 4; id >= 0 && cum < 0.8 * mass; --id) {
    cum += w[size_t(id)];
    nucleus.push_back(id);
  }
  ASSERT_GE(nucleus.size(), 3u);
  auto walk = [&](std::vector<int> order, double u) {
    double total = 0, run = 0;
    for (int id : order) total += w[size_t(id)];
    for (int id : order)
      if (u * total < (run += w[size_t(id)])) return id;
    return order.back();
  };
  std::vector<int> by_id = nucleus;
  std::sort(by_id.begin(), by_id.end());
  Sampler s;
  int orders_differ = 0;
  for (uint64_t pos = 0; pos < 200; ++pos) {
    const double u = double(philox_uniform(p.seed, pos));
    EXPECT_EQ(s.sample(logits.data(), 5, p, pos), walk(by_id, u)) << "position " << pos;
    orders_differ += walk(by_id, u) != walk(nucleus, u);
  }
  EXPECT_GT(orders_differ, 0) << "the uniforms never told the two orders apart";
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
  // log_z comes from the row summary every model runner returns.
  ThreadPool pool(1);
  int32_t best = -1;
  float max_logit = 0.0f;
  double log_z = 0.0;
  kernels::cpu::logit_summary(logits.data(), 1, 3, &best, &max_logit, &log_z, pool);
  EXPECT_EQ(best, 2);
  EXPECT_EQ(max_logit, 3.0f);
  EXPECT_NEAR(log_z, std::log(z), 1e-12);
  auto info = logprobs_of(logits.data(), 3, 2, 2, log_z);
  EXPECT_NEAR(info.token_logprob, 3.0 - std::log(z), 1e-6);
  ASSERT_EQ(info.top.size(), 2u);
  EXPECT_EQ(info.top[0].first, 2);
  EXPECT_EQ(info.top[1].first, 1);
  EXPECT_NEAR(info.top[1].second, 2.0 - std::log(z), 1e-6);
}

}  // namespace
}  // namespace invar::engine

namespace invar::engine {
namespace {

// The filtered set by brute force: sort everything (logit desc, id asc), then top-k, min-p,
// top-p exactly as the OpenAI/vLLM parameters define them.
std::vector<int32_t> reference_set(const std::vector<float>& logits, const SamplingParams& p) {
  const int v = int(logits.size());
  std::vector<int32_t> order(static_cast<size_t>(v));
  for (int i = 0; i < v; ++i) order[size_t(i)] = i;
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
  });
  const float max_logit = logits[order[0]];
  auto w = [&](int32_t id) { return std::exp((logits[id] - max_logit) * (1.0f / p.temperature)); };
  std::vector<int32_t> kept;
  for (int32_t id : order)
    if (w(id) >= p.min_p) kept.push_back(id);
  if (p.top_k > 0 && size_t(p.top_k) < kept.size()) kept.resize(size_t(p.top_k));
  if (p.top_p < 1.0f) {
    std::vector<int32_t> by_id = kept;
    std::sort(by_id.begin(), by_id.end());
    double mass = 0;
    for (int32_t id : by_id) mass += w(id);
    double cum = 0;
    size_t n = 0;
    while (n < kept.size()) {
      cum += w(kept[n++]);
      if (cum >= double(p.top_p) * mass) break;
    }
    kept.resize(n);
  }
  return kept;
}

TEST(Sampler, DrawsOnlyFromTheExactFilteredSet) {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> logits(5000);
  Sampler s;
  for (int round = 0; round < 40; ++round) {
    for (auto& l : logits) l = std::round(normal(rng) * 4.0f) / 4.0f;  // many ties
    SamplingParams p{0.5f + 0.05f * float(round % 20), (round % 3) * 700, round % 2 ? 0.995f : 0.6f,
                     round % 4 == 0 ? 0.01f : 0.0f, uint64_t(round)};
    auto allowed = reference_set(logits, p);
    std::sort(allowed.begin(), allowed.end());
    std::map<int32_t, int> drawn;
    for (uint64_t pos = 0; pos < 300; ++pos) drawn[s.sample(logits.data(), 5000, p, pos)]++;
    for (auto [id, count] : drawn)
      EXPECT_TRUE(std::binary_search(allowed.begin(), allowed.end(), id))
          << "round " << round << " drew " << id << " outside the filtered set";
  }
}

// The host's structured-output mask over packed bits (what the CUDA sampler takes too): every
// allowed logit keeps its bits, the others become -inf, and no draw picks them; the same row
// without the mask draws them (the control), so the test sees the mask.
TEST(Sampler, BitmaskKeepsAllowedBitsAndNoDrawLeavesIt) {
  constexpr int kVocab = 1001;  // not a multiple of 32: the last word is partial
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<float> raw(kVocab);
  for (auto& l : raw) l = normal(rng);
  std::vector<int32_t> words((kVocab + 31) / 32, 0);
  auto allowed = [&](int i) { return (uint32_t(words[size_t(i / 32)]) >> (i % 32)) & 1u; };
  for (int i = 0; i < kVocab; ++i)
    if (rng() % 3 == 0) words[size_t(i / 32)] |= int32_t(1u << (i % 32));
  const int32_t best = int32_t(std::max_element(raw.begin(), raw.end()) - raw.begin());
  words[size_t(best / 32)] &= int32_t(~(1u << (best % 32)));  // greedy must move

  std::vector<float> masked = raw;
  mask_to_allowed(masked.data(), kVocab, words.data());
  for (int i = 0; i < kVocab; ++i) {
    if (allowed(i)) {
      EXPECT_EQ(std::memcmp(&masked[size_t(i)], &raw[size_t(i)], 4), 0) << "token " << i;
    } else {
      EXPECT_TRUE(std::isinf(masked[size_t(i)]) && masked[size_t(i)] < 0) << "token " << i;
    }
  }
  Sampler s;
  int outside_unmasked = 0;
  for (const SamplingParams& p : {SamplingParams{}, SamplingParams{0.8f, 0, 0.95f, 0.0f, 5},
                                  SamplingParams{1.2f, 40, 1.0f, 0.01f, 6}}) {
    for (uint64_t pos = 0; pos < 200; ++pos) {
      EXPECT_TRUE(allowed(s.sample(masked.data(), kVocab, p, pos))) << "position " << pos;
      outside_unmasked += !allowed(s.sample(raw.data(), kVocab, p, pos));
    }
  }
  EXPECT_GT(outside_unmasked, 0);
}

}  // namespace
}  // namespace invar::engine
