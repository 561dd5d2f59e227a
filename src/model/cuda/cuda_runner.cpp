// The CUDA forward pass (docs/cuda-backend.md): one stream, bf16 activations with an f32
// residual stream, the step's plan uploaded once and attention planned once per step.
//   T = tokens in the step, S = sequences, L = logit rows, H = hidden, Hq/Hkv = query/kv heads,
//   D = head dim, I = intermediate size, V = vocab, W = (Hq + 2 Hkv) D (the fused q/k/v row)
#include "model/cuda/cuda_runner.h"

#include <cuda_bf16.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <utility>

#include "core/dtype.h"
#include "core/thread_pool.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/fp8_gemm.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/tree_sum.h"
#include "model/cuda/device_weights.h"
#include "model/cuda/moe_mlp.h"
#include "model/cuda/rank_group.h"
#include "model/cuda/step_graphs.h"
#include "model/tensor_parallel.h"

namespace invar::model::cuda {
namespace {

namespace kc = kernels::cuda;
using bf16 = __nv_bfloat16;

// Per-step device inputs and activations, grown to the largest step seen.
struct StepBuffers {
  DeviceBuffer ids, positions, slots, block_tables, logit_rows;  // the plan
  DeviceBuffer x;                                                // [T, H] f32 residual
  DeviceBuffer h;                                                // [T, H] normed
  DeviceBuffer qkv;                                              // [T, W]
  DeviceBuffer attn;                                             // [T, Hq*D]
  DeviceBuffer o;                                                // [T, H] o_proj / down_proj
  DeviceBuffer gate_up;                                          // [T, 2I]
  DeviceBuffer act;                                              // [T, I]
  // FP8 layers only: the activations quantized for the FP8 GEMM (kernels/cuda/fp8_gemm.h), for
  // Tp = T rounded up to 4 rows (qkv, o and gate_up then hold Tp rows: fast mode writes them).
  DeviceBuffer x8;           // [Tp, max(H, Hq*D, I)] E4M3
  DeviceBuffer x8_scales;    // [max(H, Hq*D, I) / 128, Tp] f32
  DeviceBuffer rows;         // [L, H]
  DeviceBuffer logits;       // [L, V]
  DeviceBuffer draw_params;  // [L] kc::SampleRowParams, in device row order
  DeviceBuffer draw_masks;   // [M <= L, ceil(V / 32)] allowed-token bitmasks the params name
  DeviceBuffer summary;      // [L] of each SummaryPart, one after the other
  // Tensor-parallel ranks only (model/tensor_parallel.h):
  DeviceBuffer partials;          // [S/R, T, H] bf16: the rank's K slices' partial products
  DeviceBuffer reduced;           // [T, H] f32: their tree, then the all-reduce's
  DeviceBuffer rank_logits;       // [L, V/R] the rank's vocabulary rows' logits
  DeviceBuffer gathered_logits;   // [R, L, V/R] every rank's, in rank order
  PinnedBuffer upload;            // host staging of the plan
  PinnedBuffer download;          // host staging of the logits rows asked for
  PinnedBuffer summary_download;  // host staging of the summaries
};

// The per-row summaries of a step's logits, [L] 4-byte values each: argmax (i32), max (f32),
// log_z (f32), the drawn token (i32) and its logit (f32).
enum SummaryPart { kArgmax, kMaxLogit, kLogZ, kDrawn, kDrawnLogit, kSummaryParts };
constexpr size_t kSummaryBytesPerRow = 4 * kSummaryParts;

template <typename T, typename Base>
T* summary_part(Base* base, int64_t rows, SummaryPart part) {
  using Bytes = std::conditional_t<std::is_const_v<Base>, const unsigned char, unsigned char>;
  return reinterpret_cast<T*>(static_cast<Bytes*>(base) + size_t(rows) * 4 * part);
}

// Padded steps (RunnerOptions::pad_graph_batches): steps of up to kPaddedStepTokens tokens launch
// as the next of a few sizes (vLLM captures decode graphs at similar sizes), at most ~25% more
// rows, so a decode of any batch size replays one of ~20 graphs. Larger steps launch as they are.
constexpr int kPaddedStepTokens = 512;
constexpr int kLaunchSizes[] = {1,   2,   4,   8,   16,  24,  32,  48,  64,  80, 96,
                                112, 128, 160, 192, 224, 256, 320, 384, 448, 512};

int padded_size(int n) {
  if (n <= 0) return 0;
  for (int size : kLaunchSizes)
    if (size >= n) return size;
  return n;
}

class CudaRunner final : public CudaRank {
 public:
  // With `shard` (which must outlive the runner), tensor-parallel rank `rank` of `group`: the
  // shard's heads, intermediate columns, K slices and vocabulary rows (tp_cuda_runner.cpp).
  CudaRunner(const ModelConfig& config, const RunnerOptions& o, const RankShard* shard = nullptr,
             RankGroup* group = nullptr, int rank = 0)
      : c_(shard ? shard->config : config),
        o_(step_options(config, o)),
        host_pool_(o.threads),
        graphs_(o_.cuda_graphs),
        moe_(config),
        shard_(shard),
        group_(group),
        rank_(rank) {}
  ~CudaRunner() override {
    if (stream_) {
      cudaStreamSynchronize(stream_);
      cudaStreamDestroy(stream_);
    }
  }

  Status init(const ModelWeights& weights) {
    INVAR_RETURN_IF_ERROR(prepare(weights));
    if (o_.kv_blocks <= 0) INVAR_RETURN_IF_ERROR(size_kv_cache_from_memory());
    return allocate_kv_cache(o_.kv_blocks);
  }

