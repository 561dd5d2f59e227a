// add: acc[i] += x[i] (the residual connection).
//
// Algorithm: one IEEE add per element; exact, so any vectorization gives the same bits.
//   n = tokens x hidden size, flattened
#include "kernels/cpu/ops.h"

namespace invar::kernels::cpu {

void add(float* acc, const float* x, int64_t n, ThreadPool& pool) {
  if (n <= 0) return;
  pool.parallel_for(n, 65536, [&](int64_t b, int64_t e) {
    float* __restrict a = acc + b;
    const float* __restrict v = x + b;
    for (int64_t i = 0, len = e - b; i < len; ++i) a[i] += v[i];
  });
}

}  // namespace invar::kernels::cpu
