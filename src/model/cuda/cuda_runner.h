// The CUDA backend of ModelRunner (docs/cuda-backend.md): weights uploaded once as bf16, a bf16
// paged KV cache in device memory, and the forward pass over kernels/cuda on one stream.
// Built only with INVAR_CUDA=ON.
#pragma once

#include <cstddef>
#include <memory>

#include "core/status.h"
#include "model/model_runner.h"

namespace invar::model {
struct RankShard;
}  // namespace invar::model

namespace invar::model::cuda {

class RankGroup;

// Fails with a clear message when there is no usable GPU, the model's shapes are outside what
// the kernels take (head dim 64 or 128; widths multiples of 8), or device memory runs out.
Result<std::unique_ptr<ModelRunner>> make_cuda_runner(const ModelConfig& config,
                                                      const ModelWeights& weights,
                                                      const RunnerOptions& options);

// The config checks of make_cuda_runner (architecture features and shapes the CUDA kernels do
// not implement), callable before any weight is loaded.
Status check_cuda_config(const ModelConfig& config);

// What tensor parallelism over `size` ranks and `slices` K slices needs on CUDA beyond
// check_tensor_parallel: every rank's widths (its vocabulary share, its K slices) multiples of 8
// for the GEMM, and no FP8 checkpoint (its 128 x 128 blocks are not cut into slices yet).
Status check_cuda_tensor_parallel(const ModelConfig& config, int size, int slices);

// One tensor-parallel rank of the CUDA backend: a runner over a RankShard whose KV cache is
// allocated by its group (tp_cuda_runner.cpp), which gives every rank the same block count.
class CudaRank : public ModelRunner {
 public:
  virtual Status allocate_kv_cache(int blocks) = 0;
  virtual size_t kv_block_bytes() const = 0;  // device memory of one KV block, every layer
  virtual int device() const = 0;
};

// Rank `rank` of `group` over `shard` (both must outlive it) on options.cuda_device, with its
// weights and step buffers on the device and no KV cache yet.
Result<std::unique_ptr<CudaRank>> make_cuda_rank(const ModelConfig& config, const RankShard& shard,
                                                 RankGroup& group, int rank,
                                                 const RunnerOptions& options);

// The CUDA backend over options.tensor_parallel_size ranks (threads of this process): rank r on
// GPU cuda_device + r when that many are visible, joined by NCCL in a build with INVAR_NCCL,
// else every rank on cuda_device (the one-GPU check of docs/tensor-parallel.md), joined by
// DeviceThreadGroup. The options must have passed check_tensor_parallel and
// check_cuda_tensor_parallel.
Result<std::unique_ptr<ModelRunner>> make_tp_cuda_runner(const ModelConfig& config,
                                                         const ModelWeights& weights,
                                                         const RunnerOptions& options);

}  // namespace invar::model::cuda
