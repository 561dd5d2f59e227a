// Black-box verification: drives any OpenAI-compatible server over HTTP and checks that a
// request's completion (text, tokens and, when the server returns them, logprobs bit for bit)
// does not depend on what else the server is doing. Scenarios, each against the target's solo
// run (the same request sent while nothing else of ours is in flight):
//   burst    N identical requests fired at once
//   needle   the target at a random place among random prompts of random lengths, many rounds
//   loaded   the target under a steady background load at several concurrencies
//   prefix   target and others sharing a long prefix: cold (a fresh prefix), then hot, alone
//            and among the others
//   seeded   temperature > 0 with a fixed seed: identical requests among random ones
// Target prompts ask for long answers (step-by-step math, code): divergence shows up late.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/status.h"
#include "verify/report.h"

namespace invar::verify {

struct BlackBoxOptions {
  std::string url;
  std::string model;  // empty: the first of GET /v1/models
  std::string api_key;
  bool chat = false;                   // /v1/chat/completions instead of /v1/completions
  std::vector<std::string> scenarios;  // empty: all (blackbox_scenario_names())
  std::vector<std::string> prompts;    // target prompts; empty: builtin_prompts()
  int max_tokens = 500;                // per target request
  int burst = 1000;
  int needle_rounds = 20;
  int needle_others = 31;
  std::vector<int> loaded_concurrency{4, 16, 64};
  int loaded_repeats = 3;  // target requests per concurrency level
  int prefix_rounds = 4;
  int prefix_others = 8;
  int prefix_words = 400;  // length of the shared prefix
  int seeded_requests = 100;
  int other_max_words = 300;   // length of the other clients' random prompts
  float temperature = 0.8f;    // seeded scenario
  uint64_t seed = 1234;        // seeded scenario's request seed
  int logprobs = 1;            // alternatives asked per token; -1: do not ask
  int max_concurrency = 1024;  // requests in flight at most
  double timeout_s = 3600;     // per request
  uint64_t random_seed = 1;    // the other prompts and their order
  // (scenario, requests done, requests in the scenario)
  std::function<void(const std::string&, int, int)> progress;

  static BlackBoxOptions quick();  // --quick
};

std::vector<std::string> blackbox_scenario_names();
const std::vector<std::string>& builtin_prompts();
// One prompt per non-empty line; "\n" in a line stands for a newline.
Result<std::vector<std::string>> read_prompts(const std::string& path);

BlackBoxReport run_blackbox(const BlackBoxOptions& options);

}  // namespace invar::verify
