#include "model/batch.h"

#include <cassert>

namespace invar::model {

void BatchPlanBuilder::add_sequence(std::span<const int32_t> tokens, int32_t start_pos,
                                    std::span<const int32_t> block_table, LogitRows logits) {
  assert(int(block_table.size()) <= max_blocks_);
  int32_t first = plan_.num_tokens();
  for (size_t i = 0; i < tokens.size(); ++i) {
    int32_t pos = start_pos + int32_t(i);
    plan_.token_ids.push_back(tokens[i]);
    plan_.positions.push_back(pos);
    int32_t block = block_table[pos / block_size_];
    plan_.slots.push_back(int64_t(block) * block_size_ + pos % block_size_);
    if (logits == LogitRows::all) plan_.logit_rows.push_back(first + int32_t(i));
  }
  if (logits == LogitRows::last && !tokens.empty()) plan_.logit_rows.push_back(plan_.num_tokens() - 1);
  plan_.q_indptr.push_back(plan_.num_tokens());
  plan_.kv_lens.push_back(start_pos + int32_t(tokens.size()));
  size_t row = plan_.block_tables.size();
  plan_.block_tables.resize(row + max_blocks_, -1);
  for (size_t b = 0; b < block_table.size(); ++b) plan_.block_tables[row + b] = block_table[b];
}

BatchPlan BatchPlanBuilder::build() {
  plan_.max_blocks_per_seq = max_blocks_;
  BatchPlan out = std::move(plan_);
  plan_ = BatchPlan{};
  return out;
}

}  // namespace invar::model
