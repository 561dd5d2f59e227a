// A Communicator over NCCL for ranks that are GPUs (one rank per process or thread, each with its
// own device). NOT RUN: no multi-GPU machine has been available; it compiles (with
// -DINVAR_CUDA=ON -DINVAR_NCCL=ON), and the CUDA runner uses it (NcclGroup) when its
// tensor-parallel ranks are on different GPUs. docs/tensor-parallel.md says what it is for.
//
// The buffers are device pointers; every call is enqueued on the communicator's stream and
// returns without waiting (barrier() waits). ncclAllReduce is not used for sums: NCCL picks
// its reduction order by algorithm (ring, tree) and topology, so the bits would depend on the
// machine. all_reduce_tree gathers every rank's buffer instead and sums it on each GPU in the
// fixed pairwise tree of core/tree_sum.h, in rank order (R7): the same bits as ThreadGroup.
//   R = ranks, N = elements
#pragma once

#include <cuda_runtime.h>
#include <nccl.h>

#include <memory>
#include <vector>

#include "core/communicator.h"
#include "core/status.h"
#include "model/cuda/rank_group.h"

namespace invar::model::cuda {

class NcclCommunicator final : public Communicator {
 public:
  // `comm` was made by ncclCommInitRank (the caller owns it and the stream).
  NcclCommunicator(ncclComm_t comm, cudaStream_t stream);
  ~NcclCommunicator() override;
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void all_reduce_tree(float* data, int64_t n) override;               // data: device [N]
  void all_gather(const float* data, int64_t n, float* out) override;  // device [N] -> [R, N]
  void barrier() override;

 private:
  void check(ncclResult_t r, const char* what);
  void check(cudaError_t e, const char* what);

  ncclComm_t comm_;
  cudaStream_t stream_;
  int rank_ = 0, size_ = 1;
  float* gathered_ = nullptr;  // device [R, capacity]
  int64_t capacity_ = 0;
  int* token_ = nullptr;  // device: one int that barrier() all-reduces
};

// The ranks of one process, rank r on devices[r] (all different), joined by NCCL
// communicators made together (ncclCommInitAll). The collectives only enqueue work, so the
// ranks keep CUDA graphs (NCCL's own kernels are captured with the step).
class NcclGroup final : public RankGroup {
 public:
  static Result<std::unique_ptr<NcclGroup>> create(const std::vector<int>& devices);
  ~NcclGroup() override;
  int size() const override { return int(comms_.size()); }
  std::unique_ptr<Communicator> make_communicator(int rank, cudaStream_t stream) override;
  bool graph_safe() const override { return true; }

 private:
  NcclGroup() = default;
  std::vector<ncclComm_t> comms_;
};

}  // namespace invar::model::cuda
