#include "verify/report.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

namespace invar::verify {

namespace {

using nlohmann::json;

std::string hex(uint64_t h) {
  return fmt::format("{:016x}", h);
}

std::string layer_name(int layer, int num_layers) {
  if (layer < 0) return "-";
  if (layer >= num_layers) return "out";
  return std::to_string(layer);
}

// Text for a table cell: control characters escaped, cut to `width` bytes on a UTF-8 boundary.
std::string excerpt(const std::string& s, size_t width) {
  std::string out;
  for (size_t i = 0; i < s.size() && out.size() < width; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '\n')
      out += "\\n";
    else if (c == '\t')
      out += "\\t";
    else if (c < 0x20)
      out += fmt::format("\\x{:02x}", c);
    else
      out += char(c);
  }
  while (!out.empty() && (static_cast<unsigned char>(out.back()) & 0xC0) == 0x80) out.pop_back();
  if (!out.empty() && (static_cast<unsigned char>(out.back()) & 0xC0) == 0xC0) out.pop_back();
  return out;
}

json localization_json(const Localization& loc, int num_layers) {
  json ops = json::array();
  for (const auto& e : loc.ops)
    ops.push_back({{"layer", layer_name(e.layer, num_layers)},
                   {"op", model::probe_op_name(e.op)},
                   {"solo", hex(e.expected)},
                   {"case", hex(e.actual)},
                   {"differs", e.differs()}});
  json j = {{"found", loc.found}, {"ops", std::move(ops)}};
  if (loc.found) {
    j["first_differing_layer"] = layer_name(loc.layer, num_layers);
    j["first_differing_op"] = model::probe_op_name(loc.op);
    j["first_differing_position"] = loc.position;
  }
  return j;
}

// The rows of a localization worth printing: up to two equal ops before the first difference,
// the difference, and the op after it.
std::string format_localization(const Localization& loc, int num_layers) {
  if (!loc.found)
    return "    every recorded op matched the solo run (the difference is after the trace)\n";
  size_t first = 0;
  while (first < loc.ops.size() && !loc.ops[first].differs()) ++first;
  std::string out =
      fmt::format("    {:>5}  {:<14} {:<16}  {:<16}\n", "layer", "op", "solo", "this case");
  const size_t from = first >= 2 ? first - 2 : 0;
  for (size_t i = from; i < std::min(loc.ops.size(), first + 2); ++i) {
    const auto& e = loc.ops[i];
    out += fmt::format("    {:>5}  {:<14} {}  {}{}\n", layer_name(e.layer, num_layers),
                       model::probe_op_name(e.op), hex(e.expected), hex(e.actual),
                       i == first ? "  <- first difference" : (e.differs() ? "  differs" : ""));
  }
  return out;
}

}  // namespace

const char* verdict_name(Verdict v) {
  switch (v) {
    case Verdict::pass:
      return "PASS";
    case Verdict::fail:
      return "FAIL";
    case Verdict::no_power:
      return "NO POWER";
    case Verdict::error:
      return "ERROR";
  }
  return "?";
}

int verdict_exit_code(Verdict v) {
  switch (v) {
    case Verdict::pass:
      return 0;
    case Verdict::fail:
      return 1;
    case Verdict::error:
      return 2;
    case Verdict::no_power:
      return 3;
  }
  return 2;
}

int WhiteBoxMode::cases() const {
  int n = 0;
  for (const auto& s : scenarios) n += s.cases;
  return n;
}
int WhiteBoxMode::mismatched() const {
  int n = 0;
  for (const auto& s : scenarios) n += s.mismatched;
  return n;
}
bool WhiteBoxMode::has_error() const {
  for (const auto& s : scenarios)
    if (!s.error.empty()) return true;
  return false;
}

Verdict WhiteBoxReport::verdict() const {
  if (!error.empty()) return Verdict::error;
  bool fail = false, error_seen = false, control_blind = false;
  for (const auto& m : modes) {
    if (m.control)
      control_blind |= m.mismatched() == 0;
    else
      fail |= m.mismatched() > 0;
    error_seen |= m.has_error();
  }
  if (fail) return Verdict::fail;
  if (error_seen) return Verdict::error;
  if (control_blind) return Verdict::no_power;
  return Verdict::pass;
}

Verdict BlackBoxReport::verdict() const {
  if (!error.empty()) return Verdict::error;
  bool fail = false, errors = false;
  for (const auto& s : scenarios) {
    fail |= s.diverging > 0 || s.logprob_mismatches > 0;
    errors |= s.errors > 0;
  }
  if (fail) return Verdict::fail;
  if (errors || scenarios.empty()) return Verdict::error;
  return Verdict::pass;
}

