#include "model/cuda/device_weights.h"

#include <cstring>
#include <initializer_list>
#include <tuple>

#include "core/block_quant.h"
#include "core/dtype.h"
#include "kernels/cuda/gemm.h"

namespace invar::model::cuda {
namespace {

// Rows of `parts`, stacked, as bf16 on the host. Packed (block-quantized) tensors are decoded
// to f32 by core's decode_to_f32, the values the CPU kernels compute with, then rounded.
Result<std::vector<uint16_t>> stack_bf16(std::initializer_list<const HostTensor*> parts,
                                         const char* what) {
  size_t total = 0;
  for (const HostTensor* t : parts) total += size_t(t->numel());
  std::vector<uint16_t> out;
  out.reserve(total);
  std::vector<float> row;
  for (const HostTensor* t : parts) {
    const size_t n = size_t(t->numel());
    const int64_t cols = t->shape.empty() ? 0 : t->shape.back();
    const DTypeBlock blk = dtype_block(t->dtype);
    if (cols % blk.elems != 0 || t->bytes.size() != dtype_row_bytes(t->dtype, int64_t(n)))
      return Status::errorf("CUDA upload: {} holds {} bytes, not {} elements of {}", what,
                            t->bytes.size(), n, dtype_name(t->dtype));
    const uint8_t* b = t->bytes.data();
    if (t->dtype == DType::bf16) {
      const size_t at = out.size();
      out.resize(at + n);
      std::memcpy(out.data() + at, b, n * 2);
      continue;
    }
    // Row by row through f32: exact for f16 and packed blocks, then one rounding to bf16.
    const size_t rows = cols > 0 ? n / size_t(cols) : 0;
    const size_t row_bytes = dtype_row_bytes(t->dtype, cols);
    row.resize(size_t(cols));
    for (size_t r = 0; r < rows; ++r) {
      decode_to_f32(t->dtype, b + r * row_bytes, cols, row.data());
      for (float f : row) out.push_back(f32_to_bf16(f));
    }
  }
  return out;
}

Status to_device(DeviceBuffer& dst, const void* src, size_t bytes, const char* what,
                 size_t& total) {
  INVAR_RETURN_IF_ERROR(dst.reserve(bytes, what));
  total += dst.bytes();
  return cuda_status(cudaMemcpy(dst.as(), src, bytes, cudaMemcpyHostToDevice),
                     std::string("CUDA backend: ") + what);
}

Status upload_bf16(DeviceBuffer& dst, std::initializer_list<const HostTensor*> parts,
                   const char* what, size_t& total) {
  INVAR_ASSIGN_OR_RETURN(auto host, stack_bf16(parts, what));
  return to_device(dst, host.data(), host.size() * 2, what, total);
}

// gate and up [I, K] each, as one [2I, K] weight whose rows pair them in blocks of
// kGateUpBlock (kernels/cuda/gemm.h), the layout the fused SiLU-and-multiply epilogue reads;
// appended to `out`.
Status append_paired_gate_up(const HostTensor& gate, const HostTensor& up,
                             std::vector<uint16_t>& out) {
  INVAR_ASSIGN_OR_RETURN(auto stacked, stack_bf16({&gate, &up}, "gate/up"));
  if (gate.shape.size() != 2 || gate.shape != up.shape ||
      gate.shape[0] % kernels::cuda::kGateUpBlock)
    return Status::error("CUDA upload: gate and up must be [I, H] alike with I a multiple of 8");
  const int64_t rows = gate.shape[0], k = gate.shape[1];
  const size_t at = out.size();
  out.resize(at + stacked.size());
  uint16_t* paired = out.data() + at;
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t to = kernels::cuda::paired_gate_row(i);
    std::memcpy(&paired[size_t(to * k)], &stacked[size_t(i * k)], size_t(k) * 2);
    std::memcpy(&paired[size_t((to + kernels::cuda::kGateUpBlock) * k)],
                &stacked[size_t((rows + i) * k)], size_t(k) * 2);
  }
  return Status();
}

Status upload_gate_up(DeviceBuffer& dst, const HostTensor& gate, const HostTensor& up,
                      size_t& total) {
  std::vector<uint16_t> paired;
  INVAR_RETURN_IF_ERROR(append_paired_gate_up(gate, up, paired));
  return to_device(dst, paired.data(), paired.size() * 2, "gate/up", total);
}

// A sparse layer: the router, and every expert's paired gate/up and down one after the other.
Status upload_experts(DeviceLayer& dl, const LayerWeights& lw, size_t& total) {
  INVAR_RETURN_IF_ERROR(upload_bf16(dl.router, {&lw.router}, "the router", total));
  std::vector<uint16_t> gate_up, down;
  for (const ExpertWeights& e : lw.experts) {
    INVAR_RETURN_IF_ERROR(append_paired_gate_up(e.w_gate, e.w_up, gate_up));
    INVAR_ASSIGN_OR_RETURN(auto d, stack_bf16({&e.w_down}, "an expert's down_proj"));
    down.insert(down.end(), d.begin(), d.end());
  }
  INVAR_RETURN_IF_ERROR(
      to_device(dl.experts_gate_up, gate_up.data(), gate_up.size() * 2, "experts' gate/up", total));
  return to_device(dl.experts_down, down.data(), down.size() * 2, "experts' down_proj", total);
}

// Biases stay f32 (added in f32 to the GEMM output).
Status upload_f32(DeviceBuffer& dst, std::initializer_list<const HostTensor*> parts,
                  const char* what, size_t& total) {
  std::vector<float> host;
  for (const HostTensor* t : parts) {
    if (t->dtype != DType::f32) return Status::errorf("CUDA upload: {} is not f32", what);
    host.insert(host.end(), t->f32(), t->f32() + t->numel());
  }
  return to_device(dst, host.data(), host.size() * 4, what, total);
}

// FP8 matrices stacked by rows (q/k/v, gate/up): codes one after the other, and the block
// scales, whose rows then follow each other too (every part has whole 128-row blocks).
Status upload_fp8(DeviceFp8Matrix& dst, std::initializer_list<const HostTensor*> parts,
                  const char* what, size_t& total) {
  namespace kc = kernels::cuda;
  std::vector<uint8_t> codes;
  std::vector<float> scales;  // [NB, KB] as the checkpoint stores them
  int64_t n = 0, k = 0;
  for (const HostTensor* t : parts) {
    if (!t->fp8 || t->shape.size() != 2)
      return Status::errorf("CUDA upload: {} has no FP8 codes", what);
    k = t->shape[1];
    n += t->shape[0];
    codes.insert(codes.end(), t->fp8->codes.begin(), t->fp8->codes.end());
    scales.insert(scales.end(), t->fp8->scales.begin(), t->fp8->scales.end());
  }
  const int64_t nb = n / kc::kFp8Block, kb = k / kc::kFp8Block;
  if (int64_t(scales.size()) != nb * kb || int64_t(codes.size()) != n * k)
    return Status::errorf("CUDA upload: {}'s FP8 scales or codes do not match its shape", what);
  const std::vector<float> kmajor = kc::fp8_scales_kmajor(scales.data(), nb, kb);
  const std::vector<float> lt = kc::fp8_scales_lt(scales.data(), nb, kb);
  INVAR_RETURN_IF_ERROR(to_device(dst.codes, codes.data(), codes.size(), what, total));
  INVAR_RETURN_IF_ERROR(to_device(dst.scales, kmajor.data(), kmajor.size() * 4, what, total));
  INVAR_RETURN_IF_ERROR(to_device(dst.scales_lt, lt.data(), lt.size() * 4, what, total));
  dst.n = n;
  dst.k = k;
  return {};
}

}  // namespace

