// Invariant GEMM tile config m128n192: CTA tile 128 x 192 x 64, cluster 1x1, cooperative persistent
// mainloop, TMA-store epilogue; for N where 256-wide tiles leave SMs idle (N = 6144: 32 tiles a row
// band instead of 24). gemm_m128n192_gate_up is the same config with the SiLU-and-multiply epilogue
// (gate_up_epilogue.cuh). See gemm_sm90.cuh for why every config gives the same bits.
#include "kernels/cuda/sm90/gemm_sm90.cuh"

namespace invar::kernels::cuda::sm90 {

template <bool kGateUpSilu>
using Config = GemmSm90<128, 192, 64, 1,
                        cutlass::gemm::KernelTmaWarpSpecializedCooperative, true, false, kGateUpSilu>;

const char* gemm_m128n192(const GemmArgs& a, cudaStream_t stream) {
  return Config<false>::run(a, stream);
}

const char* gemm_m128n192_gate_up(const GemmArgs& a, cudaStream_t stream) {
  return Config<true>::run(a, stream);
}

}  // namespace invar::kernels::cuda::sm90
