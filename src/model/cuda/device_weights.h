// The model's weights in device memory, in the CUDA forward pass's layout: every matrix bf16,
// q/k/v concatenated into one [Hq*D + 2*Hkv*D, H] matrix and gate/up into one [2*I, H], so a
// layer runs 4 GEMMs (a mixture-of-experts layer: its experts' weights one after the other, for
// the grouped GEMM). Concatenating rows changes no element's reduction (each output is still
// one k-ordered chain over H), so it keeps the GEMM recipe.
//   H = hidden, Hq/Hkv = query/kv heads, D = head dim, I = intermediate size, V = vocab
#pragma once

#include <vector>

#include "core/status.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/fp8_gemm.h"
#include "model/weights.h"

namespace invar::model::cuda {

using kernels::cuda::cuda_status;
using kernels::cuda::DeviceBuffer;
using kernels::cuda::PinnedBuffer;

// A matrix of an FP8 checkpoint kept as E4M3 codes for the FP8 GEMM (kernels/cuda/fp8_gemm.h):
// the codes [N, K] and the 128 x 128 block scales in the two layouts that GEMM reads.
struct DeviceFp8Matrix {
  DeviceBuffer codes;      // [N, K] E4M3
  DeviceBuffer scales;     // [K/128, N/128] f32
  DeviceBuffer scales_lt;  // [N/128, K/128 rounded up to 4] f32 (cuBLASLt)
  int64_t n = 0, k = 0;
  bool present() const { return n > 0; }
  kernels::cuda::Fp8Weight ref() const {
    return {.codes = codes.as<uint8_t>(),
            .ldw = k,
            .scales = scales.as<float>(),
            .scales_lt = scales_lt.as<float>(),
            .n = n,
            .k = k};
  }
};

struct DeviceLayer {
  DeviceBuffer attn_norm, ffn_norm;  // [H] bf16
  DeviceBuffer q_norm, k_norm;       // [D] bf16 (qk_norm only)
  DeviceBuffer qkv;                  // [Hq*D + 2*Hkv*D, H] bf16
  DeviceBuffer qkv_bias;             // [Hq*D + 2*Hkv*D] f32 (attention_bias only)
  DeviceBuffer o;                    // [H, Hq*D] bf16
  DeviceBuffer gate_up;              // [2*I, H] bf16, gate/up rows paired (kc::paired_gate_row)
  DeviceBuffer down;                 // [H, I] bf16
  // A tensor-parallel rank (model/tensor_parallel.h) instead of o and down: its row_slices K
  // slices one after the other, [S/R, H, Hq*D/S] and [S/R, H, I/S] bf16 (Hq, I: the whole
  // model's), for one batched GEMM (GemmProblem::batch).
  DeviceBuffer o_slices, down_slices;
  int row_slices = 0;
  // FP8 checkpoints on Hopper (upload_weights' fp8_gemms): these instead of qkv, o, gate_up and
  // down. Gate and up are stacked, not paired: [gate; up], and silu_mul reads the two halves.
  DeviceFp8Matrix qkv8, o8, gate_up8, down8;
  // Sparse layers (is_moe_layer) instead of gate_up/down; E experts of I_e features:
  DeviceBuffer router;               // [E, H] bf16
  DeviceBuffer experts_gate_up;      // [E, 2*I_e, H] bf16, each expert's gate/up rows paired
  DeviceBuffer experts_down;         // [E, H, I_e] bf16
};

struct DeviceWeights {
  DeviceBuffer embedding;   // [V, H] bf16
  DeviceBuffer lm_head;     // [V, H] bf16; empty when tied (output() is the embedding)
  DeviceBuffer final_norm;  // [H] bf16
  DeviceBuffer inv_freq;    // [rope_dims / 2] f32, RoPE
  int rope_dims = 0;        // rotated leading dims of a head
  std::vector<DeviceLayer> layers;
  size_t bytes = 0;  // device memory held

  const void* output() const { return lm_head.bytes() ? lm_head.as() : embedding.as(); }
};

// Uploads `w` (f32, f16, bf16 or packed blocks on the host, e.g. a GGUF file's mapping; all but
// bf16 are decoded to f32 and rounded to bf16 to nearest even). With `fp8_gemms` (Hopper), a
// dense layer whose matrices an FP8 checkpoint stores in 128 x 128 blocks, with every row count a
// multiple of 128, keeps them as FP8 (DeviceLayer's *8 members) for the FP8 GEMM.
Result<DeviceWeights> upload_weights(const ModelConfig& config, const ModelWeights& w,
                                     bool fp8_gemms);

// A tensor-parallel rank's K slices of o_proj and down_proj (RankShard::o_slices,
// down_slices: [layer][slice]) into d's layers, as bf16, each layer's slices contiguous.
Status upload_row_slices(const std::vector<std::vector<HostTensor>>& o_slices,
                         const std::vector<std::vector<HostTensor>>& down_slices, DeviceWeights& d);

// Whether upload_weights puts this layer's dense matrices on the FP8 GEMM.
bool uploads_fp8(const ModelConfig& config, const LayerWeights& lw);

}  // namespace invar::model::cuda
