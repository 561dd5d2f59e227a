// The CPU backend over R tensor-parallel ranks that are threads of this process, each with its
// own shard of the weights (tensor_parallel.h), its kv heads' KV cache and a share of the
// threads, joined by a ThreadGroup communicator. A step runs every rank's Transformer at once;
// rank 0's gathered logits are the step's.
#include <algorithm>
#include <thread>

#include "core/communicator.h"
#include "core/thread_pool.h"
#include "kernels/cpu/ops.h"
#include "model/kv_cache.h"
#include "model/model_runner.h"
#include "model/tensor_parallel.h"
#include "model/transformer.h"

namespace invar::model {

int effective_tp_slices(const RunnerOptions& o) {
  if (o.tp_slices >= 0) return o.tp_slices;
  return o.tensor_parallel_size > 1 ? kDefaultTpSlices : 0;
}

namespace {

struct Rank {
  RankShard shard;
  std::unique_ptr<Communicator> comm;
  std::unique_ptr<ThreadPool> pool;
  std::unique_ptr<Transformer> transformer;
  std::unique_ptr<KvCache> cache;
  std::vector<float> logits;  // [L, V] every rank gathers them; rank 0's are returned
  Status status;
};

class TpCpuRunner final : public ModelRunner {
 public:
  TpCpuRunner(const ModelConfig& config, const ModelWeights& weights, const RunnerOptions& o)
      : config_(config), group_(o.tensor_parallel_size), slices_(effective_tp_slices(o)) {
    const int size = o.tensor_parallel_size;
    // The ranks share the threads one would get: each its own pool of an equal part.
    const int threads = std::max(1, ThreadPool::size_for(o.threads) / size);
    for (int r = 0; r < size; ++r) {
      auto rank = std::make_unique<Rank>();
      rank->shard = shard_for_rank(config, weights, {size, r, slices_});
      rank->comm = group_.make_communicator(r);
      rank->pool = std::make_unique<ThreadPool>(threads);
      rank->transformer =
          std::make_unique<Transformer>(rank->shard.config, rank->shard.weights, *rank->pool,
                                        o.kernels, TpRank{&rank->shard, rank->comm.get()});
      rank->cache = std::make_unique<KvCache>(rank->shard.config, std::max(1, o.kv_blocks),
                                              std::max(1, o.block_size), o.kv_dtype);
      ranks_.push_back(std::move(rank));
    }
  }

  Status run_step(const BatchPlan& plan, const std::vector<uint8_t>& needs,
                  const std::vector<kernels::SampleRowParams>& /*draws*/,
                  const std::vector<int32_t>& /*masks*/, StepLogits& out) override {
    for (uint8_t n : needs)
      if (n & kDraw) return Status::error("the CPU runner draws no tokens: sample on the host");
    // Checked once here, so that no rank can leave a collective that the others wait in.
    INVAR_RETURN_IF_ERROR(
        check_batch_plan(plan, config_, kv_blocks(), ranks_[0]->cache->block_size()));
    auto run = [&plan](Rank& r) { r.status = r.transformer->forward(plan, *r.cache, r.logits); };
    std::vector<std::thread> others;
    for (size_t r = 1; r < ranks_.size(); ++r) others.emplace_back(run, std::ref(*ranks_[r]));
    run(*ranks_[0]);
    for (std::thread& t : others) t.join();
    for (const auto& r : ranks_) INVAR_RETURN_IF_ERROR(r->status);
    out.rows.swap(ranks_[0]->logits);
    const size_t rows = plan.logit_rows.size();
    out.argmax.resize(rows);
    out.max_logit.resize(rows);
    out.log_z.resize(rows);
    kernels::cpu::logit_summary(out.rows.data(), int64_t(rows), config_.vocab_size,
                                out.argmax.data(), out.max_logit.data(), out.log_z.data(),
                                *ranks_[0]->pool);
    return Status();
  }

  Status copy_kv_block(int32_t src, int32_t dst) override {
    for (const auto& r : ranks_) INVAR_RETURN_IF_ERROR(r->cache->copy_block(src, dst));
    return Status();
  }

  // The probe sees rank 0: whole rows after o_proj, down_proj and the logits, rank 0's heads
  // and intermediate columns before them.
  void set_probe(ActivationProbe* probe) override { ranks_[0]->transformer->set_probe(probe); }
  int kv_blocks() const override { return ranks_[0]->cache->num_blocks(); }
  int block_size() const override { return ranks_[0]->cache->block_size(); }
  // With slices the bits are those of every rank count (hence no size in the id).
  std::string backend_id() const override {
    return slices_ > 0 ? "cpu-tp-slices" + std::to_string(slices_)
                       : "cpu-tp" + std::to_string(group_.size()) + "-unsliced";
  }

 private:
  const ModelConfig& config_;
  ThreadGroup group_;
  int slices_;
  std::vector<std::unique_ptr<Rank>> ranks_;
};

}  // namespace

std::unique_ptr<ModelRunner> make_tp_cpu_runner(const ModelConfig& config,
                                                const ModelWeights& weights,
                                                const RunnerOptions& options) {
  return std::make_unique<TpCpuRunner>(config, weights, options);
}

}  // namespace invar::model
