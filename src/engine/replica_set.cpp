#include "engine/replica_set.h"

#include <fmt/format.h>

#include <algorithm>
#include <thread>

namespace invar::engine {

namespace {

void add_histogram(Histogram& a, const Histogram& b) {
  for (size_t i = 0; i < a.counts.size(); ++i) a.counts[i] += b.counts[i];
  a.count += b.count;
  a.sum += b.sum;
}

}  // namespace

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
  add_histogram(a.time_to_first_token, b.time_to_first_token);
  add_histogram(a.e2e_request_latency, b.e2e_request_latency);
  add_histogram(a.queue_time, b.queue_time);
  add_histogram(a.inter_token_latency, b.inter_token_latency);
  add_histogram(a.step_seconds, b.step_seconds);
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
    if (options.device == model::Device::cuda) o.cuda_device = options.cuda_device + r;
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
  const uint64_t n = replicas_.size();
  if (n == 1) {  // ids and events pass through unchanged
    auto id = replicas_[0]->engine->submit(std::move(params), std::move(on_event));
    if (id.ok()) replicas_[0]->submitted.fetch_add(1);
    return id;
  }
  const size_t r = pick();
  Replica& replica = *replicas_[r];
  replica.in_flight.fetch_add(1);
  auto id = replica.engine->submit(
      std::move(params), [&replica, n, r, cb = std::move(on_event)](const RequestEvent& local) {
        RequestEvent ev = local;
        ev.request_id = local.request_id * n + r;
        if (ev.finished()) replica.in_flight.fetch_sub(1);
        cb(ev);
      });
  if (!id.ok()) {
    replica.in_flight.fetch_sub(1);
    return id.status();
  }
  replica.submitted.fetch_add(1);
  return *id * n + r;
}

void ReplicaSet::cancel(uint64_t request_id) {
  const uint64_t n = replicas_.size();
  replicas_[request_id % n]->engine->cancel(request_id / n);
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
