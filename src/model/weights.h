// Host-resident model weights in the forward pass's layout, independent of the file format.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/status.h"
#include "kernels/types.h"
#include "model/config.h"

namespace invar::model {

// The bytes of a host tensor: owned, or a read-only view into memory another object owns (a
// GGUF file's mapping), which the view keeps alive. Packed weights are views: the file's pages
// are the only copy, shared with the page cache.
class HostBytes {
 public:
  HostBytes() = default;
  explicit HostBytes(size_t n) : owned_(n, 0) {}
  static HostBytes view(std::shared_ptr<const void> owner, const uint8_t* data, size_t size);

  const uint8_t* data() const { return view_ ? view_ : owned_.data(); }
  uint8_t* data();  // owned bytes only: a view is read-only
  size_t size() const { return view_ ? size_ : owned_.size(); }
  bool empty() const { return size() == 0; }
  bool is_view() const { return view_ != nullptr; }
  const uint8_t* begin() const { return data(); }
  const uint8_t* end() const { return data() + size(); }
  friend bool operator==(const HostBytes& a, const HostBytes& b);

 private:
  std::vector<uint8_t> owned_;
  std::shared_ptr<const void> owner_;
  const uint8_t* view_ = nullptr;
  size_t size_ = 0;
};

// What an FP8 checkpoint stores for a matrix (Fp8Quantization): E4M3 codes and one f32 scale
// per block_rows x block_cols block. Kept beside the dequantized values for backends with FP8
// GEMMs (CUDA on Hopper); the CPU kernels read the dequantized values.
struct Fp8Blocks {
  int64_t block_rows = 0, block_cols = 0;
  std::vector<uint8_t> codes;  // [rows, cols]
  std::vector<float> scales;   // [ceil(rows / block_rows), ceil(cols / block_cols)], row-major
};

// A contiguous, row-major host tensor of any DType (packed rows: dtype_row_bytes each).
struct HostTensor {
  DType dtype = DType::f32;
  std::vector<int64_t> shape;
  HostBytes bytes;
  // FP8 checkpoints' matrices only: the codes and scales `bytes` were dequantized from.
  std::shared_ptr<const Fp8Blocks> fp8;

  bool empty() const { return bytes.empty(); }
  int64_t numel() const;
  // Plain f32 tensors only.
  const float* f32() const { return reinterpret_cast<const float*>(bytes.data()); }
  float* f32() { return reinterpret_cast<float*>(bytes.data()); }
  // A [rows, cols] view for the gemm/embedding kernels (rank-2 tensors only).
  kernels::WeightRef ref() const;
  static HostTensor zeros(DType dtype, std::vector<int64_t> shape);
};

// One SwiGLU expert of a mixture-of-experts layer (I_e = MoeConfig::expert_intermediate_size).
struct ExpertWeights {
  HostTensor w_gate, w_up, w_down;  // [I_e, H], [I_e, H], [H, I_e]
};

struct LayerWeights {
  HostTensor attn_norm;  // [H] f32
  // Matrices: any DType (LoadOptions).
  HostTensor wq, wk, wv, wo;        // [Hq*D, H], [Hkv*D, H], [Hkv*D, H], [H, Hq*D]
  HostTensor bq, bk, bv;            // [Hq*D], [Hkv*D], [Hkv*D] f32 (attention_bias only)
  HostTensor q_norm, k_norm;        // [D] f32 (qk_norm only)
  HostTensor ffn_norm;              // [H] f32
  HostTensor w_gate, w_up, w_down;  // [I, H], [I, H], [H, I] (dense layers)
  // Sparse layers (is_moe_layer) instead of w_gate/w_up/w_down:
  HostTensor router;                   // [E, H]
  std::vector<ExpertWeights> experts;  // [E]
  // MoeConfig::shared_intermediate_size > 0 only (I_s): the shared expert and its gate.
  ExpertWeights shared;    // [I_s, H], [I_s, H], [H, I_s]
  HostTensor shared_gate;  // [1, H]
  // post_norms only (Gemma): applied to the attention and MLP outputs before the residual add.
  HostTensor post_attn_norm, post_ffn_norm;  // [H] f32
};

struct ModelWeights {
  HostTensor embedding;   // [V, H]
  HostTensor final_norm;  // [H] f32
  HostTensor lm_head;     // [V, H]; empty when tie_embeddings (use `embedding`)
  std::vector<LayerWeights> layers;

  const HostTensor& output() const { return lm_head.empty() ? embedding : lm_head; }
};

// Reports loading: `done` of `total` weight elements read so far (called after each tensor, on
// the loading thread; the last call has done == total).
using LoadProgress = std::function<void(int64_t done, int64_t total)>;

// The weight elements a config's model holds (every slot of for_each_weight_slot).
int64_t weight_elements(const ModelConfig& config);

struct LoadOptions {
  // Storage type of the matrices (norm weights and biases are always f32): f32 or bf16, or
  // unset for the file's own encoding. Unset, a GGUF file's matrices are views into its memory
  // mapping, packed blocks included (the kernels decode them where they read them, with the
  // bits of the decoded f32 weights); safetensors matrices keep their F32/F16/BF16 type.
  std::optional<DType> weight_dtype;
  LoadProgress progress;  // optional
};

// Weights and config of a model read from a GGUF file or a Hugging Face directory.
struct LoadedModel {
  ModelConfig config;
  ModelWeights weights;
  std::string source;  // the path it was read from
};

// Reads a GGUF file (`*.gguf`) or a Hugging Face directory (config.json + safetensors).
Result<LoadedModel> load_model(const std::string& path, const LoadOptions& options);

// Fills a model with seeded random weights of the config's shapes. The same seed gives the
// same weights on every machine and backend (counter-based generator, no std:: distributions).
// With fp8 quantization in the config, the attention, MLP and expert matrices are what an FP8
// checkpoint of them holds: one scale per block (amax / 448), each weight an E4M3 value times
// its block's scale, stored multiplied out as the loader stores such a checkpoint's weights.
ModelWeights random_weights(const ModelConfig& config, uint64_t seed, DType weight_dtype,
                            const LoadProgress& progress = {});

}  // namespace invar::model
