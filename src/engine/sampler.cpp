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

float log_softmax_at(const float* logits, int vocab, int32_t token) {
  float max_logit = logits[argmax_lowest(logits, vocab)];
  double sum = 0;
  for (int i = 0; i < vocab; ++i) sum += std::exp(double(logits[i]) - max_logit);
  return float(double(logits[token]) - max_logit - std::log(sum));
}

}  // namespace invar::engine
