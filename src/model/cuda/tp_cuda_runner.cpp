// The CUDA backend over R tensor-parallel ranks that are threads of this process
// (docs/tensor-parallel.md): each rank a CudaRunner over its shard (tensor_parallel.h), with its
// own stream, KV cache of its kv heads and GPU, joined by NCCL (ranks on different GPUs, a build
// with INVAR_NCCL) or a DeviceThreadGroup. A step runs every rank's at once; rank 0 gathers the
// logits, summarizes and draws, and its output is the step's.
#include <algorithm>
#include <cstdio>
#include <string>
#include <thread>

#include "kernels/cuda/device.h"
#include "model/cuda/cuda_runner.h"
#include "model/cuda/device_group.h"
#include "model/tensor_parallel.h"

#ifdef INVAR_WITH_NCCL
#include "model/cuda/nccl/nccl_communicator.h"
#endif

namespace invar::model::cuda {
namespace {

using kernels::cuda::cuda_status;

class TpCudaRunner final : public ModelRunner {
 public:
  TpCudaRunner(const ModelConfig& config, const RunnerOptions& o)
      : config_(config), options_(o), slices_(effective_tp_slices(o)) {}

  Status init(const ModelWeights& weights) {
    const int size = options_.tensor_parallel_size;
    int visible = 0;
    if (cudaGetDeviceCount(&visible) != cudaSuccess || visible == 0)
      return Status::error(StatusCode::invalid_argument,
                           "--device cuda: no CUDA GPU is visible (nvidia-smi lists none, or the "
                           "driver is missing)");
    const bool one_gpu = options_.cuda_device + size > visible;
    if (one_gpu && size > 1)
      std::fprintf(stderr,
                   "invar: %d tensor-parallel ranks on GPU %d (%d visible from it): the ranks "
                   "share one GPU, which checks the bits, not the speed\n",
                   size, options_.cuda_device, visible - options_.cuda_device);
    std::vector<int> devices;
    for (int r = 0; r < size; ++r) devices.push_back(options_.cuda_device + (one_gpu ? 0 : r));
    INVAR_RETURN_IF_ERROR(make_group(devices, one_gpu));
    shards_.reserve(size_t(size));
    for (int r = 0; r < size; ++r)
      shards_.push_back(shard_for_rank(config_, weights, {size, r, slices_}));
    for (int r = 0; r < size; ++r) {
      RunnerOptions o = options_;
      o.cuda_device = devices[size_t(r)];
      // DeviceThreadGroup's collectives of several ranks meet at host barriers, which no CUDA
      // graph can hold; one rank's only enqueue copies, as NCCL's do.
      if (!group_->graph_safe()) o.cuda_graphs = o.pad_graph_batches = false;
      if (r > 0) o.threads = 1;  // only rank 0 widens logits rows on the host
      INVAR_ASSIGN_OR_RETURN(auto rank, make_cuda_rank(config_, shards_[size_t(r)], *group_, r, o));
      ranks_.push_back(std::move(rank));
    }
    int kv_blocks = options_.kv_blocks;
    if (kv_blocks <= 0) {
      INVAR_ASSIGN_OR_RETURN(kv_blocks, blocks_from_memory());
    }
    for (auto& rank : ranks_) INVAR_RETURN_IF_ERROR(rank->allocate_kv_cache(kv_blocks));
    others_.resize(ranks_.size());
    return Status();
  }

  Status run_step(const BatchPlan& plan, const std::vector<uint8_t>& needs,
                  const std::vector<kernels::SampleRowParams>& draws,
                  const std::vector<int32_t>& masks, StepLogits& out) override {
    // Checked once here, so that no rank can leave a collective that the others wait in.
    INVAR_RETURN_IF_ERROR(check_batch_plan(plan, config_, kv_blocks(), block_size()));
    std::vector<Status> status(ranks_.size());
    auto run = [&](size_t r) {
      status[r] = ranks_[r]->run_step(plan, needs, draws, masks, r == 0 ? out : others_[r]);
    };
    std::vector<std::thread> threads;
    for (size_t r = 1; r < ranks_.size(); ++r) threads.emplace_back(run, r);
    run(0);
    for (std::thread& t : threads) t.join();
    for (const Status& s : status) INVAR_RETURN_IF_ERROR(s);
    return Status();
  }
  bool draws_on_device() const override { return true; }

