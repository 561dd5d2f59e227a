// rmsnorm: out[r, :] = x[r, :] * (1 / sqrt(mean(x[r, :]^2) + eps)) * weight.
//
// Algorithm: one row at a time (R4). The sum of squares uses four logical 8-lane accumulators
// (chunk c of the row goes to accumulator c mod 4, fused multiply-add, zero-padded tail),
// combined as (a0 + a1) + (a2 + a3) and reduced by the fixed 8-lane tree: an order set by `dim`
// alone. Threads split rows.
//   R = rows, D = dim
#include <algorithm>
#include <cmath>

#include "kernels/cpu/ops.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/rmsnorm.cpp"
#include "kernels/cpu/simd_targets.h"
// clang-format off
#include <hwy/foreach_target.h>
#include <hwy/highway.h>
// clang-format on
#include "kernels/cpu/simd-inl.h"

HWY_BEFORE_NAMESPACE();
namespace invar::kernels::cpu {
namespace HWY_NAMESPACE {

HWY_INLINE float sum_squares(const float* HWY_RESTRICT x, size_t dim) {
  Acc8 a0 = zero8(), a1 = zero8(), a2 = zero8(), a3 = zero8();
  size_t k = 0;
  for (; k + 4 * kChunk <= dim; k += 4 * kChunk) {
    const Acc8 x0 = load8(x + k), x1 = load8(x + k + kChunk);
    const Acc8 x2 = load8(x + k + 2 * kChunk), x3 = load8(x + k + 3 * kChunk);
    fma8(x0, x0, a0);
    fma8(x1, x1, a1);
    fma8(x2, x2, a2);
    fma8(x3, x3, a3);
  }
  Acc8* accs[4] = {&a0, &a1, &a2, &a3};
  for (size_t c = 0; k < dim; k += kChunk, ++c) {
    const Acc8 xv = k + kChunk <= dim ? load8(x + k) : load8_tail(x + k, dim - k);
    fma8(xv, xv, *accs[c]);
  }
  Acc8 s;
  for (size_t i = 0; i < kSub; ++i) {
    s.v[i] = hn::Add(hn::Add(a0.v[i], a1.v[i]), hn::Add(a2.v[i], a3.v[i]));
  }
  return reduce8(s);
}

HWY_INLINE void rmsnorm_row(const float* x, const float* HWY_RESTRICT weight, size_t dim, float eps,
                            float* out) {
  const DF d;
  const float inv = 1.0f / std::sqrt(sum_squares(x, dim) / float(dim) + eps);
  const VF vinv = hn::Set(d, inv);
  // Same expression as Hugging Face: weight * (x * inv).
  map2(x, weight, out, dim, [&](VF xv, VF wv) HWY_ATTR { return hn::Mul(wv, hn::Mul(xv, vinv)); });
}

void rmsnorm_impl(const float* x, const float* weight, int64_t rows, int64_t dim, float eps,
                  float* out, ThreadPool& pool) {
  const int64_t grain = std::max<int64_t>(1, 16384 / dim);
  pool.parallel_for(rows, grain, [&](int64_t b, int64_t e) HWY_ATTR {
    for (int64_t r = b; r < e; ++r) {
      rmsnorm_row(x + r * dim, weight, size_t(dim), eps, out + r * dim);
    }
  });
}

}  // namespace HWY_NAMESPACE
}  // namespace invar::kernels::cpu
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace invar::kernels::cpu {

HWY_EXPORT(rmsnorm_impl);

void rmsnorm(const float* x, const float* weight, int64_t rows, int64_t dim, float eps, float* out,
             ThreadPool& pool) {
  if (rows <= 0 || dim <= 0) return;
  HWY_DYNAMIC_DISPATCH(rmsnorm_impl)(x, weight, rows, dim, eps, out, pool);
}

}  // namespace invar::kernels::cpu
#endif
