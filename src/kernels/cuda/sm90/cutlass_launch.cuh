// The four steps every CUTLASS 3.x device-level GEMM of sm90/ takes to run, with its failures
// turned into the messages the launchers return (nullptr: enqueued).
#pragma once

#include <cuda_runtime_api.h>
#include <cutlass/cutlass.h>

#include <cstddef>

namespace invar::kernels::cuda::sm90 {

template <class Device>
const char* launch_cutlass(const typename Device::Arguments& args, void* workspace,
                           size_t workspace_bytes, cudaStream_t stream) {
  Device gemm;
  if (gemm.can_implement(args) != cutlass::Status::kSuccess) {
    return "CUTLASS refused the problem (K and N must be multiples of 8 for bf16 or 16 for "
           "fp8, strides and pointers 16-byte aligned)";
  }
  if (Device::get_workspace_size(args) > workspace_bytes) {
    return "tile scheduler workspace larger than the one given";
  }
  if (gemm.initialize(args, workspace, stream) != cutlass::Status::kSuccess) {
    return "CUTLASS initialize failed (TMA descriptor or shared-memory attribute)";
  }
  if (gemm.run(stream) != cutlass::Status::kSuccess) return "CUTLASS kernel launch failed";
  return nullptr;
}

}  // namespace invar::kernels::cuda::sm90
