// The one SiLU-and-multiply recipe of the CUDA backend, shared by the silu_mul kernels and the
// GEMM epilogue that fuses it into the gate/up projection (sm90/gate_up_epilogue.cuh): both must
// give the same bits, or the choice between them (which follows M) would change a row (R2).
//   h = bf16(silu(g) * u), silu(g) = g / (1 + e^-g)
// g and u are the bf16 gate and up values, widened exactly; every step is a correctly rounded
// f32 operation (expf is the accurate one, not __expf; the _rn intrinsics keep the compiler
// from contracting into an FMA), rounded once at the end.
#pragma once

#include <cuda_bf16.h>

namespace invar::kernels::cuda {

__device__ __forceinline__ __nv_bfloat16 silu_mul_value(float g, float u) {
  const float s = __fdiv_rn(g, __fadd_rn(1.0f, expf(-g)));
  return __float2bfloat16_rn(__fmul_rn(s, u));
}

}  // namespace invar::kernels::cuda
