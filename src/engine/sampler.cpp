#include "engine/sampler.h"

#include <algorithm>
#include <cmath>

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
  if (p.temperature <= 0.0f || p.top_k == 1) return argmax_lowest(logits, vocab);

  // Candidates sorted by logit descending, ties by id ascending: a total order, so the
  // filtering below never depends on sort stability.
  candidates_.resize(vocab);
  for (int i = 0; i < vocab; ++i) candidates_[i] = {logits[i], i};
  auto by_logit = [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  };
  size_t keep = (p.top_k > 0 && p.top_k < vocab) ? size_t(p.top_k) : size_t(vocab);
  std::partial_sort(candidates_.begin(), candidates_.begin() + keep, candidates_.end(), by_logit);
  candidates_.resize(keep);

  // Probabilities in a fixed sequential order (double, for a stable cumulative sum).
  const double max_logit = candidates_[0].first;
  std::vector<double> probs(keep);
  double total = 0;
  for (size_t i = 0; i < keep; ++i) {
    probs[i] = std::exp((double(candidates_[i].first) - max_logit) / p.temperature);
    total += probs[i];
  }
  size_t n = keep;
  if (p.min_p > 0.0f) {  // keep tokens with prob >= min_p * top prob (top prob is probs[0])
    size_t m = 1;
    while (m < n && probs[m] >= p.min_p * probs[0]) ++m;
    n = m;
  }
  if (p.top_p < 1.0f) {
    double mass = 0;
    for (size_t i = 0; i < n; ++i) mass += probs[i];
    double cum = 0;
    size_t m = 0;
    while (m < n) {
      cum += probs[m++];
      if (cum >= p.top_p * mass) break;
    }
    n = m;
  }
  total = 0;
  for (size_t i = 0; i < n; ++i) total += probs[i];
  const double u = double(philox_uniform(p.seed, position)) * total;
  double cum = 0;
  for (size_t i = 0; i < n; ++i) {
    cum += probs[i];
    if (u < cum) return candidates_[i].second;
  }
  return candidates_[n - 1].second;
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

LogprobInfo logprobs_of(const float* logits, int vocab, int32_t token, int top) {
  float max_logit = logits[0];
  for (int i = 1; i < vocab; ++i) max_logit = std::max(max_logit, logits[i]);
  double sum = 0;  // sequential: a fixed order (R4)
  for (int i = 0; i < vocab; ++i) sum += std::exp(double(logits[i]) - max_logit);
  const double log_z = double(max_logit) + std::log(sum);
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
