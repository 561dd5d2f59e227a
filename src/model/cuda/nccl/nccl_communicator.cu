#include "model/cuda/nccl/nccl_communicator.h"

#include <cstdio>
#include <cstdlib>
#include <utility>

#include "core/tree_sum.h"
#include "kernels/cuda/tree_sum.h"

namespace invar::model::cuda {

NcclCommunicator::NcclCommunicator(ncclComm_t comm, cudaStream_t stream)
    : comm_(comm), stream_(stream) {
  check(ncclCommUserRank(comm_, &rank_), "ncclCommUserRank");
  check(ncclCommCount(comm_, &size_), "ncclCommCount");
  if (!is_power_of_two(size_) || size_ > kernels::cuda::kMaxDeviceTreeLeaves) {
    std::fprintf(stderr, "NcclCommunicator: %d ranks; the fixed tree needs a power of two up to 8\n",
                 size_);
    std::abort();
  }
  check(cudaMalloc(&token_, sizeof(int)), "cudaMalloc");
}

NcclCommunicator::~NcclCommunicator() {
  cudaFree(gathered_);
  cudaFree(token_);
}

// Failures of the collectives are not recoverable mid-step (the other ranks would wait in the
// next one forever): report and stop.
void NcclCommunicator::check(ncclResult_t r, const char* what) {
  if (r == ncclSuccess) return;
  std::fprintf(stderr, "NCCL %s failed: %s\n", what, ncclGetErrorString(r));
  std::abort();
}

void NcclCommunicator::check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  std::fprintf(stderr, "CUDA %s failed: %s\n", what, cudaGetErrorString(e));
  std::abort();
}

void NcclCommunicator::all_reduce_tree(float* data, int64_t n) {
  if (size_ == 1 || n <= 0) return;
  if (n > capacity_) {
    check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
    cudaFree(gathered_);
    check(cudaMalloc(&gathered_, size_t(size_) * size_t(n) * sizeof(float)), "cudaMalloc");
    capacity_ = n;
  }
  // Every rank's buffer, in rank order, on every GPU; then the same tree on each of them.
  check(ncclAllGather(data, gathered_, size_t(n), ncclFloat, comm_, stream_), "ncclAllGather");
  const float* parts[kernels::cuda::kMaxDeviceTreeLeaves];
  for (int r = 0; r < size_; ++r) parts[r] = gathered_ + int64_t(r) * n;
  const Status st = kernels::cuda::tree_sum(parts, size_, n, data, stream_);
  if (!st.ok()) {
    std::fprintf(stderr, "NCCL all_reduce_tree: %s\n", st.message().c_str());
    std::abort();
  }
}

void NcclCommunicator::all_gather(const float* data, int64_t n, float* out) {
  check(ncclAllGather(data, out, size_t(n), ncclFloat, comm_, stream_), "ncclAllGather");
}

Result<std::unique_ptr<NcclGroup>> NcclGroup::create(const std::vector<int>& devices) {
  std::unique_ptr<NcclGroup> group(new NcclGroup());
  group->comms_.resize(devices.size());
  const ncclResult_t r = ncclCommInitAll(group->comms_.data(), int(devices.size()), devices.data());
  if (r != ncclSuccess) {
    group->comms_.clear();
    return Status::errorf("NCCL: ncclCommInitAll over {} GPUs failed: {}", devices.size(),
                          ncclGetErrorString(r));
  }
  return Result<std::unique_ptr<NcclGroup>>(std::move(group));
}

NcclGroup::~NcclGroup() {
  for (ncclComm_t c : comms_) ncclCommDestroy(c);
}

std::unique_ptr<Communicator> NcclGroup::make_communicator(int rank, cudaStream_t stream) {
  return std::make_unique<NcclCommunicator>(comms_[size_t(rank)], stream);
}

void NcclCommunicator::barrier() {
  // An integer sum (exact, whatever the order) that every rank must join, then the stream.
  check(ncclAllReduce(token_, token_, 1, ncclInt, ncclSum, comm_, stream_), "ncclAllReduce");
  check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
}

}  // namespace invar::model::cuda