  // Everything of init but the KV cache: the device, the kernels, the weights (a rank's shard
  // when it is one) and the largest step's activations.
  Status prepare(const ModelWeights& weights) {
    INVAR_RETURN_IF_ERROR(check_shapes());
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0)
      return Status::error(StatusCode::invalid_argument,
                           "--device cuda: no CUDA GPU is visible (nvidia-smi lists none, or the "
                           "driver is missing)");
    if (o_.cuda_device < 0 || o_.cuda_device >= count)
      return Status::errorf("--device cuda: device {} does not exist ({} visible)", o_.cuda_device,
                            count);
    INVAR_RETURN_IF_ERROR(
        cuda_status(cudaSetDevice(o_.cuda_device), "CUDA backend: cudaSetDevice"));
    cudaDeviceProp prop{};
    INVAR_RETURN_IF_ERROR(
        cuda_status(cudaGetDeviceProperties(&prop, o_.cuda_device), "CUDA backend: device query"));
    arch_ = prop.major * 10 + prop.minor;
    gpu_name_ = prop.name;
    // Hopper runs the wgmma GEMM configs, other GPUs from sm_80 on the portable one: two
    // recipes, told apart by backend_id() in the fingerprint.
    if (arch_ < 80)
      return Status::errorf("--device cuda: {} is sm_{}; the CUDA kernels need sm_80 or newer",
                            prop.name, arch_);
    INVAR_RETURN_IF_ERROR(cuda_status(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking),
                                      "CUDA backend: stream"));
    INVAR_ASSIGN_OR_RETURN(gemm_, kc::CudaGemm::create(o_.cuda_device));
    INVAR_ASSIGN_OR_RETURN(attention_, kc::CudaAttention::create(o_.cuda_device));
    attention_->set_fixed_grid(pads_steps());
    using PA = RunnerOptions::PrefillAttention;
    if (o_.prefill_attention == PA::wgmma || (o_.prefill_attention == PA::automatic && arch_ == 90))
      INVAR_RETURN_IF_ERROR(attention_->set_prefill_kernel(kc::AttentionKernel::wgmma));
    // Ranks upload their shard's views, and bf16 only: the FP8 GEMM's 128 x 128 blocks are not
    // cut into K slices (check_cuda_tensor_parallel refuses such models).
    INVAR_ASSIGN_OR_RETURN(w_, upload_weights(c_, shard_ ? shard_->weights : weights,
                                              /*fp8_gemms=*/arch_ == 90 && !shard_));
    if (shard_) {
      INVAR_RETURN_IF_ERROR(upload_row_slices(shard_->o_slices, shard_->down_slices, w_));
      comm_ = group_->make_communicator(rank_, stream_);
    }
    for (const DeviceLayer& dl : w_.layers) fp8_layers_ += dl.qkv8.present();
    if (fp8_layers_ > 0) {
      INVAR_ASSIGN_OR_RETURN(fp8_gemm_, kc::CudaFp8Gemm::create(o_.cuda_device));
    }
    if (o_.max_step_tokens > 0) {
      INVAR_RETURN_IF_ERROR(reserve(o_.max_step_tokens, std::max(1, o_.max_step_seqs),
                                    std::max(1, o_.max_step_seqs),
                                    std::max(1, o_.max_blocks_per_seq)));
    }
    return Status();
  }

  // The KV cache: per layer K then V, each [blocks, block_size, Hkv, D] bf16.
  Status allocate_kv_cache(int blocks) override {
    INVAR_RETURN_IF_ERROR(
        cuda_status(cudaSetDevice(o_.cuda_device), "CUDA backend: cudaSetDevice"));
    o_.kv_blocks = blocks;
    layer_elems_ = size_t(o_.kv_blocks) * o_.block_size * c_.num_kv_heads * c_.head_dim;
    INVAR_RETURN_IF_ERROR(
        kv_.reserve(2 * layer_elems_ * sizeof(bf16) * c_.num_layers, "the KV cache"));
    return cuda_status(cudaMemset(kv_.as(), 0, kv_.bytes()), "CUDA backend: KV cache clear");
  }
  size_t kv_block_bytes() const override {
    return 2 * size_t(c_.num_layers) * o_.block_size * c_.num_kv_heads * c_.head_dim * sizeof(bf16);
  }
  int device() const override { return o_.cuda_device; }

  Status run_step(const BatchPlan& plan, const std::vector<uint8_t>& needs,
                  const std::vector<kernels::SampleRowParams>& draws,
                  const std::vector<int32_t>& masks, StepLogits& out) override;
  bool draws_on_device() const override { return true; }

  // o_.kv_blocks from what o_.gpu_memory_utilization of the device leaves once the weights and
  // the largest step's activations are allocated (memory other processes hold counts as used).
  Status size_kv_cache_from_memory() {
    const char* gpu = gpu_name_.c_str();
    size_t free_bytes = 0, total_bytes = 0;
    INVAR_RETURN_IF_ERROR(cuda_status(cudaMemGetInfo(&free_bytes, &total_bytes),
                                      "CUDA backend: device memory query"));
    const double cap = o_.gpu_memory_utilization * double(total_bytes);
    const double used = double(total_bytes - free_bytes);
    const double block_bytes = double(kv_block_bytes());
    constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
    if (cap - used < block_bytes)
      return Status::errorf(
          "--device cuda: {} has {:.1f} GiB; weights and activations already use {:.1f} GiB, "
          "over --gpu-memory-utilization {} ({:.1f} GiB): no room for the KV cache. Raise it, "
          "lower --max-running or the step budget, or give --kv-blocks",
          gpu, double(total_bytes) / kGiB, used / kGiB, o_.gpu_memory_utilization, cap / kGiB);
    // Block ids are int32 (plans, block tables).
    o_.kv_blocks = int(std::min((cap - used) / block_bytes, double(INT32_MAX / 2)));
    return Status();
  }

  Status copy_kv_block(int32_t src, int32_t dst) override {
    if (src < 0 || dst < 0 || src >= o_.kv_blocks || dst >= o_.kv_blocks)
      return Status::errorf("copy_kv_block: block {} or {} outside the cache ({} blocks)", src, dst,
                            o_.kv_blocks);
    INVAR_RETURN_IF_ERROR(
        cuda_status(cudaSetDevice(o_.cuda_device), "CUDA backend: cudaSetDevice"));
    const size_t block = size_t(o_.block_size) * c_.num_kv_heads * c_.head_dim;
    for (int l = 0; l < c_.num_layers; ++l) {
      for (bf16* base : {k_cache(l), v_cache(l)})
        INVAR_RETURN_IF_ERROR(
            cuda_status(cudaMemcpyAsync(base + size_t(dst) * block, base + size_t(src) * block,
                                        block * sizeof(bf16), cudaMemcpyDeviceToDevice, stream_),
                        "CUDA backend: KV block copy"));
    }
    return cuda_status(cudaStreamSynchronize(stream_), "CUDA backend: KV block copy");
  }

  void set_probe(ActivationProbe* probe) override { probe_ = probe; }
  int kv_blocks() const override { return o_.kv_blocks; }
  int block_size() const override { return o_.block_size; }
  // FP8 GEMMs compute other bits than bf16 ones: a fingerprint of a run on them says so.
  std::string backend_id() const override {
    return "cuda-sm" + std::to_string(arch_) + (fp8_layers_ > 0 ? "-fp8" : "");
  }

 private:
  Status check_shapes() const { return check_cuda_config(c_); }

  bf16* k_cache(int l) const { return kv_.as<bf16>() + size_t(2 * l) * layer_elems_; }
  bf16* v_cache(int l) const { return kv_.as<bf16>() + size_t(2 * l + 1) * layer_elems_; }
  kc::KvCacheRef cache_ref(int l) const {
    return {k_cache(l), v_cache(l), o_.kv_blocks, o_.block_size, c_.num_kv_heads, c_.head_dim};
  }

