#include "engine/replica_set.h"

#include <fmt/format.h>

#include <algorithm>
#include <thread>

namespace invar::engine {

void add_stats(EngineStats& a, const EngineStats& b) {
  a.waiting += b.waiting;
  a.running += b.running;
  a.kv_blocks_total += b.kv_blocks_total;
  a.kv_blocks_used += b.kv_blocks_used;
  a.kv_blocks_cached += b.kv_blocks_cached;
  a.requests_finished += b.requests_finished;
  for (size_t i = 0; i < a.finished_by_reason.size(); ++i)
    a.finished_by_reason[i] += b.finished_by_reason[i];
  a.prompt_tokens += b.prompt_tokens;
  a.cached_prompt_tokens += b.cached_prompt_tokens;
  a.generated_tokens += b.generated_tokens;
  a.preemptions += b.preemptions;
  a.steps += b.steps;
  a.generated_tokens_per_second += b.generated_tokens_per_second;
  a.time_to_first_token.add(b.time_to_first_token);
  a.e2e_request_latency.add(b.e2e_request_latency);
  a.queue_time.add(b.queue_time);
  a.inter_token_latency.add(b.inter_token_latency);
  a.step_seconds.add(b.step_seconds);
  a.scheduling_seconds += b.scheduling_seconds;
  a.forward_seconds += b.forward_seconds;
}

Result<std::unique_ptr<ReplicaSet>> ReplicaSet::create(const ModelBundle& bundle,
                                                       EngineOptions options, int replicas) {
  if (replicas < 1)
    return Status::error(StatusCode::invalid_argument,
                         fmt::format("--data-parallel-size must be at least 1 (got {})", replicas));
  EngineOptions each = options;
  if (options.device == model::Device::cpu) {
    const int total = options.threads > 0 ? options.threads
                                          : std::max(1, int(std::thread::hardware_concurrency()));
    each.threads = std::max(1, total / replicas);
  }
  std::unique_ptr<ReplicaSet> set(new ReplicaSet());
  for (int r = 0; r < replicas; ++r) {
    EngineOptions o = each;
    // On CUDA each replica takes its own block of tensor_parallel_size GPUs (as vLLM lays out
    // data x tensor parallelism); its ranks fall back to one GPU where fewer are visible.
    if (options.device == model::Device::cuda)
      o.cuda_device = options.cuda_device + r * std::max(1, options.tensor_parallel_size);
    o.first_request_id = uint64_t(replicas + r);
    o.request_id_stride = uint64_t(replicas);
    auto engine = Engine::create(bundle, o);
    if (!engine.ok())
      return replicas == 1 ? engine.status()
                           : Status::error(engine.status().code(),
                                           fmt::format("data-parallel replica {} of {}: {}", r,
                                                       replicas, engine.status().message()));
    auto replica = std::make_unique<Replica>();
    replica->engine = std::move(engine).value();
    set->replicas_.push_back(std::move(replica));
  }
  // The same model, build and kernels on each: one fingerprint, which promises one set of bits.
  for (const auto& r : set->replicas_)
    if (r->engine->fingerprint() != set->replicas_[0]->engine->fingerprint())
      return Status::error(
          StatusCode::internal,
          fmt::format("data-parallel replicas disagree on their fingerprint "
                      "({} and {}): they would not give the same bits",
                      set->replicas_[0]->engine->fingerprint(), r->engine->fingerprint()));
  return set;
}

ReplicaSet::~ReplicaSet() {
  // Engines first: their last events (cancellations) still count down in_flight.
  for (auto& r : replicas_) r->engine.reset();
}

size_t ReplicaSet::pick() const {
  size_t best = 0;
  for (size_t r = 1; r < replicas_.size(); ++r)
    if (replicas_[r]->in_flight.load() < replicas_[best]->in_flight.load()) best = r;
  return best;
}

Result<uint64_t> ReplicaSet::submit(RequestParams params, EventCallback on_event) {
  Replica& replica = *replicas_[pick()];
  replica.in_flight.fetch_add(1);
  // The engine's own ids already name the replica (create): events pass through as they are.
  auto id = replica.engine->submit(std::move(params),
                                   [&replica, cb = std::move(on_event)](const RequestEvent& ev) {
                                     if (ev.finished()) replica.in_flight.fetch_sub(1);
                                     cb(ev);
                                   });
  if (id.ok())
    replica.submitted.fetch_add(1);
  else
    replica.in_flight.fetch_sub(1);
  return id;
}

void ReplicaSet::cancel(uint64_t request_id) {
  replicas_[request_id % replicas_.size()]->engine->cancel(request_id);
}

void ReplicaSet::shutdown(bool drain) {
  for (auto& r : replicas_) r->engine->shutdown(drain);
}

EngineStats ReplicaSet::stats() const {
  EngineStats sum = replicas_[0]->engine->stats();
  for (size_t r = 1; r < replicas_.size(); ++r) add_stats(sum, replicas_[r]->engine->stats());
  return sum;
}

const EngineOptions& ReplicaSet::options() const {
  return replicas_[0]->engine->options();
}
const ModelBundle& ReplicaSet::bundle() const {
  return replicas_[0]->engine->bundle();
}
const std::string& ReplicaSet::fingerprint() const {
  return replicas_[0]->engine->fingerprint();
}

}  // namespace invar::engine
