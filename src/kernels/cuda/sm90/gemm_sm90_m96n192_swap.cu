// Invariant GEMM tile config m96n192_swap, for mid-sized M (a few hundred rows): swap-AB, so W is
// wgmma's A operand (192 rows of W on the instruction's M side) and 96 rows of x its B operand; CTA
// tile 192 (W rows) x 96 (x rows) x 64 (K), ping-pong persistent mainloop, TMA-store epilogue. The
// odd widths exist so that the tile count of a mid-sized M lands just under one or two waves of 132
// SMs (e.g. qkv N = 6144: 6144/192 x 384/96 = 128 CTAs). gemm_m96n192_swap_gate_up is the same
// config with the SiLU-and-multiply epilogue (gate_up_epilogue.cuh). See gemm_sm90.cuh for why
// every config gives the same bits.
#include "kernels/cuda/sm90/gemm_sm90.cuh"

namespace invar::kernels::cuda::sm90 {

template <bool kGateUpSilu>
using Config = GemmSm90<192, 96, 64, 1,
                        cutlass::gemm::KernelTmaWarpSpecializedPingpong, true, true, kGateUpSilu>;

const char* gemm_m96n192_swap(const GemmArgs& a, cudaStream_t stream) {
  return Config<false>::run(a, stream);
}

const char* gemm_m96n192_swap_gate_up(const GemmArgs& a, cudaStream_t stream) {
  return Config<true>::run(a, stream);
}

}  // namespace invar::kernels::cuda::sm90
