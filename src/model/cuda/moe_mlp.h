// The MLP of a mixture-of-experts layer in the CUDA forward pass (kernels/cuda/moe.h says what
// each step computes and why no bit of a token depends on the other tokens of the step).
//
//   invariant: router logits (f32) -> route -> group by expert -> gather -> grouped GEMM gate/up
//              -> SiLU-mul -> grouped GEMM down -> combine in expert id order. All on the
//              device: a step graph captures it.
//   fast:      the usual path, the baseline and the negative control: the router is a cuBLAS
//              GEMM with bf16 logits (its kernel follows the token count), the group sizes
//              come to the host (one sync per layer) and each expert's GEMMs run through
//              cuBLAS, whose kernel follows the group's size. No graph can hold the sync, so a
//              fast-mode MoE runner launches its steps eagerly.
//   T = tokens, E = experts, k = experts per token, H = hidden, I_e = expert intermediate size,
//   R = T * k grouped rows
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "core/hash.h"
#include "core/status.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/gemm.h"
#include "kernels/types.h"
#include "model/config.h"
#include "model/cuda/device_weights.h"

namespace invar::model {
// model/activation_probe.h; declared here so that CUDA sources (C++17) can include this header.
enum class ProbeOp : uint8_t;
}  // namespace invar::model

namespace invar::model::cuda {

class MoeMlp {
 public:
  // Hands a device tensor to the runner's probe: (op, data, is_f32, rows, width).
  using Probe = std::function<void(ProbeOp, const void*, bool, int64_t, int64_t)>;

  explicit MoeMlp(const ModelConfig& config) : c_(config) {}

  // Sizes the scratch for steps of up to `tokens` tokens and finds the grouped GEMM's grid.
  // Call outside graph capture, with no queued work reading the old buffers.
  Status reserve(int tokens, int device);

  // The buffers' addresses, for the step graph's key.
  void add_to_key(Fnv1a64& key) const;

  // out[T, H] = the expert mixture of h[T, H] with the weights of sparse layer `w`.
  Status run(const DeviceLayer& w, const __nv_bfloat16* h, int tokens, __nv_bfloat16* out,
             kernels::KernelMode mode, kernels::cuda::CudaGemm& gemm, cudaStream_t stream,
             const Probe& probe);

 private:
  Status experts_invariant(const DeviceLayer& w, int rows, cudaStream_t stream);
  Status experts_fast(const DeviceLayer& w, kernels::cuda::CudaGemm& gemm, cudaStream_t stream);

  const ModelConfig& c_;
  int ctas_ = 0;  // the grouped GEMM's persistent grid
  kernels::cuda::DeviceBuffer logits_, ids_, weights_, counts_, starts_, row_of_pick_,
      token_of_row_, x_, gate_up_, act_, y_, workspace_;
  std::vector<int32_t> host_starts_;  // fast mode
};

}  // namespace invar::model::cuda
