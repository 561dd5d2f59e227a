// `invar generate`: one prompt in, tokens streamed to stdout, speed on stderr. It runs the
// same engine as `invar serve`, with a single request.
#include <fmt/core.h>

#include <chrono>
#include <cstdio>
#include <future>
#include <memory>

#include "cli/commands.h"
#include "engine/engine.h"
#include "tokenizer/chat_template.h"

namespace invar::cli {

namespace {

int g_exit_code = 0;

struct GenerateArgs {
  std::string model;
  std::string prompt;
  std::string system;
  bool chat = false;
  int max_tokens = 128;
  double gpu_memory_utilization = 0.9;
  float temperature = 0.0f;
  int top_k = 0;
  float top_p = 1.0f;
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;
  uint64_t seed = 0;
  bool seed_given = false;
  int threads = 0;
  int context = 4096;
  std::string weight_dtype;  // empty: as stored in the file
  std::string kv_dtype;      // empty: f16 (CPU KV cache)
  std::string device = "cpu";
  std::string kernels = "invariant";
  int64_t random_weights = -1;  // >= 0: seeded random weights of the --model config
  bool ignore_eos = false;
};

int fail(const std::string& message) {
  fmt::print(stderr, "error: {}\n", message);
  return 1;
}

int run_generate(const GenerateArgs& a) {
  auto device = model::parse_device(a.device);
  if (!device.ok()) return fail(device.status().message());
  model::LoadOptions load;
  load.weight_dtype = weight_dtype_flag(a.weight_dtype);
  if (a.random_weights >= 0) load.weight_dtype = random_weight_dtype(a.weight_dtype, *device);
  auto bundle = a.random_weights >= 0
                    ? engine::random_model(a.model, uint64_t(a.random_weights), load)
                    : engine::open_model(a.model, load);
  if (!bundle.ok()) return fail(bundle.status().message());
  const auto& tok = bundle->tokenizer;

  std::string text = a.prompt;
  if (a.chat) {
    std::vector<tokenizer::ChatMessage> messages;
    if (!a.system.empty()) messages.push_back({"system", a.system});
    messages.push_back({"user", a.prompt});
    auto bos = tok.bos_id() ? tok.token_bytes(*tok.bos_id()) : std::string();
    auto eos = tok.eos_id() ? tok.token_bytes(*tok.eos_id()) : std::string();
    auto rendered =
        tokenizer::apply_chat_template(tok.spec().chat_template, messages, true, bos, eos);
    if (!rendered.ok()) return fail(rendered.status().message());
    text = *rendered;
  }
  engine::RequestParams req;
  // A chat template writes its own BOS where it wants one.
  req.prompt = tok.encode(text, !a.chat && tok.add_bos_default(), /*parse_special=*/a.chat);
  req.max_tokens = a.max_tokens;
  req.sampling = {a.temperature, a.top_k, a.top_p, a.min_p, a.seed};
  req.has_seed = a.seed_given;
  req.repetition_penalty = a.repetition_penalty;
  req.ignore_eos = a.ignore_eos;

  engine::EngineOptions opts;
  opts.threads = a.threads;
  opts.max_context = a.context;
  opts.max_running = 1;
  opts.kv_dtype = kv_dtype_flag(a.kv_dtype);
  opts.device = *device;
  opts.gpu_memory_utilization = a.gpu_memory_utilization;
  opts.kernels = a.kernels == "fast" ? kernels::KernelMode::fast : kernels::KernelMode::invariant;
  auto created = engine::Engine::create(*bundle, opts);
  if (!created.ok()) return fail(created.status().message());
  engine::Engine& eng = **created;

  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  Clock::time_point first_token;
  int tokens = 0;
  std::promise<engine::RequestEvent> done;
  if (!a.chat) fmt::print("{}", a.prompt);
  std::fflush(stdout);
  auto submitted = eng.submit(req, [&](const engine::RequestEvent& ev) {
    if (!ev.tokens.empty() && tokens++ == 0) first_token = Clock::now();
    std::fwrite(ev.text.data(), 1, ev.text.size(), stdout);
    std::fflush(stdout);
    if (ev.finished()) done.set_value(ev);
  });
  if (!submitted.ok()) return fail(submitted.status().message());
  const engine::RequestEvent last = done.get_future().get();
  const auto end = Clock::now();
  fmt::print("\n");
  std::fflush(stdout);
  if (last.finish == engine::FinishReason::error) return fail(last.error);

  auto secs = [](auto d) { return std::chrono::duration<double>(d).count(); };
  const double prefill = tokens > 0 ? secs(first_token - start) : secs(end - start);
  const double decode = tokens > 1 ? secs(end - first_token) : 0.0;
  fmt::print(stderr,
             "[{} prompt tokens, first token after {:.2f} s ({:.1f} prompt tok/s); {} generated, "
             "decode {:.1f} tok/s; finish: {}]\n",
             last.prompt_tokens, prefill, last.prompt_tokens / std::max(prefill, 1e-9),
             last.completion_tokens, tokens > 1 ? (tokens - 1) / std::max(decode, 1e-9) : 0.0,
             engine::finish_reason_name(last.finish));
  return 0;
}

}  // namespace

int exit_code() { return g_exit_code; }
void set_exit_code(int code) { g_exit_code = code; }

void add_generate(CLI::App& app) {
  auto args = std::make_shared<GenerateArgs>();
  auto* cmd = app.add_subcommand("generate", "Generate a continuation of a prompt");
  cmd->add_option("-m,--model", args->model, "GGUF file or Hugging Face directory")->required();
  cmd->add_option("-p,--prompt", args->prompt, "Prompt text")->required();
  cmd->add_flag("--chat", args->chat, "Wrap the prompt in the model's chat template");
  cmd->add_option("--system", args->system, "System message (with --chat)");
  cmd->add_option("-n,--max-tokens", args->max_tokens, "Tokens to generate")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("-t,--temperature", args->temperature, "0 = greedy")
      ->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--top-k", args->top_k, "0 = off")->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-p", args->top_p, "1 = off")->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--min-p", args->min_p, "0 = off")->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--repetition-penalty", args->repetition_penalty, "1 = off")
      ->check(CLI::Range(0.01, 10.0));
  cmd->add_option("-s,--seed", args->seed, "Seed of the sampler (same seed, same tokens)")
      ->each([args](const std::string&) { args->seed_given = true; });
  cmd->add_option("--threads", args->threads, "CPU threads (0 = all cores)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--context", args->context, "Maximum context length (KV cache size)")
      ->check(CLI::Range(16, 1 << 20));
  cmd->add_option("--weight-dtype", args->weight_dtype,
                  "Weight storage: f32 or bf16 (default: as stored in the file; quantized GGUF "
                  "blocks stay packed)")
      ->check(CLI::IsMember({"f32", "bf16"}));
  cmd->add_option("--kv-dtype", args->kv_dtype, "CPU KV cache: f16 (default) or f32")
      ->check(CLI::IsMember({"f16", "f32"}));
  cmd->add_option("--gpu-memory-utilization", args->gpu_memory_utilization,
                  "CUDA: share of the GPU's memory to use; the KV cache gets what weights and "
                  "activations leave (as vLLM)")
      ->check(CLI::Range(0.05, 1.0));
  cmd->add_option("--device", args->device, "cpu or cuda (a build with -DINVAR_CUDA=ON)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->add_option("--kernels", args->kernels,
                  "invariant (default) or fast: batch-dependent kernels, a negative control only")
      ->check(CLI::IsMember({"invariant", "fast"}));
  cmd->add_option("--random-weights", args->random_weights,
                  "Seeded random weights of the --model config (config.json or its directory)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--ignore-eos", args->ignore_eos, "Keep generating past end-of-sequence tokens");
  cmd->callback([args] { set_exit_code(run_generate(*args)); });
}

}  // namespace invar::cli
