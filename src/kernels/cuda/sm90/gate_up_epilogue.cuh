// A CUTLASS 3.x collective epilogue that ends the gate/up GEMM with SiLU-and-multiply: it
// reads gate and up of the same output feature from one thread's accumulator registers and
// writes h = silu_mul_value(bf16(gate), bf16(up)) (silu_mul.cuh), so the [M, 2I] gate/up
// output never reaches memory and the separate silu_mul pass disappears.
//
// Why gate and up sit in the same thread: W's rows pair gate and up in blocks of 8
// (kGateUpBlock, gemm.h): rows 16b..16b+7 are gate rows 8b..8b+7, rows 16b+8..16b+15 the up
// rows. A wgmma accumulator fragment gives each thread the values at (r, c), (r, c+1),
// (r+8, c), (r+8, c+1) and again 8 columns further: mode 0 of the partitioned accumulator is
// (2, 2, N/8) = (column +1, row +8, column +8), with r mod 16 < 8 and c mod 16 < 8 for the
// first of each pair. So
//   x W^T (W rows on CUTLASS N): gate at v2 = 2j, up at v2 = 2j + 1 (8 columns further);
//   swap-AB (W rows on CUTLASS M): gate at v1 = 0, up at v1 = 1 (8 rows further).
// The output coordinate of each register comes from CuTe's identity-tensor partition, as in
// CUTLASS's DefaultEpilogue; gate_up_test checks the fused output against GEMM + silu_mul bit
// for bit, which fails at once if a pair were wrong.
//
// Bits: the accumulator is rounded to bf16 exactly as the plain epilogue rounds it (1 * acc,
// round to nearest even), then the shared f32 recipe: fused and unfused give the same bits.
// Stores go from registers (no shared-memory staging), 2 x bf16 at once where the pair of
// columns is adjacent in h (not swap-AB).
#pragma once

#include <cute/tensor.hpp>
#include <cutlass/bfloat16.h>
#include <cutlass/cutlass.h>
#include <cutlass/detail/layout.hpp>
#include <cutlass/epilogue/collective/detail.hpp>

#include "kernels/cuda/silu_mul.cuh"

namespace invar::kernels::cuda::sm90 {

template <bool kSwapAB>
class GateUpSiluEpilogue {
 public:
  // What the CUTLASS kernels read of a collective epilogue; C is absent.
  using ElementC = void;
  using ElementD = cutlass::bfloat16_t;
  using ElementAccumulator = float;
  using StrideD = std::conditional_t<kSwapAB, cute::Stride<cute::Int<1>, int64_t, int64_t>,
                                     cute::Stride<int64_t, cute::Int<1>, int64_t>>;
  using StrideC = StrideD;
  using GmemTiledCopyC = void;
  using GmemTiledCopyD = void;
  using ThreadEpilogueOp = void;  // named by GemmUniversalAdapter, never used
  struct SharedStorage {};
  using TensorStorage = SharedStorage;

  struct Arguments {
    cutlass::bfloat16_t* ptr_h = nullptr;  // [tokens, I], row stride ld_h (even)
    int64_t ld_h = 0;
  };
  using Params = Arguments;

  template <class ProblemShape>
  static constexpr Params to_underlying_arguments(ProblemShape const&, Arguments const& args, void*) {
    return args;
  }
  template <class ProblemShape>
  static size_t get_workspace_size(ProblemShape const&, Arguments const&) {
    return 0;
  }
  template <class ProblemShape>
  static cutlass::Status initialize_workspace(ProblemShape const&, Arguments const&, void*,
                                              cudaStream_t, cutlass::CudaHostAdapter* = nullptr) {
    return cutlass::Status::kSuccess;
  }
  template <class ProblemShape>
  static bool can_implement(ProblemShape const& problem, Arguments const& args) {
    const auto rows_of_w = kSwapAB ? cute::get<0>(problem) : cute::get<1>(problem);
    return rows_of_w % 16 == 0 && args.ld_h % 2 == 0 &&
           (reinterpret_cast<uintptr_t>(args.ptr_h) & 3u) == 0;
  }

  CUTLASS_HOST_DEVICE
  GateUpSiluEpilogue(Params const& params, SharedStorage const& = SharedStorage()) : params_(params) {}

