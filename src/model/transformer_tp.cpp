// The tensor-parallel steps of Transformer (docs/tensor-parallel.md): the row-parallel GEMMs'
// fixed slice tree and all-reduce, and the vocab-parallel lm_head. Without a TpRank they are
// the plain GEMM, with its bits and speed.
//   m = rows, K = the rank's input features, H = output features, S_r = the rank's slices
#include <algorithm>

#include "core/tree_sum.h"
#include "model/transformer.h"

namespace invar::model {

void Transformer::row_parallel(const float* x, const kernels::WeightRef& w,
                               const std::vector<HostTensor>& slices, int64_t m, float* y) {
  if (!tp_.shard) return linear(x, w, nullptr, m, y);
  const int count = int(slices.size());
  const int64_t n = slices[0].shape[0], ks = slices[0].shape[1], k = ks * count;
  if (count == 1) {
    linear(x, slices[0].ref(), nullptr, m, y);  // the rank's whole K in one GEMM (no slices)
  } else {
    // Each slice's partial product [m, H] by the one GEMM recipe over its ks columns of x.
    slice_x_.resize(size_t(m * ks));
    partials_.resize(size_t(count * m * n));
    for (int s = 0; s < count; ++s) {
      for (int64_t r = 0; r < m; ++r) std::copy_n(x + r * k + s * ks, ks, slice_x_.data() + r * ks);
      linear(slice_x_.data(), slices[size_t(s)].ref(), nullptr, m, partials_.data() + s * m * n);
    }
    const float* parts[kMaxTreeLeaves];
    for (int s = 0; s < count; ++s) parts[s] = partials_.data() + s * m * n;
    // The rank's subtree of the fixed tree: element-wise, so threads split elements.
    pool_.parallel_for(m * n, 4096, [&](int64_t b, int64_t e) { tree_sum(parts, count, b, e, y); });
  }
  tp_.comm->all_reduce_tree(y, m * n);  // the tree's top levels, over ranks in rank order (R7)
}

void Transformer::vocab_parallel_logits(const float* x, int64_t m, std::vector<float>& logits) {
  const int64_t vocab = config_.vocab_size;
  logits.resize(size_t(m * vocab));
  if (!tp_.shard) return linear(x, weights_.output().ref(), nullptr, m, logits.data());
  // Rank q holds vocab rows [vocab * q / R, vocab * (q + 1) / R); each rank's [m, widest] block
  // is padded to the widest share so that the gather moves equal counts.
  const int ranks = tp_.comm->size();
  const int64_t widest = (vocab + ranks - 1) / ranks;
  const int64_t mine = tp_.shard->vocab_end - tp_.shard->vocab_begin;
  std::vector<float>& local = partials_;  // [m, mine], then padded to [m, widest]
  local.assign(size_t(m * widest), 0.0f);
  linear(x, weights_.output().ref(), nullptr, m, local.data());
  for (int64_t r = m - 1; r >= 0; --r)  // spread rows to stride `widest`, back to front
    std::copy_backward(local.data() + r * mine, local.data() + (r + 1) * mine,
                       local.data() + r * widest + mine);
  gathered_.resize(size_t(ranks * m * widest));
  tp_.comm->all_gather(local.data(), m * widest, gathered_.data());
  for (int q = 0; q < ranks; ++q) {
    const int64_t v0 = vocab * q / ranks, width = vocab * (q + 1) / ranks - v0;
    const float* block = gathered_.data() + q * m * widest;
    for (int64_t r = 0; r < m; ++r)
      std::copy_n(block + r * widest, width, logits.data() + r * vocab + v0);
  }
}

}  // namespace invar::model
