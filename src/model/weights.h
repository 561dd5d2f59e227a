// Host-resident model weights in the forward pass's layout, independent of the file format.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/status.h"
#include "kernels/types.h"
#include "model/config.h"

namespace invar::model {

// An owned, contiguous, row-major host tensor.
struct HostTensor {
  DType dtype = DType::f32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;

  bool empty() const { return bytes.empty(); }
  int64_t numel() const;
  const float* f32() const { return reinterpret_cast<const float*>(bytes.data()); }
  float* f32() { return reinterpret_cast<float*>(bytes.data()); }
  // A [rows, cols] view for the gemm/embedding kernels (rank-2 tensors only).
  kernels::WeightRef ref() const;
  static HostTensor zeros(DType dtype, std::vector<int64_t> shape);
};

struct LayerWeights {
  HostTensor attn_norm;             // [H] f32
  HostTensor wq, wk, wv, wo;        // [Hq*D, H], [Hkv*D, H], [Hkv*D, H], [H, Hq*D]
  HostTensor bq, bk, bv;            // [Hq*D], [Hkv*D], [Hkv*D] f32 (attention_bias only)
  HostTensor q_norm, k_norm;        // [D] f32 (qk_norm only)
  HostTensor ffn_norm;              // [H] f32
  HostTensor w_gate, w_up, w_down;  // [I, H], [I, H], [H, I]
};

struct ModelWeights {
  HostTensor embedding;   // [V, H]
  HostTensor final_norm;  // [H] f32
  HostTensor lm_head;     // [V, H]; empty when tie_embeddings (use `embedding`)
  std::vector<LayerWeights> layers;

  const HostTensor& output() const { return lm_head.empty() ? embedding : lm_head; }
};

struct LoadOptions {
  // Storage type of the matrices (norm weights and biases are always f32).
  DType weight_dtype = DType::f32;
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
ModelWeights random_weights(const ModelConfig& config, uint64_t seed, DType weight_dtype);

}  // namespace invar::model
