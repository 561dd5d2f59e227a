// Collects what many concurrent requests return (tokens, logprobs, text, how they ended) and
// waits until all have ended: for callers that submit a batch of requests and compare their
// outcomes (`invar verify`, the engine's invariance tests).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "engine/engine.h"

namespace invar::engine {

struct RequestOutcome {
  std::vector<int32_t> ids;
  std::vector<float> logprobs;                 // per token: its own, then the top ones
  std::vector<std::vector<TokenLogprob>> top;  // per token: the alternatives
  std::vector<PromptLogprob> prompt_logprobs;  // prompt_logprobs >= 0: from the second token on
  std::string text;
  FinishReason finish = FinishReason::none;
  std::string error;
  int cached_prompt_tokens = 0;
  uint64_t request_id = 0;  // as the events carried it

  // Same tokens, text and logprob bits (prompt logprobs included).
  bool same_output(const RequestOutcome& o) const {
    if (prompt_logprobs.size() != o.prompt_logprobs.size()) return false;
    for (size_t i = 0; i < prompt_logprobs.size(); ++i)
      if (!same_bits(prompt_logprobs[i], o.prompt_logprobs[i])) return false;
    return ids == o.ids && text == o.text && logprobs.size() == o.logprobs.size() &&
           std::memcmp(logprobs.data(), o.logprobs.data(), logprobs.size() * sizeof(float)) == 0;
  }

  static bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof(float)) == 0; }
  static bool same_bits(const TokenLogprob& a, const TokenLogprob& b) {
    return a.id == b.id && same_bits(a.logprob, b.logprob);
  }
  static bool same_bits(const PromptLogprob& a, const PromptLogprob& b) {
    if (a.id != b.id || !same_bits(a.logprob, b.logprob) || a.rank != b.rank ||
        a.top.size() != b.top.size())
      return false;
    for (size_t i = 0; i < a.top.size(); ++i)
      if (!same_bits(a.top[i], b.top[i])) return false;
    return true;
  }
};

class RequestCollector {
 public:
  // The callback to submit request `slot` with; its outcome lands at wait()[slot].
  EventCallback callback(size_t slot) {
    std::lock_guard<std::mutex> lock(mu_);
    if (outcomes_.size() <= slot) outcomes_.resize(slot + 1);
    ++pending_;
    return [this, slot](const RequestEvent& ev) {
      std::lock_guard<std::mutex> lock(mu_);
      RequestOutcome& o = outcomes_[slot];
      o.request_id = ev.request_id;
      o.text += ev.text;
      if (!ev.prompt_logprobs.empty()) o.prompt_logprobs = ev.prompt_logprobs;
      for (const auto& t : ev.tokens) {
        o.ids.push_back(t.id);
        o.logprobs.push_back(t.logprob);
        for (const auto& alt : t.top) o.logprobs.push_back(alt.logprob);
        o.top.push_back(t.top);
      }
      if (ev.finished()) {
        o.finish = ev.finish;
        o.error = ev.error;
        o.cached_prompt_tokens = ev.cached_prompt_tokens;
        if (--pending_ == 0) done_.notify_all();
      }
    };
  }

  // For a callback whose submit() was refused: it will never be called.
  void abandon(size_t slot, std::string why) {
    std::lock_guard<std::mutex> lock(mu_);
    outcomes_[slot].finish = FinishReason::error;
    outcomes_[slot].error = std::move(why);
    --pending_;
  }

  // Whether every request has ended, waiting at most `timeout` for it: a caller that must do
  // something meanwhile (the Python module checks for Ctrl-C) waits in slices.
  bool wait_for(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return done_.wait_for(lock, timeout, [&] { return pending_ == 0; });
  }

  std::vector<RequestOutcome> wait() {
    std::unique_lock<std::mutex> lock(mu_);
    done_.wait(lock, [&] { return pending_ == 0; });
    return outcomes_;
  }

 private:
  std::mutex mu_;
  std::condition_variable done_;
  std::vector<RequestOutcome> outcomes_;
  int pending_ = 0;
};

}  // namespace invar::engine
