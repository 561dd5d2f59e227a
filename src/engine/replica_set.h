// Data parallelism: N engines over one loaded model behind one server (`serve
// --data-parallel-size N`), each with its own runner, KV cache and engine thread. A request goes
// to the replica with the fewest requests in flight (ties: the lowest index). Each engine is
// batch-invariant and every replica runs the same model with the same kernels, so a request's
// tokens and logprobs are the same bits on whichever replica serves it, and the same as on one
// engine (tests/invariance/data_parallel_test.cpp).
//
// On the CPU the replicas split the threads (options.threads, 0: all cores); on CUDA replica r
// runs on device options.cuda_device + r.
#pragma once

#include <atomic>
#include <memory>
#include <vector>

#include "engine/engine.h"

namespace invar::engine {

class ReplicaSet final : public ServingEngine {
 public:
  // Fails as Engine::create does for any replica, or when replicas < 1.
  static Result<std::unique_ptr<ReplicaSet>> create(const ModelBundle& bundle,
                                                    EngineOptions options, int replicas);
  ~ReplicaSet() override;

  // ServingEngine. Replica r of N issues the ids N + r, 2N + r, ...: id % N names the replica.
  Result<uint64_t> submit(RequestParams params, EventCallback on_event) override;
  void cancel(uint64_t request_id) override;
  void shutdown(bool drain) override;
  EngineStats stats() const override;             // the replicas' counters and histograms summed
  const EngineOptions& options() const override;  // each replica's (replica 0's threads)
  const ModelBundle& bundle() const override;
  const std::string& fingerprint() const override;  // every replica's (checked at create)

  int size() const { return int(replicas_.size()); }
  // Requests submitted to replica r so far (how the load was spread).
  uint64_t submitted_to(int r) const { return replicas_[size_t(r)]->submitted.load(); }

 private:
  struct Replica {
    std::unique_ptr<Engine> engine;
    std::atomic<int> in_flight{0};  // submitted and not yet finished
    std::atomic<uint64_t> submitted{0};
  };
  ReplicaSet() = default;
  size_t pick() const;

  std::vector<std::unique_ptr<Replica>> replicas_;
};

// Adds b's counters and histograms into a (waiting, running and KV blocks too: a sum over
// engines).
void add_stats(EngineStats& a, const EngineStats& b);

}  // namespace invar::engine