  Status reserve(int tokens, int rows, int seqs, int max_blocks);
  Status enqueue_step(int tokens, int rows, bool any_draw);
  // Uploads the plan padded to `launch_tokens` tokens, with `logit_rows` in place of
  // plan.logit_rows (reordered and padded by run_step), the draw parameters of those rows and
  // the masks they name.
  Status upload_plan(const BatchPlan& plan, int launch_tokens,
                     const std::vector<int32_t>& logit_rows,
                     const std::vector<kc::SampleRowParams>& draw_params,
                     const std::vector<int32_t>& masks);
  // Whether steps launch padded to a few sizes (RunnerOptions::pad_graph_batches, graphs on).
  bool pads_steps() const { return o_.pad_graph_batches && o_.cuda_graphs; }
  Status layer(int l, int tokens);
  // rows: what x and y hold (GemmProblem::row_capacity; token_rows_ for the per-token buffers).
  Status gemm(const void* x, int64_t ldx, const void* w, int64_t n, int64_t k, void* y, int64_t ldy,
              int64_t m, int64_t rows) {
    const kc::GemmProblem p{.x = x,
                            .ldx = ldx,
                            .w = w,
                            .ldw = k,
                            .y = y,
                            .ldy = ldy,
                            .m = m,
                            .n = n,
                            .k = k,
                            .row_capacity = rows};
    return gemm_->run(p, o_.kernels, stream_);
  }
  // y = x W^T for a dense layer's matrix: on the FP8 GEMM where the layer has FP8 weights
  // (x quantized per token first), else the bf16 GEMM.
  // x and y are per-token buffers (token_rows_ rows).
  Status linear(const bf16* x, int64_t ldx, const DeviceBuffer& w, const DeviceFp8Matrix& w8,
                int64_t n, int64_t k, bf16* y, int64_t ldy, int64_t m) {
    if (!w8.present()) return gemm(x, ldx, w.as(), n, k, y, ldy, m, token_rows_);
    INVAR_RETURN_IF_ERROR(kc::quantize_fp8_rows(x, ldx, m, k, b_.x8.as<uint8_t>(),
                                                b_.x8_scales.as<float>(), stream_));
    const kc::Fp8GemmProblem p{.x = b_.x8.as<uint8_t>(),
                               .ldx = k,
                               .x_scales = b_.x8_scales.as<float>(),
                               .w = w8.ref(),
                               .y = y,
                               .ldy = ldy,
                               .m = m};
    return fp8_gemm_->run(p, o_.kernels, stream_);
  }
  // y = x W^T for o_proj and down_proj ([T, N] from [T, K]): linear() on one GPU; on a
  // tensor-parallel rank, the GEMM of each of its K slices, their partial products summed in
  // the fixed tree and all-reduced over the ranks (the same tree at every rank count).
  Status row_parallel(const bf16* x, int64_t ldx, const DeviceBuffer& w, const DeviceFp8Matrix& w8,
                      const DeviceBuffer& slices, int count, int64_t n, int64_t k, bf16* y,
                      int64_t m);
  // Logit columns this runner computes: the vocabulary, or the rank's share of it.
  int64_t vocab_rows() const {
    return shard_ ? shard_->vocab_end - shard_->vocab_begin : int64_t(c_.vocab_size);
  }
  // Hands a device tensor to the probe as f32 [rows, width] (row stride ld elements).
  template <typename T>
  void probe(int layer, ProbeOp op, const T* data, int64_t rows, int64_t width, int64_t ld);
  // Hands gate and up of a [tokens, 2I] gate/up GEMM output (columns paired in blocks of
  // kc::kGateUpBlock) to the probe, each as [tokens, I].
  void probe_gate_up(int layer, const bf16* gate_up, int64_t tokens, int64_t inter);
  // Copies `rows` rows of `width` elements (row stride ld) into probe_f32_.
  template <typename T>
  Status copy_for_probe(const T* data, int64_t rows, int64_t width, int64_t ld);

  // The options as the runner applies them: a fast-mode MoE model syncs inside its layers
  // (moe_mlp.h), which no graph can hold, so its steps launch eagerly.
  static RunnerOptions step_options(const ModelConfig& c, RunnerOptions o) {
    if (c.moe.num_experts > 0 && o.kernels == kernels::KernelMode::fast) o.cuda_graphs = false;
    return o;
  }

  const ModelConfig& c_;  // a tensor-parallel rank's: its heads and intermediate columns
  RunnerOptions o_;
  ThreadPool host_pool_;  // widens the logits rows to f32
  int arch_ = 0;
  std::string gpu_name_;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<kc::CudaGemm> gemm_;
  std::unique_ptr<kc::CudaFp8Gemm> fp8_gemm_;  // FP8 checkpoints on Hopper only
  int fp8_layers_ = 0;                         // layers on the FP8 GEMM
  std::unique_ptr<kc::CudaAttention> attention_;
  DeviceWeights w_;
  DeviceBuffer kv_;
  size_t layer_elems_ = 0;
  StepBuffers b_;
  int max_blocks_ = 0;          // the step's block-table row length
  // Rows that every per-token GEMM operand holds, and the logit rows' operands (reserve): the
  // GEMMs may compute rows up to their last tile's edge (GemmProblem::row_capacity).
  int64_t token_rows_ = 0, logit_rows_ = 0;
  StepGraphs graphs_;           // captured device work of steps, by launch shape
  MoeMlp moe_;                  // the MLP of sparse layers (MoE models only)
  uint64_t buffers_key_ = 0;    // the step buffers' addresses (reserve), part of a graph's key
  std::vector<int32_t> order_;  // run_step: logit row i on the device is plan row order_[i]
  std::vector<int32_t> ordered_rows_;             // run_step: plan.logit_rows in that order
  std::vector<kc::SampleRowParams> draw_params_;  // run_step: per device row (greedy: no draw)
  std::vector<int32_t> padded_ids_, padded_positions_;  // upload_plan: the plan's, padded
  std::vector<int64_t> padded_slots_;
  ActivationProbe* probe_ = nullptr;
  Status probe_status_;
  std::vector<uint16_t> probe_bf16_;
  std::vector<float> probe_f32_;
  // Tensor parallelism (null, 0: the whole model on this GPU).
  const RankShard* shard_ = nullptr;
  RankGroup* group_ = nullptr;
  int rank_ = 0;
  std::unique_ptr<Communicator> comm_;
};

template <typename T>
void CudaRunner::probe(int layer, ProbeOp op, const T* data, int64_t rows, int64_t width,
                       int64_t ld) {
  if (!probe_ || !probe_status_.ok()) return;
  probe_status_ = copy_for_probe(data, rows, width, ld);
  if (probe_status_.ok()) probe_->after_op(layer, op, probe_f32_.data(), rows, width);
}

void CudaRunner::probe_gate_up(int layer, const bf16* gate_up, int64_t tokens, int64_t inter) {
  if (!probe_ || !probe_status_.ok()) return;
  // Seen as [tokens * I / 8, 16], the gate values are the first 8 columns, up the last 8.
  const int64_t blk = kc::kGateUpBlock, blocks = tokens * inter / blk;
  for (auto [op, offset] : {std::pair{ProbeOp::gate_proj, int64_t(0)}, {ProbeOp::up_proj, blk}}) {
    probe_status_ = copy_for_probe(gate_up + offset, blocks, blk, 2 * blk);
    if (!probe_status_.ok()) return;
    probe_->after_op(layer, op, probe_f32_.data(), tokens, inter);
  }
}

