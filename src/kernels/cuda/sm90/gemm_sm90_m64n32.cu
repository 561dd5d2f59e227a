// Invariant GEMM tile config m64n32: CTA tile 64 x 32 x 128, cluster 1x1, single-warpgroup mainloop,
// register-store epilogue. See gemm_sm90.cuh for why every config gives the same bits.
#include "kernels/cuda/sm90/gemm_sm90.cuh"

namespace invar::kernels::cuda::sm90 {

const char* gemm_m64n32(const GemmArgs& a, cudaStream_t stream) {
  return GemmSm90<64, 32, 128, 1, cutlass::gemm::KernelTmaWarpSpecialized, false>::run(a, stream);
}

}  // namespace invar::kernels::cuda::sm90
