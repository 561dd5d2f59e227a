// Status from CUDA runtime errors, for the launchers of kernels/cuda (host code only).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

#include "core/status.h"

namespace invar::kernels::cuda {

inline Status cuda_status(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return {};
  return Status::error(std::string(what) + ": " + cudaGetErrorString(e));
}

inline bool aligned_to(const void* p, uintptr_t bytes) {
  return (reinterpret_cast<uintptr_t>(p) & (bytes - 1)) == 0;
}

}  // namespace invar::kernels::cuda