bool uploads_fp8(const ModelConfig& c, const LayerWeights& lw) {
  const int64_t block = kernels::cuda::kFp8Block;
  if (c.fp8.block_rows != block || c.fp8.block_cols != block) return false;
  for (const HostTensor* t : {&lw.wq, &lw.wk, &lw.wv, &lw.wo, &lw.w_gate, &lw.w_up, &lw.w_down}) {
    if (!t->fp8 || t->shape.size() != 2 || t->shape[0] % block || t->shape[1] % block ||
        t->fp8->block_rows != block || t->fp8->block_cols != block)
      return false;
  }
  return true;
}

Result<DeviceWeights> upload_weights(const ModelConfig& c, const ModelWeights& w,
                                     bool fp8_gemms) {
  DeviceWeights d;
  size_t& total = d.bytes;
  INVAR_RETURN_IF_ERROR(upload_bf16(d.embedding, {&w.embedding}, "the embedding", total));
  if (!w.lm_head.empty())
    INVAR_RETURN_IF_ERROR(upload_bf16(d.lm_head, {&w.lm_head}, "the output projection", total));
  INVAR_RETURN_IF_ERROR(upload_bf16(d.final_norm, {&w.final_norm}, "the final norm", total));
  const std::vector<float> inv_freq = rope_inv_freq(c);
  d.rope_dims = int(inv_freq.size() * 2);
  INVAR_RETURN_IF_ERROR(
      to_device(d.inv_freq, inv_freq.data(), inv_freq.size() * 4, "rope frequencies", total));
  d.layers.resize(size_t(c.num_layers));
  for (int l = 0; l < c.num_layers; ++l) {
    const LayerWeights& lw = w.layers[size_t(l)];
    DeviceLayer& dl = d.layers[size_t(l)];
    INVAR_RETURN_IF_ERROR(upload_bf16(dl.attn_norm, {&lw.attn_norm}, "attn_norm", total));
    INVAR_RETURN_IF_ERROR(upload_bf16(dl.ffn_norm, {&lw.ffn_norm}, "ffn_norm", total));
    if (c.qk_norm) {
      INVAR_RETURN_IF_ERROR(upload_bf16(dl.q_norm, {&lw.q_norm}, "q_norm", total));
      INVAR_RETURN_IF_ERROR(upload_bf16(dl.k_norm, {&lw.k_norm}, "k_norm", total));
    }
    if (!lw.bq.empty())
      INVAR_RETURN_IF_ERROR(upload_f32(dl.qkv_bias, {&lw.bq, &lw.bk, &lw.bv}, "q/k/v bias", total));
    if (fp8_gemms && !is_moe_layer(c, l) && uploads_fp8(c, lw)) {
      INVAR_RETURN_IF_ERROR(upload_fp8(dl.qkv8, {&lw.wq, &lw.wk, &lw.wv}, "q/k/v", total));
      INVAR_RETURN_IF_ERROR(upload_fp8(dl.o8, {&lw.wo}, "o_proj", total));
      INVAR_RETURN_IF_ERROR(upload_fp8(dl.gate_up8, {&lw.w_gate, &lw.w_up}, "gate/up", total));
      INVAR_RETURN_IF_ERROR(upload_fp8(dl.down8, {&lw.w_down}, "down_proj", total));
      continue;
    }
    INVAR_RETURN_IF_ERROR(upload_bf16(dl.qkv, {&lw.wq, &lw.wk, &lw.wv}, "q/k/v", total));
    // A tensor-parallel rank's shard has no whole o_proj or down_proj: upload_row_slices.
    if (!lw.wo.empty()) INVAR_RETURN_IF_ERROR(upload_bf16(dl.o, {&lw.wo}, "o_proj", total));
    if (is_moe_layer(c, l)) {
      INVAR_RETURN_IF_ERROR(upload_experts(dl, lw, total));
      continue;
    }
    INVAR_RETURN_IF_ERROR(upload_gate_up(dl.gate_up, lw.w_gate, lw.w_up, total));
    if (!lw.w_down.empty())
      INVAR_RETURN_IF_ERROR(upload_bf16(dl.down, {&lw.w_down}, "down_proj", total));
  }
  return d;
}

