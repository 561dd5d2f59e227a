// silu_mul: out[i] = silu(gate[i]) * up[i], silu(g) = g * sigmoid(g) (the SwiGLU MLP).
//
// Algorithm: lane-wise with Highway's Exp on exp(-|g|), so the sigmoid never overflows:
// sigmoid(g) = 1 / (1 + e) for g >= 0 and e / (1 + e) otherwise. No reduction; every element,
// including ragged tails of thread chunks, runs the same vector code (map2).
//   n = tokens x intermediate size, flattened
#include <algorithm>

#include "kernels/cpu/ops.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/silu_mul.cpp"
#include "kernels/cpu/simd_targets.h"
// clang-format off
#include <hwy/foreach_target.h>
#include <hwy/highway.h>
// clang-format on
#include <hwy/contrib/math/math-inl.h>

#include "kernels/cpu/simd-inl.h"

HWY_BEFORE_NAMESPACE();
namespace invar::kernels::cpu {
namespace HWY_NAMESPACE {

void silu_mul_impl(const float* gate, const float* up, int64_t n, float* out, ThreadPool& pool) {
  const int64_t grain = 16384;
  pool.parallel_for(n, grain, [&](int64_t b, int64_t e) HWY_ATTR {
    const DF d;
    const VF one = hn::Set(d, 1.0f);
    map2(gate + b, up + b, out + b, size_t(e - b), [&](VF g, VF u) HWY_ATTR {
      const VF ex = hn::Exp(d, hn::Neg(hn::Abs(g)));
      const VF den = hn::Add(one, ex);
      const VF sig = hn::IfThenElse(hn::Ge(g, hn::Zero(d)), hn::Div(one, den), hn::Div(ex, den));
      return hn::Mul(hn::Mul(g, sig), u);
    });
  });
}

}  // namespace HWY_NAMESPACE
}  // namespace invar::kernels::cpu
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace invar::kernels::cpu {

HWY_EXPORT(silu_mul_impl);

void silu_mul(const float* gate, const float* up, int64_t n, float* out, ThreadPool& pool) {
  if (n <= 0) return;
  HWY_DYNAMIC_DISPATCH(silu_mul_impl)(gate, up, n, out, pool);
}

}  // namespace invar::kernels::cpu
#endif
