// `invar chat`: an interactive terminal chat with the model's own chat template. Each turn
// re-renders the whole conversation and submits it to the engine; the prefix cache serves the
// earlier turns, so only the new tokens are computed.
#include <fmt/core.h>

#include <cstdio>
#include <future>
#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "engine/engine.h"
#include "tokenizer/chat_template.h"

namespace invar::cli {

namespace {

struct ChatArgs {
  std::string model;
  std::string system;
  int max_tokens = 512;
  double gpu_memory_utilization = 0.9;
  float temperature = 0.0f;
  float top_p = 1.0f;
  uint64_t seed = 0;
  bool seed_given = false;
  int threads = 0;
  int context = 4096;
  std::string device = "cpu";
};

int run_chat(const ChatArgs& a) {
  auto device = model::parse_device(a.device);
  if (!device.ok()) {
    fmt::print(stderr, "error: {}\n", device.status().message());
    return 1;
  }
  model::LoadOptions load;
  auto bundle = engine::open_model(a.model, load);
  if (!bundle.ok()) {
    fmt::print(stderr, "error: {}\n", bundle.status().message());
    return 1;
  }
  const auto& tok = bundle->tokenizer;
  engine::EngineOptions opts;
  opts.threads = a.threads;
  opts.max_context = a.context;
  opts.max_running = 1;
  opts.device = *device;
  opts.gpu_memory_utilization = a.gpu_memory_utilization;
  auto created = engine::Engine::create(*bundle, opts);
  if (!created.ok()) {
    fmt::print(stderr, "error: {}\n", created.status().message());
    return 1;
  }
  engine::Engine& eng = **created;
  const std::string bos = tok.bos_id() ? tok.token_bytes(*tok.bos_id()) : std::string();
  const std::string eos = tok.eos_id() ? tok.token_bytes(*tok.eos_id()) : std::string();

  std::vector<tokenizer::ChatMessage> history;
  if (!a.system.empty()) history.push_back({"system", a.system});
  fmt::print(stderr, "invar chat: /reset clears the conversation, /exit or Ctrl-D quits.\n");
  int turn = 0;
  for (;;) {
    fmt::print("> ");
    std::fflush(stdout);
    std::string line;
    if (!std::getline(std::cin, line)) break;
    if (line == "/exit" || line == "/quit") break;
    if (line == "/reset") {
      history.resize(a.system.empty() ? 0 : 1);
      fmt::print(stderr, "(conversation cleared)\n");
      continue;
    }
    if (line.empty()) continue;
    history.push_back({"user", line});
    auto rendered = tokenizer::apply_chat_template(tok.spec().chat_template, history, true, bos, eos);
    if (!rendered.ok()) {
      fmt::print(stderr, "error: {}\n", rendered.status().message());
      return 1;
    }
    engine::RequestParams req;
    req.prompt = tok.encode(*rendered, false, /*parse_special=*/true);
    req.max_tokens = std::min(a.max_tokens, opts.max_context - int(req.prompt.size()));
    if (req.max_tokens < 1) {
      fmt::print(stderr, "error: the conversation fills the context ({} tokens); /reset it\n",
                 req.prompt.size());
      history.pop_back();
      continue;
    }
    req.sampling.temperature = a.temperature;
    req.sampling.top_p = a.top_p;
    // One seed per conversation, offset per turn: a replayed chat gives the same answers.
    req.sampling.seed = a.seed + uint64_t(turn++);
    req.has_seed = a.seed_given;

    std::string reply;
    std::promise<engine::RequestEvent> done;
    auto submitted = eng.submit(req, [&](const engine::RequestEvent& ev) {
      reply += ev.text;
      std::fwrite(ev.text.data(), 1, ev.text.size(), stdout);
      std::fflush(stdout);
      if (ev.finished()) done.set_value(ev);
    });
    if (!submitted.ok()) {
      fmt::print(stderr, "error: {}\n", submitted.status().message());
      history.pop_back();
      continue;
    }
    const auto last = done.get_future().get();
    fmt::print("\n");
    if (last.finish == engine::FinishReason::error) {
      fmt::print(stderr, "error: {}\n", last.error);
      history.pop_back();
      continue;
    }
    history.push_back({"assistant", reply});
  }
  return 0;
}

}  // namespace

void add_chat(CLI::App& app) {
  auto args = std::make_shared<ChatArgs>();
  auto* cmd = app.add_subcommand("chat", "Chat with a model in the terminal");
  cmd->add_option("-m,--model", args->model, "GGUF file or Hugging Face directory")->required();
  cmd->add_option("--system", args->system, "System message");
  cmd->add_option("-n,--max-tokens", args->max_tokens, "Most tokens per answer")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("-t,--temperature", args->temperature, "0 = greedy")
      ->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--top-p", args->top_p, "1 = off")->check(CLI::Range(0.0, 1.0));
  cmd->add_option("-s,--seed", args->seed, "Seed of the sampler")
      ->each([args](const std::string&) { args->seed_given = true; });
  cmd->add_option("--threads", args->threads, "CPU threads (0 = all cores)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--device", args->device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->add_option("--gpu-memory-utilization", args->gpu_memory_utilization,
                  "CUDA: share of the GPU's memory to use; the KV cache gets what weights and "
                  "activations leave (as vLLM)")
      ->check(CLI::Range(0.05, 1.0));
  cmd->add_option("--context", args->context, "Maximum context length")
      ->check(CLI::Range(16, 1 << 20));
  cmd->callback([args] { set_exit_code(run_chat(*args)); });
}

}  // namespace invar::cli