Status upload_row_slices(const std::vector<std::vector<HostTensor>>& o_slices,
                         const std::vector<std::vector<HostTensor>>& down_slices, DeviceWeights& d) {
  if (o_slices.size() != d.layers.size() || down_slices.size() != d.layers.size())
    return Status::error("CUDA upload: the row-parallel slices do not match the layers");
  for (size_t l = 0; l < d.layers.size(); ++l) {
    DeviceLayer& dl = d.layers[l];
    if (o_slices[l].size() != down_slices[l].size() || o_slices[l].empty())
      return Status::error("CUDA upload: a layer's o_proj and down_proj slice counts differ");
    dl.row_slices = int(o_slices[l].size());
    for (auto [dst, slices, what] :
         {std::tuple{&dl.o_slices, &o_slices[l], "o_proj slices"},
          std::tuple{&dl.down_slices, &down_slices[l], "down_proj slices"}}) {
      std::vector<uint16_t> host;
      for (const HostTensor& t : *slices) {
        INVAR_ASSIGN_OR_RETURN(auto one, stack_bf16({&t}, what));
        host.insert(host.end(), one.begin(), one.end());
      }
      INVAR_RETURN_IF_ERROR(to_device(*dst, host.data(), host.size() * 2, what, d.bytes));
    }
  }
  return Status();
}

}  // namespace invar::model::cuda
