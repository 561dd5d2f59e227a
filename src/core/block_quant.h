// ggml's block-quantized encodings, as GGUF files store them, and their exact scalar decoding
// (the reference every SIMD decoder must match bit for bit).
//
// Every value decodes to one f32 whose value is fixed by the block alone: the scale products
// below are exact in f32 (an f16 times an integer of at most 8 bits), so each element is
// round(exact expression) with a single rounding at most, however it is evaluated (fused or
// not, scalar or SIMD). That is what lets a packed GEMM give the bits of an f32 GEMM over the
// decoded weights.
//
// Blocks of 32 elements (f16 scalars little-endian, q = the stored integer):
//   q8_0  [34 B]: f16 d, int8 q[32]                         x = q * d
//   q4_0  [18 B]: f16 d, u8 qs[16]                          x = (q - 8) * d
//   q4_1  [20 B]: f16 d, f16 m, u8 qs[16]                   x = q * d + m
//     (4-bit: byte j holds element j in its low nibble and element j + 16 in its high one)
// Super-blocks of 256 elements ("K-quants"), cut into sub-blocks with their own scales:
//   q2_k  [84 B]: u8 scales[16], u8 qs[64], f16 d, f16 dmin
//     16 sub-blocks of 16; sub-block s: scale = d * (scales[s] & 15), min = dmin * (scales[s] >> 4)
//     element e = 128h + 32j + l (h < 2, j < 4, l < 32): q = (qs[32h + l] >> 2j) & 3,
//     sub-block 8h + 2j + l / 16;                           x = scale * q - min
//   q3_k  [110 B]: u8 hmask[32], u8 qs[64], u8 scales[12], f16 d
//     16 sub-blocks of 16 with 6-bit scales s (unpack_scales_q3_k, stored + 32)
//     element e = 128h + 32j + l: low = (qs[32h + l] >> 2j) & 3, high bit = hmask[l] bit 4h + j,
//     q = low - (high bit ? 0 : 4), sub-block 8h + 2j + l / 16;  x = (d * s) * q
//   q4_k  [144 B]: f16 d, f16 dmin, u8 scales[12], u8 qs[128]
//     8 sub-blocks of 32 with 6-bit scale sc and min mn (unpack_scale_min_k)
//     element e = 64g + 32i + l (g < 4, i < 2, l < 32): q = qs[32g + l] low nibble (i = 0) or
//     high nibble (i = 1), sub-block 2g + i;               x = (d * sc) * q - dmin * mn
//   q5_k  [176 B]: f16 d, f16 dmin, u8 scales[12], u8 qh[32], u8 qs[128]
//     as q4_k, plus a fifth bit: q += 16 * (qh[l] bit 2g + i)
//   q6_k  [210 B]: u8 ql[128], u8 qh[64], int8 scales[16], f16 d
//     element e = 128h + 32r + l (h < 2, r < 4, l < 32): low = ql[64h + 32(r & 1) + l] low
//     nibble (r < 2) or high nibble (r >= 2), high = (qh[32h + l] >> 2r) & 3,
//     q = (low | high << 4) - 32, sub-block of 16: 8h + 2r + l / 16;  x = (d * scales[sb]) * q
// (From the GGUF/ggml format description; scripts/make-kquant-models.py checks these layouts
// against the `gguf` Python package's decoder.)
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace invar {

inline uint16_t load_le16(const uint8_t* p) {
  return uint16_t(p[0] | (p[1] << 8));
}
inline float load_f16(const uint8_t* p) {
  return f16_to_f32(load_le16(p));
}

// q4_k / q5_k: 8 six-bit scales and 8 six-bit mins packed in 12 bytes. Sub-blocks 0..3 keep
// their low 6 bits in bytes 0..3 (scale) and 4..7 (min); sub-blocks 4..7 keep their low 4 bits
// in the nibbles of bytes 8..11 and their top 2 bits in the top bits of bytes 0..7.
inline void unpack_scale_min_k(const uint8_t* s, uint8_t sc[8], uint8_t mn[8]) {
  for (int j = 0; j < 4; ++j) {
    sc[j] = s[j] & 63;
    mn[j] = s[j + 4] & 63;
    sc[j + 4] = uint8_t((s[j + 8] & 15) | ((s[j] >> 6) << 4));
    mn[j + 4] = uint8_t((s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4));
  }
}

// q3_k: 16 six-bit scales in 12 bytes, returned as signed values (stored - 32). Scale i keeps
// its low 4 bits in byte i (i < 8, low nibble) or byte i - 8 (high nibble), and its top 2 bits
// in byte 8 + i % 4 at bit 2 * (i / 4).
inline void unpack_scales_q3_k(const uint8_t* s, int8_t out[16]) {
  for (int i = 0; i < 16; ++i) {
    const int low = i < 8 ? (s[i] & 15) : (s[i - 8] >> 4);
    const int high = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
    out[i] = int8_t((low | (high << 4)) - 32);
  }
}

// Decodes `n` elements of type `t` (plain or packed; a whole number of blocks) to f32.
void decode_to_f32(DType t, const uint8_t* src, int64_t n, float* out);

// Index of the first block of `n` elements whose stored scales are not finite (NaN or
// infinity in an f16 scale field), or -1. Integers cannot be non-finite, so a packed block's
// values are all finite exactly when its scales are (the products cannot overflow f32).
int64_t first_nonfinite_block(DType t, const uint8_t* src, int64_t n);

}  // namespace invar
