// Tensor parallelism (docs/tensor-parallel.md): how a model is cut over R ranks so that every
// rank count R = 1, 2, 4, 8 gives the same logits bitwise.
//   - Column-parallel q/k/v and gate/up, vocab-parallel lm_head: each output column is computed
//     whole by one rank with the GEMM's one recipe, so its bits do not depend on R.
//   - Attention: query heads sharded, kv heads sharded with them (replicated when R exceeds the
//     kv heads, as vLLM does); each head is computed whole by one rank.
//   - Row-parallel o_proj and down_proj (K split over ranks): the only sums that cross ranks.
//     K is cut into S slices (S fixed, a multiple of every R) whatever R; each slice's partial
//     product is the GEMM over that slice, and the S partials are summed in one pairwise tree
//     (tree_sum.h): a rank owns S/R consecutive slices and sums its subtree, the all-reduce
//     finishes the tree in rank order (R7).
//   R = ranks, S = slices, H = hidden, Hq/Hkv = heads, D = head dim, I = intermediate, V = vocab
#pragma once

#include <vector>

#include "core/status.h"
#include "model/config.h"
#include "model/weights.h"

namespace invar::model {

inline constexpr int kDefaultTpSlices = 8;  // S: supports R = 1, 2, 4, 8

struct TpShape {
  int size = 1;  // R: a power of two dividing S (or any power of two when S = 0)
  int rank = 0;
  // S; 0: no slices, each rank reduces its whole K range with one GEMM and the ranks are summed
  // in rank order (deterministic, but the bits depend on R: the negative control).
  int slices = kDefaultTpSlices;
};

// What R ranks and S slices need of the model, with a message a user can act on: R a power of
// two dividing S, heads and kv heads divisible (or kv heads dividing R), I and Hq*D divisible
// into S slices, a dense model.
Status check_tensor_parallel(const ModelConfig& config, int size, int slices);

// One rank's part of a model. Its weights are views of the full model's (which must outlive
// it), except the row-parallel slices, which are copies laid out contiguously.
struct RankShard {
  ModelConfig config;  // the rank's heads, kv heads and intermediate columns; vocab_size whole
  ModelWeights
      weights;  // q/k/v, gate/up rows; lm_head: rows [vocab_begin, vocab_end); no wo/w_down
  // [layer][slice] the rank's K slices of o_proj ([H, Hq*D/S]) and down_proj ([H, I/S]); one
  // slice of the rank's whole K range when TpShape::slices is 0.
  std::vector<std::vector<HostTensor>> o_slices, down_slices;
  int64_t vocab_begin = 0, vocab_end = 0;
};

// `shape` must have passed check_tensor_parallel.
RankShard shard_for_rank(const ModelConfig& config, const ModelWeights& weights, TpShape shape);

// Columns [k0, k1) of a [N, K] matrix, as a contiguous [N, k1 - k0] tensor. Packed rows keep
// their blocks when k0 and k1 fall on block boundaries; otherwise they are decoded to f32,
// which changes no product bit (a packed GEMM gives the bits of the f32 GEMM over its decode).
HostTensor column_slice(const HostTensor& w, int64_t k0, int64_t k1);

}  // namespace invar::model
