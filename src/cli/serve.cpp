// `invar serve`: loads a model, starts the engine and serves the OpenAI-compatible API until
// SIGINT/SIGTERM, then exits 0 after the requests in flight have finished.
#include <fmt/core.h>
#include <sys/resource.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/common_options.h"
#include "engine/engine.h"
#include "engine/model_bundle.h"
#include "engine/replica_set.h"
#include "server/server.h"
#include "tokenizer/chat_template.h"

namespace invar::cli {

namespace {

// Serving defaults per device: a GPU step must hold enough sequences to fill the chip (vLLM
// batches 256 to 1024 sequences and 2048 to 16384 tokens a step on such GPUs), the CPU's
// throughput is flat long before that.
constexpr int kCudaMaxRunning = 512, kCpuMaxRunning = 64;
constexpr int kCudaStepTokens = 8192, kCpuStepTokens = 512;
// KV block (page) size: on an H100 the wgmma prefill attention copies a block per TMA
// instruction, so 64-token pages reach 416 TFLOP/s where 16-token ones reach 369, and the served
// Qwen3-8B workloads ran 1.4-2.2% faster with the same output digests
// (bench/results/scoring-fp8-blocksize-h100-2026-12-07-712ced5.txt); the CPU keeps vLLM's 16,
// the finer unit of prefix reuse.
constexpr int kCudaBlockSize = 64, kCpuBlockSize = 16;

struct ServeArgs {
  ModelArgs m;
  std::string host = "127.0.0.1";
  int port = 8000;
  std::string api_key;
  std::vector<std::string> allowed_origins;  // as given: ORIGIN, comma lists or a JSON list
  std::string served_model_name;
  std::string chat_template;  // --chat-template FILE
  std::string tool_call_parser = "auto";
  int http_threads = 2;
  int data_parallel_size = 1;  // engine replicas behind the one server
  int max_running = 0;  // 0: per device (kCudaMaxRunning, kCpuMaxRunning)
  int step_tokens = 0;  // 0: per device (kCudaStepTokens, kCpuStepTokens)
  int max_queue = 1024;
  int kv_blocks = 0;
  int block_size = 0;   // tokens per KV cache block (page); 0: per device (kCudaBlockSize, ...)
  bool no_prefix_cache = false;
  bool host_sampling = false;
  bool enforce_eager = false;
  bool pad_graph_batches = true;
  std::string prefill_attention = "auto";
  size_t max_body_bytes = 4u << 20;
  double shutdown_timeout = 30;
  double read_timeout = 30;
  int max_n = 16;
};

// Each streaming client holds a socket: lift the soft descriptor limit to the hard one so a
// thousand connections fit.
void raise_open_file_limit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
}

// --allowed-origins takes vLLM's JSON list ('["https://a.example", "*"]') as well as plain
// origins, repeated or comma-separated.
Result<std::vector<std::string>> parse_origins(const std::vector<std::string>& given) {
  std::vector<std::string> out;
  for (const auto& g : given) {
    if (!g.empty() && g.front() == '[') {
      auto list = nlohmann::json::parse(g, nullptr, false);
      if (!list.is_array())
        return Status::errorf("--allowed-origins {}: not a JSON list of strings", g);
      for (const auto& o : list) {
        if (!o.is_string())
          return Status::errorf("--allowed-origins {}: not a JSON list of strings", g);
        out.push_back(o.get<std::string>());
      }
      continue;
    }
    size_t start = 0;
    while (start <= g.size()) {
      size_t comma = std::min(g.find(',', start), g.size());
      if (comma > start) out.push_back(g.substr(start, comma - start));
      start = comma + 1;
    }
  }
  return out;
}

int run_serve(const ServeArgs& a) {
  raise_open_file_limit();
  auto origins = parse_origins(a.allowed_origins);
  if (!origins.ok()) {
    fmt::print(stderr, "error: {}\n", origins.status().message());
    return 1;
  }
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
  if (Status st = use_chat_template_file(a.chat_template, bundle->tokenizer); !st.ok()) {
    fmt::print(stderr, "error: {}\n", st.message());
    return 1;
  }
  if (auto tmpl = bundle->tokenizer.chat_template(); !tmpl.ok()) {
    // Completions still work; chat requests get this message as a 400.
    fmt::print(stderr, "invar serve: warning: {}\n", tmpl.status().message());
  }
  const bool cuda = *device == model::Device::cuda;
  engine::EngineOptions eo = engine_options(a.m, *device);
  const int model_context = bundle->model.config.max_position;
  if (model_context > 0) eo.max_context = std::min(eo.max_context, model_context);
  eo.max_running = a.max_running > 0 ? a.max_running : cuda ? kCudaMaxRunning : kCpuMaxRunning;
  eo.step_token_budget = a.step_tokens > 0 ? a.step_tokens
                         : cuda            ? kCudaStepTokens
                                           : kCpuStepTokens;
  eo.max_queue = a.max_queue;
  eo.kv_blocks = a.kv_blocks;
  eo.block_size = a.block_size > 0 ? a.block_size : cuda ? kCudaBlockSize : kCpuBlockSize;
  eo.prefix_cache = !a.no_prefix_cache;
  eo.host_sampling = a.host_sampling;
  eo.enforce_eager = a.enforce_eager;
  eo.pad_graph_batches = a.pad_graph_batches;
  using PA = model::RunnerOptions::PrefillAttention;
  eo.prefill_attention = a.prefill_attention == "wgmma"      ? PA::wgmma
                         : a.prefill_attention == "mma-sync" ? PA::mma_sync
                                                             : PA::automatic;
  // The engine is destroyed before the server: its callbacks reference the server's
  // connections, which must not outlive the io_context they belong to.
  auto created = engine::ReplicaSet::create(*bundle, eo, a.data_parallel_size);
  if (!created.ok()) {
    fmt::print(stderr, "error: {}\n", created.status().message());
    return 1;
  }
  std::unique_ptr<engine::ReplicaSet> engine = std::move(created).value();

  server::ServerOptions so;
  so.http.host = a.host;
  so.http.port = uint16_t(a.port);
  so.http.max_body_bytes = a.max_body_bytes;
  so.http.read_timeout_s = a.read_timeout;
  so.io_threads = a.http_threads;
  so.api_key = a.api_key;
  so.allowed_origins = *origins;
  so.max_choices = a.max_n;
  // --tool-call-parser auto: the format the chat template teaches (hermes without one).
  so.tool_call_format = server::tool_call_format_named(a.tool_call_parser);
  if (!so.tool_call_format) {
    auto tmpl = bundle->tokenizer.chat_template();
    so.tool_call_format = tmpl.ok() ? server::tool_call_format_for_template((*tmpl)->source())
                                    : server::ToolCallFormat::hermes;
  }
  so.shutdown_timeout_s = a.shutdown_timeout;
  so.served_model_name = a.served_model_name.empty()
                             ? std::filesystem::path(a.m.model).stem().string()
                             : a.served_model_name;
  const std::string fingerprint = engine->fingerprint();
  const int context = eo.max_context;
  const int64_t kv_tokens = int64_t(engine->options().kv_blocks) * engine->options().block_size;
  so.on_listening = [&](uint16_t port) {
    fmt::print(stderr,
               "invar serve: listening on http://{}:{} (model \"{}\", context {}, {}KV cache {} "
               "tokens, up to {} sequences and {} tokens a step, tool calls {}, {})\n",
               a.host.find(':') == std::string::npos ? a.host : "[" + a.host + "]", port,
               so.served_model_name, context,
               engine->size() > 1 ? fmt::format("{} replicas, each: ", engine->size()) : "",
               kv_tokens, eo.max_running, eo.step_token_budget,
               server::tool_call_format_name(*so.tool_call_format), fingerprint);
  };
  auto server = std::make_unique<server::Server>(*engine, so);
  Status status = server->run();
  engine.reset();
  server.reset();
  if (!status.ok()) {
    fmt::print(stderr, "error: {}\n", status.message());
    return 1;
  }
  fmt::print(stderr, "invar serve: stopped\n");
  return 0;
}

}  // namespace

