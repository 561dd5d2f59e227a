// Assembles one invariant FP8 GEMM tile config from CUTLASS's Hopper FP8 mainloop with software
// block scaling (KernelTmaWarpSpecialized*FP8Blockwise) and launches it.
//   M = rows of x, N = rows of W, K = reduced dimension; BM x BN x BK = CTA tile in CUTLASS's
//   (M, N, K), where swap-AB puts W in the A role:
//     kSwapAB = false: A = x, B = W, D = y      (CUTLASS M, N = our M, N)
//     kSwapAB = true:  A = W, B = x, D = y^T    (CUTLASS M, N = our N, M)
//
// The recipe (fp8_gemm.h): per 128-wide K block, four wgmma k32 steps into a fresh f32
// register (scale-d = 0 at the block's first), then acc += block_sum * (sx * sw) as one FFMA;
// blocks in K order; one rounding to bf16 in the epilogue (alpha = 1). It is the same in every
// config only if
//   - a K tile is exactly one scale block (BK = 128: the promotion follows each tile), and
//   - the W side of a tile holds exactly one scale block (128 rows of W), while the x side
//     holds more than one token: the mainloop then folds the scales as sx * sw and applies
//     them with one multiply-add. With scales on both sides varying inside the tile it would
//     compute (sum * sx) * sw instead: another rounding.
// The static_asserts below hold every config to that.
#pragma once

#include <cutlass/bfloat16.h>
#include <cutlass/cutlass.h>
#include <cutlass/float8.h>
#include <cutlass/gemm/device/gemm_universal_adapter.h>

#include <cute/tensor.hpp>
#include <cutlass/detail/blockwise_scale_layout.hpp>
#include <cutlass/epilogue/collective/collective_builder.hpp>
#include <cutlass/gemm/collective/collective_builder.hpp>
#include <cutlass/gemm/dispatch_policy.hpp>
#include <cutlass/gemm/kernel/gemm_universal.hpp>
#include <cutlass/gemm/kernel/tile_scheduler.hpp>

#include "kernels/cuda/sm90/cutlass_launch.cuh"
#include "kernels/cuda/sm90/fp8_gemm_sm90.h"

namespace invar::kernels::cuda::sm90 {

template <int BM, int BN, class MainloopSchedule, bool kSwapAB>
struct Fp8GemmSm90 {
  static constexpr int BK = 128;
  static constexpr int kWBlock = 128;  // W scale block, rows and columns
  static_assert((kSwapAB ? BM : BN) == kWBlock, "one W scale block per tile (see above)");
  static_assert((kSwapAB ? BN : BM) > 1, "the x side of a tile must hold more than one token");

  using Element = cutlass::float_e4m3_t;
  using Output = cutlass::bfloat16_t;
  using Acc = float;
  using TileShape = cute::Shape<cute::Int<BM>, cute::Int<BN>, cute::Int<BK>>;
  using ClusterShape = cute::Shape<cute::_1, cute::_1, cute::_1>;
  static constexpr int kAlign = 16;    // 16 bytes of E4M3: TMA's alignment
  static constexpr int kOutAlign = 8;  // 16 bytes of bf16

  // Granularity of the scales along CUTLASS's (M, N, K): one per token on the x side, one per
  // 128 rows of W on the other; 128 along K. Both scale tensors are MN-major: for K block kb
  // the scales of all rows are one run (x: Mp floats, W: NB floats).
  using ScaleConfig =
      std::conditional_t<kSwapAB, cutlass::detail::Sm90BlockwiseScaleConfig<kWBlock, 1, BK>,
                         cutlass::detail::Sm90BlockwiseScaleConfig<1, kWBlock, BK>>;
  using LayoutSFA = decltype(ScaleConfig::deduce_layoutSFA());
  using LayoutSFB = decltype(ScaleConfig::deduce_layoutSFB());

  using LayoutA = cutlass::layout::RowMajor;     // K-major [M, K]
  using LayoutB = cutlass::layout::ColumnMajor;  // K-major in CUTLASS's (N, K) view
  using LayoutD =
      std::conditional_t<kSwapAB, cutlass::layout::ColumnMajor, cutlass::layout::RowMajor>;