template <typename T>
Status CudaRunner::copy_for_probe(const T* data, int64_t rows, int64_t width, int64_t ld) {
  probe_f32_.resize(size_t(rows * width));
  cudaError_t e;
  if constexpr (sizeof(T) == 4) {
    e = cudaMemcpy2DAsync(probe_f32_.data(), size_t(width) * 4, data, size_t(ld) * 4,
                          size_t(width) * 4, size_t(rows), cudaMemcpyDeviceToHost, stream_);
    if (e == cudaSuccess) e = cudaStreamSynchronize(stream_);
  } else {
    probe_bf16_.resize(probe_f32_.size());
    e = cudaMemcpy2DAsync(probe_bf16_.data(), size_t(width) * 2, data, size_t(ld) * 2,
                          size_t(width) * 2, size_t(rows), cudaMemcpyDeviceToHost, stream_);
    if (e == cudaSuccess) e = cudaStreamSynchronize(stream_);
    for (size_t i = 0; i < probe_f32_.size(); ++i) probe_f32_[i] = bf16_to_f32(probe_bf16_[i]);
  }
  return cuda_status(e, "CUDA backend: probe copy");
}

Status CudaRunner::reserve(int tokens, int rows, int seqs, int max_blocks) {
  // Per-token buffers hold whole GEMM x tiles (kGemmRowEdge): a GEMM then computes its last
  // tile whole instead of loading past the last row (GemmProblem::row_capacity).
  const size_t t = size_t(kc::rows_for_whole_tiles(tokens));
  const size_t h = size_t(c_.hidden_size), i = size_t(c_.intermediate_size);
  const size_t tp = std::max(t, size_t(kc::fp8_scale_stride(tokens)));  // rows of GEMM outputs
  const size_t q = size_t(c_.num_heads) * c_.head_dim;
  const size_t w = q + 2 * size_t(c_.num_kv_heads) * c_.head_dim;
  const size_t l = size_t(std::max(rows, 1)), v = size_t(c_.vocab_size);
  const size_t lp = size_t(kc::rows_for_whole_tiles(int64_t(l)));
  const size_t mask_bytes = size_t(kernels::token_mask_words(c_.vocab_size)) * 4;
  const size_t tables = size_t(std::max(seqs * max_blocks, 1));
  // Growing frees memory queued work may still read.
  INVAR_RETURN_IF_ERROR(
      cuda_status(cudaStreamSynchronize(stream_), "CUDA backend: sync before growing buffers"));
  INVAR_RETURN_IF_ERROR(b_.ids.reserve(t * 4, "token ids"));
  INVAR_RETURN_IF_ERROR(b_.positions.reserve(t * 4, "positions"));
  INVAR_RETURN_IF_ERROR(b_.slots.reserve(t * 8, "KV slots"));
  INVAR_RETURN_IF_ERROR(b_.block_tables.reserve(tables * 4, "block tables"));
  INVAR_RETURN_IF_ERROR(b_.logit_rows.reserve(l * 4, "logit rows"));
  INVAR_RETURN_IF_ERROR(b_.x.reserve(t * h * 4, "the residual stream"));
  INVAR_RETURN_IF_ERROR(b_.h.reserve(t * h * 2, "normed activations"));
  INVAR_RETURN_IF_ERROR(b_.qkv.reserve(tp * w * 2, "q/k/v"));
  INVAR_RETURN_IF_ERROR(b_.attn.reserve(t * q * 2, "attention output"));
  INVAR_RETURN_IF_ERROR(b_.o.reserve(tp * h * 2, "projection output"));
  INVAR_RETURN_IF_ERROR(b_.gate_up.reserve(tp * 2 * i * 2, "gate/up"));
  if (fp8_layers_ > 0) {
    const size_t widest = std::max({h, q, i});
    INVAR_RETURN_IF_ERROR(b_.x8.reserve(tp * widest, "FP8 activations"));
    INVAR_RETURN_IF_ERROR(
        b_.x8_scales.reserve(widest / kc::kFp8Block * tp * 4, "FP8 activation scales"));
  }
  INVAR_RETURN_IF_ERROR(b_.act.reserve(t * i * 2, "SiLU-mul output"));
  INVAR_RETURN_IF_ERROR(b_.rows.reserve(lp * h * 2, "logit rows"));
  INVAR_RETURN_IF_ERROR(b_.logits.reserve(lp * v * 2, "logits"));
  INVAR_RETURN_IF_ERROR(b_.summary.reserve(l * kSummaryBytesPerRow, "logit summaries"));
  if (shard_) {
    const size_t slices = size_t(std::max(1, w_.layers[0].row_slices));
    const size_t vr = size_t(vocab_rows()), ranks = size_t(comm_->size());
    INVAR_RETURN_IF_ERROR(b_.partials.reserve(slices * t * h * 2, "K-slice partial products"));
    INVAR_RETURN_IF_ERROR(b_.reduced.reserve(t * h * 4, "the row-parallel sums"));
    INVAR_RETURN_IF_ERROR(b_.rank_logits.reserve(l * vr * 2, "the rank's logits"));
    INVAR_RETURN_IF_ERROR(b_.gathered_logits.reserve(ranks * l * vr * 2, "gathered logits"));
  }
  INVAR_RETURN_IF_ERROR(
      b_.summary_download.reserve(l * kSummaryBytesPerRow, "the summaries download"));
  INVAR_RETURN_IF_ERROR(b_.draw_params.reserve(l * sizeof(kc::SampleRowParams), "draw parameters"));
  // Every row may have a mask (a step of structured-output requests only).
  INVAR_RETURN_IF_ERROR(b_.draw_masks.reserve(l * mask_bytes, "token masks"));
  // upload_plan rounds each of its 7 arrays up to 16 bytes.
  INVAR_RETURN_IF_ERROR(b_.upload.reserve(
      t * 16 + tables * 4 + l * (4 + sizeof(kc::SampleRowParams) + mask_bytes) + 7 * 16,
      "the plan upload"));
  Fnv1a64 key;
  for (const DeviceBuffer* d : {&b_.ids,
                                &b_.positions,
                                &b_.slots,
                                &b_.block_tables,
                                &b_.logit_rows,
                                &b_.x,
                                &b_.h,
                                &b_.qkv,
                                &b_.attn,
                                &b_.o,
                                &b_.gate_up,
                                &b_.act,
                                &b_.rows,
                                &b_.logits,
                                &b_.draw_params,
                                &b_.draw_masks,
                                &b_.summary,
                                &b_.x8,
                                &b_.x8_scales,
                                &b_.partials,
                                &b_.reduced,
                                &b_.rank_logits,
                                &b_.gathered_logits})
    key.add(d->as());
  if (c_.moe.num_experts > 0) {
    INVAR_RETURN_IF_ERROR(moe_.reserve(tokens, o_.cuda_device));
    moe_.add_to_key(key);
  }
  buffers_key_ = key.value();
  auto held = [](const DeviceBuffer& b, size_t width) { return int64_t(b.bytes() / (width * 2)); };
  token_rows_ = std::min({held(b_.h, h), held(b_.qkv, w), held(b_.attn, q), held(b_.o, h),
                          held(b_.gate_up, 2 * i), held(b_.act, i)});
  logit_rows_ = std::min(held(b_.rows, h), held(b_.logits, v));
  return b_.download.reserve(l * v * 2, "the logits download");
}

