#include "verify/blackbox.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <sstream>

#include "verify/completion.h"

namespace invar::verify {

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

const std::vector<std::string> kScenarios{"burst", "needle", "loaded", "prefix", "seeded"};

std::string describe(const std::string& scenario) {
  if (scenario == "burst") return "identical requests fired at once";
  if (scenario == "needle") return "the target at a random place among random prompts, many rounds";
  if (scenario == "loaded") return "the target under background load at several concurrencies";
  if (scenario == "prefix") return "a shared long prefix: cold, then hot alone and among others";
  if (scenario == "seeded") return "temperature > 0 with a fixed seed, among random requests";
  return {};
}

// Words for random prompts and prefixes.
std::vector<std::string> word_list() {
  std::vector<std::string> words;
  for (const auto& p : builtin_prompts()) {
    std::istringstream in(p);
    for (std::string w; in >> w;) words.push_back(w);
  }
  for (const char* w : {"river",    "market", "seven",   "because", "quietly", "window",   "theory",
                        "orange",   "engine", "history", "under",   "bright",  "question", "paper",
                        "mountain", "slowly", "number",  "garden",  "silver",  "between"})
    words.push_back(w);
  return words;
}

class Runner {
 public:
  Runner(HttpClient& client, const BlackBoxOptions& o, std::string model)
      : client_(client),
        o_(o),
        model_(std::move(model)),
        path_(o.chat ? "/v1/chat/completions" : "/v1/completions"),
        logprobs_(o.logprobs >= 0),
        words_(word_list()),
        rng_(o.random_seed) {}

  const std::string& path() const { return path_; }
  bool logprobs() const { return logprobs_; }
  void disable_logprobs() { logprobs_ = false; }

  std::string body(const std::string& prompt, int max_tokens, float temperature,
                   std::optional<uint64_t> seed, bool with_logprobs) const {
    json j;
    if (!model_.empty()) j["model"] = model_;
    if (o_.chat)
      j["messages"] = json::array({{{"role", "user"}, {"content", prompt}}});
    else
      j["prompt"] = prompt;
    j["max_tokens"] = max_tokens;
    j["temperature"] = temperature;
    if (seed) j["seed"] = *seed;
    if (with_logprobs && logprobs_) {
      if (o_.chat) {
        j["logprobs"] = true;
        j["top_logprobs"] = o_.logprobs;
      } else {
        j["logprobs"] = o_.logprobs;
      }
    }
    return j.dump(-1, ' ', false, json::error_handler_t::replace);
  }

  std::string target(const std::string& prompt, bool seeded = false) const {
    return seeded ? body(prompt, o_.max_tokens, o_.temperature, o_.seed, true)
                  : body(prompt, o_.max_tokens, 0.0f, std::nullopt, true);
  }

  Completion send(const std::string& b) {
    return parse_completion(client_.post_sync(path_, b), o_.chat);
  }

  // The request alone: nothing else of ours in flight. Cached per body.
  const Completion& solo(const std::string& b) {
    auto it = solos_.find(b);
    if (it == solos_.end()) it = solos_.emplace(b, send(b)).first;
    return it->second;
  }

  // Sends every body with at most `concurrency` in flight; results in order.
  std::vector<Completion> send_all(const std::vector<std::string>& bodies, int concurrency,
                                   const std::function<void()>& tick) {
    struct Shared {
      std::mutex mu;
      std::condition_variable cv;
      size_t next = 0, done = 0;
      int in_flight = 0;
      std::vector<Completion> out;
    } s;
    s.out.resize(bodies.size());
    const int limit = std::max(1, std::min(concurrency, o_.max_concurrency));
    std::function<void()> launch = [&] {  // under s.mu
      while (s.in_flight < limit && s.next < bodies.size()) {
        const size_t i = s.next++;
        ++s.in_flight;
        client_.post(path_, bodies[i], [&, i](HttpResponse r) {
          Completion c = parse_completion(r, o_.chat);
          std::lock_guard<std::mutex> lock(s.mu);
          s.out[i] = std::move(c);
          ++s.done;
          --s.in_flight;
          if (tick) tick();
          launch();
          s.cv.notify_all();
        });
      }
    };
    std::unique_lock<std::mutex> lock(s.mu);
    launch();
    s.cv.wait(lock, [&] { return s.done == bodies.size(); });
    return std::move(s.out);
  }

