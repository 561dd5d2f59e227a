// embedding: out[t, :] = table[ids[t], :], widened to f32 (f32, bf16, f16 or packed tables).
//
// A row copy, an exact widening, or the decode of a packed row (core's decode_to_f32, the bits
// every packed kernel decodes to): nothing here can depend on the batch. A step looks up one
// row per token, so the scalar decode costs little next to the GEMMs.
//   T = tokens, V = vocab, H = hidden size
#include <algorithm>
#include <cassert>
#include <cstring>

#include "core/block_quant.h"
#include "kernels/cpu/ops.h"

namespace invar::kernels::cpu {

static void embed_row(const WeightRef& table, int32_t id, float* out) {
  const int64_t h = table.cols;
  assert(id >= 0 && id < table.rows);
  switch (table.dtype) {
    case DType::f32:
      std::memcpy(out, static_cast<const float*>(table.data) + int64_t(id) * h,
                  size_t(h) * sizeof(float));
      return;
    case DType::bf16: {
      const uint16_t* row = static_cast<const uint16_t*>(table.data) + int64_t(id) * h;
      for (int64_t i = 0; i < h; ++i) out[i] = bits_to_f32(uint32_t(row[i]) << 16);
      return;
    }
    case DType::f16: {
      const uint16_t* row = static_cast<const uint16_t*>(table.data) + int64_t(id) * h;
      for (int64_t i = 0; i < h; ++i) out[i] = f16_to_f32(row[i]);
      return;
    }
    case DType::q8_0:
    case DType::q4_0:
    case DType::q4_1:
    case DType::q2_k:
    case DType::q3_k:
    case DType::q4_k:
    case DType::q5_k:
    case DType::q6_k: {
      const size_t row_bytes = dtype_row_bytes(table.dtype, h);
      decode_to_f32(table.dtype, static_cast<const uint8_t*>(table.data) + size_t(id) * row_bytes,
                    h, out);
      return;
    }
  }
}

void embedding(const WeightRef& table, const int32_t* ids, int64_t tokens, float* out,
               ThreadPool& pool) {
  if (tokens <= 0) return;
  const int64_t h = table.cols;
  pool.parallel_for(tokens, std::max<int64_t>(1, 65536 / std::max<int64_t>(1, h)),
                    [&](int64_t b, int64_t e) {
                      for (int64_t t = b; t < e; ++t) embed_row(table, ids[t], out + t * h);
                    });
}

}  // namespace invar::kernels::cpu
