// Element types (plain and block-quantized) and exact scalar conversions (f16/bf16 <-> f32).
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

namespace invar {

// Element encodings of tensors. f32/f16/bf16 are plain arrays; the others are ggml's
// block-quantized encodings (core/block_quant.h: layouts and exact decoding), kept packed in
// memory and decoded where they are read: a row of `cols` elements is cols / block elems
// blocks of block bytes each, so a row's bytes are dtype_row_bytes(t, cols).
enum class DType : uint8_t { f32, f16, bf16, q8_0, q4_0, q4_1, q2_k, q3_k, q4_k, q5_k, q6_k };

constexpr bool dtype_is_packed(DType t) {
  return t != DType::f32 && t != DType::f16 && t != DType::bf16;
}

// Bytes per element of a plain type; 0 for packed types (use dtype_row_bytes).
constexpr size_t dtype_size(DType t) {
  return t == DType::f32 ? 4 : (t == DType::f16 || t == DType::bf16) ? 2 : 0;
}

// Elements and bytes of one block (a plain type is a block of one element).
struct DTypeBlock {
  int64_t elems;
  size_t bytes;
};

constexpr DTypeBlock dtype_block(DType t) {
  switch (t) {
    case DType::f32:
      return {1, 4};
    case DType::f16:
    case DType::bf16:
      return {1, 2};
    case DType::q8_0:
      return {32, 34};
    case DType::q4_0:
      return {32, 18};
    case DType::q4_1:
      return {32, 20};
    case DType::q2_k:
      return {256, 84};
    case DType::q3_k:
      return {256, 110};
    case DType::q4_k:
      return {256, 144};
    case DType::q5_k:
      return {256, 176};
    case DType::q6_k:
      return {256, 210};
  }
  return {1, 0};
}

// Bytes of `n` elements (n a whole number of blocks).
constexpr size_t dtype_row_bytes(DType t, int64_t n) {
  const DTypeBlock b = dtype_block(t);
  return size_t(n / b.elems) * b.bytes;
}

constexpr std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::f32:
      return "f32";
    case DType::f16:
      return "f16";
    case DType::bf16:
      return "bf16";
    case DType::q8_0:
      return "q8_0";
    case DType::q4_0:
      return "q4_0";
    case DType::q4_1:
      return "q4_1";
    case DType::q2_k:
      return "q2_k";
    case DType::q3_k:
      return "q3_k";
    case DType::q4_k:
      return "q4_k";
    case DType::q5_k:
      return "q5_k";
    case DType::q6_k:
      return "q6_k";
  }
  return "?";
}

inline float bits_to_f32(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}
inline uint32_t f32_to_bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

inline float bf16_to_f32(uint16_t h) {
  return bits_to_f32(uint32_t(h) << 16);
}

// Round to nearest even; NaN stays NaN (quiet).
inline uint16_t f32_to_bf16(float f) {
  uint32_t b = f32_to_bits(f);
  if ((b & 0x7fffffffu) > 0x7f800000u) return uint16_t((b >> 16) | 0x40);
  b += 0x7fffu + ((b >> 16) & 1u);
  return uint16_t(b >> 16);
}

// IEEE half -> float, exact for every input (subnormals, inf, NaN).
inline float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    if (mant == 0) return bits_to_f32(sign);
    // Subnormal: value = mant * 2^-24, exact in f32.
    float v = float(mant) * (1.0f / 16777216.0f);
    return sign ? -v : v;
  }
  if (exp == 31) return bits_to_f32(sign | 0x7f800000u | (mant << 13));
  return bits_to_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

// FP8 E4M3 ("fn": 1 sign, 4 exponent bits of bias 7, 3 mantissa bits; no infinities, S.1111.111
// is NaN; largest finite 448) -> float, exact for every input.
inline float fp8_e4m3_to_f32(uint8_t x) {
  const uint32_t sign = uint32_t(x & 0x80u) << 24;
  const uint32_t exp = (x >> 3) & 0xfu, mant = x & 0x7u;
  if (exp == 15 && mant == 7) return bits_to_f32(sign | 0x7fc00000u);
  if (exp == 0) {
    const float v = float(mant) * (1.0f / 512.0f);  // subnormal: mant * 2^-9
    return sign ? -v : v;
  }
  return bits_to_f32(sign | ((exp + 120) << 23) | (mant << 20));
}

// float -> FP8 E4M3, round to nearest even, saturating to +-448 (as checkpoints are quantized:
// values clamped to the finite range first); NaN -> S.1111.111.
inline uint8_t f32_to_fp8_e4m3(float f) {
  const uint8_t sign = uint8_t((f32_to_bits(f) >> 24) & 0x80u);
  float a = bits_to_f32(f32_to_bits(f) & 0x7fffffffu);
  if (a != a) return uint8_t(sign | 0x7fu);
  if (a >= 448.0f) return uint8_t(sign | 0x7eu);
  // Step between neighbours: 2^-9 below 2^-6 (subnormals), else 2^(e - 3) for a in [2^e, 2^(e+1)).
  int e = -6;
  while (e < 8 && a >= bits_to_f32(uint32_t(e + 1 + 127) << 23)) ++e;
  const float step = bits_to_f32(uint32_t(e - 3 + 127) << 23);
  const float units = a / step;  // exact: a power-of-two divisor
  uint32_t m = uint32_t(units);
  const float rem = units - float(m);
  if (rem > 0.5f || (rem == 0.5f && (m & 1u))) ++m;
  // m counts steps from 0 (subnormal range) or from 2^e (m in [8, 16]; 16 carries into e + 1).
  if (e == -6 && m < 8) return uint8_t(sign | m);
  return uint8_t(sign | (uint32_t(e + 7) << 3)) + uint8_t(m - 8);
}

// float -> IEEE half, round to nearest even.
inline uint16_t f32_to_f16(float f) {
  uint32_t b = f32_to_bits(f);
  uint32_t sign = (b >> 16) & 0x8000u;
  uint32_t abs = b & 0x7fffffffu;
  if (abs > 0x7f800000u) return uint16_t(sign | 0x7e00u);
  if (abs >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to >= 65520: inf
  if (abs < 0x38800000u) {                                  // below smallest normal half
    float v = bits_to_f32(abs) * 16777216.0f;               // in units of 2^-24
    uint32_t m = uint32_t(v);
    float rem = v - float(m);
    if (rem > 0.5f || (rem == 0.5f && (m & 1u))) ++m;
    return uint16_t(sign | m);
  }
  uint32_t e = ((abs >> 23) - 112) << 10;
  uint32_t m = (abs >> 13) & 0x3ffu;
  uint32_t h = e | m;
  uint32_t round = abs & 0x1fffu;
  if (round > 0x1000u || (round == 0x1000u && (h & 1u))) ++h;
  return uint16_t(sign | h);
}

}  // namespace invar
