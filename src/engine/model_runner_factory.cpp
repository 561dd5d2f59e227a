#include "engine/model_runner_factory.h"

#include "model/tensor_parallel.h"

#ifdef INVAR_WITH_CUDA
#include "model/cuda/cuda_runner.h"
#endif

namespace invar::engine {

#ifndef INVAR_WITH_CUDA
namespace {

Status no_cuda_backend() {
  return Status::error(StatusCode::invalid_argument,
                       "this build has no CUDA backend: configure with -DINVAR_CUDA=ON "
                       "(docs/cuda-backend.md)");
}

}  // namespace
#endif

Status check_device_config(const model::ModelConfig& config, model::Device device) {
  if (device != model::Device::cuda) return Status();
#ifdef INVAR_WITH_CUDA
  return model::cuda::check_cuda_config(config);
#else
  (void)config;
  return no_cuda_backend();
#endif
}

bool cuda_backend_built() {
#ifdef INVAR_WITH_CUDA
  return true;
#else
  return false;
#endif
}

Status check_tensor_parallel_options(const model::ModelConfig& config,
                                     const model::RunnerOptions& options) {
  const int slices = model::effective_tp_slices(options);
  if (options.tensor_parallel_size == 1 && slices == 0) return Status();
  INVAR_RETURN_IF_ERROR(model::check_tensor_parallel(config, options.tensor_parallel_size, slices));
  if (options.device != model::Device::cuda) return Status();
#ifdef INVAR_WITH_CUDA
  return model::cuda::check_cuda_tensor_parallel(config, options.tensor_parallel_size, slices);
#else
  return no_cuda_backend();
#endif
}

Result<std::unique_ptr<model::ModelRunner>> make_model_runner(const model::ModelConfig& config,
                                                              const model::ModelWeights& weights,
                                                              const model::RunnerOptions& options) {
  const bool sized_from_memory = options.device == model::Device::cuda && options.kv_blocks == 0 &&
                                 options.max_step_tokens > 0;
  if ((options.kv_blocks <= 0 && !sized_from_memory) || options.block_size <= 0)
    return Status::error(StatusCode::invalid_argument,
                         "the KV cache needs at least one block of at least one token");
  if (sized_from_memory &&
      !(options.gpu_memory_utilization > 0.0 && options.gpu_memory_utilization <= 1.0))
    return Status::errorf("--gpu-memory-utilization must be in (0, 1], got {}",
                          options.gpu_memory_utilization);
  INVAR_RETURN_IF_ERROR(check_tensor_parallel_options(config, options));
  switch (options.device) {
    case model::Device::cpu:
      return model::make_cpu_runner(config, weights, options);
    case model::Device::cuda:
#ifdef INVAR_WITH_CUDA
      if (options.tensor_parallel_size > 1 || model::effective_tp_slices(options) > 0)
        return model::cuda::make_tp_cuda_runner(config, weights, options);
      return model::cuda::make_cuda_runner(config, weights, options);
#else
      return no_cuda_backend();
#endif
  }
  return Status::error(StatusCode::invalid_argument, "unknown device");
}

}  // namespace invar::engine
