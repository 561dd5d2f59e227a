// A request inside the engine: its tokens, KV blocks, sampling state and output text.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/engine.h"
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
        text(tok, params.stop_strings) {}

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
  Clock::time_point last_token{};

  int generated() const { return int(tokens.size()) - prompt_len; }
  int remaining() const { return int(tokens.size()) - computed; }
};

}  // namespace invar::engine
