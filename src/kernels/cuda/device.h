// The CUDA foundation every launcher, the CUDA model runner and the GPU tests share: CUDA errors
// as Status values, and owned device / pinned host memory. Host code only.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <string>
#include <utility>

#include "core/status.h"

namespace invar::kernels::cuda {

// Status of a CUDA runtime call: OK, or "<what>: <CUDA's message>".
inline Status cuda_status(cudaError_t e, const std::string& what) {
  if (e == cudaSuccess) return {};
  return Status::error(what + ": " + cudaGetErrorString(e));
}

// Device (Pinned == false) or pinned host (Pinned == true) memory; move-only, freed on
// destruction. Allocation is by reserve() only, so a failure is always a Status.
template <bool Pinned>
class CudaMemory {
 public:
  CudaMemory() = default;
  ~CudaMemory() { release(); }
  CudaMemory(CudaMemory&& o) noexcept
      : p_(std::exchange(o.p_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  CudaMemory& operator=(CudaMemory&& o) noexcept {
    if (this != &o) {
      release();
      p_ = std::exchange(o.p_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }
  CudaMemory(const CudaMemory&) = delete;
  CudaMemory& operator=(const CudaMemory&) = delete;

  // Makes room for `bytes`; the old contents are lost when it grows. The caller makes sure no
  // queued work still uses the old memory. `what` names the buffer in the error.
  Status reserve(size_t bytes, const std::string& what) {
    if (p_ && bytes <= bytes_) return {};
    release();
    const size_t n = bytes ? bytes : 1;
    const cudaError_t e = Pinned ? cudaMallocHost(&p_, n) : cudaMalloc(&p_, n);
    if (e != cudaSuccess) {
      p_ = nullptr;
      return Status::error(StatusCode::resource_exhausted,
                           "cannot allocate " + std::to_string(bytes) + " bytes of " +
                               (Pinned ? "pinned host" : "device") + " memory for " + what + ": " +
                               cudaGetErrorString(e));
    }
    bytes_ = n;
    return {};
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

}  // namespace invar::kernels::cuda
