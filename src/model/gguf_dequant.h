// ggml tensor encodings that invar reads (F32, F16, BF16, Q8_0, Q4_0, Q4_1) and their
// conversion to f32 or bf16. Quantized rows are cut into blocks of 32 elements:
//   Q8_0: f16 d, 32 x int8 q           value = q * d
//   Q4_0: f16 d, 16 bytes of nibbles   value = (nibble - 8) * d
//   Q4_1: f16 d, f16 m, 16 bytes       value = nibble * d + m
// Byte j of a Q4 block holds element j in its low nibble and element j + 16 in its high one.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace invar::model {

struct GgmlBlockLayout {
  const char* name;
  int64_t block_elems;  // elements per block (1 for plain float types)
  uint64_t block_bytes;
};

// nullptr for a type invar cannot read.
const GgmlBlockLayout* ggml_block_layout(uint32_t type);

// A readable name for any ggml type id, supported or not ("Q4_K", "type 99").
const char* ggml_type_name(uint32_t type);

// Converts `numel` elements (a whole number of blocks) of a supported type into f32 or bf16.
void dequantize_ggml(uint32_t type, const uint8_t* src, int64_t numel, DType out_dtype, void* out);

}  // namespace invar::model
