#include "verify/completion.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

namespace invar::verify {

namespace {

using nlohmann::json;

constexpr size_t kExcerptBytes = 80;

bool same_bits(double a, double b) {
  return std::memcmp(&a, &b, sizeof a) == 0;
}

bool same_logprobs(const TokenLogprob& a, const TokenLogprob& b) {
  if (!same_bits(a.logprob, b.logprob) || a.top.size() != b.top.size()) return false;
  for (size_t i = 0; i < a.top.size(); ++i)
    if (a.top[i].first != b.top[i].first || !same_bits(a.top[i].second, b.top[i].second))
      return false;
  return true;
}

double number_or_nan(const json& j) {
  return j.is_number() ? j.get<double>() : std::nan("");
}

std::string join_from(const std::vector<TokenLogprob>& t, size_t i) {
  std::string s;
  for (; i < t.size() && s.size() < kExcerptBytes; ++i) s += t[i].token;
  return s;
}

// Where `b` first departs from `a`.
Divergence diverge(const Completion& a, const Completion& b) {
  Divergence d;
  if (a.has_logprobs && b.has_logprobs) {
    size_t i = 0;
    while (i < a.tokens.size() && i < b.tokens.size() && a.tokens[i].token == b.tokens[i].token)
      ++i;
    if (i < a.tokens.size() || i < b.tokens.size()) {
      d.token = int(i);
      d.expected = join_from(a.tokens, i);
      d.actual = join_from(b.tokens, i);
      if (d.expected.empty()) d.expected = "<end, " + a.finish_reason + ">";
      if (d.actual.empty()) d.actual = "<end, " + b.finish_reason + ">";
      return d;
    }
  }
  size_t i = 0;
  while (i < a.text.size() && i < b.text.size() && a.text[i] == b.text[i]) ++i;
  d.by_bytes = true;
  d.token = int(i);
  d.expected = a.text.substr(std::min(i, a.text.size()), kExcerptBytes);
  d.actual = b.text.substr(std::min(i, b.text.size()), kExcerptBytes);
  if (d.expected.empty()) d.expected = "<end, " + a.finish_reason + ">";
  if (d.actual.empty()) d.actual = "<end, " + b.finish_reason + ">";
  return d;
}

}  // namespace

std::string Completion::key() const {
  std::string k = text;
  k += '\x1e';
  k += finish_reason;
  for (const auto& t : tokens) {
    k += '\x1f';
    k += t.token;
  }
  return k;
}

Completion parse_completion(const HttpResponse& r, bool chat) {
  Completion c;
  if (!r.error.empty()) {
    c.error = r.error;
    return c;
  }
  auto j = json::parse(r.body, nullptr, false);
  if (r.status != 200) {
    std::string msg;
    if (!j.is_discarded() && j.contains("error") && j["error"].is_object())
      msg = j["error"].value("message", "");
    c.error = fmt::format("HTTP {}{}{}", r.status, msg.empty() ? "" : ": ",
                          msg.empty() ? r.body.substr(0, 200) : msg);
    return c;
  }
  if (j.is_discarded() || !j.is_object() || !j.contains("choices") || !j["choices"].is_array() ||
      j["choices"].empty() || !j["choices"][0].is_object()) {
    c.error = "the response is not a completion: " + r.body.substr(0, 200);
    return c;
  }
  const json& choice = j["choices"][0];
  if (j.contains("system_fingerprint") && j["system_fingerprint"].is_string())
    c.fingerprint = j["system_fingerprint"];
  if (choice.contains("finish_reason") && choice["finish_reason"].is_string())
    c.finish_reason = choice["finish_reason"];
  if (chat) {
    if (choice.contains("message") && choice["message"].is_object() &&
        choice["message"].contains("content") && choice["message"]["content"].is_string())
      c.text = choice["message"]["content"];
  } else if (choice.contains("text") && choice["text"].is_string()) {
    c.text = choice["text"];
  }
  c.ok = true;
  if (!choice.contains("logprobs") || !choice["logprobs"].is_object()) return c;
  const json& lp = choice["logprobs"];
  if (chat) {
    if (!lp.contains("content") || !lp["content"].is_array()) return c;
    for (const auto& e : lp["content"]) {
      if (!e.is_object()) continue;
      TokenLogprob t;
      t.token = e.value("token", "");
      t.logprob = number_or_nan(e.value("logprob", json()));
      if (e.contains("top_logprobs") && e["top_logprobs"].is_array())
        for (const auto& alt : e["top_logprobs"])
          if (alt.is_object())
            t.top.push_back({alt.value("token", ""), number_or_nan(alt.value("logprob", json()))});
      std::sort(t.top.begin(), t.top.end());
      c.tokens.push_back(std::move(t));
    }
  } else {
    if (!lp.contains("tokens") || !lp["tokens"].is_array()) return c;
    const json& tokens = lp["tokens"];
    const json empty = json::array();
    const json& values = lp.contains("token_logprobs") && lp["token_logprobs"].is_array()
                             ? lp["token_logprobs"]
                             : empty;
    const json& tops =
        lp.contains("top_logprobs") && lp["top_logprobs"].is_array() ? lp["top_logprobs"] : empty;
    for (size_t i = 0; i < tokens.size(); ++i) {
      TokenLogprob t;
      if (tokens[i].is_string()) t.token = tokens[i];
      t.logprob = i < values.size() ? number_or_nan(values[i]) : std::nan("");
      if (i < tops.size() && tops[i].is_object())
        for (const auto& [k, v] : tops[i].items()) t.top.push_back({k, number_or_nan(v)});
      std::sort(t.top.begin(), t.top.end());
      c.tokens.push_back(std::move(t));
    }
  }
  c.has_logprobs = true;
  return c;
}

void add_group(BlackBoxScenario& s, const Completion& reference,
               const std::vector<Completion>& runs) {
  ++s.groups;
  s.requests += int(runs.size()) + 1;
  auto note_error = [&](const Completion& c) {
    ++s.errors;
    if (s.first_error.empty()) s.first_error = c.error;
  };
  const Completion* ref = &reference;
  if (!reference.ok) {
    note_error(reference);
    ref = nullptr;
    for (const auto& r : runs)
      if (r.ok) {
        ref = &r;
        break;
      }
  }
  std::set<std::string> unique;
  auto fingerprint = [&](const Completion& c) {
    if (!c.fingerprint.empty() && std::find(s.fingerprints.begin(), s.fingerprints.end(),
                                            c.fingerprint) == s.fingerprints.end())
      s.fingerprints.push_back(c.fingerprint);
  };
  if (reference.ok) {
    unique.insert(reference.key());
    fingerprint(reference);
  }
  for (const auto& r : runs) {
    if (!r.ok) {
      note_error(r);
      continue;
    }
    fingerprint(r);
    unique.insert(r.key());
    if (&r == ref) continue;
    if (r.key() != ref->key()) {
      ++s.diverging;
      Divergence d = diverge(*ref, r);
      if (!s.divergence || d.token < s.divergence->token) s.divergence = std::move(d);
    }
    // Logprobs where the tokens still agree.
    for (size_t i = 0; i < std::min(ref->tokens.size(), r.tokens.size()); ++i) {
      if (ref->tokens[i].token != r.tokens[i].token) break;
      if (!same_logprobs(ref->tokens[i], r.tokens[i])) {
        ++s.logprob_mismatches;
        if (s.first_logprob_mismatch < 0 || int(i) < s.first_logprob_mismatch)
          s.first_logprob_mismatch = int(i);
        break;
      }
    }
  }
  s.max_unique = std::max(s.max_unique, int(unique.size()));
}

}  // namespace invar::verify
