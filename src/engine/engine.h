// The serving engine: a request queue and a continuous-batching loop on its own thread.
// Each step the scheduler packs decode tokens first, then prefill chunks, up to a token
// budget; KV blocks come from a reference-counted block manager with a prefix cache; when
// blocks run out the youngest running request is preempted and later recomputed. Because the
// forward pass is batch-invariant, none of this changes any request's bits.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "core/status.h"
#include "engine/model_bundle.h"
#include "engine/request.h"
#include "engine/serving_engine.h"
#include "engine/stats.h"
#include "kernels/types.h"
#include "model/model_runner.h"

namespace invar::engine {

struct EngineOptions {
  int threads = 0;                // CPU threads for the forward pass (0: all cores)
  int tensor_parallel_size = 1;   // ranks as threads (model::RunnerOptions)
  int tp_slices = -1;             // model::RunnerOptions::tp_slices
  int max_context = 4096;         // prompt + output tokens per request
  int kv_blocks = 0;              // KV cache blocks (0: CPU, enough for max_running full
                                  // contexts; CUDA, what gpu_memory_utilization leaves)
  int block_size = 16;            // tokens per KV block
  DType kv_dtype = DType::f16;    // CPU KV cache: f16 or f32 (model::RunnerOptions)
  int max_running = 64;           // sequences in flight at once
  int max_queue = 1024;           // waiting requests before submit() refuses (resource_exhausted)
  int step_token_budget = 512;    // tokens per forward step (decode + prefill)
  bool prefix_cache = true;
  kernels::KernelMode kernels = kernels::KernelMode::invariant;  // fast: negative control only
  model::Device device = model::Device::cpu;  // where the model runs (Engine::create)
  int cuda_device = 0;                        // CUDA device ordinal
  // Sample on the host even where the runner draws on the device (a baseline for benchmarks;
  // sampled tokens then have the host sampler's bits, which the fingerprint says).
  bool host_sampling = false;
  // CUDA with kv_blocks = 0: the share of the GPU's memory this engine may hold (weights,
  // activations and the KV cache, which gets the rest), as vLLM's --gpu-memory-utilization.
  double gpu_memory_utilization = 0.9;
  bool enforce_eager = false;  // CUDA: no CUDA graphs (RunnerOptions::cuda_graphs)
  bool pad_graph_batches = true;  // CUDA: RunnerOptions::pad_graph_batches
  model::RunnerOptions::PrefillAttention prefill_attention =
      model::RunnerOptions::PrefillAttention::automatic;  // CUDA: RunnerOptions's
  // Request ids: first_request_id, then every request_id_stride-th (ReplicaSet gives replica r
  // of N the ids N + r, 2N + r, ...: unique across replicas, and naming the replica).
  uint64_t first_request_id = 1;
  uint64_t request_id_stride = 1;
};

class Engine final : public ServingEngine {
 public:
  // The bundle must outlive the engine. Starts the engine thread. Fails when the device can
  // not be used (no CUDA backend in this build, no GPU, too little device memory).
  static Result<std::unique_ptr<Engine>> create(const ModelBundle& bundle, EngineOptions options);
  // A CPU engine (options.device is ignored): cannot fail.
  Engine(const ModelBundle& bundle, EngineOptions options);
  ~Engine() override;  // cancels what is in flight and joins the thread
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // ServingEngine: thread-safe submit and cancel, shutdown, stats, the model.
  Result<uint64_t> submit(RequestParams params, EventCallback on_event) override;
  void cancel(uint64_t request_id) override;
  void shutdown(bool drain) override;
  EngineStats stats() const override;
  const EngineOptions& options() const override;
  const ModelBundle& bundle() const override;
  const std::string& fingerprint() const override;

 private:
  Engine(const ModelBundle& bundle, EngineOptions resolved,
         std::unique_ptr<model::ModelRunner> runner);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace invar::engine