std::string format_report(const WhiteBoxReport& r) {
  std::string out = fmt::format("invar verify (white-box): {}\n", r.model);
  out += fmt::format("  device {}, {} threads; target: {} prompt tokens + {} decoded, {} layers\n",
                     r.device, r.threads, r.prompt_tokens, r.target_tokens - r.prompt_tokens,
                     r.num_layers);
  if (!r.injection.empty())
    out += fmt::format("  fault injected (test switch): {} is batch-dependent\n", r.injection);
  for (const auto& n : r.notes) out += "  note: " + n + "\n";
  if (!r.error.empty()) return out + fmt::format("\nerror: {}\nverdict: ERROR\n", r.error);

  out += fmt::format("\n  {:<18} {:<15} {:>6} {:>10}  {}\n", "mode", "scenario", "cases",
                     "mismatched", "first mismatch");
  for (const auto& m : r.modes) {
    const std::string mode = m.control ? m.mode + " (control)" : m.mode;
    for (const auto& s : m.scenarios) {
      std::string first = "-";
      if (!s.error.empty()) {
        first = "error: " + s.error;
      } else if (!s.mismatches.empty()) {
        const auto& x = s.mismatches[0];
        first = x.case_name;
        if (x.where && x.where->found)
          first += fmt::format(": layer {} {}", layer_name(x.where->layer, r.num_layers),
                               model::probe_op_name(x.where->op));
        else if (!x.detail.empty())
          first += ": " + x.detail;
      }
      if (!s.note.empty() && s.error.empty()) first += " [" + s.note + "]";
      out += fmt::format("  {:<18} {:<15} {:>6} {:>10}  {}\n", mode, s.name, s.cases, s.mismatched,
                         first);
    }
    out += fmt::format("  {:<18} {:<15} {:>6} {:>10}  ({:.1f} s; solo logits digest {})\n", mode,
                       "total", m.cases(), m.mismatched(), m.seconds,
                       m.solo_digest.empty() ? "-" : m.solo_digest);
  }

  // Where the first mismatch of each mode comes from.
  for (const auto& m : r.modes) {
    for (const auto& s : m.scenarios) {
      auto it = std::find_if(s.mismatches.begin(), s.mismatches.end(),
                             [](const WhiteBoxMismatch& x) { return x.where.has_value(); });
      if (it == s.mismatches.end()) continue;
      out += fmt::format(
          "\n  {} / {} / {}: logits differ at {} position(s) from position {}; first differing "
          "op:\n",
          m.mode, s.name, it->case_name, it->positions_differing, it->first_position);
      out += format_localization(*it->where, r.num_layers);
      break;
    }
  }

  const Verdict v = r.verdict();
  out += "\n";
  if (std::none_of(r.modes.begin(), r.modes.end(), [](const WhiteBoxMode& m) { return m.control; }))
    out +=
        "  negative control: not run (--kernels both runs it): this run alone does not show "
        "that the matrix could see a batch-dependent kernel\n";
  for (const auto& m : r.modes) {
    if (m.control)
      out += m.mismatched() > 0
                 ? fmt::format(
                       "  negative control: fast mode differed in {} of {} cases: the "
                       "matrix can see batch-dependent kernels\n",
                       m.mismatched(), m.cases())
                 : "  negative control: fast mode found NO difference: this matrix lacked the "
                   "power to see a batch-dependent kernel\n";
  }
  out += fmt::format("verdict: {}\n", verdict_name(v));
  return out;
}

