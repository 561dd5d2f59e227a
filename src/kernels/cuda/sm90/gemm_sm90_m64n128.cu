// Invariant GEMM tile config m64n128: CTA tile 64 x 128 x 64, cluster 1x1, ping-pong persistent
// mainloop, TMA-store epilogue. gemm_m64n128_gate_up is the same config with the SiLU-and-multiply
// epilogue (gate_up_epilogue.cuh). See gemm_sm90.cuh for why every config gives the same bits.
#include "kernels/cuda/sm90/gemm_sm90.cuh"

namespace invar::kernels::cuda::sm90 {

template <bool kGateUpSilu>
using Config = GemmSm90<64, 128, 64, 1,
                        cutlass::gemm::KernelTmaWarpSpecializedPingpong, true, false, kGateUpSilu>;

const char* gemm_m64n128(const GemmArgs& a, cudaStream_t stream) {
  return Config<false>::run(a, stream);
}

const char* gemm_m64n128_gate_up(const GemmArgs& a, cudaStream_t stream) {
  return Config<true>::run(a, stream);
}

}  // namespace invar::kernels::cuda::sm90
