// Scalar decoding of every tensor encoding (core/block_quant.h gives the layouts). Written for
// clarity, not speed: it is the reference the SIMD decoders of kernels/cpu are tested against,
// and what the loader, the CUDA upload and the embedding lookup use.
#include "core/block_quant.h"

#include <cassert>
#include <cmath>
#include <cstring>

namespace invar {
namespace {

void decode_q8_0(const uint8_t* b, float* y) {
  const float d = load_f16(b);
  for (int j = 0; j < 32; ++j) y[j] = float(int8_t(b[2 + j])) * d;
}

void decode_q4_0(const uint8_t* b, float* y) {
  const float d = load_f16(b);
  for (int j = 0; j < 16; ++j) {
    y[j] = float(int(b[2 + j] & 15) - 8) * d;
    y[j + 16] = float(int(b[2 + j] >> 4) - 8) * d;
  }
}

void decode_q4_1(const uint8_t* b, float* y) {
  const float d = load_f16(b), m = load_f16(b + 2);
  for (int j = 0; j < 16; ++j) {
    y[j] = float(b[4 + j] & 15) * d + m;
    y[j + 16] = float(b[4 + j] >> 4) * d + m;
  }
}

void decode_q2_k(const uint8_t* b, float* y) {
  const uint8_t* scales = b;
  const uint8_t* qs = b + 16;
  const float d = load_f16(b + 80), dmin = load_f16(b + 82);
  for (int h = 0; h < 2; ++h)
    for (int j = 0; j < 4; ++j)
      for (int l = 0; l < 32; ++l) {
        const int s = 8 * h + 2 * j + l / 16;
        const float scale = d * float(scales[s] & 15), min = dmin * float(scales[s] >> 4);
        const int q = (qs[32 * h + l] >> (2 * j)) & 3;
        y[128 * h + 32 * j + l] = scale * float(q) - min;
      }
}

void decode_q3_k(const uint8_t* b, float* y) {
  const uint8_t* hmask = b;
  const uint8_t* qs = b + 32;
  int8_t sc[16];
  unpack_scales_q3_k(b + 96, sc);
  const float d = load_f16(b + 108);
  for (int h = 0; h < 2; ++h)
    for (int j = 0; j < 4; ++j)
      for (int l = 0; l < 32; ++l) {
        const float scale = d * float(sc[8 * h + 2 * j + l / 16]);
        const int low = (qs[32 * h + l] >> (2 * j)) & 3;
        const bool high = (hmask[l] >> (4 * h + j)) & 1;
        y[128 * h + 32 * j + l] = scale * float(low - (high ? 0 : 4));
      }
}

// q4_k and q5_k share the scale layout; q5_k adds a fifth bit from qh.
void decode_q45_k(const uint8_t* b, float* y, bool five) {
  const float d = load_f16(b), dmin = load_f16(b + 2);
  uint8_t sc[8], mn[8];
  unpack_scale_min_k(b + 4, sc, mn);
  const uint8_t* qh = five ? b + 16 : nullptr;
  const uint8_t* qs = five ? b + 48 : b + 16;
  for (int g = 0; g < 4; ++g)
    for (int i = 0; i < 2; ++i) {
      const float scale = d * float(sc[2 * g + i]), min = dmin * float(mn[2 * g + i]);
      for (int l = 0; l < 32; ++l) {
        int q = i == 0 ? (qs[32 * g + l] & 15) : (qs[32 * g + l] >> 4);
        if (qh) q += ((qh[l] >> (2 * g + i)) & 1) << 4;
        y[64 * g + 32 * i + l] = scale * float(q) - min;
      }
    }
}

void decode_q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = load_f16(b + 208);
  for (int h = 0; h < 2; ++h)
    for (int r = 0; r < 4; ++r)
      for (int l = 0; l < 32; ++l) {
        const uint8_t lbyte = ql[64 * h + 32 * (r & 1) + l];
        const int low = r < 2 ? (lbyte & 15) : (lbyte >> 4);
        const int high = (qh[32 * h + l] >> (2 * r)) & 3;
        const float scale = d * float(sc[8 * h + 2 * r + l / 16]);
        y[128 * h + 32 * r + l] = scale * float((low | (high << 4)) - 32);
      }
}

// Offsets of a block's f16 scale fields.
int scale_fields(DType t, int offsets[2]) {
  switch (t) {
    case DType::q8_0:
    case DType::q4_0:
      offsets[0] = 0;
      return 1;
    case DType::q4_1:
    case DType::q4_k:
    case DType::q5_k:
      offsets[0] = 0, offsets[1] = 2;
      return 2;
    case DType::q2_k:
      offsets[0] = 80, offsets[1] = 82;
      return 2;
    case DType::q3_k:
      offsets[0] = 108;
      return 1;
    case DType::q6_k:
      offsets[0] = 208;
      return 1;
    case DType::f32:
    case DType::f16:
    case DType::bf16:
      return 0;
  }
  return 0;
}

}  // namespace

void decode_to_f32(DType t, const uint8_t* src, int64_t n, float* out) {
  switch (t) {
    case DType::f32:
      std::memcpy(out, src, size_t(n) * 4);
      return;
    case DType::f16:
      for (int64_t i = 0; i < n; ++i) out[i] = f16_to_f32(load_le16(src + 2 * i));
      return;
    case DType::bf16:
      for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_f32(load_le16(src + 2 * i));
      return;
    default:
      break;
  }
  const DTypeBlock blk = dtype_block(t);
  assert(n % blk.elems == 0);
  for (int64_t b = 0; b < n / blk.elems; ++b) {
    const uint8_t* p = src + size_t(b) * blk.bytes;
    float* y = out + b * blk.elems;
    switch (t) {
      case DType::q8_0:
        decode_q8_0(p, y);
        break;
      case DType::q4_0:
        decode_q4_0(p, y);
        break;
      case DType::q4_1:
        decode_q4_1(p, y);
        break;
      case DType::q2_k:
        decode_q2_k(p, y);
        break;
      case DType::q3_k:
        decode_q3_k(p, y);
        break;
      case DType::q4_k:
        decode_q45_k(p, y, false);
        break;
      case DType::q5_k:
        decode_q45_k(p, y, true);
        break;
      case DType::q6_k:
        decode_q6_k(p, y);
        break;
      case DType::f32:
      case DType::f16:
      case DType::bf16:
        break;
    }
  }
}

int64_t first_nonfinite_block(DType t, const uint8_t* src, int64_t n) {
  int offsets[2];
  const int fields = scale_fields(t, offsets);
  if (fields == 0) return -1;
  const DTypeBlock blk = dtype_block(t);
  for (int64_t b = 0; b < n / blk.elems; ++b) {
    const uint8_t* p = src + size_t(b) * blk.bytes;
    for (int f = 0; f < fields; ++f) {
      if ((load_le16(p + offsets[f]) & 0x7c00u) == 0x7c00u) return b;  // f16 exponent all ones
    }
  }
  return -1;
}

}  // namespace invar