Status CudaRunner::upload_plan(const BatchPlan& plan, int launch_tokens,
                               const std::vector<int32_t>& logit_rows,
                               const std::vector<kc::SampleRowParams>& draw_params,
                               const std::vector<int32_t>& masks) {
  // One pinned staging area, one copy per array (the previous step has finished: forward
  // ends with a sync).
  auto* base = b_.upload.as<unsigned char>();
  size_t off = 0;
  auto put = [&](DeviceBuffer& dst, const void* src, size_t bytes) -> Status {
    if (bytes == 0) return Status();
    if (off + bytes > b_.upload.bytes())
      return Status::error("CUDA backend: the plan upload buffer is too small (a bug)");
    std::memcpy(base + off, src, bytes);
    Status st =
        cuda_status(cudaMemcpyAsync(dst.as(), base + off, bytes, cudaMemcpyHostToDevice, stream_),
                    "CUDA backend: plan upload");
    off += (bytes + 15) / 16 * 16;
    return st;
  };
  // Padding tokens (launch_tokens past the plan's): id 0 at position 0, KV slot -1 (not stored).
  const size_t pad = size_t(launch_tokens - plan.num_tokens());
  padded_ids_.assign(plan.token_ids.begin(), plan.token_ids.end());
  padded_ids_.resize(padded_ids_.size() + pad, 0);
  padded_positions_.assign(plan.positions.begin(), plan.positions.end());
  padded_positions_.resize(padded_positions_.size() + pad, 0);
  padded_slots_.assign(plan.slots.begin(), plan.slots.end());
  padded_slots_.resize(padded_slots_.size() + pad, -1);
  INVAR_RETURN_IF_ERROR(put(b_.ids, padded_ids_.data(), padded_ids_.size() * 4));
  INVAR_RETURN_IF_ERROR(put(b_.positions, padded_positions_.data(), padded_positions_.size() * 4));
  INVAR_RETURN_IF_ERROR(put(b_.slots, padded_slots_.data(), padded_slots_.size() * 8));
  INVAR_RETURN_IF_ERROR(
      put(b_.block_tables, plan.block_tables.data(), plan.block_tables.size() * 4));
  INVAR_RETURN_IF_ERROR(put(b_.logit_rows, logit_rows.data(), logit_rows.size() * 4));
  INVAR_RETURN_IF_ERROR(
      put(b_.draw_params, draw_params.data(), draw_params.size() * sizeof(kc::SampleRowParams)));
  return put(b_.draw_masks, masks.data(), masks.size() * 4);
}

Status CudaRunner::run_step(const BatchPlan& plan, const std::vector<uint8_t>& needs,
                            const std::vector<kernels::SampleRowParams>& draws,
                            const std::vector<int32_t>& masks, StepLogits& out) {
  INVAR_RETURN_IF_ERROR(check_batch_plan(plan, c_, o_.kv_blocks, o_.block_size));
  const int tokens = plan.num_tokens();
  const int rows = int(plan.logit_rows.size());
  if (!needs.empty() && needs.size() != plan.logit_rows.size())
    return Status::errorf("run_step: {} row flags for {} logit rows", needs.size(), rows);
  // At most one mask per row: what reserve() holds room for.
  const int64_t mask_words = kernels::token_mask_words(c_.vocab_size);
  if (int64_t(masks.size()) % mask_words != 0 || int64_t(masks.size()) > rows * mask_words)
    return Status::errorf("run_step: {} mask words are not at most {} masks of {} words",
                          masks.size(), rows, mask_words);
  // The rows asked for go first, so that they download as one block; a row's bits do not
  // depend on where it sits among the logit rows (the GEMM, summaries and draws are row-local).
  // With a probe (verify) every row comes, in plan order, as the probe expects.
  auto need = [&](int i) -> uint8_t { return needs.empty() ? kWantRow : needs[size_t(i)]; };
  auto wants = [&](int i) { return probe_ || (need(i) & kWantRow); };
  order_.clear();
  for (int i = 0; i < rows; ++i)
    if (wants(i)) order_.push_back(i);
  const int wanted = int(order_.size());
  for (int i = 0; i < rows; ++i)
    if (!wants(i)) order_.push_back(i);
  ordered_rows_.resize(size_t(rows));
  draw_params_.assign(size_t(rows), kc::SampleRowParams{});
  bool any_draw = false;
  for (int i = 0; i < rows; ++i) {
    const int r = order_[size_t(i)];
    ordered_rows_[size_t(i)] = plan.logit_rows[size_t(r)];
    if (!(need(r) & kDraw)) continue;  // greedy parameters: the kernel's cheap path
    any_draw = true;
    if (draws.size() != plan.logit_rows.size())
      return Status::errorf("run_step: {} draw parameters for {} logit rows", draws.size(), rows);
    draw_params_[size_t(i)] = draws[size_t(r)];
    // A mask index is checked here: the kernel reads the mask it names unchecked.
    const int32_t m = draw_params_[size_t(i)].mask;
    if (m >= 0 && (int64_t(m) + 1) * mask_words > int64_t(masks.size()))
      return Status::errorf("run_step: row {} names token mask {}, of {} given", r, m,
                            int64_t(masks.size()) / mask_words);
  }
  out.rows.resize(size_t(rows) * size_t(c_.vocab_size));
  out.argmax.resize(size_t(rows));
  out.max_logit.resize(size_t(rows));
  out.log_z.resize(size_t(rows));
  out.drawn.resize(size_t(rows));
  out.drawn_logit.resize(size_t(rows));
  if (tokens == 0) return Status();

  INVAR_RETURN_IF_ERROR(cuda_status(cudaSetDevice(o_.cuda_device), "CUDA backend: cudaSetDevice"));
  // With padding, the step launches as `launch_tokens` tokens and `launch_rows` logit rows: a
  // few sizes, so that CUDA graphs replay for any batch. Padding tokens belong to no sequence
  // (no attention work, KV slot -1: nothing stored), padding rows repeat row 0 with greedy
  // parameters; every op is row-local or tile-invariant (R2), so no real row's bits change.
  const bool pad = pads_steps() && !probe_ && tokens <= kPaddedStepTokens;
  const int launch_tokens = pad ? padded_size(tokens) : tokens;
  const int launch_rows = pad ? padded_size(rows) : rows;
  ordered_rows_.resize(size_t(launch_rows), 0);
  draw_params_.resize(size_t(launch_rows), kc::SampleRowParams{});
  INVAR_RETURN_IF_ERROR(
      reserve(launch_tokens, launch_rows, plan.num_seqs(), plan.max_blocks_per_seq));
  INVAR_RETURN_IF_ERROR(upload_plan(plan, launch_tokens, ordered_rows_, draw_params_, masks));
  probe_status_ = Status();
  max_blocks_ = plan.max_blocks_per_seq;
  if (probe_) probe_->begin_step(plan);

  const kc::AttentionDims dims{.q_heads = c_.num_heads,
                               .kv_heads = c_.num_kv_heads,
                               .head_dim = c_.head_dim,
                               .scale = 1.0f / std::sqrt(float(c_.head_dim))};
  const kernels::AttentionPlan host_plan{.num_seqs = plan.num_seqs(),
                                         .q_indptr = plan.q_indptr.data(),
                                         .kv_lens = plan.kv_lens.data(),
                                         .block_tables = plan.block_tables.data(),
                                         .max_blocks_per_seq = plan.max_blocks_per_seq,
                                         .block_size = o_.block_size};
  INVAR_RETURN_IF_ERROR(attention_->plan(host_plan, dims, o_.kernels, stream_));

  // The device work of the step, replayed from a CUDA graph when its launch shape was seen
  // before (never with a probe: probing syncs and copies after every op).
  auto work = [&] { return enqueue_step(launch_tokens, launch_rows, any_draw); };
  if (probe_) {
    INVAR_RETURN_IF_ERROR(work());
  } else {
    const uint64_t key = Fnv1a64()
                             .add(uint64_t(launch_tokens))
                             .add(uint64_t(launch_rows))
                             .add(uint64_t(any_draw))
                             .add(uint64_t(max_blocks_))
                             .add(attention_->launch_key())
                             .add(buffers_key_)
                             .add(kv_.as())
                             .value();
    INVAR_RETURN_IF_ERROR(graphs_.run(key, stream_, work));
  }
  // Tensor-parallel ranks past 0 only joined the collectives: rank 0 summarizes and draws.
  if (rows == 0 || rank_ != 0)
    return cuda_status(cudaStreamSynchronize(stream_), "CUDA backend: step");
  const int64_t vocab = c_.vocab_size;
  const bf16* logits = b_.logits.as<bf16>();
  INVAR_RETURN_IF_ERROR(cuda_status(
      cudaMemcpyAsync(b_.summary_download.as(), b_.summary.as(),
                      size_t(launch_rows) * kSummaryBytesPerRow, cudaMemcpyDeviceToHost, stream_),
      "CUDA backend: summaries download"));
  if (wanted > 0) {
    INVAR_RETURN_IF_ERROR(
        cuda_status(cudaMemcpyAsync(b_.download.as(), logits, size_t(wanted) * size_t(vocab) * 2,
                                    cudaMemcpyDeviceToHost, stream_),
                    "CUDA backend: logits download"));
  }
  INVAR_RETURN_IF_ERROR(cuda_status(cudaStreamSynchronize(stream_), "CUDA backend: step"));

  const void* host_summary = b_.summary_download.as();
  // The summaries are laid out per part with the launch's row count as the stride.
  const auto* s_argmax = summary_part<const int32_t>(host_summary, launch_rows, kArgmax);
  const auto* s_max = summary_part<const float>(host_summary, launch_rows, kMaxLogit);
  const auto* s_log_z = summary_part<const float>(host_summary, launch_rows, kLogZ);
  const auto* s_drawn = summary_part<const int32_t>(host_summary, launch_rows, kDrawn);
  const auto* s_drawn_logit = summary_part<const float>(host_summary, launch_rows, kDrawnLogit);
  for (int i = 0; i < rows; ++i) {
    const size_t r = size_t(order_[size_t(i)]);
    out.argmax[r] = s_argmax[i];
    out.max_logit[r] = s_max[i];
    out.log_z[r] = double(s_log_z[i]);
    out.drawn[r] = s_drawn[i];
    out.drawn_logit[r] = s_drawn_logit[i];
  }
  // Widening is exact, so how the rows are split over threads changes nothing.
  const uint16_t* src = b_.download.as<uint16_t>();
  const size_t v = size_t(vocab);
  host_pool_.parallel_for(wanted, 8, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      float* dst = out.rows.data() + size_t(order_[size_t(i)]) * v;
      const uint16_t* row = src + size_t(i) * v;
      for (size_t j = 0; j < v; ++j) dst[j] = bf16_to_f32(row[j]);
    }
  });
  return probe_status_;
}

