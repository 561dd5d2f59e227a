// The portable invariant GEMM (CUTLASS 2.x, Ampere tensor-core mainloop): y = x W^T, bf16 in,
// f32 accumulate, bf16 out.
//
// What keeps the bits fixed (R1): one tile config for every M, and in it every output
// element is one chain of mma.sync m16n8k16 steps over k = 0, 16, 32, ... into one f32
// register: the warp tile's K (32) equals the CTA tile's K, so no warp splits K
// (kPartitionsK = 1, static_assert below); no split-K (split_k_slices = 1, SplitKSerial
// false); a K tail is zero-filled, which adds exact zeros. The epilogue computes 1 * acc and
// rounds once. M only changes the grid. The Hopper configs (sm90/) are a different recipe:
// bits are promised per architecture (the fingerprint names it).
#include <cutlass/bfloat16.h>
#include <cutlass/cutlass.h>
#include <cutlass/epilogue/thread/linear_combination.h>
#include <cutlass/gemm/device/gemm.h>

#include "kernels/cuda/sm80/gemm_sm80.h"

namespace invar::kernels::cuda::sm80 {
namespace {

using Element = cutlass::bfloat16_t;
using Epilogue = cutlass::epilogue::thread::LinearCombination<
    Element, 8, float, float, cutlass::epilogue::thread::ScaleType::OnlyAlphaScaling>;
using Kernel = cutlass::gemm::device::Gemm<
    Element, cutlass::layout::RowMajor,     // x [M, K]
    Element, cutlass::layout::ColumnMajor,  // W [N, K] seen as [K, N] column-major
    Element, cutlass::layout::RowMajor,     // y [M, N]
    float, cutlass::arch::OpClassTensorOp, cutlass::arch::Sm80,
    cutlass::gemm::GemmShape<128, 128, 32>, cutlass::gemm::GemmShape<64, 64, 32>,
    cutlass::gemm::GemmShape<16, 8, 16>, Epilogue,
    cutlass::gemm::threadblock::GemmIdentityThreadblockSwizzle<>, 3, 8, 8, false>;

static_assert(Kernel::GemmKernel::Mma::Base::WarpCount::kK == 1,
              "a warp must own whole K chains (no intra-CTA split of K)");

}  // namespace

const char* gemm_m128n128(const sm90::GemmArgs& a, cudaStream_t stream) {
  if (a.m == 0 || a.n == 0) return nullptr;
  if (a.k % 8 || a.ldx % 8 || a.ldw % 8 || a.ldy % 8)
    return "K and the row strides must be multiples of 8";
  Kernel::Arguments args({a.m, a.n, a.k},
                         {static_cast<const Element*>(a.x), a.ldx},
                         {static_cast<const Element*>(a.w), a.ldw},
                         {static_cast<Element*>(a.y), a.ldy},  // C: not read (alpha only)
                         {static_cast<Element*>(a.y), a.ldy},
                         {1.0f}, 1);
  Kernel gemm;
  if (gemm.can_implement(args) != cutlass::Status::kSuccess)
    return "CUTLASS cannot run this problem (alignment)";
  if (gemm.initialize(args, nullptr, stream) != cutlass::Status::kSuccess)
    return "initialize failed";
  if (gemm.run(stream) != cutlass::Status::kSuccess) return "launch failed";
  return nullptr;
}

}  // namespace invar::kernels::cuda::sm80
