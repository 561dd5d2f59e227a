// The CUDA backend of ModelRunner (docs/cuda-backend.md): weights uploaded once as bf16, a bf16
// paged KV cache in device memory, and the forward pass over kernels/cuda on one stream.
// Built only with INVAR_CUDA=ON.
#pragma once

#include <memory>

#include "core/status.h"
#include "model/model_runner.h"

namespace invar::model::cuda {

// Fails with a clear message when there is no usable GPU, the model's shapes are outside what
// the kernels take (head dim 64 or 128; widths multiples of 8), or device memory runs out.
Result<std::unique_ptr<ModelRunner>> make_cuda_runner(const ModelConfig& config,
                                                      const ModelWeights& weights,
                                                      const RunnerOptions& options);

// The config checks of make_cuda_runner (architecture features and shapes the CUDA kernels do
// not implement), callable before any weight is loaded.
Status check_cuda_config(const ModelConfig& config);

}  // namespace invar::model::cuda
