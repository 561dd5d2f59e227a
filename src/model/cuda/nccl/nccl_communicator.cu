#include "model/cuda/nccl/nccl_communicator.h"

#include <cstdio>
#include <cstdlib>
#include <utility>

#include "core/tree_sum.h"

namespace invar::model::cuda {

namespace {

// data[i] = the pairwise tree over parts[0..R)[i], parts laid out [R, n]: the element-wise
// recipe of core/tree_sum.h, with adds that the compiler may not contract or reorder.
__global__ void tree_sum_kernel(const float* __restrict__ parts, int ranks, int64_t n,
                                float* __restrict__ data) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  float v[kMaxTreeLeaves];
  for (int r = 0; r < ranks; ++r) v[r] = parts[int64_t(r) * n + i];
  for (int w = ranks; w > 1; w /= 2)
    for (int j = 0; j < w / 2; ++j) v[j] = __fadd_rn(v[2 * j], v[2 * j + 1]);
  data[i] = v[0];
}

}  // namespace

NcclCommunicator::NcclCommunicator(ncclComm_t comm, cudaStream_t stream)
    : comm_(comm), stream_(stream) {
  check(ncclCommUserRank(comm_, &rank_), "ncclCommUserRank");
  check(ncclCommCount(comm_, &size_), "ncclCommCount");
  if (!is_power_of_two(size_) || size_ > kMaxTreeLeaves) {
    std::fprintf(stderr, "NcclCommunicator: %d ranks; the fixed tree needs a power of two\n",
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
  constexpr int kThreads = 256;
  const unsigned blocks = unsigned((n + kThreads - 1) / kThreads);
  tree_sum_kernel<<<blocks, kThreads, 0, stream_>>>(gathered_, size_, n, data);
  check(cudaGetLastError(), "tree_sum_kernel");
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
