// A model ready to run on one device: its weights and its paged KV cache live there, and one
// call runs one batch step. The engine, `invar verify` and the tests drive a model through this
// interface only, so the CPU and CUDA backends are interchangeable (docs/cuda-backend.md).
//   T = tokens in the step, L = requested logit rows, V = vocab
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "kernels/types.h"
#include "model/activation_probe.h"
#include "model/batch.h"
#include "model/weights.h"

namespace invar::model {

enum class Device : uint8_t { cpu, cuda };

const char* device_name(Device d);
Result<Device> parse_device(std::string_view name);

struct RunnerOptions {
  Device device = Device::cpu;
  kernels::KernelMode kernels = kernels::KernelMode::invariant;  // fast: negative control only
  int kv_blocks = 0;   // KV cache blocks (> 0; CUDA: 0 sizes the cache from device memory)
  int block_size = 16;  // tokens per KV block
  // CPU: the KV cache's element type, f16 (the default: half the memory and the attention
  // reads of f32; rounded once when stored) or f32. The CUDA cache is bf16 whatever this says.
  DType kv_dtype = DType::f16;
  int threads = 0;      // host threads: the CPU forward pass; on CUDA, logits widening (0: all cores)
  // CPU: tensor-parallel ranks, threads of this process sharing `threads`
  // (docs/tensor-parallel.md): 1, 2, 4 or 8. check_tensor_parallel says what a model allows.
  int tensor_parallel_size = 1;
  // K slices of the row-parallel GEMMs (o_proj, down_proj) summed in one fixed tree, which makes
  // the bits the same at every tensor_parallel_size: -1 automatic (kDefaultTpSlices when
  // tensor_parallel_size > 1; none at 1, the plain GEMM: other bits, see the doc), 0 none (each
  // rank reduces its whole K range: bits depend on the size; the negative control), S > 0.
  int tp_slices = -1;
  int cuda_device = 0;  // CUDA: device ordinal
  // CUDA with kv_blocks = 0: the share of device memory the runner may hold; the KV cache gets
  // what the weights and the activations of the largest step leave of it.
  double gpu_memory_utilization = 0.9;
  // CUDA: the largest step (tokens, sequences, block-table row) whose activations are
  // allocated up front; 0: grown on demand (then kv_blocks must be given).
  int max_step_tokens = 0;
  int max_step_seqs = 0;
  int max_blocks_per_seq = 0;
  // CUDA: replay a step's device work from a CUDA graph captured per launch shape (false: every
  // kernel launched eagerly, as vLLM's --enforce-eager). The same bits either way.
  bool cuda_graphs = true;
  // CUDA with graphs: steps of up to 512 tokens launch padded to a few sizes (padding tokens
  // belong to no sequence, padding logit rows are dropped), so that a decode step of any batch
  // size replays a captured graph. The real rows' bits are those of an unpadded step (model_test
  // and the served outputs digests prove it).
  bool pad_graph_batches = true;
  // CUDA: the kernel of prefill (whole-row) attention. Both give the same bits (each row's recipe
  // is the same; attention_test compares them on every batch and chunking). automatic: wgmma +
  // TMA on sm_90 (H100, H200: 1.7-2.4x mma.sync on Qwen3-8B heads), mma.sync elsewhere.
  enum class PrefillAttention : uint8_t { automatic, wgmma, mma_sync };
  PrefillAttention prefill_attention = PrefillAttention::automatic;
};

// What one step returns for its logit rows (plan.logit_rows). The summaries are made where the
// logits are (on the GPU for CUDA), so a greedy request needs no logits row on the host.
struct StepLogits {
  std::vector<float> rows;       // [L, V] f32; only the rows asked for (kWantRow) are written
  std::vector<int32_t> argmax;   // [L] the lowest id of the row's maximum (NaNs skipped)
  std::vector<float> max_logit;  // [L] that maximum
  std::vector<double> log_z;     // [L] log sum_j exp(x_j): a logprob is x_j - log_z
  std::vector<int32_t> drawn;    // [L] rows asked to kDraw: the token drawn on the device
  std::vector<float> drawn_logit;  // [L] and its logit
};

// Per logit row, what the caller needs beyond the summary (bit flags).
inline constexpr uint8_t kWantRow = 1;  // the whole row, on the host
inline constexpr uint8_t kDraw = 2;     // a token drawn by the runner (draws_on_device() only)

class ModelRunner {
 public:
  virtual ~ModelRunner() = default;

  // One step: writes the plan's K/V into the cache and fills `out` for plan.logit_rows: every
  // row's summary, plus what `needs` (one set of flags per logit row; empty: kWantRow for every
  // row) asks for, kDraw rows drawn with `draws` (one per logit row, read for kDraw rows only).
  // `masks` holds the allowed-token bitmasks that kDraw rows name (draws[i].mask): M masks of
  // kernels::token_mask_words(V) words each, one after the other (structured output; empty when
  // no row has one). A mask restricts the row's draw and greedy pick; the row, its summary
  // (log_z) and its drawn logit stay the raw ones. Each row, summary and draw depends only on
  // its own sequence and parameters, never on the rest of the plan (the invariance contract),
  // on every backend; what other rows ask for changes none of them.
  virtual Status run_step(const BatchPlan& plan, const std::vector<uint8_t>& needs,
                          const std::vector<kernels::SampleRowParams>& draws,
                          const std::vector<int32_t>& masks, StepLogits& out) = 0;
  // Whether run_step takes kDraw and its masks (the CUDA backend: the sampler's row operations
  // on the GPU). Other runners ignore both: the engine draws and masks on the host for them.
  virtual bool draws_on_device() const { return false; }

  // run_step with every row: `logits` is [L, V] f32, row-major (verify and the tests).
  Status forward(const BatchPlan& plan, std::vector<float>& logits);

  // Copies KV block `src` over block `dst` in every layer (`invar verify` keeps a sequence's
  // history aside and restores it).
  virtual Status copy_kv_block(int32_t src, int32_t dst) = 0;

  // Hands every op's output to `probe` (nullptr: none). On CUDA each probed op costs a device
  // sync and a copy to the host: for `invar verify`, never for serving. The CUDA backend hands
  // the probe a copy, so a probe's changes to the data (fault injection) only act on the CPU.
  virtual void set_probe(ActivationProbe* probe) = 0;

  virtual int kv_blocks() const = 0;
  virtual int block_size() const = 0;
  // What decides the bits besides the weights and the kernel mode: "cpu", "cuda-sm90".
  virtual std::string backend_id() const = 0;
};

// Every backend's first step: ids in the vocabulary, positions in the context, slots and
// blocks in the cache, logit rows among the tokens, array lengths consistent.
Status check_batch_plan(const BatchPlan& plan, const ModelConfig& config, int kv_blocks,
                        int block_size);

// The CPU backend: kernels/cpu over f32 activations and a host KV cache (options.kv_dtype).
// (tensor_parallel_size > 1 or tp_slices > 0: make_tp_cpu_runner.)
std::unique_ptr<ModelRunner> make_cpu_runner(const ModelConfig& config, const ModelWeights& weights,
                                             const RunnerOptions& options);

// The CPU backend over tensor-parallel ranks that are threads (tp_runner.cpp). The options must
// have passed check_tensor_parallel(config, tensor_parallel_size, effective_tp_slices(options)).
std::unique_ptr<ModelRunner> make_tp_cpu_runner(const ModelConfig& config,
                                                const ModelWeights& weights,
                                                const RunnerOptions& options);

// tp_slices with -1 resolved.
int effective_tp_slices(const RunnerOptions& options);

}  // namespace invar::model
