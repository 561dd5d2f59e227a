// `invar verify`: an invariance audit. With --model it runs the model in-process under forced
// batch compositions and compares logits bitwise (white-box, with fast mode as the negative
// control); with --url it drives any OpenAI-compatible server (black-box). Prints a table,
// optionally writes JSON, and exits non-zero unless invariance held (docs/invariance.md).
#include <fmt/core.h>
#include <sys/resource.h>

#include <fstream>
#include <memory>

#include "cli/commands.h"
#include "cli/common_options.h"
#include "engine/model_bundle.h"
#include "engine/model_runner_factory.h"
#include "model/config_parse.h"
#include "model/tensor_parallel.h"
#include "verify/blackbox.h"
#include "verify/progress.h"
#include "verify/whitebox.h"

namespace invar::cli {

namespace {

struct VerifyArgs {
  // Both modes.
  std::string model;  // white-box: a model path; black-box: the served model's name
  std::string url;
  std::string json_out;
  bool quick = false;
  std::vector<std::string> scenarios;
  uint64_t seed = 1234;
  // White-box.
  ModelArgs m;  // device, threads, weight storage, random weights (the path is `model`)
  std::string kernels = "both";
  std::vector<int> batch_sizes;
  std::vector<int> chunk_sizes;
  std::string prompt;
  int decode_tokens = -1;
  std::string inject;
  // Black-box.
  std::string api_key;
  bool chat = false;
  std::string prompts_file;
  int max_tokens = -1;
  int burst = -1;
  int needle_rounds = -1;
  int needle_others = -1;
  std::vector<int> loaded_concurrency;
  int loaded_repeats = -1;
  int prefix_rounds = -1;
  int prefix_others = -1;
  int prefix_words = -1;
  int seeded_requests = -1;
  int other_max_words = -1;
  float temperature = -1;
  int logprobs = 1;
  int max_concurrency = 1024;
  double timeout = 3600;
};

int fail(const std::string& message) {
  fmt::print(stderr, "error: {}\n", message);
  return 2;
}

int finish(const std::string& table, const std::string& json, const std::string& json_out,
           verify::Verdict verdict) {
  fmt::print("{}", table);
  std::fflush(stdout);
  if (!json_out.empty()) {
    std::ofstream out(json_out);
    out << json;
    if (!out) return fail("--json " + json_out + ": cannot write the file");
  }
  return verify::verdict_exit_code(verdict);
}

template <typename T>
void set_if(T& field, T value, T unset) {
  if (value != unset) field = value;
}

int run_whitebox(const VerifyArgs& a) {
  auto device = model::parse_device(a.m.device);
  if (!device.ok()) return fail(device.status().message());
  verify::WhiteBoxOptions o =
      a.quick ? verify::WhiteBoxOptions::quick() : verify::WhiteBoxOptions{};
  o.device = *device;
  o.threads = a.m.threads;
  o.tensor_parallel_size = a.m.tensor_parallel_size;
  o.tp_slices = a.m.tp_invariant_slices ? model::kDefaultTpSlices : -1;
  o.seed = a.seed;
  o.scenarios = a.scenarios;
  if (a.kernels == "invariant") o.modes = {kernels::KernelMode::invariant};
  if (a.kernels == "fast") o.modes = {kernels::KernelMode::fast};
  if (!a.batch_sizes.empty()) o.batch_sizes = a.batch_sizes;
  if (!a.chunk_sizes.empty()) o.chunk_sizes = a.chunk_sizes;
  o.prompt = a.prompt;
  set_if(o.decode_tokens, a.decode_tokens, -1);
  if (!a.inject.empty()) {
    auto inj = verify::parse_injection(a.inject);
    if (!inj.ok()) return fail(inj.status().message());
    o.inject = *inj;
  }
  model::LoadOptions load;
  load.weight_dtype = weight_dtype_flag(a.m.weight_dtype);
  verify::Progress progress;
  o.progress = [&](const std::string& label, int done, int total) {
    progress.update(label, done, total);
  };
  verify::WhiteBoxReport report;
  if (a.m.random_weights >= 0) {
    auto config = model::read_hf_config(a.model);
    if (!config.ok()) return fail(config.status().message());
    if (Status st = engine::check_device_config(*config, *device); !st.ok())
      return fail(st.message());  // before making the weights
    model::LoadedModel m{
        *config,
        model::random_weights(*config, uint64_t(a.m.random_weights),
                              random_weight_dtype(a.m.weight_dtype, *device)),
        fmt::format("{} (random weights, seed {})", a.model, a.m.random_weights)};
    report = verify::run_whitebox(m, o);
  } else if (auto bundle = engine::open_model(a.model, load); bundle.ok()) {
    report = verify::run_whitebox(*bundle, o);
  } else {
    // A checkpoint without a tokenizer still runs the transformer scenarios.
    auto m = model::load_model(a.model, load);
    if (!m.ok()) return fail(bundle.status().message());
    report = verify::run_whitebox(*m, o);
    report.notes.insert(report.notes.begin(), "tokenizer: " + bundle.status().message());
  }
  progress.finish();
  return finish(verify::format_report(report), verify::report_json(report), a.json_out,
                report.verdict());
}

// Each request in flight holds a socket: lift the soft descriptor limit to the hard one.
void raise_open_file_limit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
}

int run_blackbox(const VerifyArgs& a) {
  raise_open_file_limit();
  verify::BlackBoxOptions o =
      a.quick ? verify::BlackBoxOptions::quick() : verify::BlackBoxOptions{};
  o.url = a.url;
  o.model = a.model;
  o.api_key = a.api_key;
  o.chat = a.chat;
  o.scenarios = a.scenarios;
  o.random_seed = a.seed;
  if (!a.prompts_file.empty()) {
    auto prompts = verify::read_prompts(a.prompts_file);
    if (!prompts.ok()) return fail(prompts.status().message());
    o.prompts = verify::builtin_prompts();
    o.prompts.insert(o.prompts.end(), prompts->begin(), prompts->end());
  }
  set_if(o.max_tokens, a.max_tokens, -1);
  set_if(o.burst, a.burst, -1);
  set_if(o.needle_rounds, a.needle_rounds, -1);
  set_if(o.needle_others, a.needle_others, -1);
  if (!a.loaded_concurrency.empty()) o.loaded_concurrency = a.loaded_concurrency;
  set_if(o.loaded_repeats, a.loaded_repeats, -1);
  set_if(o.prefix_rounds, a.prefix_rounds, -1);
  set_if(o.prefix_others, a.prefix_others, -1);
  set_if(o.prefix_words, a.prefix_words, -1);
  set_if(o.seeded_requests, a.seeded_requests, -1);
  set_if(o.other_max_words, a.other_max_words, -1);
  set_if(o.temperature, a.temperature, -1.0f);
  o.logprobs = a.logprobs;
  o.max_concurrency = a.max_concurrency;
  o.timeout_s = a.timeout;

  verify::Progress progress;
  o.progress = [&](const std::string& label, int done, int total) {
    progress.update(label, done, total);
  };
  verify::BlackBoxReport report = verify::run_blackbox(o);
  progress.finish();
  return finish(verify::format_report(report), verify::report_json(report), a.json_out,
                report.verdict());
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

}  // namespace

void add_verify(CLI::App& app) {
  auto a = std::make_shared<VerifyArgs>();
  auto* cmd = app.add_subcommand(
      "verify", "Check batch invariance: in-process (--model PATH) or against a server (--url)");
  cmd->footer(
      "Exit status: 0 invariant; 1 a difference was found; 2 the run could not complete; 3 "
      "invariant, but the fast-mode negative control found no difference either (the test "
      "lacked power). See docs/invariance.md.");
  cmd->add_option("--url", a->url,
                  "Black-box: base URL of an OpenAI-compatible server, http://HOST:PORT");
  cmd->add_option("-m,--model", a->model,
                  "White-box: GGUF file or Hugging Face directory; black-box: the model name "
                  "to request (default: the first of /v1/models)");
  cmd->add_option("--json", a->json_out, "Also write the report as JSON to this file");
  cmd->add_flag("--quick", a->quick, "A smaller matrix (minutes instead of hours)");
  cmd->add_option("--scenarios", a->scenarios,
                  "Run only these (white-box: " + join(verify::whitebox_scenario_names()) +
                      "; black-box: " + join(verify::blackbox_scenario_names()) + ")")
      ->delimiter(',');
  cmd->add_option("--seed", a->seed, "Seed of the random compositions and prompts");

  const std::string wb = "White-box";
  add_model_options(*cmd, a->m, kTensorParallel, wb);
  cmd->add_option("--kernels", a->kernels, "invariant, fast (the negative control) or both")
      ->check(CLI::IsMember({"invariant", "fast", "both"}))
      ->group(wb);
  cmd->add_option("--batch-sizes", a->batch_sizes, "Batch sizes (default 1..16, primes to 256)")
      ->delimiter(',')
      ->check(CLI::Range(1, 4096))
      ->group(wb);
  cmd->add_option("--chunk-sizes", a->chunk_sizes,
                  "Prefill chunk sizes, 0 = all (default 1,7,16,64,0)")
      ->delimiter(',')
      ->check(CLI::Range(0, 1 << 20))
      ->group(wb);
  cmd->add_option("--prompt", a->prompt, "Target prompt (default: a built-in paragraph)")
      ->group(wb);
  cmd->add_option("--decode-tokens", a->decode_tokens, "Greedy tokens decoded after the prompt")
      ->check(CLI::Range(0, 4096))
      ->group(wb);
  cmd->add_option("--inject", a->inject,
                  "Test only: make OP[@LAYER] batch-dependent, to prove verify catches it and "
                  "names it (" +
                      verify::injection_names() + ")")
      ->group(wb);

  const std::string bb = "Black-box";
  cmd->add_option("--api-key", a->api_key, "Sent as 'Authorization: Bearer KEY'")->group(bb);
  cmd->add_flag("--chat", a->chat, "Use /v1/chat/completions instead of /v1/completions")
      ->group(bb);
  cmd->add_option("--prompts", a->prompts_file,
                  "More target prompts, one per line (\\n for a newline)")
      ->check(CLI::ExistingFile)
      ->group(bb);
  cmd->add_option("--max-tokens", a->max_tokens, "Tokens per target request (500)")
      ->check(CLI::Range(1, 1 << 20))
      ->group(bb);
  cmd->add_option("--burst", a->burst, "Identical requests fired at once (1000)")
      ->check(CLI::Range(1, 1 << 20))
      ->group(bb);
  cmd->add_option("--needle-rounds", a->needle_rounds, "Rounds of the needle scenario (20)")
      ->check(CLI::Range(1, 1 << 20))
      ->group(bb);
  cmd->add_option("--needle-others", a->needle_others, "Random requests around the target (31)")
      ->check(CLI::Range(0, 1 << 20))
      ->group(bb);
  cmd->add_option("--loaded-concurrency", a->loaded_concurrency,
                  "Background concurrencies (4,16,64)")
      ->delimiter(',')
      ->check(CLI::Range(1, 1 << 20))
      ->group(bb);
  cmd->add_option("--loaded-repeats", a->loaded_repeats, "Target requests per concurrency (3)")
      ->check(CLI::Range(1, 1 << 20))
      ->group(bb);
  cmd->add_option("--prefix-rounds", a->prefix_rounds, "Fresh shared prefixes (4)")
      ->check(CLI::Range(1, 1 << 20))
      ->group(bb);
  cmd->add_option("--prefix-others", a->prefix_others, "Requests sharing each prefix (8)")
      ->check(CLI::Range(0, 1 << 20))
      ->group(bb);
  cmd->add_option("--prefix-words", a->prefix_words, "Words in the shared prefix (400)")
      ->check(CLI::Range(1, 1 << 20))
      ->group(bb);
  cmd->add_option("--seeded-requests", a->seeded_requests, "Seeded identical requests (100)")
      ->check(CLI::Range(1, 1 << 20))
      ->group(bb);
  cmd->add_option("--other-max-words", a->other_max_words,
                  "Longest random prompt of the other requests, in words (300)")
      ->check(CLI::Range(1, 1 << 20))
      ->group(bb);
  cmd->add_option("--temperature", a->temperature, "Temperature of the seeded scenario (0.8)")
      ->check(CLI::Range(0.0, 2.0))
      ->group(bb);
  cmd->add_option("--logprobs", a->logprobs,
                  "Alternatives asked per token, compared bitwise (1; -1: do not ask)")
      ->check(CLI::Range(-1, 20))
      ->group(bb);
  cmd->add_option("--max-concurrency", a->max_concurrency, "Requests in flight at most (1024)")
      ->check(CLI::Range(1, 1 << 20))
      ->group(bb);
  cmd->add_option("--timeout", a->timeout, "Seconds per request (3600)")
      ->check(CLI::Range(1.0, 1e6))
      ->group(bb);
  cmd->callback([a] {
    if (a->url.empty() && a->model.empty()) {
      set_exit_code(fail("invar verify: give --model PATH (white-box) or --url URL (black-box)"));
      return;
    }
    set_exit_code(a->url.empty() ? run_whitebox(*a) : run_blackbox(*a));
  });
}

}  // namespace invar::cli
