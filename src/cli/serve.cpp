// `invar serve`: loads a model, starts the engine and serves the OpenAI-compatible API until
// SIGINT/SIGTERM, then exits 0 after the requests in flight have finished.
#include <fmt/core.h>
#include <sys/resource.h>

#include <algorithm>
#include <filesystem>
#include <memory>

#include "cli/commands.h"
#include "engine/engine.h"
#include "engine/model_bundle.h"
#include "server/server.h"

namespace invar::cli {

namespace {

struct ServeArgs {
  std::string model;
  std::string host = "127.0.0.1";
  int port = 8000;
  std::string api_key;
  std::string served_model_name;
  int threads = 0;
  int http_threads = 2;
  int max_context = 4096;
  int max_running = 64;
  int max_queue = 1024;
  int kv_blocks = 0;
  bool no_prefix_cache = false;
  bool host_sampling = false;
  bool enforce_eager = false;
  double gpu_memory_utilization = 0.9;
  std::string weight_dtype;  // empty: as stored in the file
  std::string kv_dtype;      // empty: f16 (CPU KV cache)
  std::string kernels = "invariant";
  std::string device = "cpu";
  int64_t random_weights = -1;  // >= 0: seeded random weights of the --model config
  size_t max_body_bytes = 4u << 20;
  double shutdown_timeout = 30;
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

int run_serve(const ServeArgs& a) {
  raise_open_file_limit();
  auto device = model::parse_device(a.device);
  if (!device.ok()) {
    fmt::print(stderr, "error: {}\n", device.status().message());
    return 1;
  }
  model::LoadOptions load;
  load.weight_dtype = weight_dtype_flag(a.weight_dtype);
  if (a.random_weights >= 0) load.weight_dtype = random_weight_dtype(a.weight_dtype, *device);
  auto bundle = a.random_weights >= 0
                    ? engine::random_model(a.model, uint64_t(a.random_weights), load)
                    : engine::open_model(a.model, load);
  if (!bundle.ok()) {
    fmt::print(stderr, "error: {}\n", bundle.status().message());
    return 1;
  }
  engine::EngineOptions eo;
  eo.threads = a.threads;
  int model_context = bundle->model.config.max_position;
  eo.max_context = model_context > 0 ? std::min(a.max_context, model_context) : a.max_context;
  eo.max_running = a.max_running;
  eo.max_queue = a.max_queue;
  eo.kv_blocks = a.kv_blocks;
  eo.kv_dtype = kv_dtype_flag(a.kv_dtype);
  eo.prefix_cache = !a.no_prefix_cache;
  eo.host_sampling = a.host_sampling;
  eo.enforce_eager = a.enforce_eager;
  eo.gpu_memory_utilization = a.gpu_memory_utilization;
  eo.kernels = a.kernels == "fast" ? kernels::KernelMode::fast : kernels::KernelMode::invariant;
  // The engine is destroyed before the server: its callbacks reference the server's
  // connections, which must not outlive the io_context they belong to.
  eo.device = *device;
  auto created = engine::Engine::create(*bundle, eo);
  if (!created.ok()) {
    fmt::print(stderr, "error: {}\n", created.status().message());
    return 1;
  }
  std::unique_ptr<engine::Engine> engine = std::move(created).value();

  server::ServerOptions so;
  so.http.host = a.host;
  so.http.port = uint16_t(a.port);
  so.http.max_body_bytes = a.max_body_bytes;
  so.io_threads = a.http_threads;
  so.api_key = a.api_key;
  so.max_choices = a.max_n;
  so.shutdown_timeout_s = a.shutdown_timeout;
  so.served_model_name = a.served_model_name.empty()
                             ? std::filesystem::path(a.model).stem().string()
                             : a.served_model_name;
  const std::string fingerprint = engine->fingerprint();
  const int context = eo.max_context;
  const int64_t kv_tokens = int64_t(engine->options().kv_blocks) * engine->options().block_size;
  so.on_listening = [&](uint16_t port) {
    fmt::print(stderr,
               "invar serve: listening on http://{}:{} (model \"{}\", context {}, KV cache {} "
               "tokens, {})\n",
               a.host.find(':') == std::string::npos ? a.host : "[" + a.host + "]", port,
               so.served_model_name, context, kv_tokens, fingerprint);
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
  cmd->add_option("-m,--model", a->model, "GGUF file or Hugging Face directory")->required();
  cmd->add_option("--host", a->host, "Address to listen on");
  cmd->add_option("--port", a->port, "Port (0: any free port)")->check(CLI::Range(0, 65535));
  cmd->add_option("--api-key", a->api_key, "Require 'Authorization: Bearer KEY' on /v1/*");
  cmd->add_option("--served-model-name", a->served_model_name,
                  "Model name clients pass (default: the model file's name)");
  cmd->add_option("--threads", a->threads, "CPU threads for the forward pass (0 = all cores)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--http-threads", a->http_threads, "Threads for network and JSON work")
      ->check(CLI::Range(1, 64));
  cmd->add_option("--max-context", a->max_context, "Prompt + completion tokens per request")
      ->check(CLI::Range(16, 1 << 20));
  cmd->add_option("--max-running", a->max_running, "Sequences batched at once")
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--max-queue", a->max_queue, "Waiting requests before 429")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--gpu-memory-utilization", a->gpu_memory_utilization,
                  "CUDA: share of the GPU's memory to use; the KV cache gets what weights and "
                  "activations leave (as vLLM)")
      ->check(CLI::Range(0.05, 1.0));
  cmd->add_option("--kv-blocks", a->kv_blocks,
                  "KV cache blocks (0: CPU, enough for --max-running; CUDA, from GPU memory)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--no-prefix-cache", a->no_prefix_cache, "Do not reuse KV blocks of prefixes");
  cmd->add_flag("--enforce-eager", a->enforce_eager,
                "CUDA: launch every kernel of a step, no CUDA graphs (same bits, slower)");
  cmd->add_flag("--host-sampling", a->host_sampling,
                "CUDA: draw sampled tokens on the host, not the GPU (a benchmark baseline)");
  cmd->add_option("--random-weights", a->random_weights,
                  "Seeded random weights of the --model config (config.json or its directory)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--device", a->device, "cpu or cuda (a build with -DINVAR_CUDA=ON)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->add_option("--kernels", a->kernels,
                  "invariant (default) or fast: batch-dependent kernels, a negative control only")
      ->check(CLI::IsMember({"invariant", "fast"}));
  cmd->add_option("--weight-dtype", a->weight_dtype,
                  "Weight storage: f32 or bf16 (default: as stored in the file; quantized GGUF "
                  "blocks stay packed)")
      ->check(CLI::IsMember({"f32", "bf16"}));
  cmd->add_option("--kv-dtype", a->kv_dtype, "CPU KV cache: f16 (default) or f32")
      ->check(CLI::IsMember({"f16", "f32"}));
  cmd->add_option("--max-body-bytes", a->max_body_bytes, "Larger request bodies get 413")
      ->check(CLI::Range(size_t(1024), size_t(1) << 30));
  cmd->add_option("--max-n", a->max_n, "Most choices (n times prompts) per request")
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--shutdown-timeout", a->shutdown_timeout,
                  "Seconds to let requests finish after SIGTERM before cancelling them")
      ->check(CLI::Range(0.0, 3600.0));
  cmd->callback([a] { set_exit_code(run_serve(*a)); });
}

}  // namespace invar::cli
