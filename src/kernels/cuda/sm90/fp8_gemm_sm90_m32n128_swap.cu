// Invariant FP8 GEMM tile config m32n128_swap: CUTLASS tile 128 x 32 x 128 (W rows x
// tokens), swap-AB, ping-pong persistent: decode batches up to 32 rows.
// See fp8_gemm_sm90.cuh for why every config gives the same bits.
#include "kernels/cuda/sm90/fp8_gemm_sm90.cuh"

namespace invar::kernels::cuda::sm90 {

const char* fp8_gemm_m32n128_swap(const Fp8GemmArgs& a, cudaStream_t stream) {
  return Fp8GemmSm90<128, 32, cutlass::gemm::KernelTmaWarpSpecializedPingpongFP8Blockwise,
                     true>::run(a, stream);
}

}  // namespace invar::kernels::cuda::sm90
