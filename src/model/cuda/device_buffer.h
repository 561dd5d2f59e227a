// Owned CUDA memory for the CUDA backend: device buffers that grow to the largest step, and
// pinned host buffers for the per-step uploads and downloads.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <string>
#include <utility>

#include "core/status.h"

namespace invar::model::cuda {

inline Status cuda_ok(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return Status();
  return Status::error(std::string("CUDA backend: ") + what + ": " + cudaGetErrorString(e));
}

// Device (pinned == false) or pinned host (pinned == true) memory; move-only.
template <bool Pinned>
class CudaMemory {
 public:
  CudaMemory() = default;
  ~CudaMemory() { release(); }
  CudaMemory(CudaMemory&& o) noexcept : p_(std::exchange(o.p_, nullptr)), bytes_(o.bytes_) {}
  CudaMemory& operator=(CudaMemory&& o) noexcept {
    if (this != &o) {
      release();
      p_ = std::exchange(o.p_, nullptr);
      bytes_ = o.bytes_;
    }
    return *this;
  }
  CudaMemory(const CudaMemory&) = delete;
  CudaMemory& operator=(const CudaMemory&) = delete;

  // Makes room for `bytes`; the old contents are lost when it grows. The caller makes sure no
  // queued work still uses the old memory.
  Status reserve(size_t bytes, const char* what) {
    if (bytes <= bytes_ && p_) return Status();
    release();
    const size_t n = bytes ? bytes : 1;
    cudaError_t e = Pinned ? cudaMallocHost(&p_, n) : cudaMalloc(&p_, n);
    if (e != cudaSuccess) {
      p_ = nullptr;
      return Status::error(StatusCode::resource_exhausted,
                           std::string("CUDA backend: cannot allocate ") + std::to_string(bytes) +
                               " bytes for " + what + ": " + cudaGetErrorString(e));
    }
    bytes_ = n;
    return Status();
  }

  template <typename T = void>
  T* as() const {
    return static_cast<T*>(p_);
  }
  size_t bytes() const { return bytes_; }

 private:
  void release() {
    if (!p_) return;
    if (Pinned)
      cudaFreeHost(p_);
    else
      cudaFree(p_);
    p_ = nullptr;
    bytes_ = 0;
  }
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

using DeviceBuffer = CudaMemory<false>;
using PinnedBuffer = CudaMemory<true>;

}  // namespace invar::model::cuda
