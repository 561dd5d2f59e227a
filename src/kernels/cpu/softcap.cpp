// softcap: x[i] = cap * tanh(x[i] / cap) in place, Gemma 2's soft-capping of the final logits
// (transformers: logits / cap, tanh, * cap, in that order).
//
// Algorithm: lane-wise with Highway's Tanh, the same vector code for every element (map2 with
// x as both inputs). No reduction.
//   n = rows x vocab, flattened
#include <algorithm>

#include "kernels/cpu/ops.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/softcap.cpp"
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

void softcap_impl(float* x, int64_t n, float cap, ThreadPool& pool) {
  const int64_t grain = 16384;
  pool.parallel_for(n, grain, [&](int64_t b, int64_t e) HWY_ATTR {
    const DF d;
    const VF vcap = hn::Set(d, cap);
    map2(x + b, x + b, x + b, size_t(e - b),
         [&](VF v, VF) HWY_ATTR { return hn::Mul(hn::Tanh(d, hn::Div(v, vcap)), vcap); });
  });
}

}  // namespace HWY_NAMESPACE
}  // namespace invar::kernels::cpu
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace invar::kernels::cpu {

HWY_EXPORT(softcap_impl);

void softcap(float* x, int64_t n, float cap, ThreadPool& pool) {
  if (n <= 0) return;
  HWY_DYNAMIC_DISPATCH(softcap_impl)(x, n, cap, pool);
}

}  // namespace invar::kernels::cpu
#endif
