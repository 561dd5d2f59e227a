// The seam between the CUDA runner's tensor-parallel ranks and what joins them
// (docs/tensor-parallel.md). Its own header, free of <barrier>, so that NCCL's .cu file can
// implement it.
#pragma once

#include <cuda_runtime_api.h>

#include <memory>

#include "core/communicator.h"

namespace invar::model::cuda {

// What the CUDA runner's ranks are joined by: DeviceThreadGroup (device_group.h), or NCCL
// (nccl/nccl_communicator.h) when the ranks are on different GPUs and the build has it.
class RankGroup {
 public:
  virtual ~RankGroup() = default;
  virtual int size() const = 0;
  // Rank `rank`'s end; its collectives run on `stream` (of the current device when called) and
  // must come from one thread, in the same order on every rank.
  virtual std::unique_ptr<Communicator> make_communicator(int rank, cudaStream_t stream) = 0;
  // Whether the collectives only enqueue work on the stream, so that a CUDA graph can hold them.
  virtual bool graph_safe() const = 0;
};

}  // namespace invar::model::cuda
