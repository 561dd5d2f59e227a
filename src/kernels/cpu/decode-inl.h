// Per-target SIMD decoders of the packed weight encodings (core/block_quant.h gives the layouts),
// re-included once per target like simd-inl.h.
//
// decode_row writes a row of packed blocks as f32, 8 elements at a time: the stored integers
// are widened to 32-bit lanes, converted to float (exact), and scaled by the block's or
// sub-block's scale with one multiply or one fused multiply-add. The scale products are formed
// in scalar f32, where they are exact, so every value equals core's scalar decode_to_f32 bit
// for bit (tests/ops/packed_test.cpp checks every encoding on every target). That equality is
// what makes a packed GEMM give the bits of an f32 GEMM over the decoded weights.
#if defined(INVAR_KERNELS_CPU_DECODE_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef INVAR_KERNELS_CPU_DECODE_INL_H_
#undef INVAR_KERNELS_CPU_DECODE_INL_H_
#else
#define INVAR_KERNELS_CPU_DECODE_INL_H_
#endif

#include <cstddef>
#include <cstdint>

#include "core/block_quant.h"
#include "kernels/cpu/simd-inl.h"

HWY_BEFORE_NAMESPACE();
namespace invar::kernels::cpu {
namespace HWY_NAMESPACE {

using DI = hn::Rebind<int32_t, DF>;
using VI = hn::Vec<DI>;

// 8 logical int32 lanes (kSub vectors), the integer twin of Acc8.
struct Int8 {
  VI v[kSub];
};

// Bytes p[0..7] zero-extended (u8) or sign-extended (i8) to 8 int32 lanes.
HWY_INLINE Int8 widen_u8(const uint8_t* HWY_RESTRICT p) {
  const DI di;
  const hn::Rebind<uint8_t, DF> d8;
  Int8 r;
  for (size_t s = 0; s < kSub; ++s) r.v[s] = hn::PromoteTo(di, hn::LoadU(d8, p + s * kLanes));
  return r;
}

HWY_INLINE Int8 widen_i8(const uint8_t* HWY_RESTRICT p) {
  const DI di;
  const hn::Rebind<int8_t, DF> d8;
  const int8_t* q = reinterpret_cast<const int8_t*>(p);
  Int8 r;
  for (size_t s = 0; s < kSub; ++s) r.v[s] = hn::PromoteTo(di, hn::LoadU(d8, q + s * kLanes));
  return r;
}

// Lane-wise integer helpers: (v >> shift) & mask, a + b, v << 4, v + c.
HWY_INLINE Int8 bits(const Int8& a, int shift, int32_t mask) {
  const DI di;
  const VI m = hn::Set(di, mask);
  Int8 r;
  for (size_t s = 0; s < kSub; ++s)
    r.v[s] = hn::And(shift == 0 ? a.v[s] : hn::ShiftRightSame(a.v[s], shift), m);
  return r;
}

HWY_INLINE Int8 add(const Int8& a, const Int8& b) {
  Int8 r;
  for (size_t s = 0; s < kSub; ++s) r.v[s] = hn::Add(a.v[s], b.v[s]);
  return r;
}

HWY_INLINE Int8 add(const Int8& a, int32_t c) {
  const DI di;
  Int8 r;
  for (size_t s = 0; s < kSub; ++s) r.v[s] = hn::Add(a.v[s], hn::Set(di, c));
  return r;
}

HWY_INLINE Int8 shl(const Int8& a, int shift) {
  Int8 r;
  for (size_t s = 0; s < kSub; ++s) r.v[s] = hn::ShiftLeftSame(a.v[s], shift);
  return r;
}

// out[0..7] = float(q) * scale.
HWY_INLINE void store_mul(const Int8& q, float scale, float* HWY_RESTRICT out) {
  const DF d;
  const VF vs = hn::Set(d, scale);
  for (size_t s = 0; s < kSub; ++s)
    hn::StoreU(hn::Mul(hn::ConvertTo(d, q.v[s]), vs), d, out + s * kLanes);
}

// out[0..7] = float(q) * scale + offset, one rounding (float(q) * scale is exact).
HWY_INLINE void store_fma(const Int8& q, float scale, float offset, float* HWY_RESTRICT out) {
  const DF d;
  const VF vs = hn::Set(d, scale), vo = hn::Set(d, offset);
  for (size_t s = 0; s < kSub; ++s)
    hn::StoreU(hn::MulAdd(hn::ConvertTo(d, q.v[s]), vs, vo), d, out + s * kLanes);
}

// ---------------------------------------------------------------- blocks of 32

HWY_INLINE void decode_q8_0(const uint8_t* HWY_RESTRICT b, float* HWY_RESTRICT y) {
  const float d = load_f16(b);
  for (size_t c = 0; c < 4; ++c) store_mul(widen_i8(b + 2 + 8 * c), d, y + 8 * c);
}

HWY_INLINE void decode_q4_0(const uint8_t* HWY_RESTRICT b, float* HWY_RESTRICT y) {
  const float d = load_f16(b);
  for (size_t h = 0; h < 2; ++h) {  // bytes 8h..8h+7: elements 8h.. (low) and 16+8h.. (high)
    const Int8 v = widen_u8(b + 2 + 8 * h);
    store_mul(add(bits(v, 0, 15), -8), d, y + 8 * h);
    store_mul(add(bits(v, 4, 15), -8), d, y + 16 + 8 * h);
  }
}

HWY_INLINE void decode_q4_1(const uint8_t* HWY_RESTRICT b, float* HWY_RESTRICT y) {
  const float d = load_f16(b), m = load_f16(b + 2);
  for (size_t h = 0; h < 2; ++h) {
    const Int8 v = widen_u8(b + 4 + 8 * h);
    store_fma(bits(v, 0, 15), d, m, y + 8 * h);
    store_fma(bits(v, 4, 15), d, m, y + 16 + 8 * h);
  }
}

// ---------------------------------------------------------------- super-blocks of 256

HWY_INLINE void decode_q2_k(const uint8_t* HWY_RESTRICT b, float* HWY_RESTRICT y) {
  const uint8_t* scales = b;
  const uint8_t* qs = b + 16;
  const float d = load_f16(b + 80), dmin = load_f16(b + 82);
  for (int h = 0; h < 2; ++h) {
    Int8 v[4];
    for (int l = 0; l < 4; ++l) v[l] = widen_u8(qs + 32 * h + 8 * l);
    for (int j = 0; j < 4; ++j) {
      for (int l = 0; l < 4; ++l) {
        const uint8_t s = scales[8 * h + 2 * j + l / 2];
        store_fma(bits(v[l], 2 * j, 3), d * float(s & 15), -(dmin * float(s >> 4)),
                  y + 128 * h + 32 * j + 8 * l);
      }
    }
  }
}

HWY_INLINE void decode_q3_k(const uint8_t* HWY_RESTRICT b, float* HWY_RESTRICT y) {
  const uint8_t* hmask = b;
  const uint8_t* qs = b + 32;
  int8_t sc[16];
  unpack_scales_q3_k(b + 96, sc);
  const float d = load_f16(b + 108);
  Int8 hm[4];
  for (int l = 0; l < 4; ++l) hm[l] = widen_u8(hmask + 8 * l);
  for (int h = 0; h < 2; ++h) {
    Int8 v[4];
    for (int l = 0; l < 4; ++l) v[l] = widen_u8(qs + 32 * h + 8 * l);
    for (int j = 0; j < 4; ++j) {
      for (int l = 0; l < 4; ++l) {
        // q = low - 4 + 4 * high bit
        const Int8 q = add(add(bits(v[l], 2 * j, 3), shl(bits(hm[l], 4 * h + j, 1), 2)), -4);
        store_mul(q, d * float(sc[8 * h + 2 * j + l / 2]), y + 128 * h + 32 * j + 8 * l);
      }
    }
  }
}

template <bool kFive>
HWY_INLINE void decode_q45_k(const uint8_t* HWY_RESTRICT b, float* HWY_RESTRICT y) {
  const float d = load_f16(b), dmin = load_f16(b + 2);
  uint8_t sc[8], mn[8];
  unpack_scale_min_k(b + 4, sc, mn);
  const uint8_t* qs = kFive ? b + 48 : b + 16;
  Int8 qh[4];
  if constexpr (kFive) {
    for (int l = 0; l < 4; ++l) qh[l] = widen_u8(b + 16 + 8 * l);
  }
  for (int g = 0; g < 4; ++g) {
    for (int i = 0; i < 2; ++i) {
      const float scale = d * float(sc[2 * g + i]), min = dmin * float(mn[2 * g + i]);
      for (int l = 0; l < 4; ++l) {
        Int8 q = bits(widen_u8(qs + 32 * g + 8 * l), 4 * i, 15);
        if constexpr (kFive) q = add(q, shl(bits(qh[l], 2 * g + i, 1), 4));
        store_fma(q, scale, -min, y + 64 * g + 32 * i + 8 * l);
      }
    }
  }
}

HWY_INLINE void decode_q6_k(const uint8_t* HWY_RESTRICT b, float* HWY_RESTRICT y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = load_f16(b + 208);
  for (int h = 0; h < 2; ++h) {
    Int8 hv[4];
    for (int l = 0; l < 4; ++l) hv[l] = widen_u8(qh + 32 * h + 8 * l);
    for (int r = 0; r < 4; ++r) {
      for (int l = 0; l < 4; ++l) {
        const Int8 lv = widen_u8(ql + 64 * h + 32 * (r & 1) + 8 * l);
        const Int8 q = add(add(bits(lv, r < 2 ? 0 : 4, 15), shl(bits(hv[l], 2 * r, 3), 4)), -32);
        store_mul(q, d * float(sc[8 * h + 2 * r + l / 2]), y + 128 * h + 32 * r + 8 * l);
      }
    }
  }
}

// ---------------------------------------------------------------- rows

// Decodes k elements (whole blocks) of one packed row into f32.
using DecodeRowFn = void (*)(const uint8_t* src, size_t k, float* out);

template <size_t kElems, size_t kBytes, void (*kBlock)(const uint8_t*, float*)>
HWY_NOINLINE void decode_row(const uint8_t* HWY_RESTRICT src, size_t k, float* HWY_RESTRICT out) {
  for (size_t i = 0; i < k; i += kElems, src += kBytes) kBlock(src, out + i);
}

// The decoder of a packed type; nullptr for a plain one.
HWY_INLINE DecodeRowFn decode_row_fn(DType t) {
  switch (t) {
    case DType::q8_0: return &decode_row<32, 34, decode_q8_0>;
    case DType::q4_0: return &decode_row<32, 18, decode_q4_0>;
    case DType::q4_1: return &decode_row<32, 20, decode_q4_1>;
    case DType::q2_k: return &decode_row<256, 84, decode_q2_k>;
    case DType::q3_k: return &decode_row<256, 110, decode_q3_k>;
    case DType::q4_k: return &decode_row<256, 144, decode_q45_k<false>>;
    case DType::q5_k: return &decode_row<256, 176, decode_q45_k<true>>;
    case DType::q6_k: return &decode_row<256, 210, decode_q6_k>;
    case DType::f32:
    case DType::f16:
    case DType::bf16: return nullptr;
  }
  return nullptr;
}

}  // namespace HWY_NAMESPACE
}  // namespace invar::kernels::cpu
HWY_AFTER_NAMESPACE();

#endif  // INVAR_KERNELS_CPU_DECODE_INL_H_
