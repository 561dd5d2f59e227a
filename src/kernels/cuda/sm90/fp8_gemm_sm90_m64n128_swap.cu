// Invariant FP8 GEMM tile config m64n128_swap: CUTLASS tile 128 x 64 x 128 (W rows x
// tokens), swap-AB, ping-pong persistent.
// See fp8_gemm_sm90.cuh for why every config gives the same bits.
#include "kernels/cuda/sm90/fp8_gemm_sm90.cuh"

namespace invar::kernels::cuda::sm90 {

const char* fp8_gemm_m64n128_swap(const Fp8GemmArgs& a, cudaStream_t stream) {
  return Fp8GemmSm90<128, 64, cutlass::gemm::KernelTmaWarpSpecializedPingpongFP8Blockwise,
                     true>::run(a, stream);
}

}  // namespace invar::kernels::cuda::sm90
