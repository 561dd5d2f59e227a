// Invariant FP8 GEMM tile config m64n128: CTA tile 64 x 128 x 128, ping-pong persistent.
// See fp8_gemm_sm90.cuh for why every config gives the same bits.
#include "kernels/cuda/sm90/fp8_gemm_sm90.cuh"

namespace invar::kernels::cuda::sm90 {

const char* fp8_gemm_m64n128(const Fp8GemmArgs& a, cudaStream_t stream) {
  return Fp8GemmSm90<64, 128, cutlass::gemm::KernelTmaWarpSpecializedPingpongFP8Blockwise,
                     false>::run(a, stream);
}

}  // namespace invar::kernels::cuda::sm90
