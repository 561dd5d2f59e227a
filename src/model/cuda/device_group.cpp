#include "model/cuda/device_group.h"

#include <cassert>
#include <cstdio>
#include <cstdlib>

#include "core/tree_sum.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/tree_sum.h"

namespace invar::model::cuda {

namespace kc = kernels::cuda;

class DeviceCommunicator final : public Communicator {
 public:
  DeviceCommunicator(DeviceThreadGroup& group, int rank, cudaStream_t stream)
      : g_(group), rank_(rank), stream_(stream) {}
  int rank() const override { return rank_; }
  int size() const override { return g_.size_; }

  void all_reduce_tree(float* data, int64_t n) override {
    const int r = g_.size_;
    if (r == 1 || n <= 0) return;
    const size_t bytes = size_t(r) * size_t(n) * sizeof(float);
    if (bytes > staging_.bytes()) {  // growing frees memory that a queued tree sum may read
      check(kc::cuda_status(cudaStreamSynchronize(stream_), "tensor-parallel staging"));
      check(staging_.reserve(bytes, "tensor-parallel staging"));
    }
    float* staged = staging_.as<float>();
    all_gather(data, n, staged);
    const float* parts[kc::kMaxDeviceTreeLeaves];
    for (int q = 0; q < r; ++q) parts[q] = staged + int64_t(q) * n;
    check(kc::tree_sum(parts, r, n, data, stream_));
  }

  // Publishes `data`, copies every rank's in rank order, and returns once every rank has
  // copied (so that `data` may be written again).
  void all_gather(const float* data, int64_t n, float* out) override {
    if (g_.size_ == 1) {  // one rank: a copy on its stream, which a CUDA graph can hold
      check(kc::cuda_status(
          cudaMemcpyAsync(out, data, size_t(n) * sizeof(float), cudaMemcpyDeviceToDevice, stream_),
          "tensor-parallel gather copy"));
      return;
    }
    g_.inputs_[size_t(rank_)] = data;
    barrier();  // every rank's buffer is final and published
    for (int q = 0; q < g_.size_; ++q)
      check(kc::cuda_status(cudaMemcpyAsync(out + int64_t(q) * n, g_.inputs_[size_t(q)],
                                            size_t(n) * sizeof(float), cudaMemcpyDefault, stream_),
                            "tensor-parallel gather copy"));
    barrier();  // every rank has its copies
  }

  void barrier() override {
    if (g_.size_ == 1) return;
    check(kc::cuda_status(cudaStreamSynchronize(stream_), "tensor-parallel collective"));
    g_.barrier_.arrive_and_wait();
  }

 private:
  static void check(const Status& s) {
    if (s.ok()) return;
    std::fprintf(stderr, "tensor-parallel collective failed: %s\n", s.message().c_str());
    std::abort();
  }

  DeviceThreadGroup& g_;
  int rank_;
  cudaStream_t stream_;
  kc::DeviceBuffer staging_;  // [R, N] f32 on this rank's device
};

DeviceThreadGroup::DeviceThreadGroup(int size)
    : size_(size), barrier_(size), inputs_(size_t(size), nullptr) {
  assert(is_power_of_two(size) && size <= kc::kMaxDeviceTreeLeaves);
}

std::unique_ptr<Communicator> DeviceThreadGroup::make_communicator(int rank, cudaStream_t stream) {
  assert(rank >= 0 && rank < size_);
  return std::make_unique<DeviceCommunicator>(*this, rank, stream);
}

}  // namespace invar::model::cuda
