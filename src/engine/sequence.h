// A request inside the engine: its tokens, KV blocks, sampling state and output text.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/engine.h"
#include "engine/grammar.h"
#include "engine/output_text.h"
#include "engine/sampler.h"

namespace invar::engine {

using Clock = std::chrono::steady_clock;

struct Sequence {
  Sequence(uint64_t id_, RequestParams params_, EventCallback cb, const tokenizer::Tokenizer& tok)
      : id(id_),
        params(std::move(params_)),
        on_event(std::move(cb)),
        tokens(params.prompt),
        prompt_len(int(params.prompt.size())),
        text(tok, params.stop_strings, params.include_stop_str_in_output,
             params.skip_special_tokens) {}

  uint64_t id;
  RequestParams params;
  EventCallback on_event;
  std::vector<int32_t> tokens;  // prompt, then generated tokens
  int prompt_len;
  int computed = 0;             // tokens whose KV is in the cache
  std::vector<int32_t> table;   // KV blocks
  bool admitted_once = false;
  int cached_prompt_tokens = 0;
  Sampler sampler;
  OutputText text;
  Clock::time_point arrival = Clock::now();
  Clock::time_point first_scheduled{};  // first admission: the end of its queue time
  Clock::time_point last_token{};
  // prompt_logprobs: entry p - 1 for prompt position p, filled as the prefill's rows come in
  // (again, with the same bits, after a preemption) and handed out with the first event.
  std::vector<PromptLogprob> prompt_logprobs;
  bool prompt_logprobs_sent = false;
  // Where the output stands in params.grammar (null without one); advanced by every token drawn.
  std::unique_ptr<GrammarMatcher> grammar;

  int generated() const { return int(tokens.size()) - prompt_len; }
  int remaining() const { return int(tokens.size()) - computed; }
  // Whether the logits rows of its prompt positions are still wanted (prompt_logprobs): then
  // the prompt is computed in full (no prefix cache) with every row.
  bool scores_prompt() const { return params.prompt_logprobs >= 0 && !prompt_logprobs_sent; }
  // Whether the stop tokens are still masked and stop strings ignored (min_tokens).
  bool before_min_tokens() const { return generated() < params.min_tokens; }
};

}  // namespace invar::engine
