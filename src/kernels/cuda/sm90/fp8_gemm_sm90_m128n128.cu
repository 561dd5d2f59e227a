// Invariant FP8 GEMM tile config m128n128: CTA tile 128 x 128 x 128, cooperative persistent (two
// consumer warpgroups split the 128 rows).
// See fp8_gemm_sm90.cuh for why every config gives the same bits.
#include "kernels/cuda/sm90/fp8_gemm_sm90.cuh"

namespace invar::kernels::cuda::sm90 {

const char* fp8_gemm_m128n128(const Fp8GemmArgs& a, cudaStream_t stream) {
  return Fp8GemmSm90<128, 128, cutlass::gemm::KernelTmaWarpSpecializedCooperativeFP8Blockwise,
                     false>::run(a, stream);
}

}  // namespace invar::kernels::cuda::sm90
