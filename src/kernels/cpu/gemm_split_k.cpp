// gemm_split_k: the `fast` kernel mode's GEMM on the CPU. It exists only as the negative
// control of the invariance tests (docs/invariance.md, R8): like a vendor library's heuristics it
// picks the reduction by batch size — for M <= kSplitRows, K is cut into kSlices slices summed
// separately and then added (the split-K pattern), for larger M it is the invariant gemm. So a
// row's bits depend on how many rows share the call, which the tests must detect.
//   M = rows (tokens), N = output features, K = input features
#include <algorithm>
#include <vector>

#include "core/block_quant.h"
#include "kernels/cpu/ops.h"

namespace invar::kernels::cpu {

namespace {

constexpr int64_t kSplitRows = 8;
constexpr int64_t kSlices = 4;

}  // namespace

void gemm_split_k(const float* x, const WeightRef& w, const float* bias, int64_t m, float* y,
                  ThreadPool& pool) {
  if (m > kSplitRows) return gemm(x, w, bias, m, y, pool);
  const int64_t n = w.rows, k = w.cols;
  const int64_t slice = (k + kSlices - 1) / kSlices;
  const size_t row_bytes = dtype_row_bytes(w.dtype, k);
  pool.parallel_for(n, 64, [&](int64_t n0, int64_t n1) {
    std::vector<float> row(static_cast<size_t>(k));  // weight row c, decoded (exact)
    for (int64_t c = n0; c < n1; ++c) {
      decode_to_f32(w.dtype, static_cast<const uint8_t*>(w.data) + size_t(c) * row_bytes, k,
                    row.data());
      for (int64_t r = 0; r < m; ++r) {
        float total = 0.0f;
        for (int64_t s = 0; s < kSlices; ++s) {
          float partial = 0.0f;
          for (int64_t i = s * slice; i < std::min(k, (s + 1) * slice); ++i)
            partial += x[r * k + i] * row[size_t(i)];
          total += partial;
        }
        y[r * n + c] = bias ? total + bias[c] : total;
      }
    }
  });
}

}  // namespace invar::kernels::cpu
