// gelu_tanh_mul: out[i] = gelu_tanh(gate[i]) * up[i], the GeGLU MLP of Gemma
// (transformers' gelu_pytorch_tanh).
//
// Algorithm: lane-wise, PyTorch's formula in f32: gelu_tanh(g) = 0.5 g (1 + tanh(b (g + k g^3)))
// with b = sqrt(2 / pi), k = 0.044715, tanh by Highway's Tanh. No reduction; every element,
// including ragged tails of thread chunks, runs the same vector code (map2).
//   n = tokens x intermediate size, flattened
#include <algorithm>

#include "kernels/cpu/ops.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/gelu_tanh_mul.cpp"
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

void gelu_tanh_mul_impl(const float* gate, const float* up, int64_t n, float* out,
                        ThreadPool& pool) {
  const int64_t grain = 16384;
  pool.parallel_for(n, grain, [&](int64_t b, int64_t e) HWY_ATTR {
    const DF d;
    const VF half = hn::Set(d, 0.5f);
    const VF one = hn::Set(d, 1.0f);
    const VF beta = hn::Set(d, 0.7978845608028654f);  // sqrt(2 / pi)
    const VF kappa = hn::Set(d, 0.044715f);
    map2(gate + b, up + b, out + b, size_t(e - b), [&](VF g, VF u) HWY_ATTR {
      const VF cube = hn::Mul(hn::Mul(g, g), g);
      const VF inner = hn::Mul(beta, hn::Add(g, hn::Mul(kappa, cube)));
      const VF gelu = hn::Mul(hn::Mul(half, g), hn::Add(one, hn::Tanh(d, inner)));
      return hn::Mul(gelu, u);
    });
  });
}

}  // namespace HWY_NAMESPACE
}  // namespace invar::kernels::cpu
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace invar::kernels::cpu {

HWY_EXPORT(gelu_tanh_mul_impl);

void gelu_tanh_mul(const float* gate, const float* up, int64_t n, float* out, ThreadPool& pool) {
  if (n <= 0) return;
  HWY_DYNAMIC_DISPATCH(gelu_tanh_mul_impl)(gate, up, n, out, pool);
}

}  // namespace invar::kernels::cpu
#endif