// Everything of a step on the device from the embedding to the summaries and draws, enqueued on
// stream_ without a sync (unless probing): what StepGraphs captures.
Status CudaRunner::enqueue_step(int tokens, int rows, bool any_draw) {
  const int64_t hidden = c_.hidden_size;
  float* x = b_.x.as<float>();
  INVAR_RETURN_IF_ERROR(kc::embedding(w_.embedding.as<bf16>(), c_.vocab_size, hidden,
                                      b_.ids.as<int32_t>(), tokens, x, hidden, stream_));
  probe(-1, ProbeOp::embedding, x, tokens, hidden, hidden);
  for (int l = 0; l < c_.num_layers; ++l) INVAR_RETURN_IF_ERROR(layer(l, tokens));

  // The last layer's residual add and the final norm over every token (row-local: no bits
  // depend on the batch), then only the requested rows go through the output projection.
  bf16* h = b_.h.as<bf16>();
  INVAR_RETURN_IF_ERROR(kc::rmsnorm_add(x, hidden, b_.o.as<bf16>(), hidden,
                                        w_.final_norm.as<bf16>(), tokens, hidden, c_.rms_eps, h,
                                        hidden, o_.kernels, stream_));
  probe(c_.num_layers - 1, ProbeOp::ffn_residual, x, tokens, hidden, hidden);
  if (rows == 0) return Status();
  bf16* gathered = b_.rows.as<bf16>();
  INVAR_RETURN_IF_ERROR(kc::gather_rows(h, hidden, b_.logit_rows.as<int32_t>(), rows, hidden,
                                        gathered, hidden, stream_));
  probe(c_.num_layers, ProbeOp::final_norm, gathered, rows, hidden, hidden);
  bf16* logits = b_.logits.as<bf16>();
  const int64_t vocab = c_.vocab_size;
  if (!shard_) {
    INVAR_RETURN_IF_ERROR(
        gemm(gathered, hidden, w_.output(), vocab, hidden, logits, vocab, rows, logit_rows_));
  } else {
    // Vocab-parallel: each rank's [L, V/R] block (every logit computed whole by one rank),
    // gathered in rank order into the [L, V] rows. The gather moves bf16 pairs as f32 words.
    const int64_t vr = vocab_rows();
    bf16* mine = b_.rank_logits.as<bf16>();
    bf16* all = b_.gathered_logits.as<bf16>();
    INVAR_RETURN_IF_ERROR(gemm(gathered, hidden, w_.output(), vr, hidden, mine, vr, rows, 0));
    comm_->all_gather(reinterpret_cast<const float*>(mine), rows * vr / 2,
                      reinterpret_cast<float*>(all));
    if (rank_ != 0) return Status();
    for (int q = 0; q < comm_->size(); ++q)
      INVAR_RETURN_IF_ERROR(cuda_status(
          cudaMemcpy2DAsync(logits + q * vr, size_t(vocab) * 2, all + int64_t(q) * rows * vr,
                            size_t(vr) * 2, size_t(vr) * 2, size_t(rows), cudaMemcpyDeviceToDevice,
                            stream_),
          "CUDA backend: vocab-parallel logits"));
  }
  probe(c_.num_layers, ProbeOp::logits, logits, rows, vocab, vocab);

  void* summary = b_.summary.as();
  INVAR_RETURN_IF_ERROR(kc::logit_summary(logits, vocab, rows, vocab,
                                          summary_part<int32_t>(summary, rows, kArgmax),
                                          summary_part<float>(summary, rows, kMaxLogit),
                                          summary_part<float>(summary, rows, kLogZ), stream_));
  if (any_draw) {
    // After logit_summary, and reading the logits only: log_z and the rows downloaded are
    // the raw row's, masks or not.
    INVAR_RETURN_IF_ERROR(
        kc::sample_rows(logits, vocab, rows, vocab, b_.draw_params.as<kc::SampleRowParams>(),
                        b_.draw_masks.as<uint32_t>(), summary_part<int32_t>(summary, rows, kDrawn),
                        summary_part<float>(summary, rows, kDrawnLogit), stream_));
  }
  return Status();
}