std::string report_json(const WhiteBoxReport& r) {
  json modes = json::array();
  for (const auto& m : r.modes) {
    json scenarios = json::array();
    for (const auto& s : m.scenarios) {
      json mismatches = json::array();
      for (const auto& x : s.mismatches) {
        json j = {{"case", x.case_name},
                  {"first_position", x.first_position},
                  {"positions_differing", x.positions_differing}};
        if (!x.detail.empty()) j["detail"] = x.detail;
        if (x.where) j["localization"] = localization_json(*x.where, r.num_layers);
        mismatches.push_back(std::move(j));
      }
      json j = {{"name", s.name},
                {"description", s.description},
                {"cases", s.cases},
                {"mismatched", s.mismatched},
                {"mismatches", std::move(mismatches)}};
      if (!s.note.empty()) j["note"] = s.note;
      if (!s.error.empty()) j["error"] = s.error;
      scenarios.push_back(std::move(j));
    }
    modes.push_back({{"mode", m.mode},
                     {"negative_control", m.control},
                     {"cases", m.cases()},
                     {"mismatched", m.mismatched()},
                     {"seconds", m.seconds},
                     {"solo_digest", m.solo_digest},
                     {"scenarios", std::move(scenarios)}});
  }
  json j = {{"kind", "white-box"},
            {"model", r.model},
            {"device", r.device},
            {"threads", r.threads},
            {"layers", r.num_layers},
            {"prompt_tokens", r.prompt_tokens},
            {"target_tokens", r.target_tokens},
            {"modes", std::move(modes)},
            {"verdict", verdict_name(r.verdict())}};
  if (!r.injection.empty()) j["injection"] = r.injection;
  if (!r.notes.empty()) j["notes"] = r.notes;
  if (!r.error.empty()) j["error"] = r.error;
  return j.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

std::string format_report(const BlackBoxReport& r) {
  std::string out =
      fmt::format("invar verify (black-box): {} {}, model \"{}\"\n", r.url, r.endpoint, r.model);
  out += r.logprobs ? "  logprobs returned: compared bitwise\n"
                    : "  no logprobs returned: texts compared\n";
  if (!r.error.empty()) return out + fmt::format("\nerror: {}\nverdict: ERROR\n", r.error);
  out += fmt::format("\n  {:<8} {:>8} {:>6} {:>6} {:>6} {:>9} {:>8} {:>7}  {}\n", "scenario",
                     "requests", "other", "errors", "unique", "diverging", "logprob", "seconds",
                     "first divergence");
  for (const auto& s : r.scenarios) {
    std::string first = "-";
    if (s.divergence)
      first = fmt::format("{} {}", s.divergence->by_bytes ? "byte" : "token", s.divergence->token);
    else if (s.logprob_mismatches > 0)
      first = fmt::format("logprobs at token {}", s.first_logprob_mismatch);
    else if (s.errors > 0)
      first = "error: " + excerpt(s.first_error, 60);
    out += fmt::format("  {:<8} {:>8} {:>6} {:>6} {:>6} {:>9} {:>8} {:>7.1f}  {}\n", s.name,
                       s.requests, s.background, s.errors, s.max_unique, s.diverging,
                       s.logprob_mismatches, s.seconds, first);
  }
  for (const auto& s : r.scenarios) {
    if (!s.divergence) continue;
    out += fmt::format(
        "\n  {}: first divergence at {} {}\n    reference: \"{}\"\n    other:     \"{}\"\n", s.name,
        s.divergence->by_bytes ? "byte" : "token", s.divergence->token,
        excerpt(s.divergence->expected, 70), excerpt(s.divergence->actual, 70));
  }
  for (const auto& s : r.scenarios)
    if (s.fingerprints.size() > 1)
      out += fmt::format("\n  {}: {} different system_fingerprint values\n", s.name,
                         s.fingerprints.size());
  out += fmt::format("\n  unique: most distinct completions of one prompt (1 = invariant)\n");
  out += fmt::format("verdict: {}\n", verdict_name(r.verdict()));
  return out;
}

std::string report_json(const BlackBoxReport& r) {
  json scenarios = json::array();
  for (const auto& s : r.scenarios) {
    json j = {{"name", s.name},
              {"description", s.description},
              {"requests", s.requests},
              {"background_requests", s.background},
              {"errors", s.errors},
              {"groups", s.groups},
              {"unique_completions", s.max_unique},
              {"diverging", s.diverging},
              {"logprob_mismatches", s.logprob_mismatches},
              {"fingerprints", s.fingerprints},
              {"seconds", s.seconds},
              {"passed", s.passed()}};
    if (s.first_logprob_mismatch >= 0) j["first_logprob_mismatch_token"] = s.first_logprob_mismatch;
    if (s.divergence)
      j["first_divergence"] = {{s.divergence->by_bytes ? "byte" : "token", s.divergence->token},
                               {"reference", s.divergence->expected},
                               {"other", s.divergence->actual}};
    if (!s.first_error.empty()) j["first_error"] = s.first_error;
    scenarios.push_back(std::move(j));
  }
  json j = {{"kind", "black-box"},
            {"url", r.url},
            {"model", r.model},
            {"endpoint", r.endpoint},
            {"logprobs", r.logprobs},
            {"scenarios", std::move(scenarios)},
            {"verdict", verdict_name(r.verdict())}};
  if (!r.error.empty()) j["error"] = r.error;
  // Completions may hold invalid UTF-8 (a token cut inside a character): replace, do not throw.
  return j.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

}  // namespace invar::verify
