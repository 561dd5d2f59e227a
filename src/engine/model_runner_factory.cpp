#include "engine/model_runner_factory.h"

#ifdef INVAR_WITH_CUDA
#include "model/cuda/cuda_runner.h"
#endif

namespace invar::engine {

bool cuda_backend_built() {
#ifdef INVAR_WITH_CUDA
  return true;
#else
  return false;
#endif
}

Result<std::unique_ptr<model::ModelRunner>> make_model_runner(const model::ModelConfig& config,
                                                              const model::ModelWeights& weights,
                                                              const model::RunnerOptions& options) {
  if (options.kv_blocks <= 0 || options.block_size <= 0)
    return Status::error(StatusCode::invalid_argument,
                         "the KV cache needs at least one block of at least one token");
  switch (options.device) {
    case model::Device::cpu: return model::make_cpu_runner(config, weights, options);
    case model::Device::cuda:
#ifdef INVAR_WITH_CUDA
      return model::cuda::make_cuda_runner(config, weights, options);
#else
      return Status::error(StatusCode::invalid_argument,
                           "this build has no CUDA backend: configure with -DINVAR_CUDA=ON "
                           "(docs/cuda-backend.md)");
#endif
  }
  return Status::error(StatusCode::invalid_argument, "unknown device");
}

}  // namespace invar::engine
