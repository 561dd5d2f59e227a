// Makes the ModelRunner of the device the options ask for. The CUDA backend exists only in
// builds with INVAR_CUDA=ON; elsewhere asking for it is a clear error, never a crash.
#pragma once

#include <memory>

#include "core/status.h"
#include "model/model_runner.h"

namespace invar::engine {

Result<std::unique_ptr<model::ModelRunner>> make_model_runner(const model::ModelConfig& config,
                                                              const model::ModelWeights& weights,
                                                              const model::RunnerOptions& options);

// What make_model_runner would refuse for the config alone (no CUDA backend in this build, or a
// model the CUDA kernels do not implement), checked before any weight is loaded or generated.
Status check_device_config(const model::ModelConfig& config, model::Device device);

// What the options' tensor parallelism (tensor_parallel_size, tp_slices) needs of the model and
// device (the CPU only, for now), checked by make_model_runner too.
Status check_tensor_parallel_options(const model::ModelConfig& config,
                                     const model::RunnerOptions& options);

// Whether this build has the CUDA backend.
bool cuda_backend_built();

}  // namespace invar::engine