  // A random prompt of random length: words, sometimes around a built-in prompt.
  std::string random_prompt() {
    std::uniform_int_distribution<int> len(1, std::max(1, o_.other_max_words));
    const int n = std::min(len(rng_), len(rng_));  // shorter ones more often
    std::string p;
    if (rng_() % 4 == 0) p = builtin_prompts()[rng_() % builtin_prompts().size()] + " ";
    for (int i = 0; i < n; ++i) p += words_[rng_() % words_.size()] + (i + 1 < n ? " " : "");
    return p;
  }
  // Another client's request: random prompt, random length, greedy or sampled without a seed.
  std::string random_body() {
    const int max_tokens = std::uniform_int_distribution<int>(1, std::max(1, o_.max_tokens))(rng_);
    return body(random_prompt(), max_tokens, rng_() % 2 ? 0.0f : 1.0f, std::nullopt, false);
  }
  std::string random_words(int n) {
    std::string p;
    for (int i = 0; i < n; ++i) p += words_[rng_() % words_.size()] + ((i + 1) % 12 ? " " : ". ");
    return p;
  }
  std::mt19937_64& rng() { return rng_; }
  HttpClient& client() { return client_; }
  const BlackBoxOptions& options() const { return o_; }

 private:
  HttpClient& client_;
  const BlackBoxOptions& o_;
  std::string model_;
  std::string path_;
  bool logprobs_;
  std::vector<std::string> words_;
  std::mt19937_64 rng_;
  std::map<std::string, Completion> solos_;
};

// Keeps `concurrency` random requests in flight until stop().
class BackgroundLoad {
 public:
  BackgroundLoad(Runner& runner, int concurrency) : runner_(runner) {
    std::lock_guard<std::mutex> lock(mu_);
    for (int i = 0; i < concurrency; ++i) launch();
  }
  ~BackgroundLoad() { stop(); }
  // Waits for the requests in flight; returns how many were sent.
  int stop() {
    std::unique_lock<std::mutex> lock(mu_);
    stopping_ = true;
    cv_.wait(lock, [&] { return in_flight_ == 0; });
    return sent_;
  }

 private:
  void launch() {  // under mu_
    ++in_flight_;
    ++sent_;
    runner_.client().post(runner_.path(), runner_.random_body(), [this](HttpResponse) {
      std::lock_guard<std::mutex> lock(mu_);
      --in_flight_;
      if (!stopping_) launch();
      cv_.notify_all();
    });
  }

  Runner& runner_;
  std::mutex mu_;
  std::condition_variable cv_;
  int in_flight_ = 0, sent_ = 0;
  bool stopping_ = false;
};

const std::string& pick_prompt(const std::vector<std::string>& prompts, size_t i) {
  return prompts[i % prompts.size()];
}

void run_scenario(Runner& r, const std::string& name, const std::vector<std::string>& prompts,
                  BlackBoxScenario& s) {
  const BlackBoxOptions& o = r.options();
  int done = 0, total = 1;
  auto tick = [&] {
    ++done;
    if (o.progress) o.progress(name, std::min(done, total), total);
  };
  if (name == "burst") {
    total = o.burst + 1;
    const std::string b = r.target(pick_prompt(prompts, 0));
    const Completion& solo = r.solo(b);
    tick();
    add_group(s, solo,
              r.send_all(std::vector<std::string>(size_t(std::max(0, o.burst)), b), o.burst, tick));
  } else if (name == "needle") {
    total = o.needle_rounds * (o.needle_others + 1);
    std::map<std::string, std::vector<Completion>> groups;
    for (int round = 0; round < o.needle_rounds; ++round) {
      const std::string b = r.target(pick_prompt(prompts, size_t(round)));
      r.solo(b);
      std::vector<std::string> bodies;
      for (int i = 0; i < o.needle_others; ++i) bodies.push_back(r.random_body());
      const size_t at = size_t(r.rng()() % (bodies.size() + 1));
      bodies.insert(bodies.begin() + long(at), b);
      s.background += o.needle_others;
      groups[b].push_back(r.send_all(bodies, int(bodies.size()), tick)[at]);
    }
    for (const auto& [b, runs] : groups) add_group(s, r.solo(b), runs);
  } else if (name == "loaded") {
    total = int(o.loaded_concurrency.size()) * o.loaded_repeats;
    std::map<std::string, std::vector<Completion>> groups;
    for (size_t level = 0; level < o.loaded_concurrency.size(); ++level) {
      const std::string b = r.target(pick_prompt(prompts, level));
      r.solo(b);
      BackgroundLoad load(r, o.loaded_concurrency[level]);
      for (int i = 0; i < o.loaded_repeats; ++i) {
        groups[b].push_back(r.send(b));
        tick();
      }
      s.background += load.stop();
    }
    for (const auto& [b, runs] : groups) add_group(s, r.solo(b), runs);
  } else if (name == "prefix") {
    total = o.prefix_rounds * (3 + 2 * o.prefix_others);
    std::random_device entropy;
    for (int round = 0; round < o.prefix_rounds; ++round) {
      // A prefix no one has sent before: the first request finds the cache cold.
      const std::string prefix =
          fmt::format("Reference document {:08x}{:08x}.\n", entropy(), entropy()) +
          r.random_words(o.prefix_words) + "\n\nUsing the document above if it helps, answer:\n";
      const std::string b = r.target(prefix + pick_prompt(prompts, size_t(round)));
      const Completion cold = r.send(b);
      tick();
      std::vector<std::string> others;
      for (int i = 0; i < o.prefix_others; ++i)
        others.push_back(r.body(prefix + pick_prompt(prompts, size_t(round + 1 + i)),
                                std::max(1, o.max_tokens / 4), 0.0f, std::nullopt, false));
      r.send_all(others, int(others.size()), tick);  // the prefix is hot now
      std::vector<Completion> runs{r.send(b)};
      tick();
      std::vector<std::string> mixed = others;
      const size_t at = size_t(r.rng()() % (mixed.size() + 1));
      mixed.insert(mixed.begin() + long(at), b);
      runs.push_back(r.send_all(mixed, int(mixed.size()), tick)[at]);
      s.background += 2 * o.prefix_others;
      add_group(s, cold, runs);
    }
  } else if (name == "seeded") {
    total = 1 + 2 * o.seeded_requests;
    const std::string b = r.target(pick_prompt(prompts, 1), /*seeded=*/true);
    const Completion& solo = r.solo(b);
    tick();
    std::vector<std::string> bodies;
    for (int i = 0; i < o.seeded_requests; ++i) {
      bodies.push_back(b);
      bodies.push_back(r.random_body());
    }
    std::shuffle(bodies.begin(), bodies.end(), r.rng());
    std::vector<size_t> at;
    for (size_t i = 0; i < bodies.size(); ++i)
      if (bodies[i] == b) at.push_back(i);
    auto outs = r.send_all(bodies, int(bodies.size()), tick);
    std::vector<Completion> runs;
    for (size_t i : at) runs.push_back(std::move(outs[i]));
    s.background += o.seeded_requests;
    add_group(s, solo, runs);
  }
}

}  // namespace

