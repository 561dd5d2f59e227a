#include "model/gguf_dequant.h"

#include <cstring>
#include <vector>

#include "core/block_quant.h"
#include "model/gguf.h"

namespace invar::model {
namespace {

constexpr GgmlBlockLayout layout(const char* name, DType t) {
  return {name, t, dtype_block(t).elems, dtype_block(t).bytes};
}

const GgmlBlockLayout kF32 = layout("F32", DType::f32);
const GgmlBlockLayout kF16 = layout("F16", DType::f16);
const GgmlBlockLayout kBF16 = layout("BF16", DType::bf16);
const GgmlBlockLayout kQ8_0 = layout("Q8_0", DType::q8_0);
const GgmlBlockLayout kQ4_0 = layout("Q4_0", DType::q4_0);
const GgmlBlockLayout kQ4_1 = layout("Q4_1", DType::q4_1);
const GgmlBlockLayout kQ2_K = layout("Q2_K", DType::q2_k);
const GgmlBlockLayout kQ3_K = layout("Q3_K", DType::q3_k);
const GgmlBlockLayout kQ4_K = layout("Q4_K", DType::q4_k);
const GgmlBlockLayout kQ5_K = layout("Q5_K", DType::q5_k);
const GgmlBlockLayout kQ6_K = layout("Q6_K", DType::q6_k);

}  // namespace

const GgmlBlockLayout* ggml_block_layout(uint32_t type) {
  switch (GgmlType(type)) {
    case GgmlType::f32:
      return &kF32;
    case GgmlType::f16:
      return &kF16;
    case GgmlType::bf16:
      return &kBF16;
    case GgmlType::q8_0:
      return &kQ8_0;
    case GgmlType::q4_0:
      return &kQ4_0;
    case GgmlType::q4_1:
      return &kQ4_1;
    case GgmlType::q2_k:
      return &kQ2_K;
    case GgmlType::q3_k:
      return &kQ3_K;
    case GgmlType::q4_k:
      return &kQ4_K;
    case GgmlType::q5_k:
      return &kQ5_K;
    case GgmlType::q6_k:
      return &kQ6_K;
  }
  return nullptr;
}

const char* ggml_supported_types() {
  return "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K";
}

const char* ggml_type_name(uint32_t type) {
  static const char* kNames[] = {
      "F32",     "F16",    "Q4_0",    "Q4_1",  "Q4_2",   "Q4_3",  "Q5_0",  "Q5_1",
      "Q8_0",    "Q8_1",   "Q2_K",    "Q3_K",  "Q4_K",   "Q5_K",  "Q6_K",  "Q8_K",
      "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS",
      "I8",      "I16",    "I32",     "I64",   "F64",    "IQ1_M", "BF16"};
  if (type < sizeof(kNames) / sizeof(kNames[0])) return kNames[type];
  return "unknown type";
}

void dequantize_ggml(uint32_t type, const uint8_t* src, int64_t numel, DType out_dtype, void* out) {
  const GgmlBlockLayout* b = ggml_block_layout(type);
  if (out_dtype == b->dtype) {  // as stored
    std::memcpy(out, src, dtype_row_bytes(b->dtype, numel));
    return;
  }
  if (out_dtype == DType::f32) return decode_to_f32(b->dtype, src, numel, static_cast<float*>(out));
  // bf16 (the only other output): decode a block run at a time, then round.
  constexpr int64_t kRun = 4096;  // a multiple of every block size
  std::vector<float> tmp(size_t(std::min(numel, kRun)));
  uint16_t* dst = static_cast<uint16_t*>(out);
  for (int64_t i = 0; i < numel; i += kRun) {
    const int64_t n = std::min(kRun, numel - i);
    decode_to_f32(b->dtype, src + dtype_row_bytes(b->dtype, i), n, tmp.data());
    for (int64_t j = 0; j < n; ++j) dst[i + j] = f32_to_bf16(tmp[size_t(j)]);
  }
}

}  // namespace invar::model
