// CUDA graphs of a step's device work: a launch shape seen often enough is captured, later steps
// of that shape replay it, so a steady decode step costs one graph launch instead of a few
// hundred kernel launches. Capturing costs several eager steps, so a shape is captured only on
// its third sighting: a serving mix whose shapes keep changing runs eagerly at full speed (on an
// H200, capturing every new shape halved SmolLM2's serving throughput). A replay runs the same
// kernels with the same arguments as the eager run, so no bit changes (the tests compare both).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>

#include "core/hash.h"
#include "core/status.h"

namespace invar::model::cuda {

class StepGraphs {
 public:
  explicit StepGraphs(bool enabled, int capture_after = 3, size_t max_graphs = 64)
      : enabled_(enabled), capture_after_(capture_after), max_graphs_(max_graphs) {}
  ~StepGraphs();
  StepGraphs(const StepGraphs&) = delete;
  StepGraphs& operator=(const StepGraphs&) = delete;

  // Enqueues `work` on `stream` (which must do nothing else meanwhile): by replaying the graph
  // captured for `key`, capturing it on the key's capture_after-th sighting, else eagerly. The
  // key must change whenever anything `work` passes to a launch would (grid sizes, scalar
  // arguments, buffer addresses); device memory contents may differ freely. A capture the
  // driver refuses turns graphs off for good and runs `work` eagerly; note() then says why.
  Status run(uint64_t key, cudaStream_t stream, const std::function<Status()>& work);

  bool enabled() const { return enabled_; }
  const std::string& note() const { return note_; }
  size_t size() const { return graphs_.size(); }
  uint64_t replays() const { return replays_; }

 private:
  void clear();

  bool enabled_;
  int capture_after_;
  size_t max_graphs_;
  std::unordered_map<uint64_t, cudaGraphExec_t> graphs_;
  std::unordered_map<uint64_t, int> sightings_;  // keys not captured yet
  uint64_t replays_ = 0;
  std::string note_;
};

}  // namespace invar::model::cuda