  Status copy_kv_block(int32_t src, int32_t dst) override {
    for (auto& rank : ranks_) INVAR_RETURN_IF_ERROR(rank->copy_kv_block(src, dst));
    return Status();
  }

  // The probe sees rank 0: whole rows after o_proj, down_proj and the logits, rank 0's heads
  // and intermediate columns before them.
  void set_probe(ActivationProbe* probe) override { ranks_[0]->set_probe(probe); }
  int kv_blocks() const override { return ranks_[0]->kv_blocks(); }
  int block_size() const override { return ranks_[0]->block_size(); }
  // With slices the bits are those of every rank count (hence no size in the id).
  std::string backend_id() const override {
    const std::string base = ranks_[0]->backend_id();
    return slices_ > 0 ? base + "-tp-slices" + std::to_string(slices_)
                       : base + "-tp" + std::to_string(group_->size()) + "-unsliced";
  }

 private:
  // NCCL for ranks on different GPUs where the build has it, else the host-barrier group.
  Status make_group(const std::vector<int>& devices, bool one_gpu) {
#ifdef INVAR_WITH_NCCL
    if (!one_gpu && devices.size() > 1) {
      INVAR_ASSIGN_OR_RETURN(group_, NcclGroup::create(devices));
      return Status();
    }
#else
    (void)one_gpu;
#endif
    group_ = std::make_unique<DeviceThreadGroup>(int(devices.size()));
    return Status();
  }

  // The most KV blocks every rank can hold: on each GPU, what --gpu-memory-utilization leaves
  // once every rank's weights and activations are there, shared by the ranks on that GPU.
  Result<int> blocks_from_memory() const {
    double fewest = double(INT32_MAX / 2);
    for (const auto& rank : ranks_) {
      int sharing = 0;
      for (const auto& other : ranks_) sharing += other->device() == rank->device();
      size_t free_bytes = 0, total_bytes = 0;
      INVAR_RETURN_IF_ERROR(cuda_status(cudaSetDevice(rank->device()), "cudaSetDevice"));
      INVAR_RETURN_IF_ERROR(cuda_status(cudaMemGetInfo(&free_bytes, &total_bytes),
                                        "CUDA backend: device memory query"));
      const double room =
          options_.gpu_memory_utilization * double(total_bytes) - double(total_bytes - free_bytes);
      fewest = std::min(fewest, room / sharing / double(rank->kv_block_bytes()));
    }
    if (fewest < 1.0)
      return Status::errorf(
          "--device cuda: the {} tensor-parallel ranks' weights and activations leave no room "
          "for the KV cache under --gpu-memory-utilization {}: raise it, lower --max-running or "
          "the step budget, or give --kv-blocks",
          ranks_.size(), options_.gpu_memory_utilization);
    return int(fewest);
  }

  const ModelConfig& config_;
  RunnerOptions options_;
  std::unique_ptr<RankGroup> group_;
  int slices_;
  std::vector<RankShard> shards_;  // each rank's; they view `weights`, which must outlive this
  std::vector<std::unique_ptr<CudaRank>> ranks_;
  std::vector<StepLogits> others_;  // ranks past 0 fill nothing in them; kept to reuse the memory
};

}  // namespace

Result<std::unique_ptr<ModelRunner>> make_tp_cuda_runner(const ModelConfig& config,
                                                         const ModelWeights& weights,
                                                         const RunnerOptions& options) {
  auto runner = std::make_unique<TpCudaRunner>(config, options);
  INVAR_RETURN_IF_ERROR(runner->init(weights));
  return std::unique_ptr<ModelRunner>(std::move(runner));
}

}  // namespace invar::model::cuda
