// argmax: out[r] = the lowest j with x[r, j] == max_j x[r, j] (ties go to the lowest index).
//
// Comparisons only, so the answer is exact; NaN entries never compare greater and are skipped
// (a row of NaNs gives 0). One row per thread chunk (R4); the row scan keeps 8 independent
// running maxima so the compiler can vectorize it, then picks the first index of the maximum.
//   R = rows, V = columns (vocab)
#include <algorithm>
#include <cmath>

#include "kernels/cpu/ops.h"

namespace invar::kernels::cpu {

static int32_t argmax_row(const float* x, int64_t cols) {
  constexpr int kWays = 8;
  float best[kWays];
  for (int w = 0; w < kWays; ++w) best[w] = -__builtin_inff();
  int64_t j = 0;
  for (; j + kWays <= cols; j += kWays) {
    for (int w = 0; w < kWays; ++w) best[w] = x[j + w] > best[w] ? x[j + w] : best[w];
  }
  for (; j < cols; ++j) best[0] = x[j] > best[0] ? x[j] : best[0];
  float m = best[0];
  for (int w = 1; w < kWays; ++w) m = best[w] > m ? best[w] : m;
  for (j = 0; j < cols; ++j) {
    if (x[j] == m) return int32_t(j);
  }
  return 0;  // every entry NaN
}

void argmax(const float* x, int64_t rows, int64_t cols, int32_t* out, ThreadPool& pool) {
  if (rows <= 0) return;
  if (cols <= 0) {
    std::fill(out, out + rows, 0);
    return;
  }
  pool.parallel_for(rows, std::max<int64_t>(1, 65536 / cols), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) out[r] = argmax_row(x + r * cols, cols);
  });
}

void logit_summary(const float* x, int64_t rows, int64_t cols, int32_t* argmax_out,
                   float* max_out, double* log_z_out, ThreadPool& pool) {
  if (rows <= 0) return;
  pool.parallel_for(rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(cols, 1)),
                    [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const float* row = x + r * cols;
      const int32_t best = cols > 0 ? argmax_row(row, cols) : 0;
      const float m = cols > 0 ? row[best] : -__builtin_inff();
      argmax_out[r] = best;
      max_out[r] = m;
      if (!std::isfinite(m)) {
        log_z_out[r] = m;
        continue;
      }
      double sum = 0;  // sequential: a fixed order (R4)
      for (int64_t j = 0; j < cols; ++j)
        if (!std::isnan(row[j])) sum += std::exp(double(row[j]) - m);
      log_z_out[r] = double(m) + std::log(sum);
    }
  });
}

}  // namespace invar::kernels::cpu
