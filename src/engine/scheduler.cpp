#include "engine/scheduler.h"

#include <algorithm>
#include <climits>
#include <span>

namespace invar::engine {

namespace {

int blocks_for(int tokens, int block_size) { return (tokens + block_size - 1) / block_size; }

// Whether this step returns a row for each of the sequence's tokens (its prompt logprobs).
bool wants_all_rows(const Sequence& s) {
  return s.scores_prompt() && s.computed < s.prompt_len;
}

// Frees the youngest running sequence that is not in `scheduled`; false if there is none.
bool preempt_one(std::vector<std::unique_ptr<Sequence>>& running,
                 std::deque<std::unique_ptr<Sequence>>& waiting, BlockManager& blocks,
                 const std::vector<StepPlan::Entry>& scheduled, const Sequence* asking) {
  for (auto it = running.rbegin(); it != running.rend(); ++it) {
    Sequence* s = it->get();
    if (s == asking) continue;
    bool busy = std::any_of(scheduled.begin(), scheduled.end(),
                            [&](const StepPlan::Entry& e) { return e.seq == s; });
    if (busy) continue;
    blocks.release(s->table);
    s->computed = 0;  // recomputed on readmission (its blocks may still be in the prefix cache)
    waiting.push_front(std::move(*it));
    running.erase(std::next(it).base());
    return true;
  }
  return false;
}

}  // namespace

StepPlan schedule_step(std::deque<std::unique_ptr<Sequence>>& waiting,
                       std::vector<std::unique_ptr<Sequence>>& running, BlockManager& blocks,
                       const StepLimits& limits) {
  StepPlan plan;
  const int bs = blocks.block_size();

  // 1. Admission. The last token always stays to compute, so its logits can be sampled.
  while (!waiting.empty() && int(running.size()) < limits.max_running) {
    auto s = std::move(waiting.front());
    waiting.pop_front();
    if (s->table.empty() && s->computed == 0) {
      // Prompt logprobs need the logits of every prompt position: nothing comes from the cache.
      s->computed = s->scores_prompt()
                        ? 0
                        : blocks.match_prefix(s->tokens, int(s->tokens.size()) - 1, s->table);
      if (!s->admitted_once) {
        s->first_scheduled = Clock::now();
        s->cached_prompt_tokens = std::min(s->computed, s->prompt_len);
        plan.cached_tokens += s->cached_prompt_tokens;
      }
    }
    s->admitted_once = true;
    running.push_back(std::move(s));
  }

  // 2. Candidates: decodes, then prefills, each in admission order.
  std::vector<Sequence*> order;
  for (auto& s : running)
    if (s->remaining() == 1) order.push_back(s.get());
  for (auto& s : running)
    if (s->remaining() > 1) order.push_back(s.get());

  int budget = limits.token_budget;
  int rows_left = limits.max_logit_rows > 0 ? limits.max_logit_rows : INT_MAX;
  for (Sequence* s : order) {
    if (budget <= 0) break;
    // Preemption may have moved s back to the waiting queue.
    if (std::none_of(running.begin(), running.end(), [&](const auto& r) { return r.get() == s; }))
      continue;
    int count = std::min(s->remaining(), budget);
    const bool all_rows = wants_all_rows(*s);
    // A row per token: the chunk stays inside the prompt and within the rows left.
    if (all_rows) count = std::min({count, s->prompt_len - s->computed, rows_left});
    if (count <= 0) continue;
    if (count < s->remaining()) {
      const int end = s->computed + count;
      const int aligned = end - end % bs;
      if (aligned > s->computed) count = aligned - s->computed;
    }
    const int rows = all_rows ? count : s->computed + count == int(s->tokens.size()) ? 1 : 0;
    if (rows > rows_left) continue;
    // 3. KV blocks.
    const int need = blocks_for(s->computed + count, bs) - int(s->table.size());
    bool ok = need <= 0;
    while (!ok) {
      ok = blocks.allocate(need, s->table).ok();
      if (!ok && !preempt_one(running, waiting, blocks, plan.entries, s)) break;
      if (!ok) ++plan.preempted;
    }
    if (!ok) continue;  // waits for blocks freed by finishing sequences
    plan.entries.push_back({s, count, -1});
    budget -= count;
    rows_left -= rows;
  }

  // 4. The batch plan, once every scheduled table is final (preemption only frees tables of
  // sequences that are not scheduled).
  model::BatchPlanBuilder builder(bs, limits.max_blocks_per_seq);
  int logit_rows = 0;
  for (StepPlan::Entry& e : plan.entries) {
    Sequence& s = *e.seq;
    const bool completes = s.computed + e.count == int(s.tokens.size());
    const bool all_rows = wants_all_rows(s);
    builder.add_sequence(
        std::span<const int32_t>(s.tokens).subspan(size_t(s.computed), size_t(e.count)), s.computed,
        s.table,
        all_rows    ? model::LogitRows::all
        : completes ? model::LogitRows::last
                    : model::LogitRows::none);
    if (all_rows) {
      e.first_row = logit_rows;
      logit_rows += e.count;
      if (completes) e.logit_row = logit_rows - 1;
    } else if (completes) {
      e.logit_row = logit_rows++;
    }
  }
  plan.batch = builder.build();
  return plan;
}

}  // namespace invar::engine
