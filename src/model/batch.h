// The batch plan for one forward step, built on the host by the scheduler (or a test) and
// read by the model. It describes tokens and page tables only; it knows nothing of requests.
//   S = sequences, T = tokens in the step
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace invar::model {

struct BatchPlan {
  std::vector<int32_t> token_ids;     // [T]
  std::vector<int32_t> positions;     // [T] absolute position in its sequence
  std::vector<int64_t> slots;         // [T] KV slot = block * block_size + offset
  std::vector<int32_t> q_indptr{0};   // [S + 1]
  std::vector<int32_t> kv_lens;       // [S] tokens cached after this step
  std::vector<int32_t> block_tables;  // [S, max_blocks_per_seq], unused entries -1
  int max_blocks_per_seq = 0;
  std::vector<int32_t> logit_rows;    // token indices whose logits are returned, in order

  int num_tokens() const { return int(token_ids.size()); }
  int num_seqs() const { return int(kv_lens.size()); }
};

// Which of a sequence's tokens in the step get logits.
enum class LogitRows : uint8_t { none, last, all };

// Appends one sequence's step: `tokens` at positions start_pos.., its KV in `block_table`.
class BatchPlanBuilder {
 public:
  BatchPlanBuilder(int block_size, int max_blocks_per_seq)
      : block_size_(block_size), max_blocks_(max_blocks_per_seq) {}

  void add_sequence(std::span<const int32_t> tokens, int32_t start_pos,
                    std::span<const int32_t> block_table, LogitRows logits);
  BatchPlan build();

 private:
  int block_size_, max_blocks_;
  BatchPlan plan_;
};

}  // namespace invar::model
