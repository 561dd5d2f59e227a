// Invariant GEMM tile config m128n256: CTA tile 128 x 256 x 64, cluster 2x1, cooperative persistent
// mainloop, TMA-store epilogue. gemm_m128n256_gate_up is the same config with the SiLU-and-multiply
// epilogue (gate_up_epilogue.cuh). See gemm_sm90.cuh for why every config gives the same bits.
#include "kernels/cuda/sm90/gemm_sm90.cuh"

namespace invar::kernels::cuda::sm90 {

template <bool kGateUpSilu>
using Config = GemmSm90<128, 256, 64, 2,
                        cutlass::gemm::KernelTmaWarpSpecializedCooperative, true, false, kGateUpSilu>;

const char* gemm_m128n256(const GemmArgs& a, cudaStream_t stream) {
  return Config<false>::run(a, stream);
}

const char* gemm_m128n256_gate_up(const GemmArgs& a, cudaStream_t stream) {
  return Config<true>::run(a, stream);
}

}  // namespace invar::kernels::cuda::sm90