Status CudaRunner::row_parallel(const bf16* x, int64_t ldx, const DeviceBuffer& w,
                                const DeviceFp8Matrix& w8, const DeviceBuffer& slices, int count,
                                int64_t n, int64_t k, bf16* y, int64_t m) {
  if (!shard_) return linear(x, ldx, w, w8, n, k, y, n, m);
  // Each slice by the one GEMM recipe over its k/S columns of x, the same shape at every rank
  // count; a bf16 partial each, summed in f32. The slices run as one batched launch, which gives
  // each the bits it gets alone (gemm_test's BatchedGemmsGiveTheBitsOfEachAlone).
  const int64_t ks = k / count;
  bf16* partials = b_.partials.as<bf16>();
  const kc::GemmProblem p{.x = x,
                          .ldx = ldx,
                          .w = slices.as<bf16>(),
                          .ldw = ks,
                          .y = partials,
                          .ldy = n,
                          .m = m,
                          .n = n,
                          .k = ks,
                          .batch = count,
                          .batch_x = ks,
                          .batch_w = n * ks,
                          .batch_y = m * n};
  INVAR_RETURN_IF_ERROR(gemm_->run(p, o_.kernels, stream_));
  const bf16* parts[kc::kMaxDeviceTreeLeaves];
  for (int s = 0; s < count; ++s) parts[s] = partials + int64_t(s) * m * n;
  float* sum = b_.reduced.as<float>();
  INVAR_RETURN_IF_ERROR(kc::tree_sum(parts, count, m * n, sum, stream_));  // the rank's subtree
  comm_->all_reduce_tree(sum, m * n);  // the tree's top levels, over ranks in rank order (R7)
  return kc::round_to_bf16(sum, m * n, y, stream_);
}

Status CudaRunner::layer(int l, int tokens) {
  const DeviceLayer& w = w_.layers[size_t(l)];
  const int64_t hidden = c_.hidden_size, inter = c_.intermediate_size, d = c_.head_dim;
  const int hq = c_.num_heads, hkv = c_.num_kv_heads;
  const int64_t q_width = hq * d, kv_width = hkv * d, width = q_width + 2 * kv_width;
  const kernels::KernelMode mode = o_.kernels;
  float* x = b_.x.as<float>();
  bf16* h = b_.h.as<bf16>();
  bf16* qkv = b_.qkv.as<bf16>();
  bf16* o = b_.o.as<bf16>();

  // Attention block. Layers after the first add the previous MLP's output to the residual here.
  if (l == 0) {
    INVAR_RETURN_IF_ERROR(kc::rmsnorm(x, hidden, w.attn_norm.as<bf16>(), tokens, hidden, c_.rms_eps,
                                      h, hidden, mode, stream_));
  } else {
    INVAR_RETURN_IF_ERROR(kc::rmsnorm_add(x, hidden, o, hidden, w.attn_norm.as<bf16>(), tokens,
                                          hidden, c_.rms_eps, h, hidden, mode, stream_));
    probe(l - 1, ProbeOp::ffn_residual, x, tokens, hidden, hidden);
  }
  probe(l, ProbeOp::attn_norm, h, tokens, hidden, hidden);
  INVAR_RETURN_IF_ERROR(linear(h, hidden, w.qkv, w.qkv8, width, hidden, qkv, width, tokens));
  if (w.qkv_bias.bytes())
    INVAR_RETURN_IF_ERROR(kc::add_bias(qkv, width, w.qkv_bias.as<float>(), tokens, width, stream_));
  bf16* q = qkv;
  bf16* k = qkv + q_width;
  bf16* v = k + kv_width;
  probe(l, ProbeOp::q_proj, q, tokens, q_width, width);
  probe(l, ProbeOp::k_proj, k, tokens, kv_width, width);
  probe(l, ProbeOp::v_proj, v, tokens, kv_width, width);
  if (c_.qk_norm) {
    INVAR_RETURN_IF_ERROR(
        kc::rmsnorm_heads(q, width, w.q_norm.as<bf16>(), tokens, hq, d, c_.rms_eps, mode, stream_));
    probe(l, ProbeOp::q_norm, q, tokens, q_width, width);
    INVAR_RETURN_IF_ERROR(kc::rmsnorm_heads(k, width, w.k_norm.as<bf16>(), tokens, hkv, d,
                                            c_.rms_eps, mode, stream_));
    probe(l, ProbeOp::k_norm, k, tokens, kv_width, width);
  }
  const kernels::RopeParams rope{c_.rope_style, w_.rope_dims, w_.inv_freq.as<float>(), 1.0f};
  const int32_t* positions = b_.positions.as<int32_t>();
  INVAR_RETURN_IF_ERROR(kc::rope(q, width, positions, tokens, hq, int(d), rope, stream_));
  probe(l, ProbeOp::rope_q, q, tokens, q_width, width);
  INVAR_RETURN_IF_ERROR(kc::rope(k, width, positions, tokens, hkv, int(d), rope, stream_));
  probe(l, ProbeOp::rope_k, k, tokens, kv_width, width);

  const kc::KvCacheRef cache = cache_ref(l);
  INVAR_RETURN_IF_ERROR(
      kc::kv_store(k, width, v, width, b_.slots.as<int64_t>(), tokens, cache, stream_));
  kernels::AttentionPlan device_plan{};
  device_plan.block_tables = b_.block_tables.as<int32_t>();
  device_plan.max_blocks_per_seq = max_blocks_;
  device_plan.block_size = o_.block_size;
  bf16* attn = b_.attn.as<bf16>();
  INVAR_RETURN_IF_ERROR(attention_->run(q, width, cache, device_plan, attn, q_width, stream_));
  probe(l, ProbeOp::attention, attn, tokens, q_width, q_width);
  INVAR_RETURN_IF_ERROR(
      row_parallel(attn, q_width, w.o, w.o8, w.o_slices, w.row_slices, hidden, q_width, o, tokens));
  probe(l, ProbeOp::o_proj, o, tokens, hidden, hidden);

  // MLP block: the attention output joins the residual in the fused norm.
  INVAR_RETURN_IF_ERROR(kc::rmsnorm_add(x, hidden, o, hidden, w.ffn_norm.as<bf16>(), tokens, hidden,
                                        c_.rms_eps, h, hidden, mode, stream_));
  probe(l, ProbeOp::attn_residual, x, tokens, hidden, hidden);
  probe(l, ProbeOp::ffn_norm, h, tokens, hidden, hidden);
  if (is_moe_layer(c_, l)) {
    auto moe_probe = [&](ProbeOp op, const void* data, bool is_f32, int64_t rows, int64_t width) {
      if (is_f32) return probe(l, op, static_cast<const float*>(data), rows, width, width);
      probe(l, op, static_cast<const bf16*>(data), rows, width, width);
    };
    return moe_.run(w, h, tokens, o, mode, *gemm_, stream_, moe_probe);
  }
  // gate/up GEMM and SiLU-and-multiply: one kernel past decode (the fused epilogue), else the
  // GEMM into gate_up then silu_mul_paired. With a probe (verify), always the latter, to show
  // gate and up: the same bits (gate_up_test.cu).
  bf16* gu = b_.gate_up.as<bf16>();
  bf16* act = b_.act.as<bf16>();
  if (w.gate_up8.present()) {  // FP8: the stacked [gate; up] GEMM, then silu_mul of its halves
    INVAR_RETURN_IF_ERROR(
        linear(h, hidden, w.gate_up, w.gate_up8, 2 * inter, hidden, gu, 2 * inter, tokens));
    probe(l, ProbeOp::gate_proj, gu, tokens, inter, 2 * inter);
    probe(l, ProbeOp::up_proj, gu + inter, tokens, inter, 2 * inter);
    INVAR_RETURN_IF_ERROR(
        kc::silu_mul(gu, 2 * inter, gu + inter, 2 * inter, tokens, inter, act, inter, stream_));
  } else {
    const kc::GateUpProblem gate_up{.x = h,
                                    .ldx = hidden,
                                    .w = w.gate_up.as(),
                                    .ldw = hidden,
                                    .h = act,
                                    .ldh = inter,
                                    .scratch = gu,
                                    .m = tokens,
                                    .inter = inter,
                                    .k = hidden,
                                    .row_capacity = token_rows_};
    INVAR_RETURN_IF_ERROR(gemm_->run_gate_up(gate_up, o_.kernels, stream_, /*fuse=*/!probe_));
    probe_gate_up(l, gu, tokens, inter);
  }
  probe(l, ProbeOp::silu_mul, act, tokens, inter, inter);
  INVAR_RETURN_IF_ERROR(row_parallel(act, inter, w.down, w.down8, w.down_slices, w.row_slices,
                                     hidden, inter, o, tokens));
  probe(l, ProbeOp::down_proj, o, tokens, hidden, hidden);
  return Status();
}

}  // namespace

