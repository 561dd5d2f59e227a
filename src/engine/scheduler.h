// Chooses the work of one forward step (continuous batching):
//   1. admit waiting requests while fewer than max_running run, matching their prompt
//      against the prefix cache on first admission;
//   2. decode tokens first (one per running sequence that has only its newest token left),
//      then prefill chunks in admission order, up to the step's token budget; a chunk that
//      does not finish its prompt ends on a KV-block boundary (R3's aligned cuts);
//   3. give every scheduled sequence the KV blocks it needs, preempting the youngest
//      unscheduled running sequence (its blocks freed, recomputed later) when they run out;
//   4. lay the scheduled tokens out as the model's batch plan (docs/architecture.md: the
//      scheduler hands the model a batch plan), with each sequence's logits row, if the step
//      completes it, and every row of a prompt chunk whose prompt logprobs are asked for.
// Rows of prompt logprobs count against max_logit_rows, which cuts such chunks short: a long
// prompt is scored a bounded number of rows at a time, never [prompt, vocab] at once.
// None of these choices can change a sequence's bits: the forward pass is batch-invariant.
#pragma once

#include <deque>
#include <memory>
#include <vector>

#include "engine/block_manager.h"
#include "engine/sequence.h"
#include "model/batch.h"

namespace invar::engine {

struct StepPlan {
  struct Entry {
    Sequence* seq;
    int count;  // tokens of seq->tokens from seq->computed
    // Index into batch.logit_rows of the sequence's last token when this step computes all of
    // its tokens (it then draws its next token from that row), else -1.
    int logit_row;
    // Prompt logprobs: the row of its first token, when the step returns a row for each of its
    // `count` tokens (first_row .. first_row + count - 1, all prompt positions), else -1.
    int first_row = -1;
    bool completes() const { return logit_row >= 0; }
  };
  std::vector<Entry> entries;  // decodes first, then prefills
  model::BatchPlan batch;      // the entries' tokens, positions, KV slots and page tables
  int preempted = 0;
  int cached_tokens = 0;  // prompt tokens newly served from the prefix cache
};

struct StepLimits {
  int max_running = 64;        // sequences admitted at once
  int token_budget = 512;      // tokens per step
  int max_blocks_per_seq = 0;  // page-table width of the batch plan (max context / block size)
  int max_logit_rows = 0;      // logits rows per step (0: no limit); one per completing entry
                               // fits whenever max_running does
};

StepPlan schedule_step(std::deque<std::unique_ptr<Sequence>>& waiting,
                       std::vector<std::unique_ptr<Sequence>>& running, BlockManager& blocks,
                       const StepLimits& limits);

}  // namespace invar::engine
