// Assembles one invariant-GEMM tile config from CUTLASS 3.x collectives (TMA loads, wgmma,
// warp-specialized producer/consumer pipeline) and launches it.
//   M = rows of x, N = rows of W, K = reduced dimension; BM x BN x BK = CTA tile
//
// What keeps the bits fixed (R1, R2): the mainloop issues, for every output element, the
// chain wgmma(k = 0..15, scale-d = 0), wgmma(k = 16..31), ... over all of K in order into
// one f32 register; the tile scheduler only decides which CTA owns a tile (no split-K, no
// stream-K, no atomics); the epilogue computes 1 * acc and rounds once to bf16. BM, BK, the
// cluster and the schedule do not enter an element's arithmetic; BN sets the wgmma
// instruction's N, and swap-AB puts W in wgmma's A role and x in its B role (for small M,
// so that W fills the instruction's 64-row side and x rows are not padded to 64):
// gemm_test.cu checks that neither changes any element's bits.
// With kGateUpSilu the epilogue is GateUpSiluEpilogue (gate_up_epilogue.cuh): the same
// mainloop, and silu_mul of each gate/up pair written instead of the pair.
#pragma once

#include <cute/tensor.hpp>
#include <cutlass/bfloat16.h>
#include <cutlass/cutlass.h>
#include <cutlass/epilogue/collective/collective_builder.hpp>
#include <cutlass/gemm/collective/collective_builder.hpp>
#include <cutlass/gemm/device/gemm_universal_adapter.h>
#include <cutlass/gemm/dispatch_policy.hpp>
#include <cutlass/gemm/kernel/gemm_universal.hpp>
#include <cutlass/gemm/kernel/tile_scheduler.hpp>

#include "kernels/cuda/sm90/cutlass_launch.cuh"
#include "kernels/cuda/sm90/gate_up_epilogue.cuh"
#include "kernels/cuda/sm90/gemm_sm90.h"

namespace invar::kernels::cuda::sm90 {

// A tile config: CTA tile BM x BN x BK in CUTLASS's (M, N, K) problem, a cluster of ClusterM
// CTAs along that M (they share B tiles through TMA multicast), the mainloop schedule, whether
// the epilogue stages the output through shared memory (TMA store) or writes it from
// registers, and whether A and B are swapped:
//   kSwapAB = false: A = x, B = W, D = y        (CUTLASS M, N = our M, N)
//   kSwapAB = true:  A = W, B = x, D = y^T      (CUTLASS M, N = our N, M)
template <int BM, int BN, int BK, int ClusterM, class MainloopSchedule, bool kTmaEpilogue,
          bool kSwapAB = false, bool kGateUpSilu = false>
struct GemmSm90 {
  using Element = cutlass::bfloat16_t;
  using Acc = float;
  using TileShape = cute::Shape<cute::Int<BM>, cute::Int<BN>, cute::Int<BK>>;
  using ClusterShape = cute::Shape<cute::Int<ClusterM>, cute::_1, cute::_1>;
  static constexpr int kAlign = 8;  // 16 bytes of bf16: TMA's alignment

  // Both operands are K-major: RowMajor A [M, K], ColumnMajor B in CUTLASS's (N, K) view.
  // y [M, N] is RowMajor; seen as y^T (swap-AB) it is ColumnMajor.
  using LayoutA = cutlass::layout::RowMajor;
  using LayoutB = cutlass::layout::ColumnMajor;
  using LayoutD = std::conditional_t<kSwapAB, cutlass::layout::ColumnMajor, cutlass::layout::RowMajor>;

  using EpilogueSchedule = std::conditional_t<
      kTmaEpilogue,
      std::conditional_t<std::is_same_v<MainloopSchedule, cutlass::gemm::KernelTmaWarpSpecializedCooperative>,
                         cutlass::epilogue::TmaWarpSpecializedCooperative,
                         cutlass::epilogue::TmaWarpSpecialized>,
      cutlass::epilogue::NoSmemWarpSpecialized>;
  // Both epilogues compute D = alpha * acc with alpha = 1 (exact), then one round to bf16.
  using FusionOp = std::conditional_t<
      kTmaEpilogue, cutlass::epilogue::fusion::ScaledAcc<Element, float, float>,
      cutlass::epilogue::fusion::LinearCombination<Element, float, void, float>>;

