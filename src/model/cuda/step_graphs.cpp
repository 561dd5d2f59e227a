#include "model/cuda/step_graphs.h"

namespace invar::model::cuda {

StepGraphs::~StepGraphs() { clear(); }

void StepGraphs::clear() {
  for (auto& [key, exec] : graphs_) cudaGraphExecDestroy(exec);
  graphs_.clear();
}

Status StepGraphs::run(uint64_t key, cudaStream_t stream, const std::function<Status()>& work) {
  if (!enabled_) return work();
  if (auto it = graphs_.find(key); it != graphs_.end()) {
    const cudaError_t e = cudaGraphLaunch(it->second, stream);
    if (e != cudaSuccess)
      return Status::errorf("CUDA graph launch: {}", cudaGetErrorString(e));
    ++replays_;
    return Status();
  }
  if (sightings_.size() > 16 * max_graphs_) sightings_.clear();
  if (++sightings_[key] < capture_after_) return work();
  sightings_.erase(key);
  if (graphs_.size() >= max_graphs_) clear();  // shapes seen long ago are captured again

  // Thread-local mode: other threads' CUDA calls (none expected) cannot break the capture.
  cudaError_t e = cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal);
  if (e != cudaSuccess) {
    enabled_ = false;
    note_ = std::string("stream capture refused: ") + cudaGetErrorString(e);
    return work();
  }
  const Status enqueued = work();
  cudaGraph_t graph = nullptr;
  e = cudaStreamEndCapture(stream, &graph);
  cudaGraphExec_t exec = nullptr;
  if (enqueued.ok() && e == cudaSuccess) e = cudaGraphInstantiate(&exec, graph, 0);
  if (graph) cudaGraphDestroy(graph);
  if (!enqueued.ok() || e != cudaSuccess) {
    // Whatever broke the capture is not repeated eagerly: graphs stay off from here on.
    (void)cudaGetLastError();
    enabled_ = false;
    note_ = std::string("CUDA graphs off: ") +
            (!enqueued.ok() ? enqueued.message() : std::string(cudaGetErrorString(e)));
    return work();
  }
  graphs_.emplace(key, exec);
  e = cudaGraphLaunch(exec, stream);
  if (e != cudaSuccess) return Status::errorf("CUDA graph launch: {}", cudaGetErrorString(e));
  return Status();
}

}  // namespace invar::model::cuda
