// The CPU backend of ModelRunner: Transformer (kernels/cpu) with its own thread pool and a host
// KV cache.
#include <algorithm>

#include "core/thread_pool.h"
#include "kernels/cpu/ops.h"
#include "model/kv_cache.h"
#include "model/model_runner.h"
#include "model/transformer.h"

namespace invar::model {

const char* device_name(Device d) { return d == Device::cpu ? "cpu" : "cuda"; }

Status ModelRunner::forward(const BatchPlan& plan, std::vector<float>& logits) {
  StepLogits out;
  out.rows = std::move(logits);  // keeps the caller's capacity
  Status st = run_step(plan, {}, {}, {}, out);
  logits = std::move(out.rows);
  return st;
}

Result<Device> parse_device(std::string_view name) {
  if (name == "cpu") return Device::cpu;
  if (name == "cuda") return Device::cuda;
  return Status::error(StatusCode::invalid_argument,
                       fmt::format("unknown device '{}': expected cpu or cuda", name));
}

namespace {

class CpuRunner final : public ModelRunner {
 public:
  CpuRunner(const ModelConfig& config, const ModelWeights& weights, const RunnerOptions& o)
      : pool_(o.threads),
        transformer_(config, weights, pool_, o.kernels),
        cache_(config, std::max(1, o.kv_blocks), std::max(1, o.block_size), o.kv_dtype),
        vocab_(config.vocab_size) {}

  // The CPU computes every row anyway: every row is written, whatever `needs` asks.
  Status run_step(const BatchPlan& plan, const std::vector<uint8_t>& needs,
                  const std::vector<kernels::SampleRowParams>& /*draws*/,
                  const std::vector<int32_t>& /*masks*/, StepLogits& out) override {
    for (uint8_t n : needs)
      if (n & kDraw) return Status::error("the CPU runner draws no tokens: sample on the host");
    INVAR_RETURN_IF_ERROR(transformer_.forward(plan, cache_, out.rows));
    const size_t rows = plan.logit_rows.size();
    out.argmax.resize(rows);
    out.max_logit.resize(rows);
    out.log_z.resize(rows);
    kernels::cpu::logit_summary(out.rows.data(), int64_t(rows), vocab_, out.argmax.data(),
                                out.max_logit.data(), out.log_z.data(), pool_);
    return Status();
  }

  Status copy_kv_block(int32_t src, int32_t dst) override { return cache_.copy_block(src, dst); }

  void set_probe(ActivationProbe* probe) override { transformer_.set_probe(probe); }
  int kv_blocks() const override { return cache_.num_blocks(); }
  int block_size() const override { return cache_.block_size(); }
  std::string backend_id() const override { return "cpu"; }

 private:
  ThreadPool pool_;
  Transformer transformer_;
  KvCache cache_;
  int64_t vocab_;
};

}  // namespace

std::unique_ptr<ModelRunner> make_cpu_runner(const ModelConfig& config, const ModelWeights& weights,
                                             const RunnerOptions& options) {
  if (options.tensor_parallel_size > 1 || options.tp_slices > 0)
    return make_tp_cpu_runner(config, weights, options);
  return std::make_unique<CpuRunner>(config, weights, options);
}

}  // namespace invar::model
