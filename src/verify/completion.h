// One completion as a server returned it, and the comparison of completions that must be
// identical: text, tokens, and logprobs bit for bit.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "net/http_client.h"
#include "verify/report.h"

namespace invar::verify {

using net::HttpClient;
using net::HttpResponse;

struct TokenLogprob {
  std::string token;
  double logprob = 0;
  std::vector<std::pair<std::string, double>> top;  // alternatives, sorted by token text
};

struct Completion {
  bool ok = false;
  std::string error;
  std::string text;
  std::string finish_reason;
  std::string fingerprint;
  bool has_logprobs = false;
  std::vector<TokenLogprob> tokens;  // when has_logprobs
  // What must be equal between two runs, logprobs aside.
  std::string key() const;
};

// Parses a /v1/completions (chat = false) or /v1/chat/completions response; choice 0.
Completion parse_completion(const HttpResponse& r, bool chat);

// Adds one group (same prompt and parameters) to `s`: `reference` is the solo run, `runs` the
// same request under the scenario's conditions.
void add_group(BlackBoxScenario& s, const Completion& reference,
               const std::vector<Completion>& runs);

}  // namespace invar::verify
