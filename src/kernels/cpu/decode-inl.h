// Per-target SIMD decoders of the packed weight encodings (core/block_quant.h gives the layouts),
// re-included once per target like simd-inl.h.
//
// decode_row writes a row of packed blocks as f32, 16 elements at a time (one AVX-512 vector,
// two AVX2 ones: every value is computed on its own, so the vector width changes no bits): the
// stored integers are widened to 32-bit lanes, converted to float (exact), and scaled by the
// block's or sub-block's scale with one multiply or one fused multiply-add. The scale products are
// formed in scalar f32, where they are exact, so every value equals core's scalar decode_to_f32 bit
// for bit (tests/ops/packed_test.cpp checks every encoding on every target). That equality is
// what makes a packed GEMM give the bits of an f32 GEMM over the decoded weights. The Pair
// decoders (below) compute the same values in registers, chunk by chunk, for the gemm's
// decode-step path.
#if defined(INVAR_KERNELS_CPU_DECODE_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef INVAR_KERNELS_CPU_DECODE_INL_H_
#undef INVAR_KERNELS_CPU_DECODE_INL_H_
#else
#define INVAR_KERNELS_CPU_DECODE_INL_H_
#endif

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "core/block_quant.h"
#include "kernels/cpu/simd-inl.h"

HWY_BEFORE_NAMESPACE();
namespace invar::kernels::cpu {
namespace HWY_NAMESPACE {

// Decoders work on 16 logical lanes: the widest vector of the target, up to 16 floats.
using DW = hn::CappedTag<float, 16>;
using VW = hn::Vec<DW>;
using DWI = hn::Rebind<int32_t, DW>;
using VWI = hn::Vec<DWI>;
constexpr size_t kWLanes = DW::kPrivateN;
constexpr size_t kWSub = 16 / kWLanes;

// 16 logical int32 lanes.
struct Int16 {
  VWI v[kWSub];
};

// Bytes p[0..15] zero-extended (u8) or sign-extended (i8) to 16 int32 lanes.
HWY_INLINE Int16 widen_u8(const uint8_t* HWY_RESTRICT p) {
  const DWI di;
  const hn::Rebind<uint8_t, DW> d8;
  Int16 r;
  for (size_t s = 0; s < kWSub; ++s) r.v[s] = hn::PromoteTo(di, hn::LoadU(d8, p + s * kWLanes));
  return r;
}

HWY_INLINE Int16 widen_i8(const uint8_t* HWY_RESTRICT p) {
  const DWI di;
  const hn::Rebind<int8_t, DW> d8;
  const int8_t* q = reinterpret_cast<const int8_t*>(p);
  Int16 r;
  for (size_t s = 0; s < kWSub; ++s) r.v[s] = hn::PromoteTo(di, hn::LoadU(d8, q + s * kWLanes));
  return r;
}

// Lane-wise integer helpers: (v >> shift) & mask, a + b, a + c, a << shift.
HWY_INLINE Int16 bits(const Int16& a, int shift, int32_t mask) {
  const DWI di;
  const VWI m = hn::Set(di, mask);
  Int16 r;
  for (size_t s = 0; s < kWSub; ++s)
    r.v[s] = hn::And(shift == 0 ? a.v[s] : hn::ShiftRightSame(a.v[s], shift), m);
  return r;
}

// v >> shift, for lanes holding zero-extended bytes (the high nibble needs no mask).
HWY_INLINE Int16 shr(const Int16& a, int shift) {
  Int16 r;
  for (size_t s = 0; s < kWSub; ++s) r.v[s] = hn::ShiftRightSame(a.v[s], shift);
  return r;
}

HWY_INLINE Int16 add(const Int16& a, const Int16& b) {
  Int16 r;
  for (size_t s = 0; s < kWSub; ++s) r.v[s] = hn::Add(a.v[s], b.v[s]);
  return r;
}

HWY_INLINE Int16 add(const Int16& a, int32_t c) {
  const DWI di;
  Int16 r;
  for (size_t s = 0; s < kWSub; ++s) r.v[s] = hn::Add(a.v[s], hn::Set(di, c));
  return r;
}

HWY_INLINE Int16 shl(const Int16& a, int shift) {
  Int16 r;
  for (size_t s = 0; s < kWSub; ++s) r.v[s] = hn::ShiftLeftSame(a.v[s], shift);
  return r;
}

// The little-endian f16 at p, widened exactly (one F16C instruction where the target has it;
// core's scalar f16_to_f32 gives the same value with a dozen branches and shifts).
HWY_INLINE float load_f16_fast(const uint8_t* HWY_RESTRICT p) {
  const hn::CappedTag<float, 1> d1;
  const hn::Rebind<hwy::float16_t, decltype(d1)> dh;
  return hn::GetLane(hn::PromoteTo(d1, hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(p))));
}

HWY_INLINE VW splat(float x) {
  return hn::Set(DW(), x);
}

// out[0..15] = float(q) * scale.
HWY_INLINE void store_mul(const Int16& q, VW scale, float* HWY_RESTRICT out) {
  const DW d;
  for (size_t s = 0; s < kWSub; ++s)
    hn::StoreU(hn::Mul(hn::ConvertTo(d, q.v[s]), scale), d, out + s * kWLanes);
}

// out[0..15] = float(q) * scale + offset, one rounding (float(q) * scale is exact).
HWY_INLINE void store_fma(const Int16& q, VW scale, VW offset, float* HWY_RESTRICT out) {
  const DW d;
  for (size_t s = 0; s < kWSub; ++s)
    hn::StoreU(hn::MulAdd(hn::ConvertTo(d, q.v[s]), scale, offset), d, out + s * kWLanes);
}

// ---------------------------------------------------------------- blocks of 32

HWY_INLINE void decode_q8_0(const uint8_t* HWY_RESTRICT b, float* HWY_RESTRICT y) {
  const VW d = splat(load_f16_fast(b));
  store_mul(widen_i8(b + 2), d, y);
  store_mul(widen_i8(b + 18), d, y + 16);
}

// 4-bit blocks: the low nibbles of the 16 bytes are elements 0..15, the high ones 16..31.
HWY_INLINE void decode_q4_0(const uint8_t* HWY_RESTRICT b, float* HWY_RESTRICT y) {
  const VW d = splat(load_f16_fast(b));
  const Int16 v = widen_u8(b + 2);
  store_mul(add(bits(v, 0, 15), -8), d, y);
  store_mul(add(bits(v, 4, 15), -8), d, y + 16);
}

HWY_INLINE void decode_q4_1(const uint8_t* HWY_RESTRICT b, float* HWY_RESTRICT y) {
  const VW d = splat(load_f16_fast(b)), m = splat(load_f16_fast(b + 2));
  const Int16 v = widen_u8(b + 4);
  store_fma(bits(v, 0, 15), d, m, y);
  store_fma(bits(v, 4, 15), d, m, y + 16);
}

// ---------------------------------------------------------------- super-blocks of 256
// Element e = 128h + 32j + l (q2_k, q3_k, q6_k with j = r) or 64g + 32i + l (q4_k, q5_k); a chunk
// of 16 is l in [0, 16) or [16, 32): one sub-block of 16, or half of one of 32.

HWY_INLINE void decode_q2_k(const uint8_t* HWY_RESTRICT b, float* HWY_RESTRICT y) {
  const uint8_t* scales = b;
  const uint8_t* qs = b + 16;
  const float d = load_f16_fast(b + 80), dmin = load_f16_fast(b + 82);
  for (int h = 0; h < 2; ++h) {
    const Int16 v[2] = {widen_u8(qs + 32 * h), widen_u8(qs + 32 * h + 16)};
    for (int j = 0; j < 4; ++j) {
      for (int c = 0; c < 2; ++c) {
        const uint8_t s = scales[8 * h + 2 * j + c];
        store_fma(bits(v[c], 2 * j, 3), splat(d * float(s & 15)), splat(-(dmin * float(s >> 4))),
                  y + 128 * h + 32 * j + 16 * c);
      }
    }
  }
}

HWY_INLINE void decode_q3_k(const uint8_t* HWY_RESTRICT b, float* HWY_RESTRICT y) {
  int8_t sc[16];
  unpack_scales_q3_k(b + 96, sc);
  const float d = load_f16_fast(b + 108);
  const Int16 hm[2] = {widen_u8(b), widen_u8(b + 16)};
  for (int h = 0; h < 2; ++h) {
    const Int16 v[2] = {widen_u8(b + 32 + 32 * h), widen_u8(b + 48 + 32 * h)};
    for (int j = 0; j < 4; ++j) {
      for (int c = 0; c < 2; ++c) {
        // q = low - 4 + 4 * high bit
        const Int16 q = add(add(bits(v[c], 2 * j, 3), shl(bits(hm[c], 4 * h + j, 1), 2)), -4);
        store_mul(q, splat(d * float(sc[8 * h + 2 * j + c])), y + 128 * h + 32 * j + 16 * c);
      }
    }
  }
}

template <bool kFive>
HWY_INLINE void decode_q45_k(const uint8_t* HWY_RESTRICT b, float* HWY_RESTRICT y) {
  const float d = load_f16_fast(b), dmin = load_f16_fast(b + 2);
  uint8_t sc[8], mn[8];
  unpack_scale_min_k(b + 4, sc, mn);
  const uint8_t* qs = kFive ? b + 48 : b + 16;
  Int16 qh[2];
  if constexpr (kFive) qh[0] = widen_u8(b + 16), qh[1] = widen_u8(b + 32);
  for (int g = 0; g < 4; ++g) {
    const Int16 v[2] = {widen_u8(qs + 32 * g), widen_u8(qs + 32 * g + 16)};
    for (int i = 0; i < 2; ++i) {
      const VW scale = splat(d * float(sc[2 * g + i])), off = splat(-(dmin * float(mn[2 * g + i])));
      for (int c = 0; c < 2; ++c) {
        Int16 q = bits(v[c], 4 * i, 15);
        if constexpr (kFive) q = add(q, shl(bits(qh[c], 2 * g + i, 1), 4));
        store_fma(q, scale, off, y + 64 * g + 32 * i + 16 * c);
      }
    }
  }
}

HWY_INLINE void decode_q6_k(const uint8_t* HWY_RESTRICT b, float* HWY_RESTRICT y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = load_f16_fast(b + 208);
  for (int h = 0; h < 2; ++h) {
    const Int16 hv[2] = {widen_u8(qh + 32 * h), widen_u8(qh + 32 * h + 16)};
    for (int r = 0; r < 4; ++r) {
      for (int c = 0; c < 2; ++c) {
        const Int16 lv = widen_u8(ql + 64 * h + 32 * (r & 1) + 16 * c);
        const Int16 q = add(add(bits(lv, r < 2 ? 0 : 4, 15), shl(bits(hv[c], 2 * r, 3), 4)), -32);
        store_mul(q, splat(d * float(sc[8 * h + 2 * r + c])), y + 128 * h + 32 * r + 16 * c);
      }
    }
  }
}

// ---------------------------------------------------------------- pairs of rows, in registers
// For a few activation rows (decode steps) the gemm multiplies blocks of 32 as they are decoded,
// with no f32 row in memory between decoder and multiply-adds. A Pair holds one 8-element chunk
// (k ascending) of two weight rows a and b: logical lanes 0..7 are a's, 8..15 b's, so that one
// AVX-512 vector carries the 8-lane recipe of two rows (simd-inl.h); elsewhere they are kWSub
// narrower vectors, a's first. Each lane is computed exactly as decode_row computes it (widen,
// convert, one multiply or fused multiply-add by the block's f32 scales), so the chunks are the
// bits decode_row writes.
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
constexpr bool kHasPairs = true;  // one 512-bit vector per Pair
#elif HWY_TARGET != HWY_SCALAR
constexpr bool kHasPairs = kWLanes == kLanes;  // AVX2, NEON: a Pair is two Acc8
#else
constexpr bool kHasPairs = false;  // the scalar target keeps decode_row and the f32 tiles
#endif

struct Pair {
  VW v[kWSub];
};

// The chunk of 8 floats at p, for both rows of a Pair (an activation chunk).
HWY_INLINE Pair dup8(const float* HWY_RESTRICT p) {
  Pair r;
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
  // One broadcast load: Highway 1.0 has no 256-to-512-bit broadcast.
  r.v[0] = VW{_mm512_broadcast_f32x8(_mm256_loadu_ps(p))};
#else
  const DW d;
  for (size_t s = 0; s < kWSub; ++s) r.v[s] = hn::LoadU(d, p + (s % (kWSub / 2)) * kWLanes);
#endif
  return r;
}

// acc += x * w, lane by lane, fused (fma8 on both rows).
HWY_INLINE void fma_pair(const Pair& x, const Pair& w, Pair& acc) {
  for (size_t s = 0; s < kWSub; ++s) acc.v[s] = hn::MulAdd(x.v[s], w.v[s], acc.v[s]);
}

HWY_INLINE Pair zero_pair() {
  Pair r;
  for (size_t s = 0; s < kWSub; ++s) r.v[s] = hn::Zero(DW());
  return r;
}

// Row a's and row b's logical accumulators.
HWY_INLINE void split_pair(const Pair& p, Acc8& a, Acc8& b) {
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
  a.v[0] = hn::LowerHalf(p.v[0]);
  b.v[0] = hn::UpperHalf(DF(), p.v[0]);
#else
  for (size_t s = 0; s < kSub; ++s) a.v[s] = p.v[s], b.v[s] = p.v[kSub + s];
#endif
}

// Bytes a[0..7], b[0..7] widened to a Pair of int32 lanes, and the same for a[8..15], b[8..15]:
// zero-extended (u8) or sign-extended (i8).
template <typename T8>
HWY_INLINE void widen_pair(const uint8_t* HWY_RESTRICT a, const uint8_t* HWY_RESTRICT b, Int16& lo,
                           Int16& hi) {
  const DWI di;
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
  const hn::Full128<uint64_t> d64;
  const hn::Full128<T8> d8;
  const auto qa = hn::BitCast(d64, hn::LoadU(d8, reinterpret_cast<const T8*>(a)));
  const auto qb = hn::BitCast(d64, hn::LoadU(d8, reinterpret_cast<const T8*>(b)));
  lo.v[0] = hn::PromoteTo(di, hn::BitCast(d8, hn::InterleaveLower(d64, qa, qb)));
  hi.v[0] = hn::PromoteTo(di, hn::BitCast(d8, hn::InterleaveUpper(d64, qa, qb)));
#else
  const hn::Rebind<T8, DW> d8;
  constexpr size_t kHalf = kWSub / 2;
  for (size_t s = 0; s < kWSub; ++s) {
    const T8* src = reinterpret_cast<const T8*>(s < kHalf ? a : b) + (s % kHalf) * kWLanes;
    lo.v[s] = hn::PromoteTo(di, hn::LoadU(d8, src));
    hi.v[s] = hn::PromoteTo(di, hn::LoadU(d8, src + 8));
  }
#endif
}

// The f16 values at a + off[i] and b + off[i] (i < kN) widened, each spread over its row's half
// of a Pair.
template <size_t kN>
HWY_INLINE void pair_scales(const uint8_t* HWY_RESTRICT a, const uint8_t* HWY_RESTRICT b,
                            const size_t (&off)[kN], Pair (&out)[kN]) {
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
  static_assert(kN <= 2, "four f16 lanes at most");
  // [a's f16s, b's f16s] in one vector, widened by one instruction, then one permute each.
  hwy::float16_t h[4] = {};
  for (size_t i = 0; i < kN; ++i) {
    std::memcpy(&h[i], a + off[i], 2);
    std::memcpy(&h[kN + i], b + off[i], 2);
  }
  const DW d;
  const hn::Full128<float> d4;
  const auto f = hn::PromoteTo(d4, hn::LoadU(hn::Full64<hwy::float16_t>(), h));
  const auto f16 = hn::ZeroExtendVector(d, hn::ZeroExtendVector(hn::Full256<float>(), f));
  for (size_t i = 0; i < kN; ++i) {
    alignas(64) int32_t idx[16];
    for (size_t l = 0; l < 16; ++l) idx[l] = int32_t(l < 8 ? i : kN + i);
    out[i].v[0] = hn::TableLookupLanes(f16, hn::SetTableIndices(d, idx));
  }
#else
  for (size_t i = 0; i < kN; ++i) {
    const VW sa = splat(load_f16_fast(a + off[i])), sb = splat(load_f16_fast(b + off[i]));
    for (size_t s = 0; s < kWSub; ++s) out[i].v[s] = s < kWSub / 2 ? sa : sb;
  }
#endif
}

HWY_INLINE Pair mul_pair(const Int16& q, const Pair& scale) {
  const DW d;
  Pair r;
  for (size_t s = 0; s < kWSub; ++s) r.v[s] = hn::Mul(hn::ConvertTo(d, q.v[s]), scale.v[s]);
  return r;
}

HWY_INLINE Pair fma_pair(const Int16& q, const Pair& scale, const Pair& offset) {
  const DW d;
  Pair r;
  for (size_t s = 0; s < kWSub; ++s)
    r.v[s] = hn::MulAdd(hn::ConvertTo(d, q.v[s]), scale.v[s], offset.v[s]);
  return r;
}

// The four chunks of one block of rows a and b (blocks of 32: q8_0, q4_0, q4_1), as
// decode_q8_0 / decode_q4_0 / decode_q4_1 compute them.
struct PairQ8_0 {
  static constexpr size_t kBytes = 34;
  static HWY_INLINE void decode(const uint8_t* HWY_RESTRICT a, const uint8_t* HWY_RESTRICT b,
                                Pair (&w)[4]) {
    Pair d[1];
    pair_scales(a, b, {size_t(0)}, d);
    Int16 q[4];
    widen_pair<int8_t>(a + 2, b + 2, q[0], q[1]);
    widen_pair<int8_t>(a + 18, b + 18, q[2], q[3]);
    for (int c = 0; c < 4; ++c) w[c] = mul_pair(q[c], d[0]);
  }
};

// 4-bit blocks: the low nibbles of bytes 0..7 and 8..15 are chunks 0 and 1, the high ones 2, 3.
struct PairQ4_0 {
  static constexpr size_t kBytes = 18;
  static HWY_INLINE void decode(const uint8_t* HWY_RESTRICT a, const uint8_t* HWY_RESTRICT b,
                                Pair (&w)[4]) {
    Pair d[1];
    pair_scales(a, b, {size_t(0)}, d);
    Int16 lo, hi;
    widen_pair<uint8_t>(a + 2, b + 2, lo, hi);
    w[0] = mul_pair(add(bits(lo, 0, 15), -8), d[0]);
    w[1] = mul_pair(add(bits(hi, 0, 15), -8), d[0]);
    w[2] = mul_pair(add(shr(lo, 4), -8), d[0]);
    w[3] = mul_pair(add(shr(hi, 4), -8), d[0]);
  }
};

struct PairQ4_1 {
  static constexpr size_t kBytes = 20;
  static HWY_INLINE void decode(const uint8_t* HWY_RESTRICT a, const uint8_t* HWY_RESTRICT b,
                                Pair (&w)[4]) {
    Pair dm[2];
    pair_scales(a, b, {size_t(0), size_t(2)}, dm);
    Int16 lo, hi;
    widen_pair<uint8_t>(a + 4, b + 4, lo, hi);
    w[0] = fma_pair(bits(lo, 0, 15), dm[0], dm[1]);
    w[1] = fma_pair(bits(hi, 0, 15), dm[0], dm[1]);
    w[2] = fma_pair(shr(lo, 4), dm[0], dm[1]);
    w[3] = fma_pair(shr(hi, 4), dm[0], dm[1]);
  }
};

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
    case DType::q8_0:
      return &decode_row<32, 34, decode_q8_0>;
    case DType::q4_0:
      return &decode_row<32, 18, decode_q4_0>;
    case DType::q4_1:
      return &decode_row<32, 20, decode_q4_1>;
    case DType::q2_k:
      return &decode_row<256, 84, decode_q2_k>;
    case DType::q3_k:
      return &decode_row<256, 110, decode_q3_k>;
    case DType::q4_k:
      return &decode_row<256, 144, decode_q45_k<false>>;
    case DType::q5_k:
      return &decode_row<256, 176, decode_q45_k<true>>;
    case DType::q6_k:
      return &decode_row<256, 210, decode_q6_k>;
    case DType::f32:
    case DType::f16:
    case DType::bf16:
      return nullptr;
  }
  return nullptr;
}

}  // namespace HWY_NAMESPACE
}  // namespace invar::kernels::cpu
HWY_AFTER_NAMESPACE();

#endif  // INVAR_KERNELS_CPU_DECODE_INL_H_