BlackBoxOptions BlackBoxOptions::quick() {
  BlackBoxOptions o;
  o.max_tokens = 64;
  o.burst = 32;
  o.needle_rounds = 4;
  o.needle_others = 7;
  o.loaded_concurrency = {2, 8};
  o.loaded_repeats = 1;
  o.prefix_rounds = 2;
  o.prefix_others = 4;
  o.prefix_words = 200;
  o.seeded_requests = 16;
  o.other_max_words = 150;
  return o;
}

std::vector<std::string> blackbox_scenario_names() {
  return kScenarios;
}

BlackBoxReport run_blackbox(const BlackBoxOptions& o) {
  BlackBoxReport report;
  report.url = o.url;
  report.endpoint = o.chat ? "/v1/chat/completions" : "/v1/completions";
  for (const auto& s : o.scenarios)
    if (describe(s).empty()) {
      report.error =
          "unknown black-box scenario " + s + "; one of burst, needle, loaded, prefix, seeded";
      return report;
    }
  const std::vector<std::string>& prompts = o.prompts.empty() ? builtin_prompts() : o.prompts;
  auto client = HttpClient::create(o.url, o.api_key, o.timeout_s);
  if (!client.ok()) {
    report.error = client.status().message();
    return report;
  }
  std::string model = o.model;
  if (model.empty()) {
    HttpResponse models = (*client)->get_sync("/v1/models");
    auto j = json::parse(models.body, nullptr, false);
    if (models.ok() && !j.is_discarded() && j.contains("data") && j["data"].is_array() &&
        !j["data"].empty() && j["data"][0].is_object() && j["data"][0].contains("id") &&
        j["data"][0]["id"].is_string())
      model = j["data"][0]["id"];
  }
  report.model = model.empty() ? "(server default)" : model;

  Runner runner(**client, o, model);
  // One short request first: is the server there, and does it return logprobs?
  Completion probe = runner.send(runner.body(prompts[0], 1, 0.0f, std::nullopt, true));
  if (!probe.ok && runner.logprobs()) {
    runner.disable_logprobs();
    probe = runner.send(runner.body(prompts[0], 1, 0.0f, std::nullopt, true));
  }
  if (!probe.ok) {
    report.error = "the server did not complete a test request: " + probe.error;
    return report;
  }
  report.logprobs = probe.has_logprobs && !probe.tokens.empty();
  if (!report.logprobs) runner.disable_logprobs();

  for (const auto& name : kScenarios) {
    if (!o.scenarios.empty() &&
        std::find(o.scenarios.begin(), o.scenarios.end(), name) == o.scenarios.end())
      continue;
    BlackBoxScenario s;
    s.name = name;
    s.description = describe(name);
    const auto t0 = Clock::now();
    run_scenario(runner, name, prompts, s);
    s.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    report.scenarios.push_back(std::move(s));
  }
  return report;
}

}  // namespace invar::verify
