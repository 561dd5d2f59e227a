// What `invar verify` found: per scenario, how many comparisons were made and which differed,
// with enough detail to act on (the first differing op for white-box runs, the first diverging
// token for black-box runs). Printed as a table and written as JSON.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "verify/activation_trace.h"

namespace invar::verify {

// pass: every comparison equal (and the negative control, if run, saw differences).
// fail: some comparison differed in invariant mode.
// no_power: invariant mode passed, but the negative control found no difference either, so
//   the matrix could not have seen a batch-dependent kernel.
// error: the run could not complete (requests failed, the model did not load, ...).
enum class Verdict : uint8_t { pass, fail, no_power, error };
const char* verdict_name(Verdict v);
// 0 pass, 1 fail, 2 error, 3 no_power.
int verdict_exit_code(Verdict v);

// --- white-box ---

struct WhiteBoxMismatch {
  std::string case_name;    // e.g. "batch 37, target at slot 5, decode at position 71"
  int first_position = -1;  // first position whose logits differ from the solo run
  int positions_differing = 0;
  std::string detail;                 // engine scenarios: the token or logprob that differs
  std::optional<Localization> where;  // transformer scenarios: the first differing op
};

struct WhiteBoxScenario {
  std::string name;
  std::string description;
  int cases = 0;
  int mismatched = 0;
  std::vector<WhiteBoxMismatch> mismatches;  // the first few
  std::string note;                          // e.g. "12 preemptions"
  std::string error;                         // a case could not run
};

struct WhiteBoxMode {
  std::string mode;      // invariant | fast
  bool control = false;  // the negative control: differences are expected
  std::vector<WhiteBoxScenario> scenarios;
  // A hash of the solo run's logits (every position) and tokens: equal across runs, thread
  // counts and machines of one architecture when the contract holds there too.
  std::string solo_digest;
  double seconds = 0;
  int cases() const;
  int mismatched() const;
  bool has_error() const;
};

struct WhiteBoxReport {
  std::string model;
  std::string device = "cpu";
  int threads = 0;
  int num_layers = 0;
  int prompt_tokens = 0;
  int target_tokens = 0;           // prompt + decoded positions compared
  std::string injection;           // empty: none
  std::vector<std::string> notes;  // e.g. scenarios skipped, and why
  std::vector<WhiteBoxMode> modes;
  std::string error;
  Verdict verdict() const;
};

// --- black-box ---

struct Divergence {
  int token = -1;         // first diverging token index (or byte offset without tokens)
  bool by_bytes = false;  // the server returned no tokens: `token` is a byte offset
  std::string expected;   // the reference's text from there (a short excerpt)
  std::string actual;     // the other completion's text from there
};

struct BlackBoxScenario {
  std::string name;
  std::string description;
  int requests = 0;    // requests compared (targets), not counting background load
  int background = 0;  // other requests sent alongside
  int errors = 0;
  int groups = 0;                   // distinct (prompt, parameters) compared
  int max_unique = 0;               // most distinct completions within one group (1 = invariant)
  int diverging = 0;                // completions that differ from their group's reference
  int logprob_mismatches = 0;       // completions whose logprobs differ bitwise where tokens agree
  int first_logprob_mismatch = -1;  // its token index
  std::optional<Divergence> divergence;  // the earliest divergence seen
  std::string first_error;
  std::vector<std::string> fingerprints;  // distinct system_fingerprint values seen
  double seconds = 0;
  bool passed() const { return errors == 0 && diverging == 0 && logprob_mismatches == 0; }
};

struct BlackBoxReport {
  std::string url;
  std::string model;
  std::string endpoint;   // /v1/completions or /v1/chat/completions
  bool logprobs = false;  // the server returned logprobs
  std::vector<BlackBoxScenario> scenarios;
  std::string error;
  Verdict verdict() const;
};

// A readable table (stdout).
std::string format_report(const WhiteBoxReport& r);
std::string format_report(const BlackBoxReport& r);
// The report as JSON text.
std::string report_json(const WhiteBoxReport& r);
std::string report_json(const BlackBoxReport& r);

}  // namespace invar::verify
