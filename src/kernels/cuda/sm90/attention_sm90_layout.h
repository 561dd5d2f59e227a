// Shared-memory layout of the Hopper attention kernel's K and V tiles (attention_sm90.cu) and the
// wgmma descriptors that read them; host and device, so attention_test checks them against
// CuTe's canonical GMMA layouts without a GPU.
//   tile = 64 KV positions x D dims (bf16), D = 64 or 128
//
// A tile is D / 64 halves of [64 rows][128 bytes] (one row = 64 dims of one position), each half
// 1024-byte aligned and 128-byte swizzled: 16-byte chunk c of row r sits at chunk c ^ (r % 8).
// That is what TMA writes with CU_TENSOR_MAP_SWIZZLE_128B (the pattern follows address bits
// 4-6 ^ 7-9), what the producer's cp.async path writes by hand, and what wgmma reads as
//   K, the B of S = Q K^T (N = positions, K = dims): K-major, 128-byte swizzle;
//   V, the B of acc += P V (K = positions, N = dims): MN-major, 128-byte swizzle.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define INVAR_HD __host__ __device__
#else
#define INVAR_HD
#endif

namespace invar::kernels::cuda::sm90 {

inline constexpr uint32_t kAttnRowBytes = 128;                  // 64 bf16 dims of a position
inline constexpr uint32_t kAttnHalfBytes = 64 * kAttnRowBytes;  // 64 positions x 64 dims

// Byte offset of (position row, dim col) in a tile.
INVAR_HD constexpr uint32_t attn_tile_byte(uint32_t row, uint32_t col) {
  return (col / 64) * kAttnHalfBytes + row * kAttnRowBytes + ((((col % 64) / 8) ^ (row % 8)) << 4) +
         (col % 8) * 2;
}

// wgmma shared-memory matrix descriptor of a 128-byte-swizzled operand: start address, leading
// and stride byte offsets (each >> 4, 14 bits), base offset 0 (patterns anchored at 1024-byte
// aligned halves), layout type 1 = SWIZZLE_128B in bits 62-63.
INVAR_HD constexpr uint64_t attn_sw128_desc(uint32_t addr, uint32_t lead_bytes,
                                            uint32_t stride_bytes) {
  return uint64_t((addr & 0x3FFFFu) >> 4) | (uint64_t(lead_bytes >> 4) << 16) |
         (uint64_t(stride_bytes >> 4) << 32) | (uint64_t(1) << 62);
}

// K tile at shared address `tile` as B of S = Q K^T, k-step kk (dims 16kk..16kk+15): 32 bytes
// into the rows of half kk / 4; 8-row groups 1024 bytes apart; the leading offset is unused
// with swizzling (16, as CuTe sets it).
INVAR_HD constexpr uint64_t attn_k_desc(uint32_t tile, int kk) {
  return attn_sw128_desc(tile + uint32_t(kk / 4) * kAttnHalfBytes + uint32_t(kk % 4) * 32, 16,
                         1024);
}

// V tile at `tile` as B of acc += P V, k-step kk (positions 16kk..16kk+15, 2048 bytes per
// step): N atoms (64-dim halves) kAttnHalfBytes apart, 8-row K groups 1024 bytes apart.
INVAR_HD constexpr uint64_t attn_v_desc(uint32_t tile, int kk) {
  return attn_sw128_desc(tile + uint32_t(kk) * 16 * kAttnRowBytes, kAttnHalfBytes, 1024);
}

// The k-step offsets of those descriptors, added to the k-step 0 descriptor of the tile:
// attn_k_desc(tile, kk) == attn_k_desc(tile, 0) + attn_k_desc_step(kk), and the same for V, for
// any tile of shared memory (the 14-bit address field does not carry below 256 KB;
// attention_sm90_layout_test checks it). The kernel builds one descriptor per tile and adds the
// steps, instead of masking and shifting an address per wgmma.
INVAR_HD constexpr uint64_t attn_k_desc_step(int kk) {
  return (uint32_t(kk / 4) * kAttnHalfBytes + uint32_t(kk % 4) * 32) >> 4;
}
INVAR_HD constexpr uint64_t attn_v_desc_step(int kk) {
  return (uint32_t(kk) * 16 * kAttnRowBytes) >> 4;
}

}  // namespace invar::kernels::cuda::sm90

#undef INVAR_HD