void add_serve(CLI::App& app) {
  auto a = std::make_shared<ServeArgs>();
  auto* cmd = app.add_subcommand("serve", "Serve the OpenAI-compatible HTTP API");
  add_model_options(*cmd, a->m);
  cmd->add_option("--host", a->host, "Address to listen on");
  cmd->add_option("--port", a->port, "Port (0: any free port)")->check(CLI::Range(0, 65535));
  cmd->add_option("--api-key", a->api_key, "Require 'Authorization: Bearer KEY' on /v1/*");
  cmd->add_option("--allowed-origins", a->allowed_origins,
                  "CORS: origins whose web pages may call the API ('*' for any; a JSON list as "
                  "vLLM takes, or comma-separated); none by default");
  cmd->add_option("--served-model-name", a->served_model_name,
                  "Model name clients pass (empty: the model file's name)");
  add_chat_template_option(cmd, &a->chat_template);
  cmd->add_option("--tool-call-parser", a->tool_call_parser,
                  "How the model writes tool calls: hermes (<tool_call>{...}</tool_call>, "
                  "Qwen), llama3_json ({\"name\": ..., \"parameters\": ...}), mistral "
                  "([TOOL_CALLS][{...}] or [TOOL_CALLS]name[ARGS]{...}) or auto (the format "
                  "the chat template teaches)")
      ->check(CLI::IsMember({"auto", "hermes", "llama3_json", "mistral"}));
  cmd->add_option("--http-threads", a->http_threads, "Threads for network and JSON work")
      ->check(CLI::Range(1, 64));
  cmd->add_option("--data-parallel-size", a->data_parallel_size,
                  "Engine replicas behind this server, each with its own KV cache and engine "
                  "thread; a request goes to the least loaded one, and gets the same bits on any "
                  "(CPU: they split --threads; CUDA: replica r on GPU r, or on GPUs r*TP .. "
                  "r*TP+TP-1 with --tensor-parallel-size TP)")
      ->check(CLI::Range(1, 64));
  cmd->add_option("--max-running,--max-num-seqs", a->max_running,
                  fmt::format("Sequences batched at once, per replica (0: {} on CUDA, {} on the CPU)",
                              kCudaMaxRunning, kCpuMaxRunning))
      ->check(CLI::Range(0, 4096));
  cmd->add_option("--max-num-batched-tokens", a->step_tokens,
                  fmt::format("Tokens per step, decodes plus prefill chunks (0: {} on CUDA, {} on "
                              "the CPU)",
                              kCudaStepTokens, kCpuStepTokens))
      ->check(CLI::Range(0, 1 << 20));
  cmd->add_option("--max-queue", a->max_queue, "Waiting requests before 429")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--kv-blocks", a->kv_blocks,
                  "KV cache blocks (0: CPU, enough for --max-running; CUDA, from GPU memory)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--block-size", a->block_size,
                  fmt::format("Tokens per KV cache block, the unit of paging and prefix reuse "
                              "(0: {} on CUDA, {} on the CPU; the same bits at any size)",
                              kCudaBlockSize, kCpuBlockSize))
      ->check(CLI::IsMember({0, 1, 8, 16, 32, 64, 128}));
  cmd->add_flag("--no-prefix-cache", a->no_prefix_cache, "Do not reuse KV blocks of prefixes");
  cmd->add_flag("--enforce-eager", a->enforce_eager,
                "CUDA: launch every kernel of a step, no CUDA graphs (same bits, slower)");
  cmd->add_option("--pad-graph-batches", a->pad_graph_batches,
                  "CUDA: pad steps of up to 512 tokens to a few sizes so that decode steps of any "
                  "batch size replay a CUDA graph (same bits)");
  cmd->add_option("--prefill-attention", a->prefill_attention,
                  "CUDA: prefill attention kernel, the same bits either way (auto: wgmma on "
                  "H100/H200, else mma-sync)")
      ->check(CLI::IsMember({"auto", "wgmma", "mma-sync"}));
  cmd->add_flag("--host-sampling", a->host_sampling,
                "CUDA: draw sampled tokens on the host, not the GPU (a benchmark baseline)");
  cmd->add_option("--max-body-bytes", a->max_body_bytes, "Larger request bodies get 413")
      ->check(CLI::Range(size_t(1024), size_t(1) << 30));
  cmd->add_option("--max-n", a->max_n, "Most choices (n times prompts) per request")
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--read-timeout", a->read_timeout,
                  "Seconds a request's header, then its body, may take to arrive once it has "
                  "begun; slower clients are disconnected")
      ->check(CLI::Range(0.1, 3600.0));
  cmd->add_option("--shutdown-timeout", a->shutdown_timeout,
                  "Seconds to let requests finish after SIGTERM before cancelling them")
      ->check(CLI::Range(0.0, 3600.0));
  cmd->callback([a] { set_exit_code(run_serve(*a)); });
}

}  // namespace invar::cli
