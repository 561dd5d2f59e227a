// Plain descriptors shared by every op implementation: weights, rope parameters and the
// attention batch plan. Raw pointers, shapes and strides only (STYLE.md, layers).
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace invar::kernels {

// `invariant` (the default) keeps the guarantee of docs/invariance.md; `fast` is the baseline and
// the negative control: it uses batch-dependent reductions (cuBLAS on the GPU, split-K on the CPU).
enum class KernelMode : uint8_t { invariant, fast };

inline const char* kernel_mode_name(KernelMode m) {
  return m == KernelMode::invariant ? "invariant" : "fast";
}

// The sampler's parameters for one row of logits (engine/sampler.h semantics): 1 / temperature
// (<= 0: greedy), top_k (0: off), top_p (1: off), min_p (0: off) and the draw's uniform u in
// [0, 1), which the host takes from Philox keyed by (seed, position) (R6). `mask` names the
// row's allowed-token bitmask (structured output) among the step's masks, -1 for none: the draw
// and the greedy pick then see only the allowed tokens, as the host sampler sees a copy of the
// row with the others at -inf.
struct SampleRowParams {
  float inv_temperature = 0.0f;
  int32_t top_k = 0;
  float top_p = 1.0f;
  float min_p = 0.0f;
  float u = 0.0f;
  int32_t mask = -1;
};

// Words of a packed allowed-token bitmask over a row of `vocab` tokens: bit j % 32 of word
// j / 32 is token j (1: allowed), XGrammar's layout; bits past the vocab are 0.
inline int64_t token_mask_words(int64_t vocab) {
  return (vocab + 31) / 32;
}

// A row-major weight matrix [rows, cols]; a linear layer y = x W^T has rows = N (outputs),
// cols = K (inputs). dtype is any DType: f32, f16, bf16, or packed blocks (each row then
// dtype_row_bytes(dtype, cols) bytes; cols a multiple of the block size).
struct WeightRef {
  const void* data = nullptr;
  DType dtype = DType::f32;
  int64_t rows = 0;
  int64_t cols = 0;
};

enum class RopeStyle : uint8_t {
  interleaved,  // rotate pairs (2i, 2i+1): GGUF Llama files (q/k rows permuted by converters)
  half,         // rotate pairs (i, i + rot_dim/2): Hugging Face "neox" style
};

// Rotary embedding. inv_freq[i] for i < rot_dim/2 is computed once from the model config
// (theta, scaling) on the host: it depends on model shapes only (R5).
struct RopeParams {
  RopeStyle style = RopeStyle::half;
  int rot_dim = 0;               // rotated leading dims of each head (<= head_dim)
  const float* inv_freq = nullptr;  // [rot_dim / 2]
  float attention_factor = 1.0f;    // cos/sin multiplier (YaRN-style scaling); 1 otherwise
};

// Where a batch's tokens live in the paged KV cache and which positions each query sees.
// Built on the host by the scheduler (plan), read by the attention kernels (run).
//   S = sequences in the batch, T = tokens in the batch (sum of query lengths)
struct AttentionPlan {
  int num_seqs = 0;
  const int32_t* q_indptr = nullptr;    // [S + 1]: tokens q_indptr[s]..q_indptr[s+1] belong to s
  const int32_t* kv_lens = nullptr;     // [S]: cached tokens of s after this step's writes
  const int32_t* block_tables = nullptr;  // [S, max_blocks_per_seq]: physical block ids
  int max_blocks_per_seq = 0;
  int block_size = 0;                   // tokens per KV block
  // > 0: sliding-window attention, a token at pos sees only positions > pos - sliding_window
  // (the last sliding_window positions, itself included); 0: full causal attention. The mask
  // depends on the absolute position alone, never on the batch.
  int sliding_window = 0;
  // > 0: each scaled score s becomes logit_softcap * tanh(s / logit_softcap) before the softmax
  // (Gemma 2's attention soft-capping); 0: off. A model constant, like the window.
  float logit_softcap = 0.0f;
  // The query tokens of sequence s sit at absolute positions kv_lens[s] - q_len .. kv_lens[s]-1;
  // token t attends causally to positions 0..pos(t) (or its window).
};

// Paged KV cache of one layer: [num_blocks, block_size, kv_heads, head_dim] of `dtype`, f32 or
// f16 on the CPU (f16: rounded to nearest even when stored, widened exactly when read).
struct KvLayerRef {
  void* k = nullptr;
  void* v = nullptr;
  int num_blocks = 0;
  int block_size = 0;
  int kv_heads = 0;
  int head_dim = 0;
  DType dtype = DType::f32;
};

}  // namespace invar::kernels
