#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/philox.h"

namespace invar::engine {

static int32_t argmax_lowest(const float* x, int n) {
  int32_t best = 0;
  for (int i = 1; i < n; ++i)
    if (x[i] > x[best]) best = i;
  return best;
}

int32_t Sampler::sample(const float* logits, int vocab, const SamplingParams& p,
                        uint64_t position) {
  const int32_t best = argmax_lowest(logits, vocab);
  if (p.temperature <= 0.0f || p.top_k == 1) return best;

  // Weights exp((logit - max) / T) in (0, 1], computed in id order. Every filter below keeps
  // a set fixed by a total order (logit descending, id ascending), and the draw walks the set
  // in a fixed order, so the token depends only on the row, the seed and the position (R6).
  const float max_logit = logits[best];
  const float inv_t = 1.0f / p.temperature;
  weights_.resize(size_t(vocab));
  kept_.clear();
  // min_p keeps tokens whose probability is at least min_p times the top one's (weight 1).
  for (int i = 0; i < vocab; ++i) {
    weights_[size_t(i)] = std::exp((logits[i] - max_logit) * inv_t);
    if (weights_[size_t(i)] >= p.min_p) kept_.push_back(i);
  }
  auto before = [&](int32_t a, int32_t b) {
    return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
  };
  if (p.top_k > 0 && size_t(p.top_k) < kept_.size()) {
    std::nth_element(kept_.begin(), kept_.begin() + p.top_k, kept_.end(), before);
    kept_.resize(size_t(p.top_k));
    std::sort(kept_.begin(), kept_.end());  // back to id order
  }
  if (p.top_p < 1.0f) {
    // The smallest most-likely-first prefix holding top_p of the mass. Sorting only a head of
    // the candidates usually suffices; the cumulative sum is the same either way.
    double mass = 0;
    for (int32_t id : kept_) mass += weights_[size_t(id)];
    const double target = double(p.top_p) * mass;
    size_t sorted = 0, n = 0;
    double cum = 0;
    while (n < kept_.size()) {
      if (n == sorted) {
        size_t next = std::min(kept_.size(), std::max<size_t>(256, sorted * 4));
        std::partial_sort(kept_.begin() + long(sorted), kept_.begin() + long(next), kept_.end(),
                          before);
        sorted = next;
      }
      cum += weights_[size_t(kept_[n++])];
      if (cum >= target) break;
    }
    kept_.resize(n);
    // Back to id order for the draw, as after top-k and as the GPU draws (kernels/cuda/
    // sample.cu): walking the nucleus most-likely-first drew other tokens for the same u
    // (seen on an H200: every top-p row of sample_mask_test).
    std::sort(kept_.begin(), kept_.end());
  }
  double total = 0;
  for (int32_t id : kept_) total += weights_[size_t(id)];
  const double u = double(philox_uniform(p.seed, position)) * total;
  double cum = 0;
  for (int32_t id : kept_) {
    cum += weights_[size_t(id)];
    if (u < cum) return id;
  }
  // Only when u rounded up to the total: the last candidate that can be drawn at all (masked
  // tokens have weight 0).
  for (auto it = kept_.rbegin(); it != kept_.rend(); ++it)
    if (weights_[size_t(*it)] > 0) return *it;
  return best;
}

}  // namespace invar::engine

namespace invar::engine {

void apply_penalties(float* logits, int vocab, const PenaltyParams& p,
                     const std::vector<int32_t>& prompt, const std::vector<int32_t>& output) {
  if (!p.active()) return;
  std::vector<int32_t> count(size_t(vocab), 0);
  for (int32_t t : output)
    if (t >= 0 && t < vocab) ++count[size_t(t)];
  if (p.repetition != 1.0f) {
    std::vector<bool> seen(size_t(vocab), false);
    for (int32_t t : prompt)
      if (t >= 0 && t < vocab) seen[size_t(t)] = true;
    for (int i = 0; i < vocab; ++i)
      if (seen[size_t(i)] || count[size_t(i)] > 0)
        logits[i] = logits[i] > 0 ? logits[i] / p.repetition : logits[i] * p.repetition;
  }
  for (int i = 0; i < vocab; ++i) {
    if (count[size_t(i)] == 0) continue;
    logits[i] -= p.presence + p.frequency * float(count[size_t(i)]);
  }
}

void apply_logit_bias(float* logits, int vocab,
                      const std::vector<std::pair<int32_t, float>>& bias) {
  for (auto [id, b] : bias)
    if (id >= 0 && id < vocab) logits[id] += b;
}

void mask_tokens(float* logits, int vocab, const std::vector<int32_t>& ids) {
  for (int32_t id : ids)
    if (id >= 0 && id < vocab) logits[id] = -std::numeric_limits<float>::infinity();
}

void mask_to_allowed(float* logits, int vocab, const int32_t* words) {
  for (int i = 0; i < vocab; ++i)
    if (!((uint32_t(words[i / 32]) >> (i % 32)) & 1u))
      logits[i] = -std::numeric_limits<float>::infinity();
}

int32_t rank_of(const float* logits, int vocab, int32_t token) {
  const float x = logits[token];
  int32_t rank = 0;
  for (int i = 0; i < vocab; ++i) rank += logits[i] >= x;
  return rank;
}

LogprobInfo logprobs_of(const float* logits, int vocab, int32_t token, int top, double log_z) {
  LogprobInfo info;
  info.token_logprob = float(double(logits[token]) - log_z);
  if (top > 0) {
    std::vector<std::pair<float, int32_t>> c(static_cast<size_t>(vocab));
    for (int i = 0; i < vocab; ++i) c[size_t(i)] = {logits[i], i};
    const size_t k = std::min<size_t>(size_t(top), c.size());
    std::partial_sort(c.begin(), c.begin() + long(k), c.end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first > b.first : a.second < b.second;
    });
    for (size_t i = 0; i < k; ++i) info.top.push_back({c[i].second, float(double(c[i].first) - log_z)});
  }
  return info;
}

}  // namespace invar::engine
