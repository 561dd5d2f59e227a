// kv_store: copies this step's K and V rows into their paged-cache slots.
//
// slot = block * block_size + offset; the cache is [num_blocks, block_size, Hkv, D], so a slot's
// row of Hkv * D floats is contiguous. A negative slot marks a padding token and is skipped.
//   T = tokens, Hkv = kv heads, D = head dim
#include <algorithm>
#include <cassert>
#include <cstring>

#include "kernels/cpu/ops.h"

namespace invar::kernels::cpu {

void kv_store(const float* k, const float* v, const int64_t* slots, int64_t tokens,
              const KvLayerRef& cache, ThreadPool& pool) {
  if (tokens <= 0) return;
  const int64_t row = int64_t(cache.kv_heads) * cache.head_dim;
  const int64_t num_slots = int64_t(cache.num_blocks) * cache.block_size;
  pool.parallel_for(tokens, std::max<int64_t>(1, 65536 / std::max<int64_t>(1, row)),
                    [&](int64_t b, int64_t e) {
                      for (int64_t t = b; t < e; ++t) {
                        const int64_t slot = slots[t];
                        if (slot < 0) continue;
                        assert(slot < num_slots);
                        (void)num_slots;
                        std::memcpy(cache.k + slot * row, k + t * row, size_t(row) * sizeof(float));
                        std::memcpy(cache.v + slot * row, v + t * row, size_t(row) * sizeof(float));
                      }
                    });
}

}  // namespace invar::kernels::cpu
