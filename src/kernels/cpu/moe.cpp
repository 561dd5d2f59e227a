// The two row-local steps of a mixture-of-experts layer around its expert GEMMs.
//
// moe_route: per token, softmax over the router logits in f32 (max subtracted, exps summed in
// expert id order), the top-k probabilities picked one by one (a strict comparison, so ties go
// to the lowest expert id), optionally divided by their sum (in pick order, largest first, as
// torch.topk then sum). The picks are written in increasing expert id: the order moe_accumulate
// then adds the experts' outputs in, whatever order the tokens arrive in (R1, R4).
// moe_accumulate: acc[token, :] += weight * y[row, :] for the rows of one expert's group; the
// caller walks the experts in id order. No reduction across rows; one thread per row range.
//   T = tokens, E = experts, k = experts per token, H = hidden size, n = rows of one group
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "kernels/cpu/ops.h"

namespace invar::kernels::cpu {

namespace {

void route_row(const float* logits, int experts, int top_k, bool normalize, int32_t* ids,
               float* weights, float* probs) {
  float max = -std::numeric_limits<float>::infinity();
  for (int e = 0; e < experts; ++e) max = std::fmax(max, logits[e]);
  float sum = 0.0f;
  for (int e = 0; e < experts; ++e) {
    probs[e] = std::exp(logits[e] - max);
    sum += probs[e];
  }
  for (int e = 0; e < experts; ++e) probs[e] /= sum;

  float picked_sum = 0.0f;
  for (int j = 0; j < top_k; ++j) {
    int best = -1;
    for (int e = 0; e < experts; ++e) {
      bool taken = false;
      for (int i = 0; i < j; ++i) taken |= ids[i] == e;
      // A NaN never wins a comparison: such a row still gets k distinct, valid ids.
      if (!taken && (best < 0 || probs[e] > probs[best])) best = e;
    }
    ids[j] = best;
    weights[j] = probs[best];
    picked_sum += probs[best];
  }
  if (normalize)
    for (int j = 0; j < top_k; ++j) weights[j] /= picked_sum;
  // Insertion sort by expert id (k is small): the summation order of moe_accumulate.
  for (int j = 1; j < top_k; ++j) {
    for (int i = j; i > 0 && ids[i - 1] > ids[i]; --i) {
      std::swap(ids[i - 1], ids[i]);
      std::swap(weights[i - 1], weights[i]);
    }
  }
}

}  // namespace

void moe_route(const float* logits, int64_t tokens, int experts, int top_k, bool normalize,
               int32_t* expert_ids, float* weights, ThreadPool& pool) {
  pool.parallel_for(tokens, 16, [&](int64_t t0, int64_t t1) {
    std::vector<float> probs(static_cast<size_t>(experts));
    for (int64_t t = t0; t < t1; ++t)
      route_row(logits + t * experts, experts, top_k, normalize, expert_ids + t * top_k,
                weights + t * top_k, probs.data());
  });
}

void moe_accumulate(const float* y, const int32_t* tokens, const float* weights, int64_t rows,
                    int64_t dim, float* acc, ThreadPool& pool) {
  pool.parallel_for(rows, 8, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float* out = acc + int64_t(tokens[r]) * dim;
      const float* in = y + r * dim;
      const float w = weights[r];
      for (int64_t i = 0; i < dim; ++i) out[i] += w * in[i];
    }
  });
}

}  // namespace invar::kernels::cpu
