// Chooses the work of one forward step (continuous batching):
//   1. admit waiting requests while fewer than max_running run, matching their prompt
//      against the prefix cache on first admission;
//   2. decode tokens first (one per running sequence that has only its newest token left),
//      then prefill chunks in admission order, up to the step's token budget; a chunk that
//      does not finish its prompt ends on a KV-block boundary (R3's aligned cuts);
//   3. give every scheduled sequence the KV blocks it needs, preempting the youngest
//      unscheduled running sequence (its blocks freed, recomputed later) when they run out.
// None of these choices can change a sequence's bits: the forward pass is batch-invariant.
#pragma once

#include <deque>
#include <memory>
#include <vector>

#include "engine/block_manager.h"
#include "engine/sequence.h"

namespace invar::engine {

struct StepPlan {
  struct Entry {
    Sequence* seq;
    int count;  // tokens of seq->tokens from seq->computed
  };
  std::vector<Entry> entries;  // decodes first, then prefills
  int preempted = 0;
  int cached_tokens = 0;  // prompt tokens newly served from the prefix cache
};

StepPlan schedule_step(std::deque<std::unique_ptr<Sequence>>& waiting,
                       std::vector<std::unique_ptr<Sequence>>& running, BlockManager& blocks,
                       int max_running, int token_budget);

}  // namespace invar::engine
