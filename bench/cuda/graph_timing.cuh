// Timing of GPU calls for the CUDA benchmarks: each variant's calls captured once as a CUDA
// graph, the variants' graphs replayed interleaved and timed with events (METHOD.md).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <functional>
#include <vector>

#include "bench_util.cuh"

namespace {

// One call of a variant on the i-th rotated input.
using Enqueue = std::function<invar::Status(size_t i)>;

// One variant's calls over the rotated inputs, captured once as a graph.
struct Timed {
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  std::vector<double> us;  // per call, one entry per replay
};

void capture_variant(const Enqueue& call, const char* name, size_t inputs, int launches,
                     cudaStream_t stream, Timed& t) {
  auto enqueue = [&](int i) { check(call(size_t(i) % inputs), name); };
  for (int i = 0; i < 3; ++i) enqueue(i);  // warm-up
  CHECK_CUDA(cudaStreamSynchronize(stream));
  CHECK_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < launches; ++i) enqueue(i);
  CHECK_CUDA(cudaStreamEndCapture(stream, &t.graph));
  CHECK_CUDA(cudaGraphInstantiate(&t.exec, t.graph, 0));
  CHECK_CUDA(cudaGraphLaunch(t.exec, stream));  // warm-up replay
  CHECK_CUDA(cudaStreamSynchronize(stream));
}

// Replays the variants' graphs interleaved (A B C A B C ...), so that clock and temperature
// drift during the run falls on every variant alike; returns the median time of one call.
std::vector<double> time_variants(std::vector<Timed>& ts, int launches, int reps,
                                  cudaStream_t stream) {
  cudaEvent_t a, b;
  CHECK_CUDA(cudaEventCreate(&a));
  CHECK_CUDA(cudaEventCreate(&b));
  for (int r = 0; r < reps; ++r) {
    for (Timed& t : ts) {
      CHECK_CUDA(cudaEventRecord(a, stream));
      CHECK_CUDA(cudaGraphLaunch(t.exec, stream));
      CHECK_CUDA(cudaEventRecord(b, stream));
      CHECK_CUDA(cudaEventSynchronize(b));
      float ms = 0;
      CHECK_CUDA(cudaEventElapsedTime(&ms, a, b));
      t.us.push_back(double(ms) * 1e3 / launches);
    }
  }
  CHECK_CUDA(cudaEventDestroy(a));
  CHECK_CUDA(cudaEventDestroy(b));
  std::vector<double> med;
  for (Timed& t : ts) {
    std::sort(t.us.begin(), t.us.end());
    med.push_back(t.us[t.us.size() / 2]);
    CHECK_CUDA(cudaGraphExecDestroy(t.exec));
    CHECK_CUDA(cudaGraphDestroy(t.graph));
  }
  return med;
}

}  // namespace