  template <class ProblemShapeMNKL, class BlockShapeMNK, class BlockCoordMNKL, class FrgEngine,
            class FrgLayout, class TiledMma, class ResidueMNK>
  CUTLASS_DEVICE void operator()(ProblemShapeMNKL problem_shape_mnkl, BlockShapeMNK blk_shape_mnk,
                                 BlockCoordMNKL blk_coord_mnkl,
                                 cute::Tensor<FrgEngine, FrgLayout> const& acc, TiledMma tiled_mma,
                                 ResidueMNK, int thread_idx, char*) {
    using namespace cute;
    static_assert(is_static<FrgLayout>::value, "accumulator layout must be static");
    static_assert(size<0, 0>(FrgLayout{}) == 2 && size<0, 1>(FrgLayout{}) == 2,
                  "expected wgmma's (2, 2, N/8) accumulator values per thread");
    static_assert(size<0, 2>(FrgLayout{}) % 2 == 0 || kSwapAB,
                  "the instruction's N must be a multiple of 16 to hold whole gate/up pairs");

    const int M = get<0>(problem_shape_mnkl);
    const int N = get<1>(problem_shape_mnkl);
    // (m, n) of each accumulator register in the CUTLASS problem.
    Tensor coords = local_tile(make_identity_tensor(make_shape(M, N)), take<0, 2>(blk_shape_mnk),
                               make_coord(get<0>(blk_coord_mnkl), get<1>(blk_coord_mnkl)));
    Tensor tc = tiled_mma.get_thread_slice(thread_idx).partition_C(coords);

    cutlass::bfloat16_t* const h = params_.ptr_h;
    const int64_t ld = params_.ld_h;
    // h's column of W row `w` (gate rows only): 8 per block of 16.
    auto h_col = [](int w) { return int64_t(w / 16) * 8 + w % 16; };

    CUTLASS_PRAGMA_UNROLL
    for (int mi = 0; mi < size<1>(acc); ++mi) {
      CUTLASS_PRAGMA_UNROLL
      for (int ni = 0; ni < size<2>(acc); ++ni) {
        if constexpr (!kSwapAB) {
          // CUTLASS (m, n) = (token, W row); gate/up 8 columns apart; v0 = 0, 1 adjacent in h.
          CUTLASS_PRAGMA_UNROLL
          for (int v1 = 0; v1 < 2; ++v1) {
            CUTLASS_PRAGMA_UNROLL
            for (int v2 = 0; v2 < size<0, 2>(acc); v2 += 2) {
              const auto at = [&](int v0, int v2_) { return make_coord(make_coord(v0, v1, v2_), mi, ni); };
              const auto crd = tc(at(0, v2));
              const int token = get<0>(crd), w = get<1>(crd);
              if (token >= M || w >= N) continue;
              __nv_bfloat162 pair;
              pair.x = silu_mul_value(as_bf16(acc(at(0, v2))), as_bf16(acc(at(0, v2 + 1))));
              pair.y = silu_mul_value(as_bf16(acc(at(1, v2))), as_bf16(acc(at(1, v2 + 1))));
              *reinterpret_cast<__nv_bfloat162*>(h + token * ld + h_col(w)) = pair;
            }
          }
        } else {
          // CUTLASS (m, n) = (W row, token); gate/up 8 rows apart; each value its own token.
          CUTLASS_PRAGMA_UNROLL
          for (int v2 = 0; v2 < size<0, 2>(acc); ++v2) {
            CUTLASS_PRAGMA_UNROLL
            for (int v0 = 0; v0 < 2; ++v0) {
              const auto gate_at = make_coord(make_coord(v0, 0, v2), mi, ni);
              const auto up_at = make_coord(make_coord(v0, 1, v2), mi, ni);
              const auto crd = tc(gate_at);
              const int w = get<0>(crd), token = get<1>(crd);
              if (w >= M || token >= N) continue;
              reinterpret_cast<__nv_bfloat16*>(h)[token * ld + h_col(w)] =
                  silu_mul_value(as_bf16(acc(gate_at)), as_bf16(acc(up_at)));
            }
          }
        }
      }
    }
  }

 private:
  // The plain epilogue's rounding of an accumulator: to bf16, nearest even, then widened.
  CUTLASS_DEVICE static float as_bf16(float a) { return __bfloat162float(__float2bfloat16_rn(a)); }

  Params params_;
};

}  // namespace invar::kernels::cuda::sm90