  using PlainEpilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, TileShape, ClusterShape,
      cutlass::epilogue::collective::EpilogueTileAuto, Acc, float,  //
      void, LayoutD, kAlign,                                        // no source C
      Element, LayoutD, kAlign, EpilogueSchedule, FusionOp>::CollectiveOp;
  // The fused epilogue writes from registers, so it plugs in where the no-smem one would.
  using CollectiveEpilogue = std::conditional_t<
      kGateUpSilu,
      cutlass::epilogue::collective::detail::Sm90TmaWarpSpecializedAdapter<GateUpSiluEpilogue<kSwapAB>>,
      PlainEpilogue>;

  using CollectiveMainloop = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp,  //
      Element, LayoutA, kAlign,                             //
      Element, LayoutB, kAlign,                             //
      Acc, TileShape, ClusterShape,
      cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(
          sizeof(typename CollectiveEpilogue::SharedStorage))>,
      MainloopSchedule>::CollectiveOp;

  static constexpr bool kPersistent =
      !std::is_same_v<MainloopSchedule, cutlass::gemm::KernelTmaWarpSpecialized>;
  using Scheduler = std::conditional_t<kPersistent, cutlass::gemm::PersistentScheduler, void>;

  using Kernel = cutlass::gemm::kernel::GemmUniversal<cute::Shape<int, int, int, int>,
                                                      CollectiveMainloop, CollectiveEpilogue,
                                                      Scheduler>;
  using Device = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;

  static const char* run(const GemmArgs& a, cudaStream_t stream) {
    using StrideA = typename Kernel::StrideA;
    using StrideB = typename Kernel::StrideB;
    using StrideD = typename Kernel::StrideD;
    const void* ptr_a = kSwapAB ? a.w : a.x;
    const void* ptr_b = kSwapAB ? a.x : a.w;
    if (kGateUpSilu && a.batch != 1) return "the gate/up epilogue takes no batch";
    StrideA stride_a{kSwapAB ? a.ldw : a.ldx, cute::Int<1>{}, kSwapAB ? a.batch_w : a.batch_x};
    StrideB stride_b{kSwapAB ? a.ldx : a.ldw, cute::Int<1>{}, kSwapAB ? a.batch_x : a.batch_w};
    StrideD stride_d = [&] {
      if constexpr (kSwapAB) {
        return StrideD{cute::Int<1>{}, a.ldy, a.batch_y};
      } else {
        return StrideD{a.ldy, cute::Int<1>{}, a.batch_y};
      }
    }();

    typename Device::Arguments args{};
    args.mode = cutlass::gemm::GemmUniversalMode::kGemm;
    args.problem_shape = kSwapAB ? typename Kernel::ProblemShape{a.n, a.m, a.k, a.batch}
                                 : typename Kernel::ProblemShape{a.m, a.n, a.k, a.batch};
    args.mainloop.ptr_A = static_cast<const Element*>(ptr_a);
    args.mainloop.dA = stride_a;
    args.mainloop.ptr_B = static_cast<const Element*>(ptr_b);
    args.mainloop.dB = stride_b;
    if constexpr (kGateUpSilu) {
      args.epilogue.ptr_h = static_cast<Element*>(a.y);
      args.epilogue.ld_h = a.ldy;
    } else {
      args.epilogue.thread.alpha = 1.0f;
      args.epilogue.ptr_C = nullptr;
      args.epilogue.dC = stride_d;
      args.epilogue.ptr_D = static_cast<Element*>(a.y);
      args.epilogue.dD = stride_d;
    }
    args.hw_info.device_id = a.device;
    args.hw_info.sm_count = a.sm_count;

    return launch_cutlass<Device>(args, a.workspace, a.workspace_bytes, stream);
  }
};

}  // namespace invar::kernels::cuda::sm90
