// Invariant GEMM tile config m16n64_swap, for decode-sized M: swap-AB, so W is wgmma's A
// operand (64 rows of W fill the instruction's M side) and 16 rows of x its B operand;
// CTA tile 64 (W rows) x 16 (x rows) x 128 (K), ping-pong persistent mainloop,
// register-store epilogue. See gemm_sm90.cuh for why every config gives the same bits.
#include "kernels/cuda/sm90/gemm_sm90.cuh"

namespace invar::kernels::cuda::sm90 {

const char* gemm_m16n64_swap(const GemmArgs& a, cudaStream_t stream) {
  return GemmSm90<64, 16, 128, 1, cutlass::gemm::KernelTmaWarpSpecializedPingpong, false,
                  true>::run(a, stream);
}

}  // namespace invar::kernels::cuda::sm90
