// `invar generate`: one prompt in, tokens streamed to stdout, speed on stderr.
#include <fmt/core.h>

#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "engine/generator.h"
#include "engine/model_bundle.h"
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
  float temperature = 0.0f;
  int top_k = 0;
  float top_p = 1.0f;
  float min_p = 0.0f;
  uint64_t seed = 0;
  int threads = 0;
  int context = 4096;
  std::string weight_dtype = "f32";
  bool ignore_eos = false;
};

int fail(const std::string& message) {
  fmt::print(stderr, "error: {}\n", message);
  return 1;
}

int run_generate(const GenerateArgs& a) {
  model::LoadOptions load;
  load.weight_dtype = a.weight_dtype == "bf16" ? DType::bf16 : DType::f32;
  auto bundle = engine::open_model(a.model, load);
  if (!bundle.ok()) return fail(bundle.status().message());
  const auto& tok = bundle->tokenizer;

  std::string text = a.prompt;
  if (a.chat) {
    std::vector<tokenizer::ChatMessage> messages;
    if (!a.system.empty()) messages.push_back({"system", a.system});
    messages.push_back({"user", a.prompt});
    auto bos = tok.bos_id() ? tok.token_bytes(*tok.bos_id()) : std::string();
    auto eos = tok.eos_id() ? tok.token_bytes(*tok.eos_id()) : std::string();
    auto rendered = tokenizer::apply_chat_template(tok.spec().chat_template, messages, true, bos, eos);
    if (!rendered.ok()) return fail(rendered.status().message());
    text = *rendered;
  }
  // A chat template writes its own BOS where it wants one.
  auto prompt = tok.encode(text, /*add_bos=*/!a.chat && tok.add_bos_default(), /*parse_special=*/a.chat);
  if (prompt.empty()) return fail("the prompt is empty: pass --prompt TEXT");

  ThreadPool pool(a.threads);
  engine::Generator generator(bundle->model, pool, std::min(a.context, bundle->model.config.max_position > 0 ? bundle->model.config.max_position : a.context));
  engine::GenerateOptions opts;
  opts.max_tokens = a.max_tokens;
  opts.sampling = {a.temperature, a.top_k, a.top_p, a.min_p, a.seed};
  if (!a.ignore_eos) opts.stop_ids = tok.stop_ids();

  if (!a.chat) fmt::print("{}", a.prompt);
  std::fflush(stdout);
  tokenizer::StreamDecoder stream(tok);
  auto result = generator.generate(prompt, opts, [&](int32_t id) {
    bool is_stop = std::find(opts.stop_ids.begin(), opts.stop_ids.end(), id) != opts.stop_ids.end();
    if (!is_stop) {
      fmt::print("{}", stream.push(id));
      std::fflush(stdout);
    }
    return true;
  });
  fmt::print("{}\n", stream.flush());
  if (!result.ok()) return fail(result.status().message());
  const auto& r = *result;
  int decoded = int(r.tokens.size()) > 0 ? int(r.tokens.size()) - 1 : 0;  // the first comes from prefill
  fmt::print(stderr,
             "[{} prompt tokens in {:.2f} s ({:.1f} tok/s); {} generated, decode {:.1f} tok/s; "
             "finish: {}; {} threads]\n",
             r.prompt_tokens, r.prefill_seconds, r.prompt_tokens / std::max(r.prefill_seconds, 1e-9),
             r.tokens.size(), decoded / std::max(r.decode_seconds, 1e-9), r.finish_reason,
             pool.size());
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
  cmd->add_option("-t,--temperature", args->temperature, "0 = greedy")->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--top-k", args->top_k, "0 = off")->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-p", args->top_p, "1 = off")->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--min-p", args->min_p, "0 = off")->check(CLI::Range(0.0, 1.0));
  cmd->add_option("-s,--seed", args->seed, "Seed of the sampler (same seed, same tokens)");
  cmd->add_option("--threads", args->threads, "CPU threads (0 = all cores)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--context", args->context, "Maximum context length (KV cache size)")
      ->check(CLI::Range(16, 1 << 20));
  cmd->add_option("--weight-dtype", args->weight_dtype, "Weight storage: f32 or bf16")
      ->check(CLI::IsMember({"f32", "bf16"}));
  cmd->add_flag("--ignore-eos", args->ignore_eos, "Keep generating past end-of-sequence tokens");
  cmd->callback([args] { set_exit_code(run_generate(*args)); });
}

}  // namespace invar::cli
