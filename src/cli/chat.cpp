// `invar chat`: an interactive terminal chat with the model's own chat template. Each turn
// re-renders the whole conversation and submits it to the engine; the prefix cache serves the
// earlier turns, so only the new tokens are computed.
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

struct ChatArgs {
  ModelArgs m;
  std::string system;
  std::string chat_template;         // --chat-template FILE
  std::string chat_template_kwargs;  // JSON object
  int max_tokens = 512;
  SamplingArgs sampling;
};

int run_chat(const ChatArgs& a) {
  auto device = model::parse_device(a.m.device);
  if (!device.ok()) {
    fmt::print(stderr, "error: {}\n", device.status().message());
    return 1;
  }
  auto bundle = open_bundle(a.m, *device);
  if (!bundle.ok()) {
    fmt::print(stderr, "error: {}\n", bundle.status().message());
    return 1;
  }
  Status template_status = use_chat_template_file(a.chat_template, bundle->tokenizer);
  auto kwargs = parse_chat_template_kwargs(a.chat_template_kwargs);
  if (template_status.ok()) template_status = kwargs.status();
  if (template_status.ok()) template_status = bundle->tokenizer.chat_template().status();
  if (!template_status.ok()) {  // said before the first turn, not after it
    fmt::print(stderr, "error: {}\n", template_status.message());
    return 1;
  }
  const auto& tok = bundle->tokenizer;
  engine::EngineOptions opts = engine_options(a.m, *device);
  opts.max_running = 1;
  auto created = engine::Engine::create(*bundle, opts);
  if (!created.ok()) {
    fmt::print(stderr, "error: {}\n", created.status().message());
    return 1;
  }
  engine::Engine& eng = **created;

  std::vector<tokenizer::ChatMessage> history;
  if (!a.system.empty()) history.push_back({"system", a.system});
  LineReader reader;
  InterruptWatch interrupts;  // Ctrl-C stops the answer (or clears the prompt), not the program
  fmt::print(stderr,
             "invar chat: /reset clears the conversation, Ctrl-C stops an answer, /exit or "
             "Ctrl-D quits.\n");
  int turn = 0;
  for (;;) {
    std::optional<std::string> read = reader.read("> ");
    if (!read) break;
    std::string line = std::move(*read);
    if (line == "/exit" || line == "/quit") break;
    if (line == "/reset") {
      history.resize(a.system.empty() ? 0 : 1);
      fmt::print(stderr, "(conversation cleared)\n");
      continue;
    }
    if (line.empty()) continue;
    history.push_back({"user", line});
    tokenizer::ChatTemplateInputs inputs;
    inputs.messages = tokenizer::chat_messages_json(history);
    inputs.kwargs = *kwargs;
    auto prompt = tokenizer::encode_chat(tok, inputs);
    if (!prompt.ok()) {  // e.g. the template's raise_exception: this turn is dropped
      fmt::print(stderr, "error: {}\n", prompt.status().message());
      history.pop_back();
      continue;
    }
    engine::RequestParams req;
    req.prompt = std::move(prompt).value();
    req.max_tokens = std::min(a.max_tokens, opts.max_context - int(req.prompt.size()));
    if (req.max_tokens < 1) {
      fmt::print(stderr, "error: the conversation fills the context ({} tokens); /reset it\n",
                 req.prompt.size());
      history.pop_back();
      continue;
    }
    apply_sampling(a.sampling, req, /*seed_offset=*/uint64_t(turn++));

    std::string reply;
    std::promise<engine::RequestEvent> done;
    // A Ctrl-C from before the answer is dropped here, before the answer can start: from now
    // on every one stops it (clearing after submit could drop one sent as the answer streams).
    InterruptWatch::take();
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
    std::future<engine::RequestEvent> finished = done.get_future();
    while (finished.wait_for(std::chrono::milliseconds(50)) != std::future_status::ready) {
      if (InterruptWatch::take()) eng.cancel(*submitted);  // ends with `cancelled`
    }
    const auto last = finished.get();
    fmt::print("\n");
    if (last.finish == engine::FinishReason::cancelled) {
      // The partial answer stays in the conversation, as the user saw it.
      fmt::print(stderr, "(stopped)\n");
    }
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
  add_model_options(*cmd, args->m);
  cmd->add_option("--system", args->system, "System message");
  add_chat_template_option(cmd, &args->chat_template);
  add_chat_template_kwargs_option(cmd, &args->chat_template_kwargs);
  cmd->add_option("-n,--max-tokens", args->max_tokens, "Most tokens per answer")
      ->check(CLI::Range(1, 1 << 20));
  add_sampling_options(*cmd, args->sampling);
  cmd->callback([args] { set_exit_code(run_chat(*args)); });
}

}  // namespace invar::cli
