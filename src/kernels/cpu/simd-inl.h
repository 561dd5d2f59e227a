// Per-target SIMD building blocks shared by the CPU kernels (Highway, re-included once per
// target by foreach_target.h, hence the toggled include guard instead of #pragma once).
//
// The one reduction recipe (R1, R2). A dot product over K is accumulated in a *logical* 8-float
// accumulator: lane j holds the fused multiply-add chain over k = j, j+8, j+16, ... in
// ascending order; a K tail is a zero-padded last chunk. The 8 lanes are then summed by one
// fixed tree,
//     ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)),
// whether the accumulator is reduced alone (reduce8) or together with seven others
// (reduce8x8, a transpose-and-add). A logical accumulator is one 256-bit vector on AVX2 and
// AVX-512 and kSub narrower vectors elsewhere, so the recipe does not depend on the vector
// width of the machine. (The packed gemm's decode-step path puts two rows' accumulators side
// by side in one AVX-512 vector, decode-inl.h's Pair: each lane's chain is unchanged.)
#if defined(INVAR_KERNELS_CPU_SIMD_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef INVAR_KERNELS_CPU_SIMD_INL_H_
#undef INVAR_KERNELS_CPU_SIMD_INL_H_
#else
#define INVAR_KERNELS_CPU_SIMD_INL_H_
#endif

#include <hwy/highway.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

