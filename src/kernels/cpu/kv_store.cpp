// kv_store: copies this step's K and V rows into their paged-cache slots, rounded to f16 (to
// nearest even) when the cache is f16.
//
// slot = block * block_size + offset; the cache is [num_blocks, block_size, Hkv, D], so a slot's
// row of Hkv * D elements is contiguous. A negative slot marks a padding token and is skipped.
// Each element is converted on its own, so nothing here can depend on the batch.
//   T = tokens, Hkv = kv heads, D = head dim
#include <algorithm>
#include <cassert>
#include <cstring>

#include "kernels/cpu/ops.h"

namespace invar::kernels::cpu {

static void store_row(const float* src, int64_t n, DType dtype, void* dst) {
  if (dtype == DType::f32) {
    std::memcpy(dst, src, size_t(n) * sizeof(float));
    return;
  }
  uint16_t* h = static_cast<uint16_t*>(dst);
  for (int64_t i = 0; i < n; ++i) h[i] = f32_to_f16(src[i]);
}

void kv_store(const float* k, const float* v, const int64_t* slots, int64_t tokens,
              const KvLayerRef& cache, ThreadPool& pool) {
  if (tokens <= 0) return;
  assert(cache.dtype == DType::f32 || cache.dtype == DType::f16);
  const int64_t row = int64_t(cache.kv_heads) * cache.head_dim;
  const size_t row_bytes = size_t(row) * dtype_size(cache.dtype);
  const int64_t num_slots = int64_t(cache.num_blocks) * cache.block_size;
  pool.parallel_for(tokens, std::max<int64_t>(1, 65536 / std::max<int64_t>(1, row)),
                    [&](int64_t b, int64_t e) {
                      for (int64_t t = b; t < e; ++t) {
                        const int64_t slot = slots[t];
                        if (slot < 0) continue;
                        assert(slot < num_slots);
                        (void)num_slots;
                        store_row(k + t * row, row, cache.dtype,
                                  static_cast<uint8_t*>(cache.k) + size_t(slot) * row_bytes);
                        store_row(v + t * row, row, cache.dtype,
                                  static_cast<uint8_t*>(cache.v) + size_t(slot) * row_bytes);
                      }
                    });
}

}  // namespace invar::kernels::cpu
