// The Hopper attention kernel's shared-memory tile layout and wgmma descriptors
// (kernels/cuda/sm90/attention_sm90_layout.h) against CuTe's canonical GMMA layouts, on the host:
// no GPU needed. A mismatch here would make the wgmma kernel read K or V at the wrong place.
//   tile = 64 KV positions x D dims (bf16), D = 64 or 128
// K (B of S = Q K^T): CuTe's K-major 128-byte-swizzle atom tiled over (64 positions, D dims).
// V (B of acc += P V): CuTe's MN-major 128-byte-swizzle atom tiled over (D dims, 64 positions),
// K (positions) first, so each 64-dim half stays one contiguous block as TMA writes it.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cute/atom/mma_traits_sm90_gmma.hpp>
#include <cute/tensor.hpp>

#include "kernels/cuda/sm90/attention_sm90_layout.h"

namespace invar::kernels::cuda::sm90 {
namespace {

using namespace cute;
using bf = cutlass::bfloat16_t;
namespace gmma = cute::SM90::GMMA;

// Byte address CuTe gives element (i, j) of a swizzled smem tensor based at address 0.
template <class T>
uint32_t byte_of(const T& t, int i, int j) {
  return uint32_t(reinterpret_cast<uintptr_t>(raw_pointer_cast(&t(i, j))));
}

// CuTe's host path of make_gmma_desc prints "cast_smem_ptr_to_uint not supported" (it cannot
// convert a host pointer to a shared address) and leaves the start address 0; that is expected
// here, so its stdout is silenced while it runs.
class QuietStdout {
 public:
  QuietStdout() {
    std::fflush(stdout);
    saved_ = dup(1);
    const int null = open("/dev/null", O_WRONLY);
    if (null >= 0) {
      dup2(null, 1);
      close(null);
    }
  }
  ~QuietStdout() {
    std::fflush(stdout);
    if (saved_ >= 0) {
      dup2(saved_, 1);
      close(saved_);
    }
  }

 private:
  int saved_ = -1;
};

// On the host CuTe leaves a descriptor's start address 0; the k-step's offset comes from the
// (unswizzled) layout, as CuTe's descriptor iterator adds it on the device.
template <class T>
uint64_t with_start(cute::GmmaDescriptor d, const T& t, int i, int j) {
  return d.desc_ | uint64_t((uint32_t(t.layout()(i, j)) * 2) >> 4);
}

template <int D>
void check_layouts() {
  auto lk = tile_to_shape(gmma::Layout_K_SW128_Atom<bf>{}, Shape<_64, Int<D>>{});
  Tensor tk = make_tensor(make_smem_ptr(reinterpret_cast<bf*>(uintptr_t(0))), lk);
  int bad = 0;
  for (int r = 0; r < 64; ++r)
    for (int c = 0; c < D; ++c) bad += byte_of(tk, r, c) != attn_tile_byte(r, c);
  EXPECT_EQ(bad, 0) << "K tile bytes, D = " << D;
  for (int kk = 0; kk < D / 16; ++kk) {
    Tensor step = local_tile(tk, Shape<_64, _16>{}, make_coord(0, kk));
    cute::GmmaDescriptor desc;
    {
      QuietStdout quiet;
      desc = gmma::make_gmma_desc<gmma::Major::K>(step);
    }
    const uint64_t cute_desc = with_start(desc, tk, 0, 16 * kk);
    EXPECT_EQ(cute_desc, attn_k_desc(0, kk)) << "K descriptor, D = " << D << ", k-step " << kk;
  }

  auto lv = tile_to_shape(gmma::Layout_MN_SW128_Atom<bf>{}, Shape<Int<D>, _64>{}, Step<_2, _1>{});
  Tensor tv = make_tensor(make_smem_ptr(reinterpret_cast<bf*>(uintptr_t(0))), lv);
  bad = 0;
  for (int d = 0; d < D; ++d)
    for (int p = 0; p < 64; ++p) bad += byte_of(tv, d, p) != attn_tile_byte(p, d);
  EXPECT_EQ(bad, 0) << "V tile bytes, D = " << D;
  for (int kk = 0; kk < 4; ++kk) {
    Tensor step = local_tile(tv, Shape<Int<D>, _16>{}, make_coord(0, kk));
    cute::GmmaDescriptor desc;
    {
      QuietStdout quiet;
      desc = gmma::make_gmma_desc<gmma::Major::MN>(step);
    }
    uint64_t cute_desc = with_start(desc, tv, 0, 16 * kk);
    uint64_t mine = attn_v_desc(0, kk);
    if (D == 64) {  // one N atom: the leading offset is never read (CuTe leaves it 0)
      const uint64_t lead = uint64_t(0x3FFF) << 16;
      cute_desc &= ~lead;
      mine &= ~lead;
    }
    EXPECT_EQ(cute_desc, mine) << "V descriptor, D = " << D << ", k-step " << kk;
  }
}

TEST(AttentionSm90Layout, TilesAndDescriptorsMatchCuteD64) {
  check_layouts<64>();
}
TEST(AttentionSm90Layout, TilesAndDescriptorsMatchCuteD128) {
  check_layouts<128>();
}

// A descriptor's start address is the shared address >> 4 in 14 bits: every tile of the kernel's
// shared memory (< 228 KB) is addressable, and the k-step offsets stay inside their tile.
TEST(AttentionSm90Layout, DescriptorAddressesAdvanceByTheStepOffsets) {
  const uint32_t tile = 0x12400;  // 1024-aligned
  for (int kk = 0; kk < 8; ++kk) {
    EXPECT_EQ(attn_k_desc(tile, kk) & 0x3FFF, (tile + (kk / 4) * 8192 + (kk % 4) * 32) >> 4);
  }
  for (int kk = 0; kk < 4; ++kk) {
    EXPECT_EQ(attn_v_desc(tile, kk) & 0x3FFF, (tile + kk * 2048) >> 4);
  }
}

// The kernel's form of the descriptors (k-step 0's plus a constant step) equals the direct one
// for every 1024-aligned tile of 228 KB of shared memory.
TEST(AttentionSm90Layout, DescriptorStepsGiveTheDirectDescriptors) {
  for (uint32_t tile = 0; tile + 2 * kAttnHalfBytes <= 228 * 1024; tile += 1024) {
    for (int kk = 0; kk < 8; ++kk)
      ASSERT_EQ(attn_k_desc(tile, 0) + attn_k_desc_step(kk), attn_k_desc(tile, kk)) << tile;
    for (int kk = 0; kk < 4; ++kk)
      ASSERT_EQ(attn_v_desc(tile, 0) + attn_v_desc_step(kk), attn_v_desc(tile, kk)) << tile;
  }
}

}  // namespace
}  // namespace invar::kernels::cuda::sm90