HWY_BEFORE_NAMESPACE();
namespace invar::kernels::cpu {
namespace HWY_NAMESPACE {

namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::CappedTag<float, 8>;
using VF = hn::Vec<DF>;

constexpr size_t kChunk = 8;              // logical lanes of every accumulator (R1)
constexpr size_t kLanes = DF::kPrivateN;  // physical lanes of one vector
constexpr size_t kSub = kChunk / kLanes;  // vectors per logical accumulator
static_assert(kChunk % kLanes == 0, "vector width must divide the logical chunk");

// Sum of 8 lanes in the fixed tree order above.
HWY_INLINE float tree8(const float* l) {
  return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}

// 8 logical float lanes.
struct Acc8 {
  VF v[kSub];
};

HWY_INLINE Acc8 zero8() {
  const DF d;
  Acc8 a;
  for (size_t s = 0; s < kSub; ++s) a.v[s] = hn::Zero(d);
  return a;
}

HWY_INLINE Acc8 set8(float x) {
  const DF d;
  Acc8 a;
  for (size_t s = 0; s < kSub; ++s) a.v[s] = hn::Set(d, x);
  return a;
}

// Loads 8 consecutive elements as f32 (bf16 and f16 widen exactly).
HWY_INLINE Acc8 load8(const float* HWY_RESTRICT p) {
  const DF d;
  Acc8 a;
  for (size_t s = 0; s < kSub; ++s) a.v[s] = hn::LoadU(d, p + s * kLanes);
  return a;
}

struct Bf16 {
  uint16_t bits;
};
struct F16 {
  uint16_t bits;
};

HWY_INLINE Acc8 load8(const Bf16* HWY_RESTRICT p) {
  const DF d;
  const hn::Rebind<uint16_t, DF> d16;
  const hn::Rebind<uint32_t, DF> d32;
  const uint16_t* u = reinterpret_cast<const uint16_t*>(p);
  Acc8 a;
  for (size_t s = 0; s < kSub; ++s) {
    a.v[s] = hn::BitCast(d, hn::ShiftLeft<16>(hn::PromoteTo(d32, hn::LoadU(d16, u + s * kLanes))));
  }
  return a;
}

HWY_INLINE Acc8 load8(const F16* HWY_RESTRICT p) {
  const DF d;
  const hn::Rebind<hwy::float16_t, DF> d16;
  const hwy::float16_t* h = reinterpret_cast<const hwy::float16_t*>(p);
  Acc8 a;
  for (size_t s = 0; s < kSub; ++s) a.v[s] = hn::PromoteTo(d, hn::LoadU(d16, h + s * kLanes));
  return a;
}

// Loads n < 8 elements, zero-padding the rest, without reading past p + n.
template <typename T>
HWY_INLINE Acc8 load8_tail(const T* HWY_RESTRICT p, size_t n) {
  T buf[kChunk];
  std::memset(static_cast<void*>(buf), 0, sizeof(buf));
  std::memcpy(static_cast<void*>(buf), p, n * sizeof(T));
  return load8(buf);
}

HWY_INLINE void store8(const Acc8& a, float* HWY_RESTRICT p) {
  const DF d;
  for (size_t s = 0; s < kSub; ++s) hn::StoreU(a.v[s], d, p + s * kLanes);
}

// acc += x * w, lane by lane, fused.
HWY_INLINE void fma8(const Acc8& x, const Acc8& w, Acc8& acc) {
  for (size_t s = 0; s < kSub; ++s) acc.v[s] = hn::MulAdd(x.v[s], w.v[s], acc.v[s]);
}

HWY_INLINE float reduce8(const Acc8& a) {
#if HWY_TARGET != HWY_SCALAR
  if constexpr (kLanes == 8) {
    const hn::Half<DF> dh;
    const auto t = hn::Add(hn::LowerHalf(dh, a.v[0]), hn::UpperHalf(dh, a.v[0]));  // l_i + l_i+4
    const auto u = hn::Add(t, hn::Shuffle1032(t));  // (t0 + t2), (t1 + t3)
    return hn::GetLane(hn::Add(u, hn::Shuffle2301(u)));
  }
#endif
  alignas(32) float l[kChunk];
  store8(a, l);
  return tree8(l);
}

// out[i] = reduce8(a[i]) for i < 8, bit for bit, with one transpose-and-add.
HWY_INLINE void reduce8x8(const Acc8* a, float* HWY_RESTRICT out) {
#if HWY_TARGET != HWY_SCALAR
  if constexpr (kLanes == 8) {
    const DF d;
    const hn::Repartition<uint64_t, DF> d64;
    // Inputs fed in the order p = {0,4,2,6,1,5,3,7} (an involution), so that the interleaving
    // below leaves the sums in natural order.
    const VF a0 = a[0].v[0], a1 = a[4].v[0], a2 = a[2].v[0], a3 = a[6].v[0];
    const VF a4 = a[1].v[0], a5 = a[5].v[0], a6 = a[3].v[0], a7 = a[7].v[0];
    // t_i[j] = a_i[j] + a_i[j+4]; two accumulators per vector: [t_2i | t_2i+1].
    const VF b0 = hn::Add(hn::ConcatLowerLower(d, a1, a0), hn::ConcatUpperUpper(d, a1, a0));
    const VF b1 = hn::Add(hn::ConcatLowerLower(d, a3, a2), hn::ConcatUpperUpper(d, a3, a2));
    const VF b2 = hn::Add(hn::ConcatLowerLower(d, a5, a4), hn::ConcatUpperUpper(d, a5, a4));
    const VF b3 = hn::Add(hn::ConcatLowerLower(d, a7, a6), hn::ConcatUpperUpper(d, a7, a6));
    // u_i = (t_i[0] + t_i[2], t_i[1] + t_i[3]): per block [u_a | u_b] of 64-bit pairs.
    auto pair_sum = [&](VF x, VF y) HWY_ATTR {
      const auto lo = hn::InterleaveLower(d64, hn::BitCast(d64, x), hn::BitCast(d64, y));
      const auto hi = hn::InterleaveUpper(d64, hn::BitCast(d64, x), hn::BitCast(d64, y));
      return hn::Add(hn::BitCast(d, lo), hn::BitCast(d, hi));
    };
    const VF c0 = pair_sum(b0, b1);  // [u0 u2 | u1 u3]
    const VF c1 = pair_sum(b2, b3);  // [u4 u6 | u5 u7]
    // r_i = u_i[0] + u_i[1] lands in the even lanes.
    const VF e0 = hn::Add(c0, hn::Shuffle2301(c0));
    const VF e1 = hn::Add(c1, hn::Shuffle2301(c1));
    hn::StoreU(hn::OddEven(hn::Shuffle2301(e1), e0), d, out);
    return;
  }
#endif
  for (size_t i = 0; i < 8; ++i) out[i] = reduce8(a[i]);
}

// out[i] = f(a[i], b[i]) for a lane-wise f, with a ragged tail run through the same vector code
// on a zero-padded copy: an element's bits never depend on where a thread's chunk or the array
// ends.
template <class F>
HWY_INLINE void map2(const float* a, const float* b, float* out, size_t n, const F& f) {
  const DF d;
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    hn::StoreU(f(hn::LoadU(d, a + i), hn::LoadU(d, b + i)), d, out + i);
  if (i == n) return;
  alignas(32) float ta[kLanes] = {}, tb[kLanes] = {}, to[kLanes];
  std::memcpy(ta, a + i, (n - i) * sizeof(float));
  std::memcpy(tb, b + i, (n - i) * sizeof(float));
  hn::Store(f(hn::Load(d, ta), hn::Load(d, tb)), d, to);
  std::memcpy(out + i, to, (n - i) * sizeof(float));
}

}  // namespace HWY_NAMESPACE
}  // namespace invar::kernels::cpu
HWY_AFTER_NAMESPACE();

#endif  // INVAR_KERNELS_CPU_SIMD_INL_H_