  static constexpr bool kCooperative =
      std::is_same_v<MainloopSchedule,
                     cutlass::gemm::KernelTmaWarpSpecializedCooperativeFP8Blockwise>;
  using EpilogueSchedule =
      std::conditional_t<kCooperative, cutlass::epilogue::TmaWarpSpecializedCooperative,
                         cutlass::epilogue::TmaWarpSpecialized>;
  // D = 1 * acc, then one rounding to bf16.
  using FusionOp = cutlass::epilogue::fusion::ScaledAcc<Output, float, float>;

  using CollectiveEpilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, TileShape, ClusterShape,
      cutlass::epilogue::collective::EpilogueTileAuto, Acc, float,  //
      void, LayoutD, kOutAlign,                                     // no source C
      Output, LayoutD, kOutAlign, EpilogueSchedule, FusionOp>::CollectiveOp;

  using CollectiveMainloop = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp,  //
      Element, cute::tuple<LayoutA, LayoutSFA>, kAlign,     //
      Element, cute::tuple<LayoutB, LayoutSFB>, kAlign,     //
      Acc, TileShape, ClusterShape,
      cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(
          sizeof(typename CollectiveEpilogue::SharedStorage))>,
      MainloopSchedule>::CollectiveOp;

  using Kernel =
      cutlass::gemm::kernel::GemmUniversal<cute::Shape<int, int, int, int>, CollectiveMainloop,
                                           CollectiveEpilogue, cutlass::gemm::PersistentScheduler>;
  using Device = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;

  static const char* run(const Fp8GemmArgs& a, cudaStream_t stream) {
    using StrideA = typename Kernel::StrideA;
    using StrideB = typename Kernel::StrideB;
    using StrideD = typename Kernel::StrideD;
    // CUTLASS's problem and the shapes its scale layouts are built for: the x side's scales
    // are laid out for Mp rows (their run per K block), the problem itself has M.
    const int pm = kSwapAB ? a.n : a.m, pn = kSwapAB ? a.m : a.n;
    const int sm = kSwapAB ? a.n : a.scale_rows, sn = kSwapAB ? a.scale_rows : a.n;
    const auto scale_shape = cute::make_shape(sm, sn, a.k, 1);

    typename Device::Arguments args{};
    args.mode = cutlass::gemm::GemmUniversalMode::kGemm;
    args.problem_shape = typename Kernel::ProblemShape{pm, pn, a.k, 1};
    args.mainloop.ptr_A = reinterpret_cast<const Element*>(kSwapAB ? a.w : a.x);
    args.mainloop.dA = StrideA{kSwapAB ? a.ldw : a.ldx, cute::Int<1>{}, int64_t(0)};
    args.mainloop.ptr_B = reinterpret_cast<const Element*>(kSwapAB ? a.x : a.w);
    args.mainloop.dB = StrideB{kSwapAB ? a.ldx : a.ldw, cute::Int<1>{}, int64_t(0)};
    args.mainloop.ptr_SFA = kSwapAB ? a.w_scales : a.x_scales;
    args.mainloop.layout_SFA = ScaleConfig::tile_atom_to_shape_SFA(scale_shape);
    args.mainloop.ptr_SFB = kSwapAB ? a.x_scales : a.w_scales;
    args.mainloop.layout_SFB = ScaleConfig::tile_atom_to_shape_SFB(scale_shape);
    StrideD stride_d = [&] {
      if constexpr (kSwapAB) {
        return StrideD{cute::Int<1>{}, a.ldy, int64_t(0)};
      } else {
        return StrideD{a.ldy, cute::Int<1>{}, int64_t(0)};
      }
    }();
    args.epilogue.thread.alpha = 1.0f;
    args.epilogue.ptr_C = nullptr;
    args.epilogue.dC = stride_d;
    args.epilogue.ptr_D = static_cast<Output*>(a.y);
    args.epilogue.dD = stride_d;
    args.hw_info.device_id = a.device;
    args.hw_info.sm_count = a.sm_count;
    args.scheduler.max_swizzle_size = a.max_swizzle;
    return launch_cutlass<Device>(args, a.workspace, a.workspace_bytes, stream);
  }
};

}  // namespace invar::kernels::cuda::sm90
