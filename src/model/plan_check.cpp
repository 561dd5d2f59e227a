// Checks a batch plan against the model and its KV cache before any backend runs it: a bad
// plan is an error, never an out-of-bounds access on the host or the device.
#include "model/model_runner.h"

namespace invar::model {

Status check_batch_plan(const BatchPlan& plan, const ModelConfig& config, int kv_blocks,
                        int block_size) {
  const size_t t = plan.token_ids.size();
  if (plan.positions.size() != t || plan.slots.size() != t)
    return Status::error("batch plan: token_ids, positions and slots differ in length");
  if (plan.q_indptr.size() != plan.kv_lens.size() + 1 || plan.q_indptr.back() != int32_t(t))
    return Status::error("batch plan: q_indptr does not cover the tokens");
  if (plan.block_tables.size() != plan.kv_lens.size() * size_t(plan.max_blocks_per_seq))
    return Status::error("batch plan: block_tables is not [sequences, max_blocks_per_seq]");
  for (int32_t id : plan.token_ids)
    if (id < 0 || id >= config.vocab_size)
      return Status::errorf("batch plan: token id {} outside the vocabulary [0, {})", id,
                            config.vocab_size);
  for (int32_t pos : plan.positions)
    if (pos < 0 || (config.max_position > 0 && pos >= config.max_position))
      return Status::errorf("batch plan: position {} outside the model context [0, {})", pos,
                            config.max_position);
  const int64_t capacity = int64_t(kv_blocks) * block_size;
  for (int64_t s : plan.slots)
    if (s < 0 || s >= capacity)
      return Status::errorf("batch plan: KV slot {} outside the cache (capacity {})", s, capacity);
  for (int32_t b : plan.block_tables)
    if (b >= kv_blocks)
      return Status::errorf("batch plan: KV block {} outside the cache ({} blocks)", b,
                            kv_blocks);
  for (size_t s = 0; s < plan.kv_lens.size(); ++s) {
    const int32_t q_len = plan.q_indptr[s + 1] - plan.q_indptr[s];
    const int32_t kv_len = plan.kv_lens[s];
    if (q_len < 0 || kv_len < q_len || int64_t(kv_len) > int64_t(plan.max_blocks_per_seq) * block_size)
      return Status::errorf("batch plan: sequence {} has {} new tokens and {} cached", s, q_len,
                            kv_len);
    const int32_t* table = plan.block_tables.data() + s * size_t(plan.max_blocks_per_seq);
    for (int32_t b = 0; b < (kv_len + block_size - 1) / block_size; ++b)
      if (table[b] < 0)
        return Status::errorf("batch plan: sequence {} has no KV block {} for its {} tokens", s, b,
                              kv_len);
  }
  for (int32_t r : plan.logit_rows)
    if (r < 0 || r >= int32_t(t)) return Status::errorf("batch plan: logit row {} out of range", r);
  return Status();
}

}  // namespace invar::model
