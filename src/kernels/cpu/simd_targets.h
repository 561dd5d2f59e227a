// Which SIMD targets the CPU kernels are compiled for (Highway dynamic dispatch).
//
// Every kernel file includes this before hwy/foreach_target.h. We compile AVX-512 (AVX3), AVX2
// and Highway's portable fallback (SCALAR on x86-64 without -m flags; NEON on Arm). SSSE3 and
// SSE4 are dropped: they lack FMA, so they would only add compile time and a third set of bits.
//
// Bits across targets: every reduction works on a logical 8-float accumulator (simd-inl.h), and
// both x86 targets run it lane by lane with fused multiply-adds (256-bit vectors; AVX-512 also
// carries two rows' accumulators in one 512-bit vector where packed weights are decoded in
// registers), so AVX2 and AVX-512 machines give identical results (tests/ops/targets_test.cpp,
// and packed_test.cpp on each target against the f32 gemm). The fallback targets are batch
// invariant too, but may round differently from AVX2 (no FMA on the scalar target).
#pragma once

#ifndef HWY_DISABLED_TARGETS
#define HWY_DISABLED_TARGETS (HWY_SSSE3 | HWY_SSE4)
#endif
