// A Communicator over device buffers for tensor-parallel ranks that are threads of this process,
// each with its own CUDA stream, on one GPU or on several (docs/tensor-parallel.md). It is what
// the CUDA runner's ranks use before NCCL does: with every rank on one GPU it proves, on a
// one-GPU machine, that the bits are the same at every rank count.
//
// Every collective syncs the rank's stream and meets the other ranks at a host barrier, then
// copies the other ranks' buffers (cudaMemcpyAsync, which crosses devices with or without peer
// access). all_reduce_tree gathers every rank's buffer and sums them on each rank's device in
// the fixed pairwise tree (kernels/cuda/tree_sum.h), in rank order (R7): the tree of
// ThreadGroup and NcclCommunicator. Nothing here can be captured in a CUDA graph (host
// barriers), so the ranks launch eagerly; a group of one rank only enqueues copies, which a graph
// can hold (--tp-invariant-slices on one GPU). A CUDA failure inside a collective aborts with a
// message: the other ranks would wait for this one forever.
//   R = ranks, N = elements
#pragma once

#include <cuda_runtime_api.h>

#include <barrier>
#include <memory>
#include <vector>

#include "core/communicator.h"
#include "model/cuda/rank_group.h"

namespace invar::model::cuda {

class DeviceThreadGroup final : public RankGroup {
 public:
  explicit DeviceThreadGroup(int size);
  int size() const override { return size_; }
  std::unique_ptr<Communicator> make_communicator(int rank, cudaStream_t stream) override;
  bool graph_safe() const override { return size_ == 1; }

 private:
  friend class DeviceCommunicator;
  int size_;
  std::barrier<> barrier_;
  std::vector<const float*> inputs_;  // [R] each rank's device buffer of the collective in flight
};

}  // namespace invar::model::cuda
