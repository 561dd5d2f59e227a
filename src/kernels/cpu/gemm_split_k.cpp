// gemm_split_k: the `fast` kernel mode's GEMM on the CPU. It exists only as the negative
// control of the invariance tests (docs/invariance.md, R8): like a vendor library's heuristics it
// picks the reduction by batch size — for M <= kSplitRows, K is cut into kSlices slices summed
// separately and then added (the split-K pattern), for larger M it is the invariant gemm. So a
// row's bits depend on how many rows share the call, which the tests must detect.
//   M = rows (tokens), N = output features, K = input features
#include <algorithm>

#include "core/dtype.h"
#include "kernels/cpu/ops.h"

namespace invar::kernels::cpu {

namespace {

constexpr int64_t kSplitRows = 8;
constexpr int64_t kSlices = 4;

float weight_at(const WeightRef& w, int64_t i) {
  switch (w.dtype) {
    case DType::f32: return static_cast<const float*>(w.data)[i];
    case DType::bf16: return bf16_to_f32(static_cast<const uint16_t*>(w.data)[i]);
    case DType::f16: return f16_to_f32(static_cast<const uint16_t*>(w.data)[i]);
  }
  return 0.0f;
}

}  // namespace

void gemm_split_k(const float* x, const WeightRef& w, const float* bias, int64_t m, float* y,
                  ThreadPool& pool) {
  if (m > kSplitRows) return gemm(x, w, bias, m, y, pool);
  const int64_t n = w.rows, k = w.cols;
  const int64_t slice = (k + kSlices - 1) / kSlices;
  pool.parallel_for(n, 64, [&](int64_t n0, int64_t n1) {
    for (int64_t r = 0; r < m; ++r) {
      for (int64_t c = n0; c < n1; ++c) {
        float total = 0.0f;
        for (int64_t s = 0; s < kSlices; ++s) {
          float partial = 0.0f;
          for (int64_t i = s * slice; i < std::min(k, (s + 1) * slice); ++i)
            partial += x[r * k + i] * weight_at(w, c * k + i);
          total += partial;
        }
        y[r * n + c] = bias ? total + bias[c] : total;
      }
    }
  });
}

}  // namespace invar::kernels::cpu
