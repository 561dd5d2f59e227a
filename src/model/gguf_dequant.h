// The ggml tensor encodings invar reads from GGUF files and the DType that holds each as
// stored: F32, F16, BF16 as plain arrays; Q8_0, Q4_0, Q4_1 and the K-quants Q2_K..Q6_K as
// packed blocks (core/block_quant.h gives every layout).
#pragma once

#include <cstdint>
#include <optional>

#include "core/dtype.h"

namespace invar::model {

struct GgmlBlockLayout {
  const char* name;
  DType dtype;          // the DType holding this encoding as stored
  int64_t block_elems;  // elements per block (1 for plain float types)
  uint64_t block_bytes;
};

// nullptr for a type invar cannot read.
const GgmlBlockLayout* ggml_block_layout(uint32_t type);

// A readable name for any ggml type id, supported or not ("Q4_K", "IQ2_XS").
const char* ggml_type_name(uint32_t type);

// The supported type names, for error messages ("F32, F16, ...").
const char* ggml_supported_types();

// Converts `numel` elements (a whole number of blocks) of a supported type into `out_dtype`:
// f32, bf16 (rounded to nearest even), or the type's own DType (a copy).
void dequantize_ggml(uint32_t type, const uint8_t* src, int64_t numel, DType out_dtype, void* out);

}  // namespace invar::model
