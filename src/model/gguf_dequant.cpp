#include "model/gguf_dequant.h"

#include <cstring>

#include "model/gguf.h"

namespace invar::model {
namespace {

constexpr int kQk = 32;  // elements per quantized block

const GgmlBlockLayout kF32{"F32", 1, 4};
const GgmlBlockLayout kF16{"F16", 1, 2};
const GgmlBlockLayout kBF16{"BF16", 1, 2};
const GgmlBlockLayout kQ8_0{"Q8_0", kQk, 2 + kQk};
const GgmlBlockLayout kQ4_0{"Q4_0", kQk, 2 + kQk / 2};
const GgmlBlockLayout kQ4_1{"Q4_1", kQk, 4 + kQk / 2};

uint16_t load_u16(const uint8_t* p) {
  uint16_t x;
  std::memcpy(&x, p, 2);
  return x;
}

// Writes one block of f32 values to the output type.
struct Sink {
  DType dtype;
  void* out;
  void put(int64_t i, float v) const {
    if (dtype == DType::f32)
      static_cast<float*>(out)[i] = v;
    else
      static_cast<uint16_t*>(out)[i] = f32_to_bf16(v);
  }
};

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
  }
  return nullptr;
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
  const Sink sink{out_dtype, out};
  switch (GgmlType(type)) {
    case GgmlType::f32:
      if (out_dtype == DType::f32) {
        std::memcpy(out, src, size_t(numel) * 4);
        return;
      }
      for (int64_t i = 0; i < numel; ++i) {
        float v;
        std::memcpy(&v, src + 4 * i, 4);
        sink.put(i, v);
      }
      return;
    case GgmlType::f16:
      for (int64_t i = 0; i < numel; ++i) sink.put(i, f16_to_f32(load_u16(src + 2 * i)));
      return;
    case GgmlType::bf16:
      if (out_dtype == DType::bf16) {
        std::memcpy(out, src, size_t(numel) * 2);
        return;
      }
      for (int64_t i = 0; i < numel; ++i) sink.put(i, bf16_to_f32(load_u16(src + 2 * i)));
      return;
    case GgmlType::q8_0:
      for (int64_t b = 0; b < numel / kQk; ++b) {
        const uint8_t* blk = src + b * kQ8_0.block_bytes;
        const float d = f16_to_f32(load_u16(blk));
        for (int j = 0; j < kQk; ++j) {
          sink.put(b * kQk + j, float(int8_t(blk[2 + j])) * d);
        }
      }
      return;
    case GgmlType::q4_0:
      for (int64_t b = 0; b < numel / kQk; ++b) {
        const uint8_t* blk = src + b * kQ4_0.block_bytes;
        const float d = f16_to_f32(load_u16(blk));
        for (int j = 0; j < kQk / 2; ++j) {
          const uint8_t q = blk[2 + j];
          sink.put(b * kQk + j, float(int(q & 0x0f) - 8) * d);
          sink.put(b * kQk + j + kQk / 2, float(int(q >> 4) - 8) * d);
        }
      }
      return;
    case GgmlType::q4_1:
      for (int64_t b = 0; b < numel / kQk; ++b) {
        const uint8_t* blk = src + b * kQ4_1.block_bytes;
        const float d = f16_to_f32(load_u16(blk));
        const float m = f16_to_f32(load_u16(blk + 2));
        for (int j = 0; j < kQk / 2; ++j) {
          const uint8_t q = blk[4 + j];
          // Product then sum, two roundings, as ggml's reference dequantizer does.
          const float lo = float(q & 0x0f) * d;
          const float hi = float(q >> 4) * d;
          sink.put(b * kQk + j, lo + m);
          sink.put(b * kQk + j + kQk / 2, hi + m);
        }
      }
      return;
  }
}

}  // namespace invar::model