Status check_cuda_config(const ModelConfig& c) {
  // Qwen2-MoE's shared expert has no device weights or kernel yet: refused, never skipped.
  if (c.moe.shared_intermediate_size > 0)
    return Status::errorf(
        "--device cuda: this {} model has a shared expert ({} features), which the CUDA MoE "
        "pass does not implement yet; run it with --device cpu",
        arch_name(c.arch), c.moe.shared_intermediate_size);
  // Sparse layers run moe_mlp.h's kernels: top-k up to 32 of at most 1024 experts, widths the
  // grouped GEMM takes.
  if (c.moe.num_experts > 0 && (c.moe.num_experts > 1024 || c.moe.experts_per_token > 32 ||
                                c.moe.expert_intermediate_size % 8 != 0))
    return Status::errorf(
        "--device cuda: this {} model's experts ({} experts, {} per token, {} features each) are "
        "outside what the CUDA MoE kernels take (at most 1024 experts, 32 per token, features "
        "a multiple of 8); run it with --device cpu",
        arch_name(c.arch), c.moe.num_experts, c.moe.experts_per_token,
        c.moe.expert_intermediate_size);
  // Gemma's soft-caps, post norms, GeGLU and per-layer ropes, and yarn, are CPU-only for now:
  // run without them the model would give wrong logits, so it is refused up front.
  if (const std::vector<std::string> f = extended_features(c); !f.empty()) {
    std::string list;
    for (const std::string& s : f) list += (list.empty() ? "" : ", ") + s;
    return Status::errorf(
        "--device cuda: this {} model needs {}, which the CUDA backend does not implement "
        "yet; run it with --device cpu",
        arch_name(c.arch), list);
  }
  // The CUDA attention walks every position 0..pos: a window it cannot apply would give
  // wrong logits past the window, so such a model is refused up front.
  if (c.sliding_window > 0 && c.sliding_window < c.max_position)
    return Status::errorf(
        "--device cuda: this {} model uses sliding-window attention (window {} of {} "
        "positions), which the CUDA attention kernels do not implement yet; run it with "
        "--device cpu",
        arch_name(c.arch), c.sliding_window, c.max_position);
  if (rope_dims(c) != c.head_dim || c.rope_scaling.kind == RopeScaling::Kind::longrope)
    return Status::errorf(
        "--device cuda: this {} model uses partial rotary ({} of {} dims) or longrope "
        "scaling, which the CUDA backend does not implement yet; run it with --device cpu",
        arch_name(c.arch), rope_dims(c), c.head_dim);
  const int64_t q = int64_t(c.num_heads) * c.head_dim, kv = int64_t(c.num_kv_heads) * c.head_dim;
  if (c.head_dim != 64 && c.head_dim != 128)
    return Status::errorf(
        "--device cuda: head dim {} is not supported by the CUDA attention kernels (64 or 128)",
        c.head_dim);
  for (int64_t v :
       {int64_t(c.hidden_size), int64_t(c.intermediate_size), q, kv, int64_t(c.vocab_size)})
    if (v % 8 != 0)
      return Status::errorf(
          "--device cuda: every matrix width must be a multiple of 8 for the GEMM kernels "
          "(hidden {}, intermediate {}, q {}, kv {}, vocab {})",
          c.hidden_size, c.intermediate_size, q, kv, c.vocab_size);
  return Status();
}

Status check_cuda_tensor_parallel(const ModelConfig& c, int size, int slices) {
  if (c.fp8.block_rows > 0)
    return Status::error(StatusCode::invalid_argument,
                         "--device cuda: tensor parallelism does not cut FP8 checkpoints into K "
                         "slices yet: use --tensor-parallel-size 1");
  const int64_t pieces = slices > 0 ? slices : size;
  const int64_t q = int64_t(c.num_heads) * c.head_dim;
  if (c.vocab_size % (8 * size) != 0 || q % (8 * pieces) != 0 ||
      c.intermediate_size % (8 * pieces) != 0)
    return Status::errorf(
        "--device cuda with --tensor-parallel-size {}: each rank's share of the vocabulary ({}) "
        "and each K slice of o_proj ({}) and down_proj ({}) must be a multiple of 8 wide for the "
        "GEMM",
        size, c.vocab_size / double(size), q / double(pieces),
        c.intermediate_size / double(pieces));
  return Status();
}

Result<std::unique_ptr<ModelRunner>> make_cuda_runner(const ModelConfig& config,
                                                      const ModelWeights& weights,
                                                      const RunnerOptions& options) {
  auto runner = std::make_unique<CudaRunner>(config, options);
  INVAR_RETURN_IF_ERROR(runner->init(weights));
  return std::unique_ptr<ModelRunner>(std::move(runner));
}

Result<std::unique_ptr<CudaRank>> make_cuda_rank(const ModelConfig& config, const RankShard& shard,
                                                 RankGroup& group, int rank,
                                                 const RunnerOptions& options) {
  auto runner = std::make_unique<CudaRunner>(config, options, &shard, &group, rank);
  INVAR_RETURN_IF_ERROR(runner->prepare(shard.weights));
  return std::unique_ptr<CudaRank>(std::move(runner));
}

}  // namespace invar::model::cuda
