// Invariant GEMM tile config m128n96: CTA tile 128 (x rows) x 96 (W rows) x 64, cluster 2x1 (the
// two CTAs of a cluster share their W tile through TMA multicast), cooperative persistent
// mainloop, TMA-store epilogue. For the mid-M band where cuBLAS runs 96 x 128 tiles: qkv
// (N = 6144) at M = 256 is 2 x 64 = 128 CTAs, just under one wave of 132 SMs, where the
// power-of-two tiles launch 96 (m128n128) or a second wave. 28 KB per K stage leaves room for
// about seven stages. See gemm_sm90.cuh for why every config gives the same bits.
// Status (2026-12-07): compiled, not yet run on a GPU, and not among choose_tile's candidates;
// gemm_test's tile equivalence and scripts/gpu-gemm-survey are its first checks (gemm-notes.md,
// run 9).
#include "kernels/cuda/sm90/gemm_sm90.cuh"

namespace invar::kernels::cuda::sm90 {

const char* gemm_m128n96(const GemmArgs& a, cudaStream_t stream) {
  return GemmSm90<128, 96, 64, 2, cutlass::gemm::KernelTmaWarpSpecializedCooperative, true,
                  false>::run(a, stream);
}

}  // namespace invar::kernels::cuda::sm90
