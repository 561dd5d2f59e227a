// `invar generate`: one prompt in, tokens streamed to stdout, speed on stderr. It runs the
// same engine as `invar serve`, with a single request.
#include <fmt/core.h>

#include <chrono>
#include <cstdio>
#include <future>
#include <memory>

#include "cli/commands.h"
#include "cli/common_options.h"
#include "cli/terminal.h"
#include "engine/engine.h"
#include "tokenizer/chat_template.h"

namespace invar::cli {

namespace {

int g_exit_code = 0;

struct GenerateArgs {
  ModelArgs m;
  std::string prompt;
  std::string system;
  bool chat = false;
  std::string chat_template;         // --chat-template FILE
  std::string chat_template_kwargs;  // JSON object
  int max_tokens = 128;
  SamplingArgs sampling;
  bool ignore_eos = false;
};

int fail(const std::string& message) {
  fmt::print(stderr, "error: {}\n", message);
  return 1;
}

int run_generate(const GenerateArgs& a) {
  auto device = model::parse_device(a.m.device);
  if (!device.ok()) return fail(device.status().message());
  auto bundle = open_bundle(a.m, *device);
  if (!bundle.ok()) return fail(bundle.status().message());
  if (Status st = use_chat_template_file(a.chat_template, bundle->tokenizer); !st.ok())
    return fail(st.message());
  const auto& tok = bundle->tokenizer;

  engine::RequestParams req;
  if (a.chat) {
    std::vector<tokenizer::ChatMessage> messages;
    if (!a.system.empty()) messages.push_back({"system", a.system});
    messages.push_back({"user", a.prompt});
    tokenizer::ChatTemplateInputs inputs;
    inputs.messages = tokenizer::chat_messages_json(messages);
    auto kwargs = parse_chat_template_kwargs(a.chat_template_kwargs);
    if (!kwargs.ok()) return fail(kwargs.status().message());
    inputs.kwargs = std::move(kwargs).value();
    auto prompt = tokenizer::encode_chat(tok, inputs);
    if (!prompt.ok()) return fail(prompt.status().message());
    req.prompt = std::move(prompt).value();
  } else {
    req.prompt = tok.encode(a.prompt, tok.add_bos_default(), /*parse_special=*/false);
  }
  req.max_tokens = a.max_tokens;
  apply_sampling(a.sampling, req);
  req.ignore_eos = a.ignore_eos;

  engine::EngineOptions opts = engine_options(a.m, *device);
  opts.max_running = 1;
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
  // Ctrl-C stops the generation; the timings below still print.
  InterruptWatch interrupts;
  std::future<engine::RequestEvent> finished = done.get_future();
  while (finished.wait_for(std::chrono::milliseconds(50)) != std::future_status::ready) {
    if (InterruptWatch::take()) eng.cancel(*submitted);
  }
  const engine::RequestEvent last = finished.get();
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
  add_model_options(*cmd, args->m);
  cmd->add_option("-p,--prompt", args->prompt, "Prompt text")->required();
  cmd->add_flag("--chat", args->chat, "Wrap the prompt in the model's chat template");
  cmd->add_option("--system", args->system, "System message (with --chat)");
  add_chat_template_option(cmd, &args->chat_template);
  add_chat_template_kwargs_option(cmd, &args->chat_template_kwargs);
  cmd->add_option("-n,--max-tokens", args->max_tokens, "Tokens to generate")
      ->check(CLI::Range(1, 1 << 20));
  add_sampling_options(*cmd, args->sampling);
  cmd->add_flag("--ignore-eos", args->ignore_eos, "Keep generating past end-of-sequence tokens");
  cmd->callback([args] { set_exit_code(run_generate(*args)); });
}

}  // namespace invar::cli
